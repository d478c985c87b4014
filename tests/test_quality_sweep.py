"""The quality check's blur and noise limits reach as far as the model judges (greenlens.training.quality_sweep):
the sweep stops at the first step the real bundled model gets wrong too often, and a held-out leaf blurred within
what it judged is answered with its class where the training views' limit called it too blurred."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from greenlens.core import repository
from greenlens.core.examples import example_files
from greenlens.core.images import decode_image
from greenlens.core.inference import Classifier
from greenlens.core.quality import PROBLEMS, UNCLEAR_RISK, QualityCheck
from greenlens.training.quality_sweep import BLUR_STEPS, sweep

from .conftest import ROOT, validation_leaves

LEAF = ROOT / "models" / "leaf"


def gaussian(image: np.ndarray, strength: float) -> np.ndarray:
    """Gaussian blur of sigma `strength` times the long side (PIL's radius is the sigma)."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(strength * max(image.shape[:2]))))


def test_the_sweep_stops_at_the_first_step_the_model_gets_wrong_too_often(leaf_dir):
    repo = repository.load(str(LEAF))
    images, labels = validation_leaves(leaf_dir, 24)
    quality = QualityCheck.load(LEAF)
    assert quality is not None
    result, judged = sweep(repo.model, quality, images, labels, "blur", seed=0)
    assert 1 <= result.judged < len(BLUR_STEPS)  # the mildest blur is judged, the strongest is not
    assert all(wrong <= UNCLEAR_RISK for wrong in result.wrong[: result.judged])
    assert len(result.wrong) == result.judged + 1
    assert result.wrong[-1] > UNCLEAR_RISK
    assert all(len(values) == result.judged * len(images) for values in judged.values())
    assert result.as_record()["steps"] == list(BLUR_STEPS[: result.judged + 1])


def test_a_leaf_blurred_within_what_the_model_judged_gets_its_class():
    """The examples (held-out test photos) blurred within what the sweep judged: the bundled check answers them with
    their class, where its limit from the training views alone called them too blurred."""
    files = example_files("leaf")
    if not files:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    classifier = Classifier(repository.load(str(LEAF)))
    sweeps = classifier.repo.metrics["ood"]["quality_sweeps"]["blur"]
    # The step before the last it judged (the limit lets all but the most blurred 0.5% of the judged images through,
    # and those come from the last step).
    strength = sweeps["steps"][sweeps["judged_steps"] - 2]
    # The sweep's Gaussian half (its motion-blurred half looks sharper to the check).
    photos = [gaussian(decode_image(path), strength) for path, _ in files]
    assert [p.label for p in classifier.classify(photos)] == [label for _, label in files]
    assert classifier.quality is not None
    assert classifier.quality.blur < sweeps["limit_from_training_views"]
    training_views_only = QualityCheck(**{**classifier.quality.__dict__, "blur": sweeps["limit_from_training_views"]})
    assert training_views_only.problems(photos).count(PROBLEMS["blur"]) >= len(photos) // 2
    # Far beyond it, still too blurred to judge.
    far = [gaussian(decode_image(path), 0.08) for path, _ in files]
    assert classifier.quality.problems(far) == [PROBLEMS["blur"]] * len(far)
