"""Aerial survey: cut a large aerial image into tiles at the training scale, classify them in
large batches, and report where the positive tiles are (overlay, summary, per-tile CSV)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from .images import decode_image

TILE = 32  # the default tile: the size of the Kaggle tiles the cactus model was trained on


class SurveyError(ValueError):
    """An image or setting that cannot be surveyed; the message is meant for the user."""


@dataclass
class Survey:
    positions: np.ndarray  # (n, 2): top-left (x, y) of every tile
    probabilities: np.ndarray  # (n,): probability of the positive label
    threshold: float
    tile: int
    image_shape: tuple[int, int]
    positive_label: str

    @property
    def summary(self) -> dict:
        """Counts keyed by the positive label: `cactus_tiles` and `cactus_fraction` for the cactus model."""
        hits = int((self.probabilities >= self.threshold).sum())
        count = len(self.probabilities)
        key = self.positive_label.replace(" ", "_")
        return {"tiles": count, f"{key}_tiles": hits, f"{key}_fraction": round(hits / count, 6), "threshold": self.threshold}

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["x", "y", "probability"])
        writer.writerows((int(x), int(y), f"{p:.6f}") for (x, y), p in zip(self.positions, self.probabilities))
        return out.getvalue()


def cut_tiles(image: np.ndarray, stride: int = TILE, tile: int = TILE) -> tuple[np.ndarray, np.ndarray]:
    """All tiles lying fully inside the image, row by row: (tiles (n, tile, tile, 3), positions (n, 2) as x, y)."""
    if stride < 1:
        raise SurveyError("stride must be at least 1 pixel")
    height, width = image.shape[:2]
    if height < tile or width < tile:
        raise SurveyError(f"the image is {width} x {height} pixels, smaller than one {tile} x {tile} tile")
    windows = sliding_window_view(image, (tile, tile), axis=(0, 1))[::stride, ::stride]  # (ny, nx, 3, tile, tile)
    rows, cols = windows.shape[:2]
    tiles = windows.transpose(0, 1, 3, 4, 2).reshape(rows * cols, tile, tile, image.shape[2])
    ys, xs = np.meshgrid(np.arange(rows) * stride, np.arange(cols) * stride, indexing="ij")
    return tiles, np.stack([xs.ravel(), ys.ravel()], axis=1)


def survey(classify, image: np.ndarray, labels: list[str], positive_label: str, stride: int = TILE,
           threshold: float = 0.5, tile: int = TILE, batch_size: int = 512, progress=None) -> Survey:
    """Classifies every tile with `classify` (batch of tiles -> probabilities, e.g.
    `Classifier.tile_classifier`); `progress(done, total)` is called after each batch."""
    if not 0 < threshold < 1:
        raise SurveyError("threshold must lie between 0 and 1")
    tiles, positions = cut_tiles(image, stride, tile)
    probabilities = np.empty(len(tiles), dtype=np.float32)
    for start in range(0, len(tiles), batch_size):
        batch = tiles[start : start + batch_size].astype(np.float32)
        probabilities[start : start + len(batch)] = classify(batch)[:, labels.index(positive_label)]
        if progress is not None:
            progress(start + len(batch), len(tiles))
    return Survey(positions, probabilities, threshold, tile, image.shape[:2], positive_label)


def run_survey(classifier, source, out_dir: Path, stride: int = TILE, threshold: float = 0.5, progress=None) -> Survey:
    """Surveys an image file (or bytes) with a loaded `Classifier` and writes `overlay.png`,
    `tiles.csv` and `summary.json` into `out_dir`; returns the survey.

    Raises SurveyError or images.ImageError with a message meant for the user."""
    image = decode_image(source)
    tile = int(classifier.repo.task.get("survey_tile") or TILE)
    result = survey(classifier.tile_classifier, image, classifier.labels, classifier.positive_label,
                    stride, threshold, tile, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, result)).save(out_dir / "overlay.png")
    (out_dir / "tiles.csv").write_text(result.csv_text())
    (out_dir / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
    return result


def overlay(image: np.ndarray, result: Survey) -> np.ndarray:
    """The image dimmed, with tiles at or above the threshold tinted by their probability and outlined."""
    heat = np.zeros(image.shape[:2], dtype=np.float32)
    tile = result.tile
    for (x, y), p in zip(result.positions, result.probabilities):
        if p >= result.threshold:
            np.maximum(heat[y : y + tile, x : x + tile], p, out=heat[y : y + tile, x : x + tile])
    pixels = image.astype(np.float32)
    alpha = (0.15 + 0.35 * heat)[..., None]
    highlight = np.array([255, 40, 200], dtype=np.float32)  # magenta: stands out on desert greens and browns
    # Cactus tiles keep full brightness under the tint; the rest is dimmed.
    shown = np.where(heat[..., None] > 0, pixels * (1 - alpha) + highlight * alpha, pixels * 0.5)
    edges = (heat > 0) & ~_eroded(heat > 0)
    shown[edges] = highlight
    return np.clip(shown, 0, 255).astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner

