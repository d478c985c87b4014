"""The models committed under models/ load safely, keep their promises, and classify the examples."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from huggingface_hub import ModelCard

from greenlens.core import repository
from greenlens.core.examples import example_files
from greenlens.core.images import decode_image
from greenlens.core.inference import Classifier
from greenlens.core.quality import PROBLEMS
from greenlens.core.tasks import TASKS
from greenlens.training.pipeline import recorded_config
from greenlens.training.quality_sweep import motion_blurred, washed_out

from .conftest import ROOT, validation_leaves

# On the held-out test split: issue 18's clean targets (the leaf keeps the quality it had before robust training;
# the robust cactus model gets back to it by answering on eight views of each tile).
TARGETS = {"leaf": {"accuracy": 0.995}, "cactus": {"accuracy": 0.996, "roc_auc": 0.9995}}


@pytest.fixture(scope="module", params=["leaf", "cactus"])
def bundled(request):
    return request.param, repository.load(str(ROOT / "models" / request.param))


def test_bundled_model_is_its_tasks_default_recipe(bundled):
    """`python train.py TASK` trains with the bundled model's recipe: same recipe and views settings, no flags."""
    name, repo = bundled
    task = TASKS[name]
    assert repo.labels == task.labels
    assert repo.metrics["recipe_name"] == task.default_recipe
    # The recipe and views it was trained with are the task's (a record without a later field was made with its default).
    config = recorded_config(repo.metrics)
    assert config.recipe == task.recipe()
    assert config.augmentation == task.augmentation
    recipe = task.recipe()
    assert (repo.task["backbone"], repo.task["image_size"], repo.task["alpha"], repo.task["fine_tune_after"]) == (
        recipe.backbone, recipe.image_size, recipe.alpha, recipe.fine_tune_after)
    assert repo.metrics["command"].split(" --ood-data")[0] == f"python train.py {name} --out models/{name}"
    assert repo.task["backbone"] == "mobilenet_v2"  # the weights we have; the card says so for leaf
    card = ModelCard.load(repo.path / "README.md")
    assert card.data.library_name == "keras"
    assert "MobileNetV2" in card.text
    if name == "leaf":
        assert "InceptionV3" in card.text


def test_recorded_test_metrics_meet_targets(bundled):
    name, repo = bundled
    record = json.loads((repo.path / "metrics.json").read_text())
    metrics = record["metrics"]
    for metric, target in TARGETS[name].items():
        assert metrics[metric] >= target, (name, metric, metrics[metric])
    if name == "leaf":
        assert all(result["accuracy"] >= 0.995 for result in metrics["per_source"].values())
    # The headline is the test split's, and test.csv lists exactly those images with their probabilities.
    rows = (repo.path / "test.csv").read_text().splitlines()[1:]
    assert metrics["count"] == record["counts"]["test"] == len(rows)
    positive = [float(row.rsplit(",", 1)[1]) >= 0.5 for row in rows]
    truth = [row.split(",")[1] == repo.task["positive_label"] for row in rows]
    assert metrics["errors"] == sum(p != t for p, t in zip(positive, truth))
    validation = {row.split(",")[0] for row in (repo.path / "validation.csv").read_text().splitlines()[1:]}
    assert not validation & {row.split(",")[0] for row in rows}


def test_committed_files_name_no_machine_paths(bundled):
    import re

    _, repo = bundled
    absolute = re.compile(r"(?<![\w.$])/(?:work|home|tmp|root|Users|mnt|var|opt|srv)/")
    for path in repo.path.iterdir():
        if path.suffix in (".json", ".md", ".csv"):
            assert not absolute.search(path.read_text()), path


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
    _name, repo = bundled
    rng = np.random.default_rng(0)
    for shape in ((32, 32, 3), (300, 200, 3)):
        out = repo.model.predict_on_batch(rng.integers(0, 255, (2, *shape)).astype(np.float32))
        assert out.shape == (2, 2)
        assert np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_recorded_guard_rates_meet_targets(bundled):
    """Measured on images that set no threshold: the held-out test split, and images of other kinds.
    The thresholds let 0.5% of validation images through by construction; on held-out images the rate
    is higher and noisier (the leaf test split is ~10 photos of each of 28 leaves). A demo that refuses
    more than 3% of real images would fail its users."""
    _name, repo = bundled
    guard = json.loads((repo.path / "metrics.json").read_text())["ood"]
    assert guard["test_flagged"] <= 0.03
    assert guard["out_of_distribution_flagged_overall"] >= 0.95
    assert any(key.startswith("other images") for key in guard["out_of_distribution_flagged"])  # the other task's images
    assert "Out-of-distribution guard" in (repo.path / "README.md").read_text()


def test_guard_flags_made_up_images_and_passes_real_ones(bundled):
    from greenlens.core.inference import Classifier
    from greenlens.training.guard import synthetic_images

    name, repo = bundled
    classifier = Classifier(repo)
    made_up = [image for images in synthetic_images(5, 96, seed=7).values() for image in images]
    predictions = classifier.classify(made_up)
    # Refused either way: "not a strawberry leaf", or too poor to judge (noise, a flat colour's exposure).
    assert sum(p.refused for p in predictions) >= 0.9 * len(made_up), [p.label for p in predictions]
    assert all(p.label == TASKS[name].out_of_distribution_label for p in predictions if p.out_of_distribution)
    assert all(p.label == p.problem for p in predictions if p.problem)
    assert all(set(p.probabilities) == set(TASKS[name].labels) for p in predictions)
    files = example_files(name)
    if files:
        real = classifier.classify([decode_image(path) for path, _ in files])
        assert [p.label for p in real] == [label for _, label in files]


