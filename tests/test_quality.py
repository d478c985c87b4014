"""The quality check on images the test makes: fitted on sharp, well-exposed photos-to-be (textured
images), it names what is wrong with a blurred, noisy, black, white, washed-out, greyscale or tiny one, leaves a flat
colour to the guard, and survives the model repo's JSON; a quality.json written before the colour or contrast limit
refuses no image for its colour or contrast."""

from __future__ import annotations

import json

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


def washed(photo: np.ndarray, share: float) -> np.ndarray:
    """A mid-grey veil over the photo (haze), leaving `share` of its contrast: mid-grey, so that the textured
    photos' narrow exposure limits do not answer first."""
    return np.clip(photo * share + (1 - share) * 124, 0, 255).astype(np.uint8)


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
        "greyscale": (np.asarray(Image.fromarray(photo).convert("L").convert("RGB")), PROBLEMS["colour"]),
        "washed out": (washed(photo, 0.25), PROBLEMS["contrast"]),
        "flat grey": (np.full((128, 128, 3), 128, np.uint8), None),  # not a photo of anything: the guard's to refuse
    }
    answers = dict(zip(cases, check.problems([image for image, _ in cases.values()])))
    assert answers == {name: expected for name, (_, expected) in cases.items()}
    check.save(tmp_path)
    assert QualityCheck.load(tmp_path) == check
    assert QualityCheck.load(tmp_path / "elsewhere") is None
    older = {key: value for key, value in check.__dict__.items() if key not in ("colour", "contrast")}
    (tmp_path / "quality.json").write_text(json.dumps(older))
    assert QualityCheck.load(tmp_path).problems([cases["greyscale"][0]]) == [None]
    assert QualityCheck.load(tmp_path).problems([cases["washed out"][0]]) != [PROBLEMS["contrast"]]
    del older["version"]  # fitted before the second measures: measured with the first, as it was fitted
    (tmp_path / "quality.json").write_text(json.dumps(older))
    assert QualityCheck.load(tmp_path).version == 1


def test_the_second_measures_keep_telling_stronger_blur_apart():
    """The first measures' edge energy has a floor from 8-bit rounding, which a strong blur reaches: blurred further,
    a photo scores sharper. The second take out what the rounding explains, so sharpness keeps falling (to none)."""
    from greenlens.core.quality import VERSION, measures

    assert VERSION == 2
    for seed in (7, 8, 9):
        series = [np.asarray(Image.fromarray(textured(seed)).filter(ImageFilter.GaussianBlur(r))) for r in (1, 2, 4, 8)]
        sharpness = measures(series, 128, 2)["blur"]
        assert np.all(np.diff(sharpness) <= 0)
        assert sharpness[-1] < sharpness[1]
        assert measures(series, 128, 1)["blur"][-1] > measures(series, 128, 1)["blur"][-2]


def test_min_confidence_refuses_the_least_sure_until_the_wrong_answers_fit_the_budget():
    """Selective classification: the threshold climbs past the least sure rows until the answered rows left
    are wrong for at most `risk` of all rows; rows the guard or the image checks refused count as no answer."""
    from greenlens.core.quality import fit_min_confidence

    rng = np.random.default_rng(0)
    top = rng.uniform(0.5, 1.0, 1000)
    labels = np.zeros(1000, int)
    wrong = rng.random(1000) < 0.3 * (1 - top) / 0.5  # the less sure, the more often wrong: 30% at 0.5, none at 1
    probabilities = np.stack([np.where(wrong, 1 - top, top), np.where(wrong, top, 1 - top)], axis=1)
    answered = np.ones(1000, bool)
    threshold = fit_min_confidence(probabilities, labels, answered, risk=0.02)
    sure = probabilities.max(axis=1)
    kept = sure >= threshold
    assert 0.5 < threshold < 1.0
    assert (wrong & kept).sum() <= 20  # 2% of 1,000
    # And no lower one would do: answering the surest refused row as well goes over the budget.
    assert (wrong & (sure >= sure[~kept].max())).sum() > 20
    # Rows already refused set nothing; nothing wrong left to refuse: every class is answered.
    assert fit_min_confidence(probabilities, labels, ~wrong, risk=0.02) == 0.0
    check = QualityCheck(side=128, min_side=8, dark=0.0, bright=255.0, blur=0.0, noise=99.0, min_confidence=threshold)
    np.testing.assert_array_equal(check.unclear(probabilities), ~kept)


def test_a_quality_file_from_before_min_confidence_answers_every_class(tmp_path):
    (tmp_path / "quality.json").write_text('{"side": 128, "min_side": 8, "dark": 39.1, "bright": 173.8, "blur": 0.31, '
                                           '"noise": 28.8}')
    check = QualityCheck.load(tmp_path)
    assert check is not None
    assert check.min_confidence == 0.0
    assert not check.unclear(np.array([[0.5, 0.5], [0.51, 0.49]])).any()


def test_widening_moves_a_limit_out_to_images_the_model_judged_and_never_in():
    """greenlens.training.quality_sweep hands `widened` the measures of the blurred or noised images the model was
    shown to judge: the limit moves out to all but the most extreme of them, never in, and leaves the other limits
    alone."""
    import pytest

    photos = [textured(seed) for seed in range(60)]
    check = QualityCheck.fit(photos, side=128)
    blurred = [np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(1)))
               for photo in photos[:40]]
    assert check.problems(blurred).count(PROBLEMS["blur"]) >= 35  # beyond what the check was fitted on
    wider = check.widened("blur", check.measured(blurred))
    assert wider.blur < check.blur
    assert {**wider.__dict__, "blur": check.blur} == check.__dict__
    assert wider.problems(blurred).count(PROBLEMS["blur"]) <= 1  # all but the EXTREME of them
    much_more = [np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(2))) for photo in photos[40:]]
    assert wider.problems(much_more).count(PROBLEMS["blur"]) >= 15  # blurred more than it was shown: still refused
    assert check.widened("blur", check.measured(photos)) == check  # as sharp as what it was fitted on: no change
    rng = np.random.default_rng(1)
    noisy = [np.clip(photo + rng.normal(0, 30, photo.shape), 0, 255).astype(np.uint8) for photo in photos[:40]]
    assert check.widened("noise", check.measured(noisy)).noise > check.noise
    assert check.widened("noise", check.measured(photos)) == check
    hazy = [washed(photo, 0.3) for photo in photos[:40]]
    assert check.widened("contrast", check.measured(hazy)).contrast < check.contrast
    assert check.widened("contrast", check.measured(photos)) == check
    with pytest.raises(ValueError, match="only the blur, noise, contrast"):
        check.widened("dark", check.measured(photos))
