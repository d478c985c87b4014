"""How far the quality check's blur, noise and contrast limits reach: as far as the model is shown to judge.

The quality check's limits start at the extremes of the augmented training views (greenlens.core.quality): an
image beyond them is outside anything the model was trained on. But a model often judges well beyond its views'
extremes: on validation leaves blurred like ImageNet-C's defocus at severity 3, the leaf model named the right class
for 99% while the check called 97% "too blurred to judge". So each limit is widened over validation images degraded
step by step, Gaussian and motion blur growing for `blur`, Gaussian sensor noise for `noise` and a wash towards the
photo's mean grey for `contrast`, for as long as the model's wrong answers on a step stay within `UNCLEAR_RISK`: "too
blurred to judge" then means blurred more than the model was shown to judge, not merely more than it was trained on.
Made here with OpenCV and NumPy, never the benchmark's corruption implementations (the AugMix protocol:
benchmarks/robustness.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from greenlens.core.backbones import images_per_batch
from greenlens.core.batches import predict_images
from greenlens.core.quality import MEASURES, UNCLEAR_RISK, QualityCheck

# Steps of each degradation, mildest first: a blur's sigma as a fraction of the image's long side, a noise's
# standard deviation on 0-255, the share of a photo's contrast left. Each step a third stronger than the last (a
# fifth less contrast), from well inside the training views' range to far beyond it.
BLUR_STEPS = tuple(round(0.004 * 1.33**k, 5) for k in range(12))
NOISE_STEPS = tuple(round(3.0 * 1.33**k, 2) for k in range(12))
CONTRAST_STEPS = tuple(round(0.5 * 0.8**k, 4) for k in range(14))
# Validation images per step: 2% of them is the step's budget of wrong answers.
IMAGES = 300


@dataclass(frozen=True)
class Sweep:
    """One degradation swept: each step's strength, the model's wrong share there, and the steps it judged."""

    steps: tuple[float, ...]
    wrong: tuple[float, ...]  # per step tried; the sweep stops after the first step beyond the risk
    judged: int  # steps 0..judged-1 stayed within the risk

    def as_record(self) -> dict:
        return {"steps": list(self.steps[: len(self.wrong)]), "wrong": [round(w, 4) for w in self.wrong],
                "judged_steps": self.judged}


def blurred(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with a sigma of `strength` times the image's long side, or (half the time) motion blur as wide
    at a random angle. A model may judge one better than the other at the same sharpness, and the check's blur limit
    is one number for both."""
    import cv2

    if rng.random() < 0.5:
        sigma = strength * max(image.shape[:2])
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return motion_blurred(image, strength, angle=rng.uniform(0, np.pi))


def motion_blurred(image: np.ndarray, strength: float, *, angle: float) -> np.ndarray:
    """Motion blur as wide as a Gaussian of sigma `strength` times the image's long side: a line at `angle` (radians),
    sqrt(12) sigma long (a uniform streak of that length has that standard deviation)."""
    import cv2

    sigma = strength * max(image.shape[:2])
    length = max(2, round(np.sqrt(12) * sigma))
    size = length | 1
    kernel = np.zeros((size, size), np.float32)
    offset = (length - 1) / 2 * np.array([np.cos(angle), np.sin(angle)])
    centre = np.array([size // 2, size // 2])
    start, end = np.round(centre - offset).astype(int), np.round(centre + offset).astype(int)
    cv2.line(kernel, (int(start[0]), int(start[1])), (int(end[0]), int(end[1])), 1.0, thickness=1)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT_101)


def noisy(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise of standard deviation `strength` (0-255), independent in each channel."""
    return np.clip(image + rng.normal(0, strength, image.shape), 0, 255).astype(np.uint8)


def washed_out(image: np.ndarray, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """`strength` of the photo's contrast left, the rest washed towards its mean grey, as haze, fog or glare over
    the whole frame does (`rng` unused: every photo is washed out alike)."""
    grey = float(image.mean())
    return np.clip(grey + (image.astype(np.float32) - grey) * strength, 0, 255).round().astype(np.uint8)


# Each limit widened, with what degrades a photo one step and the steps.
Degrade = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
DEGRADATIONS: dict[str, tuple[Degrade, tuple[float, ...]]] = {
    "blur": (blurred, BLUR_STEPS), "noise": (noisy, NOISE_STEPS), "contrast": (washed_out, CONTRAST_STEPS)}


def sweep(model, quality: QualityCheck, images: list[np.ndarray], labels: np.ndarray, measure: str, *, seed: int,
          risk: float = UNCLEAR_RISK) -> tuple[Sweep, dict[str, np.ndarray]]:
    """Degrades `images` by each step of `measure`'s degradation in turn until the model (as it answers: on all
    its views) is wrong on more than `risk` of a step's images. Returns the sweep and the `quality` check's
    measures of the images of the steps within the risk: only those are kept (a step's leaves take 60 MB)."""
    degrade, steps = DEGRADATIONS[measure]
    rng = np.random.default_rng(seed)
    judged: list[dict[str, np.ndarray]] = []
    wrong: list[float] = []
    for strength in steps:
        degraded = [degrade(image, strength, rng) for image in images]
        probabilities = predict_images(model, degraded, images_per_batch(model), desc=f"Quality limits: {measure} {strength:g}")
        wrong.append(float(np.mean(probabilities.argmax(axis=1) != labels)))
        if wrong[-1] > risk:
            break
        judged.append(quality.measured(degraded))
    values = {key: np.concatenate([step[key] for step in judged]) if judged else np.empty(0) for key in MEASURES}
    return Sweep(steps, tuple(wrong), len(judged)), values


def widen_limits(quality: QualityCheck, model, images: list[np.ndarray], labels, *, seed: int,
                 count: int = IMAGES) -> tuple[QualityCheck, dict]:
    """`quality` with its blur, noise and contrast limits widened to what the model judges on `count` of `images` (validation
    images, with their `labels`) degraded step by step; never narrowed. Returns it and the sweeps' record."""
    chosen = np.random.default_rng(seed).permutation(len(images))[:count]
    images, labels = [images[i] for i in chosen], np.asarray(labels)[chosen]
    record: dict = {"risk": UNCLEAR_RISK, "images": len(images)}
    for measure in DEGRADATIONS:
        result, judged = sweep(model, quality, images, labels, measure, seed=seed)
        before = getattr(quality, measure)
        quality = quality.widened(measure, judged)
        record[measure] = {**result.as_record(), "limit_from_training_views": before, "limit": getattr(quality, measure)}
    return quality, record
