"""The whole two-stage pipeline on small real data: it writes a model repo whose reloaded model
gives the probabilities recorded at training time; the splits are disjoint; InceptionV3 builds at
299 and trains; stage 2 trains only the top blocks; interrupted runs write nothing."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import keras
import numpy as np
import pytest
from huggingface_hub import ModelCard

from greenlens.core import repository
from greenlens.core.backbones import build_backbone, build_classifier, get_backbone, parts
from greenlens.core.images import decode_image
from greenlens.core.tasks import CACTUS, LEAF
from greenlens.training.distill import SPEED_ROUNDS
from greenlens.training.finetune import TrainConfig, fine_tune, split_backbone, train_top_blocks
from greenlens.training.pipeline import RunSettings, train_task

from .conftest import ROOT

REPO_FILES = {
    "config.json", "metadata.json", "model.weights.h5", "README.md", "labels.json", "task.json", "metrics.json",
    "validation.csv", "test.csv", "training_curves.png", "confusion_matrix.png", "roc_curve.png", "ood.npz",
}


def small_config(task, weights, **overrides) -> TrainConfig:
    """The task's own recipe, shrunk to run in seconds."""
    small = dict(image_size=64, views=2, head_epochs=3, fine_tune_epochs=2, batch_size=16)
    return TrainConfig(replace(task.recipe(), **{**small, **overrides}), task.augmentation, weights)


def assert_reloaded_model_gives_the_recorded_probabilities(folder, data_root, split="test", rows=6):
    """The probabilities in test.csv were computed by the trained model in memory, before it was
    saved; the model Keras loads from the folder must give them again."""
    with open(folder / f"{split}.csv", newline="") as handle:
        recorded = list(csv.DictReader(handle))[:rows]
    column = next(c for c in recorded[0] if c.startswith("p_"))
    images = [decode_image(data_root / row["file"]) for row in recorded]
    model = keras.saving.load_model(str(folder), compile=False, safe_mode=True)
    labels = json.loads((folder / "labels.json").read_text())
    positive = labels.index(json.loads((folder / "task.json").read_text())["positive_label"])
    probabilities = np.concatenate([model.predict_on_batch(image[None].astype(np.float32)) for image in images])
    np.testing.assert_allclose(probabilities[:, positive], [float(row[column]) for row in recorded], atol=2e-5)


@pytest.fixture(scope="module")
def leaf_run(tmp_path_factory, request):
    leaf_dir = request.getfixturevalue("leaf_dir")
    weights = request.getfixturevalue("imagenet_weights")
    out = tmp_path_factory.mktemp("repo") / "leaf"
    record = train_task(
        LEAF, [leaf_dir / "color", leaf_dir / "segmented"], out, small_config(LEAF, weights),
        run=RunSettings("test/leaf", "pytest", recipe_name="mobilenet_v2", limit=80, exports="none"), log=lambda *_: None,
    )
    return out, record


def test_leaf_pipeline_writes_a_complete_repo(leaf_run):
    out, record = leaf_run
    assert {p.name for p in out.iterdir()} >= REPO_FILES
    assert "tiles.tflite" not in {p.name for p in out.iterdir()}  # leaves are not surveyed
    assert json.loads((out / "labels.json").read_text()) == ["healthy", "leaf scorch"]
    task = json.loads((out / "task.json").read_text())
    assert (task["backbone"], task["image_size"], task["alpha"]) == ("mobilenet_v2", 64, 0.5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["history"]) == {"stage1_head", "stage2_fine_tune"}
    assert metrics["history"]["stage2_fine_tune"]["val_accuracy"]
    for split, key in (("test", "metrics"), ("validation", "validation_metrics")):
        listed = (out / f"{split}.csv").read_text().splitlines()[1:]
        assert metrics[key]["count"] == record["counts"][split] == len(listed) > 0
        assert set(metrics[key]["per_source"]) == {"color", "segmented"}
    assert sum(record["counts"][s] for s in ("train", "validation", "test")) == record["counts"]["total"] == 80
    guard = metrics["ood"]
    assert len(guard["thresholds"]) == 4
    assert all(t > 0 for t in guard["thresholds"])
    synthetic = {"synthetic noise", "synthetic solid", "synthetic gradient", "synthetic scene"}
    assert set(guard["out_of_distribution_flagged"]) >= synthetic
    # Even 50 training images and a few epochs beat chance by far on this easy task.
    assert metrics["metrics"]["accuracy"] >= 0.75
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_splits_are_disjoint_and_grouped_by_leaf(leaf_run, leaf_dir):
    from greenlens.training.data import _read_groups

    out, _ = leaf_run
    leaf_of = _read_groups(leaf_dir / "leaf_groups.csv")
    files = {split: [row.split(",")[0] for row in (out / f"{split}.csv").read_text().splitlines()[1:]]
             for split in ("test", "validation")}
    assert not set(files["test"]) & set(files["validation"])
    leaves = {split: {leaf_of[name.rsplit("/", 1)[1]] for name in names} for split, names in files.items()}
    assert not leaves["test"] & leaves["validation"]


