"""Worse photos of a leaf get a diagnosis, not "not a strawberry leaf" (issue 18), through the running app
with the bundled models: a real held-out leaf photo corrupted with an ImageNet-C corruption at severity 1
(an implementation training never used) and reframed is answered with its class; a made-up image and an image of
the other task are still refused; a photo too blurred to judge gets the quality message from /classify_leaf, MCP and the
batch CSV alike, a greyscale photo of a leaf the colour message, and a tile the cactus model cannot tell is "too
unclear to judge"."""

from __future__ import annotations

import ast
import asyncio
import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image, ImageFilter

from greenlens.core.examples import example_files
from greenlens.core.quality import PROBLEMS
from greenlens.core.tasks import LEAF

from .conftest import ROOT
from .test_mcp import data_url, list_and_call

sys.path.insert(0, str(ROOT / "benchmarks"))
from robustness import corrupt, reframe

REFUSALS = {LEAF.out_of_distribution_label, *PROBLEMS.values()}


@pytest.fixture(scope="module")
def leaves():
    """The leaf examples (held-out test images, both variants, both classes) with their labels."""
    examples = example_files("leaf")
    if not examples:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    return [(np.asarray(Image.open(path).convert("RGB")), label) for path, label in examples]


def save(tmp_path, name: str, pixels: np.ndarray) -> str:
    path = tmp_path / name
    Image.fromarray(pixels).save(path, quality=92)
    return str(path)


# Defocus blur among them since the quality check's blur limit reaches as far as the model judges
# (greenlens.training.quality_sweep): before, it called most defocused cut-out leaves on black "too blurred" at severity 1.
@pytest.mark.parametrize("change", ["motion_blur", "defocus_blur", "jpeg_compression", "gaussian_noise", "contrast",
                                    "subject at half size", "closer crop (70%)"])
def test_a_worse_photo_of_a_leaf_is_answered_with_its_class(client, leaves, tmp_path, change):
    for index, (pixels, expected) in enumerate(leaves):
        worse = reframe(pixels, change) if " " in change else corrupt(([pixels], change, 1, index))[0]
        answer = client.predict(handle_file(save(tmp_path, f"{index}.jpg", worse)), api_name="/classify_leaf")
        assert answer["label"] == expected, (change, index, answer)


def test_images_that_are_not_leaves_are_still_refused(client, tmp_path):
    cactus = example_files("cactus")
    if not cactus:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    rng = np.random.default_rng(3)
    made_up = {"noise.png": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
               "solid.png": np.full((256, 256, 3), (40, 120, 200), np.uint8)}
    paths = [save(tmp_path, name, pixels) for name, pixels in made_up.items()] + [str(path) for path, _ in cactus]
    for path in paths:
        label = client.predict(handle_file(path), api_name="/classify_leaf")["label"]
        assert label in REFUSALS, (path, label)


def test_a_photo_too_blurred_to_judge_gets_the_same_message_everywhere(client, app_url, leaves, tmp_path):
    pixels, _ = leaves[0]
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(12)))
    path = save(tmp_path, "blurred.jpg", blurred)
    message = PROBLEMS["blur"]
    assert client.predict(handle_file(path), api_name="/classify_leaf")["label"] == message
    _, results = asyncio.run(list_and_call(app_url, [("classify_leaf", {"path": data_url(tmp_path / "blurred.jpg")})]))
    assert ast.literal_eval(results[0].content[0].text)["label"] == message
    good = str(example_files("leaf")[0][0])
    _, csv_path, skipped = client.predict([handle_file(path), handle_file(good)], api_name="/batch_leaf")
    rows = {row["file"]: row for row in csv.DictReader(Path(csv_path).read_text().splitlines())}
    assert not skipped
    assert rows["blurred.jpg"]["label"] == message
    assert rows["blurred.jpg"]["too_poor_to_judge"] == "True"
    assert rows[example_files("leaf")[0][0].name]["too_poor_to_judge"] == "False"


def test_a_greyscale_photo_of_a_leaf_has_too_little_colour_to_judge(client, leaves, tmp_path):
    """Scorch is told by its colour: the same held-out leaf in greyscale gets the colour message, not a diagnosis."""
    pixels, _ = leaves[0]
    grey = np.asarray(Image.fromarray(pixels).convert("L").convert("RGB"))
    answer = client.predict(handle_file(save(tmp_path, "grey.jpg", grey)), api_name="/classify_leaf")
    assert answer["label"] == PROBLEMS["colour"], answer


def test_a_tile_the_model_cannot_tell_is_too_unclear_to_judge_through_the_app(client, cactus_dir):
    """A held-out test tile whose probabilities name no class as surely as the bundled cactus model's quality.json
    asks: /classify_cactus and the batch CSV answer "too unclear to judge" with both probabilities, not a guess."""
    from greenlens.core.images import decode_image
    from greenlens.core.inference import Classifier

    from .test_bundled_models import cactus_test_tiles_by_sureness

    classifier = Classifier.load(str(ROOT / "models" / "cactus"))
    assert classifier.quality is not None
    lowest = classifier.quality.min_confidence
    unsure, _, _ = cactus_test_tiles_by_sureness(cactus_dir, lowest)
    answers = classifier.classify([decode_image(path) for path in unsure])
    tile = next(path for path, answer in zip(unsure, answers) if answer.problem == PROBLEMS["unclear"])
    answer = client.predict(handle_file(str(tile)), api_name="/classify_cactus")
    assert answer["label"] == PROBLEMS["unclear"]
    assert {item["label"] for item in answer["confidences"]} == {"cactus", "no cactus"}
    assert max(item["confidence"] for item in answer["confidences"]) < lowest
    _, csv_path, skipped = client.predict([handle_file(str(tile))], api_name="/batch_cactus")
    row = next(csv.DictReader(Path(csv_path).read_text().splitlines()))
    assert not skipped
    assert (row["label"], row["too_poor_to_judge"], row["out_of_distribution"]) == (PROBLEMS["unclear"], "True", "False")
