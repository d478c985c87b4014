"""The models committed under models/ load safely, keep their promises, and classify the examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import ModelCard

from greenlens import repository
from greenlens.examples import example_files
from greenlens.images import decode_image
from greenlens.tasks import TASKS

from .conftest import ROOT

TARGETS = {"leaf": {"accuracy": 0.995}, "cactus": {"accuracy": 0.995, "roc_auc": 0.9995}}


@pytest.fixture(scope="module", params=["leaf", "cactus"])
def bundled(request):
    return request.param, repository.load(str(ROOT / "models" / request.param))


def test_bundled_model_matches_its_task(bundled):
    name, repo = bundled
    task = TASKS[name]
    assert repo.labels == task.labels
    assert repo.task["backbone"] == "mobilenet_v2"  # the weights we have; the card says so for leaf
    if repo.task["backbone"] == task.backbone:  # then `train.py` defaults to the bundled model's size and width
        assert (repo.task["image_size"], repo.task["alpha"]) == (task.image_size, task.alpha)
    card = ModelCard.load(repo.path / "README.md")
    assert card.data.library_name == "keras"
    assert "MobileNetV2" in card.text
    if name == "leaf":
        assert "InceptionV3" in card.text


def test_recorded_metrics_meet_targets(bundled):
    name, repo = bundled
    metrics = json.loads((repo.path / "metrics.json").read_text())["metrics"]
    for metric, target in TARGETS[name].items():
        assert metrics[metric] >= target, (name, metric, metrics[metric])
    if name == "leaf":
        assert all(result["accuracy"] >= 0.995 for result in metrics["per_source"].values())


def test_bundled_model_classifies_the_examples(bundled):
    name, repo = bundled
    files = example_files(name)
    if not files:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    images = [decode_image(path) for path, _ in files]
    probabilities = np.concatenate([repo.model.predict_on_batch(image[None].astype(np.float32)) for image in images])
    predicted = [repo.labels[i] for i in probabilities.argmax(axis=1)]
    assert predicted == [label for _, label in files]


def test_bundled_model_takes_raw_images_of_any_size(bundled):
    name, repo = bundled
    rng = np.random.default_rng(0)
    for shape in ((32, 32, 3), (300, 200, 3)):
        out = repo.model.predict_on_batch(rng.integers(0, 255, (2, *shape)).astype(np.float32))
        assert out.shape == (2, 2) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_recorded_guard_rates_meet_targets(bundled):
    name, repo = bundled
    guard = json.loads((repo.path / "metrics.json").read_text())["ood"]
    assert guard["validation_flagged"] <= 0.01
    assert guard["out_of_distribution_flagged_overall"] >= 0.95
    assert any(key.startswith("other images") for key in guard["out_of_distribution_flagged"])  # the other task's images
    assert "Out-of-distribution guard" in (repo.path / "README.md").read_text()


def test_guard_flags_made_up_images_and_passes_real_ones(bundled):
    from greenlens.inference import Classifier
    from greenlens.ood import synthetic_images

    name, repo = bundled
    classifier = Classifier(repo)
    made_up = [image for images in synthetic_images(5, 96, seed=7).values() for image in images]
    predictions = classifier.classify(made_up)
    assert sum(p.out_of_distribution for p in predictions) >= 0.9 * len(made_up)
    assert all(p.label == TASKS[name].out_of_distribution_label for p in predictions if p.out_of_distribution)
    assert all(set(p.probabilities) == set(TASKS[name].labels) for p in predictions)
    files = example_files(name)
    if files:
        real = classifier.classify([decode_image(path) for path, _ in files])
        assert [p.label for p in real] == [label for _, label in files]
