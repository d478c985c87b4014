"""The quality check on images the test makes: fitted on sharp, well-exposed photos-to-be (textured
images), it names what is wrong with a blurred, noisy, black, white or tiny one, leaves a flat colour to
the guard, and survives the model repo's JSON."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from greenlens.core.quality import PROBLEMS, QualityCheck


def textured(seed: int, side: int = 128) -> np.ndarray:
    """Smooth shapes with sharp edges and a little grain, like a leaf on a table."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    image = np.empty((side, side, 3), np.float64)
    image[:] = rng.uniform(60, 200, 3)
    for _ in range(6):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3)
        image[np.hypot(x - cx, y - cy) < r] = rng.uniform(30, 230, 3)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)


def test_each_problem_is_named_and_a_good_photo_passes(tmp_path):
    check = QualityCheck.fit([textured(seed) for seed in range(60)], side=128)
    photo = textured(100)
    rng = np.random.default_rng(0)
    cases = {
        "good": (photo, None),
        "blurred": (np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(6))), PROBLEMS["blur"]),
        "noisy": (np.clip(photo + rng.normal(0, 40, photo.shape), 0, 255).astype(np.uint8), PROBLEMS["noise"]),
        "black": ((photo * 0.03).astype(np.uint8), PROBLEMS["dark"]),
        "white": (np.clip(photo * 0.1 + 235, 0, 255).astype(np.uint8), PROBLEMS["bright"]),
        "tiny": (photo[:20, :20], PROBLEMS["small"]),
        "flat grey": (np.full((128, 128, 3), 128, np.uint8), None),  # not a photo of anything: the guard's to refuse
    }
    answers = dict(zip(cases, check.problems([image for image, _ in cases.values()])))
    assert answers == {name: expected for name, (_, expected) in cases.items()}
    check.save(tmp_path)
    assert QualityCheck.load(tmp_path) == check
    assert QualityCheck.load(tmp_path / "elsewhere") is None
