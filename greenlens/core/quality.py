"""Is a photo good enough to judge? The third kind of answer, beside a class and "not a strawberry leaf".

A photo can be of the right thing and still too poor for any answer: a thumbnail, almost black, almost white, far
out of focus, drowned in sensor noise, washed out by haze or glare, without colour. Its size and six measures of the
image, at the model's own scale, are compared with the extremes of the model's augmented training views (which
already hold blur, noise and bad exposure: greenlens.training.augment; the 0.5% most extreme views of each measure
aside): an image beyond them is outside anything the model was trained or checked on, and gets a plain reason and
what to do, instead of a guess or "not a leaf". The blur, noise and contrast limits reach further where the model
was shown to judge blurrier, noisier or more washed-out validation images (`widened`,
greenlens.training.quality_sweep). And an image the model cannot tell apart (no class with at least
`min_confidence`, fitted on augmented validation views) is too unclear to judge: selective classification (Geifman &
El-Yaniv 2017, arXiv:1705.08500), where a wrong answer costs more than no answer. Stored in the model repo as
`quality.json`; a repo without it answers every image as before. NumPy and PIL only: no TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

FILENAME = "quality.json"
# Views with a luminance standard deviation below this (one darkened to black, say) hold too little picture to
# place the limits by: fitting leaves them out.
FLAT = 3.0
# An image whose luminance standard deviation is below this is a solid colour: not a photo of anything, so the
# guard, not this check, answers it, unless it is almost black or almost white (this luminance). A photo at a
# twentieth of its contrast still keeps more than this (a leaf photo about 2 levels, a cactus tile about 1).
SOLID = 0.5
ALMOST_WHITE = 240
# What the answer says, by measure.
# Share of training views beyond each limit: a limit is that quantile of the views, not their single most
# extreme one (a fully dark view, say, would switch the check off). The strongest views are past what the
# model learned to judge well: wrong answers on the test split's most corrupted images came from there.
EXTREME = 0.005
# Images smaller than this fraction of the smallest training image's short side are too small to judge.
SMALLEST = 0.25
PROBLEMS = {
    "small": "too small to judge: send a larger photo",
    "dark": "too dark to judge: retake it in better light",
    "bright": "too bright to judge: retake it out of glare, or with less exposure",
    "blur": "too blurred to judge: retake it in focus",
    "noise": "too noisy to judge: retake it in better light",
    "contrast": "too little contrast to judge: retake it out of haze, fog or glare",
    "colour": "too little colour to judge: send a colour photo taken in daylight",
    "unclear": "too unclear to judge: the model cannot tell; retake it closer, in focus and in good light",
}
# Wrong answers allowed among the validation split's augmented views (training's own kinds of variation, never
# the benchmark's corruptions): `min_confidence` is the lowest at which the views answered wrong are at most
# this share of all of them. Chosen after seeing the cactus model's wrong answers on corrupted test tiles
# (README, "How it holds up").
UNCLEAR_RISK = 0.02


MEASURES = ("dark", "bright", "blur", "noise", "colour", "contrast")
# Which end of each limited measure is worse: low (almost black, blurred, colourless, washed out) or high (almost
# white, noisy).
LOW = ("dark", "blur", "colour", "contrast")
HIGH = ("bright", "noise")
# The limits that reach as far as the model judges (greenlens.training.quality_sweep), beyond the training views.
WIDENED = ("blur", "noise", "contrast")
# How the measures are taken. 1: on 8-bit luminance, `blur` the mean absolute Laplacian over contrast; rounding to
# 8 bits gives every image a floor of edge energy, which a strongly blurred photo of a leaf on a plain background
# reaches at a blur of about 2% of its side, so no blur beyond that could be told from it. 2 (since the limits reach
# as far as the model judges, greenlens.training.quality_sweep): on luminance in floating point, `blur` the
# Laplacian's root mean square above what the 8-bit rounding of the image's channels explains, over contrast, which
# keeps falling as a photo blurs. A quality.json names its version; one without a version was fitted with 1 and is
# measured so.
VERSION = 2
# The standard deviation that rounding each channel to 8 bits (uniform, 1/sqrt(12)) leaves in the luminance.
ROUNDING = float(np.hypot.reduce([0.299, 0.587, 0.114]) / np.sqrt(12))


def measures(images: list[np.ndarray], side: int, version: int = VERSION) -> dict[str, np.ndarray]:
    """Per image: `dark` (99th percentile of luminance: low when almost black), `bright` (1st
    percentile: high when almost white), `blur` (edge energy over contrast: low when out of focus),
    `noise` (Immerkaer's estimate of the noise's standard deviation), `colour` (Hasler and Suesstrunk's
    colourfulness: 0 for a greyscale image), `contrast` (the luminance's standard deviation, RMS contrast: low when
    washed out). `version`: see VERSION."""
    if version not in (1, 2):
        raise ValueError(f"unknown quality measures version {version}")
    rows = [{**_measure(_luminance(image, side) if version == 2 else _scaled(image, side, "L"), version),
             "colour": _colourfulness(_scaled(image, side, "RGB"))} for image in images]
    return {key: np.array([row[key] for row in rows], np.float64) for key in MEASURES}


def _luminance(image: np.ndarray, side: int) -> np.ndarray:
    """The image's luminance (ITU-R 601, as PIL's "L") in floating point, at the model's scale (`_scaled`): no
    rounding to 8 bits on the way."""
    rgb = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).convert("RGB"), np.float32)
    picture = Image.fromarray(rgb @ np.array([0.299, 0.587, 0.114], np.float32), mode="F")
    return _resized(picture, side)


def _scaled(image: np.ndarray, side: int, mode: str) -> np.ndarray:
    """The image in `mode` (0-255) at about the model's input scale: its long side `side` (never upscaled)."""
    return _resized(Image.fromarray(np.asarray(image, np.uint8)).convert(mode), side)