def test_leaf_repo_reloads_with_the_recorded_probabilities(leaf_run, leaf_dir):
    out, _ = leaf_run
    assert_reloaded_model_gives_the_recorded_probabilities(out, leaf_dir, "test")
    assert_reloaded_model_gives_the_recorded_probabilities(out, leaf_dir, "validation")


def test_card_has_hub_metadata_and_real_numbers(leaf_run):
    out, record = leaf_run
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "keras"
    assert card.data.pipeline_tag == "image-classification"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(record["metrics"]["accuracy"], abs=1e-6)
    assert results["roc_auc"] == pytest.approx(record["metrics"]["roc_auc"], abs=1e-6)
    # Metadata that links: no made-up Hub dataset ids; the papers and the Kaggle page in the text instead.
    assert card.data.datasets is None
    assert card.data.base_model is None
    for link in ("arxiv.org/abs/1801.04381", "arxiv.org/abs/1512.00567", "arxiv.org/abs/1511.08060",
                 "arxiv.org/abs/1807.03888", "kaggle.com/datasets/abdallahalidev/plantvillage-dataset"):
        assert link in card.text, link
    assert "MobileNetV2" in card.text
    assert "InceptionV3" in card.text
    assert "--recipe inception_v3" in card.text
    assert 'keras.saving.load_model("hf://test/leaf")' in card.text
    metrics = record["metrics"]
    assert f"**{metrics['accuracy']:.4f}** ({metrics['errors']} errors of {record['counts']['test']} held-out" in card.text


def test_guard_refit_of_a_repo_reproduces_the_guard_training_fitted(leaf_run, leaf_dir, tmp_path):
    """`train.py guard` fits a repo's guard and quality check again from its weights and splits (for repos trained
    before the guard's fitting changed): on a repo the same code trained, it gives the guard training fitted, and it
    touches nothing else."""
    import shutil

    from greenlens.cli.train import main
    from greenlens.core.ood import DistributionGuard

    out, record = leaf_run
    folder = shutil.copytree(out, tmp_path / "leaf")
    before = {name: (folder / name).read_bytes() for name in ("model.weights.h5", "test.csv", "validation.csv")}
    assert main(["guard", str(folder), "--data", str(leaf_dir / "color"), str(leaf_dir / "segmented")]) == 0
    assert {name: (folder / name).read_bytes() for name in before} == before
    refitted = json.loads((folder / "metrics.json").read_text())
    assert refitted["ood"]["command"].startswith("python train.py guard ")
    assert refitted["metrics"] == record["metrics"]
    np.testing.assert_allclose(refitted["ood"]["thresholds"], record["ood"]["thresholds"], rtol=1e-3)
    trained, again = DistributionGuard.load(out), DistributionGuard.load(folder)
    assert again.outliers is not None
    assert trained.outliers is not None
    np.testing.assert_allclose(again.outliers.weights, trained.outliers.weights, rtol=1e-2, atol=1e-3)
    assert refitted["ood"]["command"] in (folder / "README.md").read_text()