def test_greyscale_copies_of_real_images_have_too_little_colour_to_judge(bundled):
    """Both models learned from colour images, and a leaf's scorch is told by its colour: the examples (real held-out
    images, each answered with its class above) in greyscale get the colour message, not a class."""
    from PIL import Image

    from greenlens.core.inference import Classifier

    name, repo = bundled
    files = example_files(name)
    if not files:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    classifier = Classifier(repo)
    assert classifier.quality is not None
    assert classifier.quality.colour > 0
    grey = [np.asarray(Image.open(path).convert("L").convert("RGB")) for path, _ in files]
    assert [p.label for p in classifier.classify(grey)] == [PROBLEMS["colour"]] * len(grey)


def cactus_test_tiles_by_sureness(cactus_dir, lowest: float) -> tuple[list, list, int]:
    """The bundled cactus model's test tiles whose recorded top probability is below `lowest`, those above
    0.999, and how many tiles test.csv lists."""
    import csv

    with open(ROOT / "models" / "cactus" / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sure = [max(float(row["p_cactus"]), 1 - float(row["p_cactus"])) for row in rows]
    paths = [cactus_dir.parent / row["file"] for row in rows]
    return ([path for path, p in zip(paths, sure) if p < lowest], [path for path, p in zip(paths, sure) if p > 0.999],
            len(rows))


def test_a_tile_the_cactus_model_cannot_tell_is_too_unclear_to_judge(cactus_dir):
    """Held-out test tiles whose recorded probabilities name no class as surely as `quality.json` asks are
    answered "too unclear to judge" (with every class's probability), not with a guess; sure ones with a class."""
    from greenlens.core.inference import Classifier

    classifier = Classifier.load(str(ROOT / "models" / "cactus"))
    assert classifier.quality is not None
    assert 0.5 < classifier.quality.min_confidence < 1
    unsure, confident, total = cactus_test_tiles_by_sureness(cactus_dir, classifier.quality.min_confidence)
    confident = confident[:20]
    assert 0 < len(unsure) < 0.05 * total
    predictions = classifier.classify([decode_image(path) for path in unsure + confident])
    unclear = [p for p in predictions[: len(unsure)] if not p.out_of_distribution]
    assert unclear
    assert all(p.problem is not None and p.label == p.problem for p in unclear)
    assert sum(p.problem == PROBLEMS["unclear"] for p in unclear) >= 0.5 * len(unclear)
    assert all(set(p.probabilities) == {"cactus", "no cactus"} for p in unclear)
    assert sum(p.label in ("cactus", "no cactus") for p in predictions[len(unsure):]) >= 0.9 * len(confident)


def test_leaves_streaked_by_a_moving_hand_are_seldom_answered_wrong(leaf_dir):
    """The leaf model's training views hold motion-blur streaks up to a twelfth of the photo's side
    (`Augmentation.motion`). Validation leaves streaked 20 pixels of 256 at random angles (about the benchmark's
    motion blur at severity 5; OpenCV's, not the benchmark's) are answered wrong at most 1 in 12: the model trained
    with streaks up to 3 sigmas (about a twentieth of the side) answered 8 of these 60 wrong and 46 right; this one 2 and 55."""
    classifier = Classifier(repository.load(str(ROOT / "models" / "leaf")))
    images, labels = validation_leaves(leaf_dir, 60)
    rng = np.random.default_rng(0)
    streaked = [motion_blurred(image, 0.0221, angle=rng.uniform(0, np.pi)) for image in images]
    counts = outcomes(classifier, streaked, labels)
    assert counts["wrong"] <= 5
    assert counts["right"] >= 50  # answered, not refused


def outcomes(classifier, images: list[np.ndarray], labels: np.ndarray) -> Counter:
    """How many of `images` the classifier answers right, wrong, or refuses (either kind), and the refusals by
    message."""
    counts: Counter = Counter()
    for answer, label in zip(classifier.classify(images), labels):
        if answer.refused:
            counts["refused"] += 1
            counts[answer.label] += 1
        else:
            counts["right" if answer.label == classifier.repo.labels[label] else "wrong"] += 1
    return counts


def test_washed_out_leaves_get_the_contrast_message_not_a_wrong_class(leaf_dir):
    """Haze, fog or glare over the whole frame: validation leaves at a twentieth of their contrast are too poor to judge
    and say so (a photo's contrast is measured, and the limit reaches as far as the model was shown to judge washed-out
    validation leaves: greenlens.training.quality_sweep); at two fifths of it they are still answered. Before the
    contrast limit, 84% of validation leaves at a twentieth of their contrast counted as a flat colour, left to the
    guard, and 48 of 240 (each channel washed towards its own mean, which keeps their colour) were answered wrong."""
    classifier = Classifier(repository.load(str(ROOT / "models" / "leaf")))
    images, labels = validation_leaves(leaf_dir, 60)
    faint = outcomes(classifier, [washed_out(image, 0.05) for image in images], labels)
    assert faint["wrong"] <= 1
    assert faint[PROBLEMS["contrast"]] >= 50
    assert outcomes(classifier, [washed_out(image, 0.4) for image in images], labels)["right"] >= 58
