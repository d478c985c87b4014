"""Model files for runtimes without Keras, written into a model repo beside the Keras files and
measured on the test split: LiteRT (`ai-edge-litert`: phones, drones, microcontrollers) and ONNX
(`onnxruntime` in Python, C#, Java, the browser).

Both take what the Keras model's own resize produces: float32 RGB pixels 0-255, NHWC, the model's
input size (160 x 160 for leaves, 128 x 128 for cactus tiles), any batch; both give one softmax
probability per class in labels.json's order. An int8 LiteRT model ships too where its test accuracy
is within 0.1 point of float32.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import litert

LITERT, LITERT_INT8, ONNX = "classifier.tflite", "classifier_int8.tflite", "classifier.onnx"
INT8_TOLERANCE = 0.001  # an int8 model ships only within 0.1 point of float32's test accuracy


class OnnxModel:
    def __init__(self, path: Path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.asarray(images, np.float32)})[0]


def write(model, folder: Path, calibration: np.ndarray | None = None) -> list[str]:
    """Writes classifier.tflite, classifier.onnx and (with calibration images at the input size)
    classifier_int8.tflite for `model` at its own input size; returns the file names."""
    from .backbones import fixed_size_model, parts

    side = parts(model).resize.height
    single = fixed_size_model(model, side)
    single.predict_on_batch(np.zeros((1, side, side, 3), np.float32))  # the ONNX exporter wants a model that ran
    folder = Path(folder)
    (folder / LITERT).write_bytes(litert.convert(single))
    single.export(str(folder / ONNX), format="onnx", verbose=False)
    written = [LITERT, ONNX]
    if calibration is not None:
        (folder / LITERT_INT8).write_bytes(litert.convert(single, calibration))
        written.append(LITERT_INT8)
    return written


def at_input_size(model, images: list[np.ndarray]) -> np.ndarray:
    """Images resized as the Keras model resizes them: what the other runtimes take."""
    from .backbones import parts

    resize = parts(model).resize
    return np.concatenate([np.asarray(resize(image[None].astype(np.float32))) for image in images])


def measure(folder: Path, model, images: list[np.ndarray], labels: np.ndarray) -> dict:
    """Test accuracy and single-image latency of Keras and of each runtime file in `folder`; drops
    the int8 model when it is not within INT8_TOLERANCE of float32. The record the card shows."""
    folder = Path(folder)
    inputs = at_input_size(model, images)
    runners = {"Keras": lambda x: np.asarray(model.predict_on_batch(x)),
               LITERT: litert.LiteRTModel(folder / LITERT, batch_size=1), ONNX: OnnxModel(folder / ONNX)}
    if (folder / LITERT_INT8).is_file():
        runners[LITERT_INT8] = litert.LiteRTModel(folder / LITERT_INT8, batch_size=1)
    reference = runners["Keras"](inputs)
    rows = {}
    for name, run in runners.items():
        probabilities = np.concatenate([run(inputs[i : i + 64]) for i in range(0, len(inputs), 64)])
        run(inputs[:1])
        started = time.perf_counter()
        for image in inputs[:50]:
            run(image[None])
        rows[name] = {
            "test_accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
            "max_difference_from_keras": float(np.abs(probabilities - reference).max()),
            "ms_per_image": (time.perf_counter() - started) / min(50, len(inputs)) * 1000,
        }
    if LITERT_INT8 in rows and rows[LITERT_INT8]["test_accuracy"] < rows[LITERT]["test_accuracy"] - INT8_TOLERANCE:
        (folder / LITERT_INT8).unlink()
        rows[LITERT_INT8]["shipped"] = False
    side = inputs.shape[1]
    return {"input": f"float32 RGB 0-255, NHWC, {side} x {side}, any batch", "side": side, "formats": rows,
            "test_images": len(images)}