def test_views_of_a_repo_make_it_answer_on_them_with_the_same_weights(leaf_run, leaf_dir, tmp_path):
    """`train.py views` makes a repo's classifier answer on other views of each image (for repos trained before
    their recipe did): the same weights, its probabilities the mean over exactly those views, the held-out splits
    and their metrics written again from them, the guard (which reads the image's own view) as it was, and the card
    naming the command."""
    import shutil

    from greenlens.cli.train import main
    from greenlens.core.backbones import answering_on_views
    from greenlens.core.ood import DistributionGuard

    out, record = leaf_run
    assert record["recipe"]["answer_views"] == LEAF.recipe().answer_views == 8
    folder = shutil.copytree(out, tmp_path / "leaf")
    assert main(["views", str(folder), "--views", "2", "--data", str(leaf_dir / "color"), str(leaf_dir / "segmented")]) == 0
    again = json.loads((folder / "metrics.json").read_text())
    assert again["recipe"] == {**record["recipe"], "answer_views": 2}
    assert again["views_command"].startswith("python train.py views ")
    assert again["views_command"] in (folder / "README.md").read_text()
    trained = keras.saving.load_model(str(out), compile=False)
    model = keras.saving.load_model(str(folder), compile=False, safe_mode=True)
    assert (parts(trained).views, parts(model).views) == (8, 2)
    for layer in ("probabilities", "resize"):
        for a, b in zip(trained.get_layer(layer).get_weights(), model.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(a, b)
    one_view = answering_on_views(trained, 1)
    images = np.stack([decode_image(leaf_dir / "color" / "Strawberry___healthy" / name) for name in
                       sorted(os.listdir(leaf_dir / "color" / "Strawberry___healthy"))[:4]]).astype(np.float32)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    np.testing.assert_allclose(model.predict_on_batch(images), (one_view.predict_on_batch(images)
                                                                + one_view.predict_on_batch(mirrored)) / 2, atol=2e-6)
    assert_reloaded_model_gives_the_recorded_probabilities(folder, leaf_dir, "test")
    assert again["metrics"]["count"] == record["metrics"]["count"]
    np.testing.assert_allclose(DistributionGuard.load(folder).groups[-1].threshold,
                               DistributionGuard.load(out).groups[-1].threshold, rtol=1e-3)


@pytest.fixture(scope="module")
def cactus_run(tmp_path_factory, request):
    cactus_dir = request.getfixturevalue("cactus_dir")
    weights = request.getfixturevalue("imagenet_weights")
    out = tmp_path_factory.mktemp("repo") / "cactus"
    task = replace(CACTUS, tile_student=replace(CACTUS.tile_student, photo_crops=100, epochs=10))
    record = train_task(
        task, [cactus_dir], out, small_config(CACTUS, weights),
        run=RunSettings("test/cactus", "pytest", recipe_name="mobilenet_v2", limit=300, exports="none"), log=lambda *_: None,
    )
    return out, record


@pytest.mark.slow
def test_cactus_pipeline_on_real_tiles(cactus_run, cactus_dir):
    out, record = cactus_run
    assert record["counts"]["total"] == 300
    assert abs(record["counts"]["test"] - 45) <= 3
    assert abs(record["counts"]["validation"] - 45) <= 3
    assert record["metrics"]["accuracy"] >= 0.8
    assert record["backbone_note"] == ""  # the cactus task has no other original recipe to explain
    # The survey's small tile model is distilled after the classifier, on the training tiles and (as many as
    # --limit) of Kaggle's unlabelled test tiles, and measured against it; shipped only where it passed the rule.
    student = record["tile_student"]
    assert student["tiles"] == {"train": record["counts"]["train"], "unlabelled": 300, "outliers": 4 * 150 + 100,
                                "views": 4}
    assert student["teacher_views"] == CACTUS.tile_student.teacher_views == 1  # its targets: the one-view tile model's
    # It learns the classifier's guard features too: its mimic's error on the validation tiles falls in training.
    mimic_loss = student["history"]["val_mimic_loss"]
    assert min(mimic_loss[1:]) < mimic_loss[0]
    assert 0.5 <= student["agreement_with_teacher"] <= 1.0
    assert student["tiles_per_s"]["student"] > 0
    # The speed check reads the medians of rounds that time the teacher, the student and its int8 in turn.
    rounds = student["tiles_per_s_rounds"]
    assert sorted(rounds) == ["int8", "student", "teacher"]
    assert {len(rates) for rates in rounds.values()} == {SPEED_ROUNDS}
    assert student["tiles_per_s"]["teacher"] == np.median(rounds["teacher"])
    assert student["int8"]["tiles_per_s"] == np.median(rounds["int8"])
    assert student["int8"]["float32_tiles_per_s"] == np.median(rounds["student"])
    assert student["speedup"] == student["tiles_per_s"]["student"] / student["tiles_per_s"]["teacher"]
    # int8 replaces float32 only where its guard refuses as many fresh made-up outliers (another seed, as many).
    int8 = student["int8"]
    assert int8["outliers"] == student["tiles"]["outliers"]
    assert not int8["used"] or int8["outliers_refused"] >= int8["float32_outliers_refused"]
    assert (out / "tiles_small.tflite").is_file() == student["shipped"]
    assert "## Survey tile model" in (out / "README.md").read_text()
    assert_reloaded_model_gives_the_recorded_probabilities(out, cactus_dir.parent)  # rows name aerial-cactus/train/<id>
    # The survey's tile model ships in the repo and gives Keras' numbers for 32 x 32 tiles on one view of each: the
    # probabilities, and the out-of-distribution guard's features. The classifier itself answers on the recipe's
    # views, with the same features.
    from greenlens.core.backbones import feature_model
    from greenlens.core.litert import LiteRTModel

    tiles = np.stack([decode_image(p) for p in sorted((cactus_dir / "train").iterdir())[:70]]).astype(np.float32)
    keras_model = keras.saving.load_model(str(out), compile=False)
    assert parts(keras_model).views == CACTUS.recipe().answer_views == record["recipe"]["answer_views"] > 1
    features, probabilities = LiteRTModel(out / "tiles.tflite")(tiles)
    layers = list(get_backbone("mobilenet_v2").guard_layers)
    expected_features, one_view = feature_model(keras_model, layers, views=1)[0].predict_on_batch(tiles)
    np.testing.assert_allclose(probabilities, one_view, atol=1e-4)
    np.testing.assert_allclose(features, expected_features, rtol=1e-3, atol=1e-3)
    answered_features, answered = feature_model(keras_model, layers)[0].predict_on_batch(tiles)
    np.testing.assert_allclose(answered, keras_model.predict_on_batch(tiles), atol=1e-5)
    # The same layers on the same view, but in a batch of 8 views instead of 1: float32 sums in another order.
    np.testing.assert_allclose(answered_features, expected_features, rtol=1e-4, atol=1e-5)
    # A recipe with `teacher_views=None` takes its soft targets from the classifier's answers on its views.
    from greenlens.training.distill import target_teacher

    teacher = target_teacher(keras_model, layers, 32, views=None, tile_model=(out / "tiles.tflite").read_bytes())
    target_features, targets = teacher(tiles)
    np.testing.assert_allclose(targets, answered, atol=1e-4)
    assert np.abs(targets - one_view).max() > 1e-3
    np.testing.assert_allclose(target_features, expected_features, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_distilling_a_repo_again_keeps_its_splits_and_changes_only_the_tile_model(cactus_run, cactus_dir, tmp_path):
    """`train.py distill` makes a repo's survey tile model again from its classifier: on the run's splits and, for a
    run limited to a sample, on as many unlabelled tiles as the run had; the classifier, its splits and its guard
    stay as they are, and the card names the command."""
    import shutil

    from greenlens.cli.train import main

    out, record = cactus_run
    folder = shutil.copytree(out, tmp_path / "cactus")
    kept = ("model.weights.h5", "test.csv", "validation.csv", "ood.npz", "tiles.tflite")
    before = {name: (folder / name).read_bytes() for name in kept}
    assert main(["distill", str(folder), "--data", str(cactus_dir)]) == 0
    assert {name: (folder / name).read_bytes() for name in kept} == before
    again = json.loads((folder / "metrics.json").read_text())
    student = again["tile_student"]
    assert student["command"].startswith("python train.py distill ")
    # The registered task's tile model this time (1,500 photo crops), on the run's own 300-tile sample.
    assert student["tiles"] == {"train": record["counts"]["train"], "unlabelled": 300,
                                "outliers": 4 * 150 + CACTUS.tile_student.photo_crops, "views": 4}
    assert {key: again[key] for key in ("metrics", "counts", "ood")} == {key: record[key] for key in ("metrics", "counts", "ood")}
    assert (folder / "tiles_small.tflite").is_file() == student["shipped"]
    assert student["command"] in (folder / "README.md").read_text()


@pytest.mark.slow
def test_pipeline_runs_anywhere_on_generated_images(generated_cactus_dir, tmp_path):
    """No real data and no ImageNet weights needed: random initialisation on generated tiles
    (with the recipe's fine-tuning cut moved: the repo records the one used)."""
    out = tmp_path / "model"
    record = train_task(
        CACTUS, [generated_cactus_dir], out, small_config(CACTUS, None, image_size=32, fine_tune_after="block_12_add"),
        run=RunSettings("test/generated", "pytest", recipe_name="mobilenet_v2", exports="none"), log=lambda *_: None,
    )
    assert REPO_FILES | {"tiles.tflite"} <= {p.name for p in out.iterdir()}  # the survey's tile model, always
    assert record["weights_description"].startswith("none")
    assert record["run"]["weights"] == "none"
    task = json.loads((out / "task.json").read_text())
    assert (task["alpha"], task["fine_tune_after"], task["survey_tile"]) == (0.5, "block_12_add", 32)
    assert "after `block_12_add`" in (out / "README.md").read_text()
    assert_reloaded_model_gives_the_recorded_probabilities(out, generated_cactus_dir.parent, rows=4)


@pytest.mark.slow
def test_inception_v3_recipe_builds_at_299_and_trains_a_step():
    recipe = LEAF.recipe("inception_v3")
    assert (recipe.backbone, recipe.image_size) == ("inception_v3", 299)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 150, 3), dtype=np.uint8) for _ in range(4)]
    labels = np.array([0, 1, 0, 1])
    config = TrainConfig(replace(recipe, views=1, head_epochs=1, fine_tune_epochs=1, batch_size=4), weights=None)
    result = fine_tune(config, 2, images, labels, images, labels)
    model = result.model
    assert parts(model).resize.height == 299
    assert len(result.history["stage2_fine_tune"]["loss"]) == 1
    out = model.predict_on_batch(np.stack(images).astype(np.float32))
    assert out.shape == (4, 2)
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_stage_two_trains_only_top_blocks_with_batchnorm_frozen(imagenet_weights, cactus_dir):
    """A real stage-2 run on real tiles from ImageNet weights (random weights give dead units and
    zero gradients): every weight of the top blocks but BatchNorm's changes; every weight below
    the cut, and every BatchNorm statistic, stays exactly as it was."""
    recipe = replace(CACTUS.recipe(), image_size=64, fine_tune_after="block_12_add", fine_tune_epochs=2, batch_size=8)
    spec = get_backbone(recipe.backbone)
    backbone = build_backbone(spec, weights=imagenet_weights, alpha=recipe.alpha)
    model, head = build_classifier(backbone, spec, recipe.image_size, 2)
    stem, top = split_backbone(model, recipe.fine_tune_after)
    files = sorted((cactus_dir / "train").iterdir())[:16]
    images = np.stack([decode_image(f) for f in files]).astype(np.float32)
    labels = np.arange(16) % 2
    activations = stem.predict_on_batch(images)
    assert activations.shape == (16, 4, 4, 48)  # block_12 of a half-width MobileNetV2 at 64 px
    before = {w.path: w.numpy().copy() for w in model.weights}
    train_top_blocks(recipe, 0, top, head, train_views=activations[None], train_labels=labels, val_activations=activations,
                     val_labels=labels)
    changed = {w.path for w in model.weights if not np.array_equal(before[w.path], w.numpy())}
    top_blocks = ("block_13", "block_14", "block_15", "block_16", "Conv_1/", "probabilities")
    batchnorm = ("bn", "BN", "moving_mean", "moving_variance")
    assert changed
    assert all(any(b in p for b in top_blocks) for p in changed)
    assert not any(any(b in p for b in batchnorm) for p in changed)
    trainable_top = {w.path for w in top.weights if not any(b in w.path for b in batchnorm)}
    assert trainable_top <= changed  # every trainable weight of the top blocks moved


def test_atomic_directory_keeps_the_old_folder_on_failure(tmp_path):
    target = tmp_path / "models" / "leaf"
    target.mkdir(parents=True)
    (target / "model.weights.h5").write_text("old")
    def interrupted_write():
        with repository.atomic_directory(target) as staging:
            (staging / "model.weights.h5").write_text("half-written")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert (target / "model.weights.h5").read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["leaf"]
    with repository.atomic_directory(target) as staging:
        (staging / "model.weights.h5").write_text("new")
    assert (target / "model.weights.h5").read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["leaf"]


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_training_leaves_existing_model_untouched(generated_leaf_dir, tmp_path, stop_signal):
    out = tmp_path / "models" / "leaf"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "leaf", "--data", str(generated_leaf_dir / "color"), "--out", str(out),
         "--weights", "none", "--image-size", "32", "--head-epochs", "500",
         "--fine-tune-epochs", "500", "--validation-fraction", "0.34", "--test-fraction", "0.34"],
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
    assert [p.name for p in out.iterdir()] == ["config.json"]
    assert (out / "config.json").read_text() == "{}"
    assert [p.name for p in out.parent.iterdir()] == ["leaf"]
