"""Aerial survey: cut a large aerial image into tiles at the training scale, classify them in
large batches, and report where the cactus tiles are (overlay, summary, per-tile CSV)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import tempfile
import threading
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

TILE = 32  # the size of the Kaggle tiles the cactus model was trained on
# Compiling the tile model (~30 s on a 2-core CPU) pays for itself from about this many tiles (a
# 3,200 x 3,200 image); smaller surveys run on Keras unless the model was compiled already.
COMPILE_FROM_TILES = 10_000
# The compiled model's fixed batch: XNNPACK runs 64 tiles as fast per tile as 512, and its
# activation memory grows with the batch (~70 MB at 64, ~550 MB at 512).
LITE_BATCH = 64


class SurveyError(ValueError):
    """An image or setting that cannot be surveyed; the message is meant for the user."""


@dataclass
class Survey:
    positions: np.ndarray  # (n, 2): top-left (x, y) of every tile
    probabilities: np.ndarray  # (n,): probability of the positive label ("cactus")
    threshold: float
    tile: int
    image_shape: tuple[int, int]

    @property
    def summary(self) -> dict:
        hits = int((self.probabilities >= self.threshold).sum())
        count = len(self.probabilities)
        return {"tiles": count, "cactus_tiles": hits, "cactus_fraction": round(hits / count, 6), "threshold": self.threshold}

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


def survey(model, image: np.ndarray, positive_index: int, stride: int = TILE, threshold: float = 0.5,
           batch_size: int = 512, progress=None) -> Survey:
    """Classifies every tile; `progress(done, total)` is called after each batch."""
    if not 0 < threshold < 1:
        raise SurveyError("threshold must lie between 0 and 1")
    tiles, positions = cut_tiles(image, stride)
    if len(tiles) >= COMPILE_FROM_TILES or model in _compile_requested or model in _tile_classifiers:
        classify = tile_classifier(model)  # waits for a compile under way
    else:
        classify = _keras_predict(model)
    probabilities = np.empty(len(tiles), dtype=np.float32)
    for start in range(0, len(tiles), batch_size):
        batch = tiles[start : start + batch_size].astype(np.float32)
        probabilities[start : start + len(batch)] = classify(batch)[:, positive_index]
        if progress is not None:
            progress(start + len(batch), len(tiles))
    return Survey(positions, probabilities, threshold, TILE, image.shape[:2])


_tile_classifiers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_compile_requested: weakref.WeakSet = weakref.WeakSet()
_building = threading.Lock()


def compile_in_background(model) -> None:
    """Starts compiling `model` for tiles in a thread (the app does so at start); every survey
    with it then runs compiled, the first one waiting for the compile if it is still under way."""
    _compile_requested.add(model)
    threading.Thread(target=tile_classifier, args=(model,), daemon=True).start()


def tile_classifier(model):
    """`model`'s predict for batches of TILE x TILE tiles, compiled once per model with TensorFlow
    Lite's XNNPACK CPU kernels: the same layers and weights, probabilities within ~1e-5 of Keras,
    about 3x as fast on a 2-core CPU (benchmarks/survey_speed.py). Falls back to Keras' own
    `predict_on_batch` where the model cannot be converted.

    Compiling takes ~30 s on a 2-core CPU; see `compile_in_background`.
    """
    with _building:
        if model not in _tile_classifiers:
            _tile_classifiers[model] = _compile_for_tiles(model)
        return _tile_classifiers[model]


def _compile_for_tiles(model):
    try:
        return LiteTileClassifier(model)
    except Exception as error:  # noqa: BLE001 - any conversion failure leaves the (slower) Keras path
        print(f"Surveys run on Keras: TensorFlow Lite could not compile the model ({error})", file=sys.stderr)
        return _keras_predict(model)


def _keras_predict(model):
    return lambda batch: np.asarray(model.predict_on_batch(batch))


class LiteTileClassifier:
    """A TensorFlow Lite interpreter of the model for tile-size inputs, called like predict_on_batch."""

    def __init__(self, model, batch_size: int = LITE_BATCH):
        import tensorflow as tf

        content = _convert_in_child_process(model, batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about its successor package
            self.interpreter = tf.lite.Interpreter(model_content=content, num_threads=os.cpu_count())
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch_size = batch_size
        self.lock = threading.Lock()  # one interpreter, one caller at a time

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """Probabilities of any number of tiles, in the interpreter's fixed batches (the last one padded)."""
        results = []
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start : start + self.batch_size].astype(np.float32, copy=False)
            count = len(batch)
            if count < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - count, *batch.shape[1:]), np.float32)])
            with self.lock:
                self.interpreter.set_tensor(self.input, batch)
                self.interpreter.invoke()
                results.append(self.interpreter.get_tensor(self.output)[:count].copy())
        return np.concatenate(results)


def _convert_in_child_process(model, batch_size: int) -> bytes:
    """The converter takes ~1 GB that a process keeps after it is done, which would double the
    app's memory; a child process does the conversion and gives the memory back."""
    with tempfile.TemporaryDirectory(prefix="greenlens-tiles-") as folder:
        saved, converted = Path(folder) / "model.keras", Path(folder) / "tiles.tflite"
        model.save(saved)
        child = subprocess.run(
            [sys.executable, "-m", "greenlens.survey", str(saved), str(converted), str(batch_size)],
            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=900,
        )
        if child.returncode != 0:
            raise RuntimeError((child.stderr.strip().splitlines() or ["conversion failed"])[-1])
        return converted.read_bytes()


def tile_model_flatbuffer(model, batch_size: int) -> bytes:
    """`model` with a fixed input of `batch_size` tiles, converted to TensorFlow Lite."""
    import keras
    import tensorflow as tf

    # Upscaling ignores antialiasing, so the resize can drop it: the antialiased kernel has no
    # TensorFlow Lite equivalent.
    resize = model.get_layer("resize")
    inputs = keras.Input((TILE, TILE, 3), batch_size=batch_size)
    x = keras.layers.Resizing(resize.height, resize.width, interpolation=resize.interpolation,
                              antialias=resize.antialias and min(resize.height, resize.width) < TILE)(inputs)
    for layer in model.layers[model.layers.index(resize) + 1:]:
        x = layer(x)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the exported signatures
        return tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert()


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


if __name__ == "__main__":  # the child process of _convert_in_child_process: MODEL.keras OUT.tflite BATCH
    import keras

    Path(sys.argv[2]).write_bytes(tile_model_flatbuffer(keras.saving.load_model(sys.argv[1]), int(sys.argv[3])))
