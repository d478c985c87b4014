"""The whole two-stage pipeline on small real data: it writes a model repo that reloads with
identical predictions; InceptionV3 builds at 299 and trains; interrupted runs write nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from huggingface_hub import ModelCard

from greenlens import repository
from greenlens.backbones import build_backbone, build_classifier, get_backbone
from greenlens.images import decode_image
from greenlens.pipeline import train_task
from greenlens.tasks import CACTUS, LEAF
from greenlens.training import TrainConfig, fine_tune, split_backbone

from .conftest import ROOT

REPO_FILES = {
    "config.json", "metadata.json", "model.weights.h5", "README.md", "labels.json", "task.json",
    "metrics.json", "validation.csv", "training_curves.png", "confusion_matrix.png", "roc_curve.png", "ood.npz",
}


def small_config(**overrides) -> TrainConfig:
    values = dict(backbone="mobilenet_v2", image_size=64, views=2, head_epochs=3, fine_tune_epochs=2, batch_size=16)
    values.update(overrides)
    return TrainConfig(**values)


def assert_reloads_identically(folder, images):
    trained = keras.saving.load_model(str(folder), compile=False, safe_mode=True)
    again = repository.load(str(folder)).model
    batch = np.stack(images).astype(np.float32)
    np.testing.assert_allclose(trained.predict_on_batch(batch), again.predict_on_batch(batch), rtol=1e-6, atol=1e-7)
    return trained.predict_on_batch(batch)


@pytest.fixture(scope="module")
def leaf_run(tmp_path_factory, request):
    leaf_dir = request.getfixturevalue("leaf_dir")
    weights = request.getfixturevalue("imagenet_weights")
    out = tmp_path_factory.mktemp("repo") / "leaf"
    record = train_task(
        LEAF, [leaf_dir / "color", leaf_dir / "segmented"], out, small_config(weights=weights, augmentation="flips"),
        repo_id="test/leaf", command="pytest", limit=60, log=lambda *_: None,
    )
    return out, record


def test_leaf_pipeline_writes_a_complete_repo(leaf_run):
    out, record = leaf_run
    assert REPO_FILES <= {p.name for p in out.iterdir()}
    assert json.loads((out / "labels.json").read_text()) == ["healthy", "leaf scorch"]
    task = json.loads((out / "task.json").read_text())
    assert task["backbone"] == "mobilenet_v2" and task["image_size"] == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["history"]) == {"stage1_head", "stage2_fine_tune"}
    assert metrics["history"]["stage2_fine_tune"]["val_accuracy"]
    assert metrics["metrics"]["count"] == record["counts"]["validation"] == len((out / "validation.csv").read_text().splitlines()) - 1
    assert set(metrics["metrics"]["per_source"]) == {"color", "segmented"}
    guard = metrics["ood"]
    # Each of the 4 feature groups' thresholds is a high validation quantile: with 12 validation
    # images at most one image per group lies above it. (Real rates: test_bundled_models.)
    assert len(guard["thresholds"]) == 4 and all(t > 0 for t in guard["thresholds"])
    assert guard["validation_flagged"] * metrics["metrics"]["count"] <= 4
    assert set(guard["out_of_distribution_flagged"]) >= {"synthetic noise", "synthetic solid", "synthetic gradient", "synthetic scene"}
    # Even 50 training images and a few epochs beat chance by far on this easy task.
    assert metrics["metrics"]["accuracy"] >= 0.75
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_leaf_repo_reloads_with_identical_predictions(leaf_run, leaf_dir):
    out, _ = leaf_run
    rows = (out / "validation.csv").read_text().splitlines()[1:6]
    images = [decode_image(leaf_dir / row.split(",")[0]) for row in rows]
    probabilities = assert_reloads_identically(out, images)
    recorded = [float(row.rsplit(",", 1)[1]) for row in rows]
    np.testing.assert_allclose(probabilities[:, 1], recorded, atol=1e-5)  # validation.csv has the same numbers


def test_card_has_hub_metadata_and_real_numbers(leaf_run):
    out, record = leaf_run
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "keras"
    assert card.data.pipeline_tag == "image-classification"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(record["metrics"]["accuracy"], abs=1e-6)
    assert results["roc_auc"] == pytest.approx(record["metrics"]["roc_auc"], abs=1e-6)
    assert "MobileNetV2" in card.text and "InceptionV3" in card.text  # the real backbone, and the default named
    assert 'keras.saving.load_model("hf://test/leaf")' in card.text


def test_cactus_pipeline_on_real_tiles(cactus_dir, imagenet_weights, tmp_path):
    out = tmp_path / "cactus"
    record = train_task(
        CACTUS, [cactus_dir], out, small_config(weights=imagenet_weights, augmentation="dihedral", image_size=64),
        repo_id="test/cactus", command="pytest", limit=300, log=lambda *_: None,
    )
    assert record["counts"]["total"] == 300 and record["counts"]["validation"] == 60
    assert record["metrics"]["accuracy"] >= 0.8
    assert record["backbone_note"] == ""  # mobilenet_v2 is the cactus default: nothing to explain
    rows = (out / "validation.csv").read_text().splitlines()[1:4]
    assert_reloads_identically(out, [decode_image(cactus_dir / "train" / row.split(",")[0].rsplit("/", 1)[1]) for row in rows])


def test_pipeline_runs_anywhere_on_generated_images(generated_cactus_dir, tmp_path):
    """No real data and no ImageNet weights needed: random initialisation on generated tiles
    (with a half-width backbone cut lower than its default: the repo records both)."""
    out = tmp_path / "model"
    record = train_task(
        CACTUS, [generated_cactus_dir], out,
        small_config(weights=None, image_size=32, alpha=0.5, fine_tune_after="block_9_add"),
        repo_id="test/generated", command="pytest", log=lambda *_: None,
    )
    assert REPO_FILES <= {p.name for p in out.iterdir()}
    assert record["weights_description"].startswith("none")
    task = json.loads((out / "task.json").read_text())
    assert (task["alpha"], task["fine_tune_after"]) == (0.5, "block_9_add")
    assert "after `block_9_add`" in (out / "README.md").read_text()
    files = sorted((generated_cactus_dir / "train").iterdir())[:4]
    assert_reloads_identically(out, [decode_image(f) for f in files])


def test_inception_v3_builds_at_299_and_trains_a_step():
    spec = get_backbone("inception_v3")
    assert spec.default_size == 299
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 150, 3), dtype=np.uint8) for _ in range(4)]
    labels = np.array([0, 1, 0, 1])
    config = TrainConfig(backbone="inception_v3", image_size=299, weights=None, views=1, head_epochs=1, fine_tune_epochs=1, batch_size=4)
    result = fine_tune(config, 2, images, labels, images, labels)
    model = result.model
    assert model.get_layer("resize").get_config()["height"] == 299
    assert len(result.history["stage2_fine_tune"]["loss"]) == 1
    out = model.predict_on_batch(np.stack(images).astype(np.float32))
    assert out.shape == (4, 2) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_stage_two_trains_only_top_blocks_with_batchnorm_frozen():
    spec = get_backbone("mobilenet_v2")
    backbone = build_backbone(spec, weights=None)
    model, _ = build_classifier(backbone, spec, 64, 2)
    stem, top = split_backbone(model, backbone, spec.fine_tune_after)
    from greenlens.training import unfreeze_top_blocks

    before = {w.path: w.numpy().copy() for w in backbone.weights}
    unfreeze_top_blocks(top)
    trainable = {w.path for w in top.trainable_weights}
    assert trainable and all("block_13" in p or "block_14" in p or "block_15" in p or "block_16" in p or "Conv_1/" in p for p in trainable)
    assert not any("bn" in p.lower() or "BN" in p for p in trainable)
    assert stem.predict_on_batch(np.zeros((1, 64, 64, 3))).shape == (1, 4, 4, 96)
    assert all(np.array_equal(before[w.path], w.numpy()) for w in backbone.weights)


def test_atomic_directory_keeps_the_old_folder_on_failure(tmp_path):
    target = tmp_path / "models" / "leaf"
    target.mkdir(parents=True)
    (target / "model.weights.h5").write_text("old")
    with pytest.raises(RuntimeError):
        with repository.atomic_directory(target) as staging:
            (staging / "model.weights.h5").write_text("half-written")
            raise RuntimeError("interrupted")
    assert (target / "model.weights.h5").read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["leaf"]
    with repository.atomic_directory(target) as staging:
        (staging / "model.weights.h5").write_text("new")
    assert (target / "model.weights.h5").read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["leaf"]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_training_leaves_existing_model_untouched(generated_leaf_dir, tmp_path, stop_signal):
    out = tmp_path / "models" / "leaf"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "leaf", "--data", str(generated_leaf_dir / "color"), "--out", str(out),
         "--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--head-epochs", "500",
         "--fine-tune-epochs", "500", "--validation-fraction", "0.34"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    output = ""
    while time.time() < deadline:
        line = process.stdout.readline()
        output += line
        if "Epoch 2/" in line:  # training is under way
            break
    process.send_signal(stop_signal)
    output += process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert "Interrupted: nothing was written" in output
    assert [p.name for p in out.iterdir()] == ["config.json"] and (out / "config.json").read_text() == "{}"
    assert [p.name for p in out.parent.iterdir()] == ["leaf"]
