"""LiteRT (TensorFlow Lite) models: converted from the Keras classifier when a model repo is
written, run with the maintained `ai-edge-litert` runtime (XNNPACK CPU kernels).

The survey's tile model ships in the model repo as `tiles.tflite`: the classifier for 32 x 32
tiles on one view of each, with the out-of-distribution guard's features as a second output, the
same layers and weights, probabilities within ~1e-6 of Keras on that view and about 3x as fast on a CPU. Nothing is compiled
when the app starts, and running it needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path

import numpy as np

TILE_MODEL = "tiles.tflite"
# The distilled tile model at the tiles' native resolution and its own guard (greenlens.training.distill),
# written only where it passed the rule that lets it replace the classifier's in surveys.
SMALL_TILE_MODEL, SMALL_GUARD = "tiles_small.tflite", "tiles_small_ood.npz"
# Where it did not pass, it is kept under these names (surveys never run it) so its measurements can be checked.
SMALL_CANDIDATE, SMALL_CANDIDATE_GUARD = "tiles_small_candidate.tflite", "tiles_small_candidate_ood.npz"
# Batches sent to the interpreter: XNNPACK runs 64 tiles as fast per tile as 512, and its
# activation memory grows with the batch (~70 MB at 64, ~550 MB at 512).
BATCH = 64


def convert(model, calibration: np.ndarray | None = None) -> bytes:
    """A Keras model as a LiteRT flatbuffer: float32, or with `calibration` images full-integer int8
    (post-training; float32 input and output)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        batches = [calibration[i : i + 10].astype(np.float32) for i in range(0, len(calibration), 10)]
        converter.representative_dataset = lambda: ([batch] for batch in batches)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the exported signatures
        return converter.convert()


def write_tile_model(model, folder: Path, tile: int, guard_layers: list[str]) -> Path:
    """Writes the classifier for `tile` x `tile` tiles (any batch), with the guard's features, into
    a model repo folder. On one view of each tile, whatever the classifier averages: a survey classifies
    hundreds of thousands of tiles, and eight passes each would cost it eight times the time (the
    distilled tile model is how surveys are meant to get more accuracy: greenlens.training.distill)."""
    from greenlens.core.backbones import feature_model

    path = Path(folder) / TILE_MODEL
    path.write_bytes(convert(feature_model(model, guard_layers, tile, views=1)[0]))
    return path


class LiteRTModel:
    """A LiteRT flatbuffer called like Keras' predict_on_batch, in fixed batches of `batch_size`
    (the last one padded), one caller at a time. With several outputs it returns a tuple, widest
    output first (the tile model: guard features, then probabilities)."""

    def __init__(self, path: Path | bytes, batch_size: int = BATCH, threads: int | None = None):
        """`path`: a .tflite file, or a flatbuffer's bytes (a model just converted, never written)."""
        from ai_edge_litert.interpreter import Interpreter

        threads = threads or os.cpu_count()
        self.interpreter = (Interpreter(model_content=path, num_threads=threads) if isinstance(path, bytes)
                            else Interpreter(model_path=str(path), num_threads=threads))
        details = self.interpreter.get_input_details()[0]
        self.input, self.input_shape = details["index"], tuple(int(n) for n in details["shape"][1:])
        self.interpreter.resize_tensor_input(self.input, [batch_size, *self.input_shape])
        self.interpreter.allocate_tensors()
        outputs = sorted(self.interpreter.get_output_details(), key=lambda detail: -int(detail["shape"][-1]))
        self.outputs = [detail["index"] for detail in outputs]
        self.batch_size = batch_size
        self.lock = threading.Lock()

    def __call__(self, inputs: np.ndarray):
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, len(inputs), self.batch_size):
            batch = np.asarray(inputs[start : start + self.batch_size], dtype=np.float32)
            count = len(batch)
            if count < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - count, *self.input_shape), np.float32)])
            with self.lock:
                self.interpreter.set_tensor(self.input, batch)
                self.interpreter.invoke()
                for result, output in zip(results, self.outputs):
                    result.append(self.interpreter.get_tensor(output)[:count].copy())
        merged = tuple(np.concatenate(result) for result in results)
        return merged[0] if len(merged) == 1 else merged

    def predict_on_batch(self, inputs: np.ndarray):
        """The same as calling it: so greenlens.core.batches.predict_images runs it as it runs a Keras model."""
        return self(inputs)
