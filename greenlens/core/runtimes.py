"""Model files for runtimes without Keras, written into a model repo beside the Keras files and
measured on the test split: LiteRT (`ai-edge-litert`: phones, drones, microcontrollers) and ONNX
(`onnxruntime` in Python, C#, Java, the browser).

Both take what the Keras model's own resize produces: float32 RGB pixels 0-255, NHWC, the model's
input size (160 x 160 for leaves, 128 x 128 for cactus tiles), any batch; both give one softmax
probability per class in labels.json's order. An int8 LiteRT model ships too where its test accuracy
is within 0.1 point of float32. `export` (re)writes and measures them in an existing model folder
(`greenlens export`).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from greenlens.core import litert

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
    from greenlens.core.backbones import fixed_size_model, parts

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
    from greenlens.core.backbones import parts

    resize = parts(model).resize
    return np.concatenate([np.asarray(resize(image[None].astype(np.float32))) for image in images])


def measure(folder: Path, model, images: list[np.ndarray], labels: np.ndarray) -> dict:
    """Test accuracy and single-image latency of Keras and of each runtime file in `folder`; drops
    the int8 model when it is not within INT8_TOLERANCE of float32. The record the card shows."""
    from greenlens.core.backbones import images_per_batch

    folder = Path(folder)
    inputs = at_input_size(model, images)
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {
               "Keras": lambda x: np.asarray(model.predict_on_batch(x)),
               LITERT: litert.LiteRTModel(folder / LITERT, batch_size=1), ONNX: OnnxModel(folder / ONNX)}
    if (folder / LITERT_INT8).is_file():
        runners[LITERT_INT8] = litert.LiteRTModel(folder / LITERT_INT8, batch_size=1)
    batch = images_per_batch(model)
    rows, reference = {}, None
    for name, run in runners.items():
        probabilities = np.concatenate([run(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
        reference = probabilities if reference is None else reference  # Keras' come first
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


def export(model_dir: Path, data_root: Path | None, log=print) -> dict:
    """(Re)writes the files for other runtimes into an existing model repo: the survey tile model, and
    classifier.tflite / classifier.onnx. With `data_root` (the parent of the data folders the repo's
    test.csv names), int8 is tried and every format measured on the repo's own test split, and the
    numbers go into metrics.json (re-render the card from it). Weights untouched. Returns the record."""
    import json

    from greenlens.core import repository
    from greenlens.core.backbones import get_backbone
    from greenlens.core.tasks import get_task

    folder = Path(model_dir)
    repo = repository.load(str(folder))
    task = get_task(repo.task["name"])
    if task.survey_tile:
        litert.write_tile_model(repo.model, folder, task.survey_tile, list(get_backbone(repo.task["backbone"]).guard_layers))
        log(f"Wrote {folder / litert.TILE_MODEL}")
    record = json.loads((folder / "metrics.json").read_text())
    held_out = {}
    if data_root:
        held_out = {split: _read_listed(folder / f"{split}.csv", data_root, task) for split in ("test", "validation")}
    if held_out and held_out["test"] and held_out["validation"]:
        calibration = at_input_size(repo.model, held_out["validation"][0][:200])
        log(f"Wrote {', '.join(write(repo.model, folder, calibration))}")
        images, labels = held_out["test"]
        record["runtimes"] = measure(folder, repo.model, images, labels)
    else:
        log(f"Wrote {', '.join(write(repo.model, folder))} (not measured: the data is not at hand)")
        record["runtimes"] = None
    repository.write_json(folder / "metrics.json", record)
    return record


def _read_listed(listing: Path, data_root: Path, task) -> tuple[list[np.ndarray], np.ndarray] | None:
    """The images a repo's test.csv or validation.csv names, with their labels; None if any is missing."""
    from greenlens.core.images import decode_image

    with open(listing, newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [Path(data_root) / row["file"] for row in rows]
    if not rows or not all(path.is_file() for path in paths):
        return None
    return [decode_image(path) for path in paths], np.array([task.labels.index(row["label"]) for row in rows])