def _resized(picture: Image.Image, side: int) -> np.ndarray:
    """`picture` with its long side `side` (never upscaled), as an array."""
    scale = side / max(picture.size)
    if scale < 1:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(picture, np.float64)


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003), "Measuring colourfulness in natural images": the spread and the mean of the
    red-green and yellow-blue opponent channels. A leaf's scorch is told by its colour, and both models learned
    from colour images only; a greyscale photo (a scanned print, a camera's monochrome mode, a microscope's)
    scores 0."""
    red_green = rgb[..., 0] - rgb[..., 1]
    yellow_blue = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    return float(np.hypot(red_green.std(), yellow_blue.std()) + 0.3 * np.hypot(red_green.mean(), yellow_blue.mean()))


def _measure(luminance: np.ndarray, version: int) -> dict[str, float]:
    low, high = np.percentile(luminance, [1, 99])
    contrast = float(luminance.std())
    if min(luminance.shape) < 3:
        return {"dark": float(high), "bright": float(low), "blur": 0.0, "noise": 0.0, "contrast": contrast}
    # The discrete Laplacian: large where edges are sharp, small where they are smeared.
    laplacian = (luminance[1:-1, :-2] + luminance[1:-1, 2:] + luminance[:-2, 1:-1] + luminance[2:, 1:-1]
                 - 4 * luminance[1:-1, 1:-1])
    # Immerkaer (1996): the mask [[1,-2,1],[-2,4,-2],[1,-2,1]] cancels smooth structure and keeps noise.
    noise_mask = (luminance[:-2, :-2] - 2 * luminance[:-2, 1:-1] + luminance[:-2, 2:]
                  - 2 * luminance[1:-1, :-2] + 4 * luminance[1:-1, 1:-1] - 2 * luminance[1:-1, 2:]
                  + luminance[2:, :-2] - 2 * luminance[2:, 1:-1] + luminance[2:, 2:])
    noise = float(np.sqrt(np.pi / 2) * np.abs(noise_mask).mean() / 6)
    if version == 1:
        edges = float(np.abs(laplacian).mean())
    else:  # white noise of standard deviation s gives the Laplacian a variance of 20 s^2: the rounding's is not edges
        edges = float(np.sqrt(max(0.0, float(np.mean(laplacian**2)) - 20 * ROUNDING**2)))
    return {"dark": float(high), "bright": float(low), "blur": edges / (contrast + 1.0), "noise": noise, "contrast": contrast}


def _extreme(values: dict[str, np.ndarray], measure: str) -> float:
    """The limit of `measure` among `values` (of `measures`): its EXTREME quantile on the side that is worse (LOW or
    HIGH). Flat images (a view darkened to black, say) hold too little picture to place a limit by: left out."""
    photos = values[measure][values["contrast"] >= FLAT]
    return float(np.quantile(photos, EXTREME if measure in LOW else 1 - EXTREME))


@dataclass
class QualityCheck:
    """The limits of each measure among the training views: `dark`, `blur`, `colour` and `contrast` the lowest,
    `bright` and `noise` the highest (EXTREME aside); `min_side` the smallest short side. `side`: the long side images
    are measured at. `min_confidence`: the lowest top probability answered with a class (0: any; see
    `fit_min_confidence`)."""

    side: int
    min_side: int
    dark: float
    bright: float
    blur: float
    noise: float
    min_confidence: float = 0.0  # absent from quality.json of repos fitted before it: every class answered
    colour: float = 0.0  # likewise: no image is refused for its colour
    version: int = 1  # how the measures are taken (VERSION); absent from quality.json fitted with the first
    contrast: float = 0.0  # absent from quality.json fitted before it: no image is refused as washed out

    @classmethod
    def fit(cls, images: list[np.ndarray], side: int) -> QualityCheck:
        values = measures(images, side, VERSION)
        smallest = min(min(image.shape[:2]) for image in images)
        limits = {measure: _extreme(values, measure) for measure in (*LOW, *HIGH)}
        return cls(side, max(1, int(smallest * SMALLEST)), limits["dark"], limits["bright"], limits["blur"],
                   limits["noise"], colour=limits["colour"], version=VERSION, contrast=limits["contrast"])

    def measured(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """`measures` of `images` as this check takes them (its side and version)."""
        return measures(images, self.side, self.version)

    def widened(self, measure: str, values: dict[str, np.ndarray]) -> QualityCheck:
        """This check with the `measure` limit (one of WIDENED) moved out to the extreme of `values` (EXTREME
        aside) where that lies beyond it; never moved in. `values`: `measured` of images the model was shown to
        judge (greenlens.training.quality_sweep)."""
        if measure not in WIDENED:
            raise ValueError(f"only the {', '.join(WIDENED)} limits are widened, not {measure!r}")
        if not (values["contrast"] >= FLAT).any():
            return self
        outward = min if measure in LOW else max
        return replace(self, **{measure: outward(getattr(self, measure), _extreme(values, measure))})

    def problems(self, images: list[np.ndarray]) -> list[str | None]:
        """Per image, the reason it is too poor to judge (a value of PROBLEMS), or None."""
        values = self.measured(images)
        answers: list[str | None] = []
        rows = zip(images, *(values[k] for k in MEASURES))
        for image, dark, bright, blur, noise, colour, contrast in rows:
            flat = contrast < SOLID
            if min(image.shape[:2]) < self.min_side:
                answers.append(PROBLEMS["small"])
            elif dark < self.dark:
                answers.append(PROBLEMS["dark"])
            elif bright > (max(self.bright, ALMOST_WHITE) if flat else self.bright):
                answers.append(PROBLEMS["bright"])
            elif flat:
                answers.append(None)
            elif noise > self.noise:
                answers.append(PROBLEMS["noise"])
            elif contrast < self.contrast:  # before blur: washing out lowers the edges the blur measure sees too
                answers.append(PROBLEMS["contrast"])
            elif blur < self.blur:
                answers.append(PROBLEMS["blur"])
            elif colour < self.colour:
                answers.append(PROBLEMS["colour"])
            else:
                answers.append(None)
        return answers

    def unclear(self, probabilities: np.ndarray) -> np.ndarray:
        """Per row of class probabilities: True where no class reaches `min_confidence`."""
        return np.asarray(probabilities).max(axis=1) < self.min_confidence

    def too_poor(self, images: list[np.ndarray]) -> np.ndarray:
        """Per image: True where it is too poor to judge (`problems` names a reason)."""
        return np.array([problem is not None for problem in self.problems(images)], bool)

    def rates(self, images: list[np.ndarray]) -> float:
        """The share of `images` found too poor to judge."""
        return float(self.too_poor(images).mean()) if images else 0.0

    def save(self, folder: Path) -> None:
        (Path(folder) / FILENAME).write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> QualityCheck | None:
        path = Path(folder) / FILENAME
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def fit_min_confidence(probabilities: np.ndarray, labels: np.ndarray, answered: np.ndarray,
                       risk: float = UNCLEAR_RISK) -> float:
    """The lowest top probability such that the `answered` rows (those neither the guard nor the image checks
    refuse) at or above it are wrong for at most `risk` of all rows; 0 where answering every row already is."""
    top = np.asarray(probabilities).max(axis=1)
    wrong = answered & (np.asarray(probabilities).argmax(axis=1) != np.asarray(labels))
    order = np.argsort(top)  # raising the threshold past each row in turn refuses it
    wrong_left = wrong.sum() - np.concatenate([[0], np.cumsum(wrong[order])])
    allowed = np.flatnonzero(wrong_left <= risk * len(top))[0]  # rows order[:allowed] refused
    return 0.0 if allowed == 0 else float(np.nextafter(top[order[allowed - 1]], 1.0))
