"""The survey's tile model in float32 (what ships) against a full-integer int8 quantization of it
(post-training, calibrated on 300 training tiles): accuracy and guard flags on the model's
validation split, and tiles/s on this CPU. The rule: int8 becomes the survey default only if its
validation accuracy is within 0.1 point of float32 and it is faster.

    python benchmarks/tile_model_int8.py [--model models/cactus]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA_DIR, report

from greenlens.core.backbones import feature_model, get_backbone
from greenlens.core.images import decode_image
from greenlens.core.litert import TILE_MODEL, LiteRTModel, convert
from greenlens.core.ood import DistributionGuard


def main() -> None:
    import keras

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/cactus")
    args = parser.parse_args()
    folder = Path(args.model)
    model = keras.saving.load_model(str(folder), compile=False)
    validation = list(csv.DictReader(Path(folder / "validation.csv").read_text().splitlines()))
    test = csv.DictReader(Path(folder / "test.csv").read_text().splitlines())
    held_out = {row["file"] for row in validation} | {row["file"] for row in test}
    tiles = np.stack([decode_image(DATA_DIR / row["file"]) for row in validation]).astype(np.float32)
    truth = np.array([row["label"] == "cactus" for row in validation])
    training = [row for row in csv.DictReader(Path(DATA_DIR / "aerial-cactus" / "train.csv").read_text().splitlines())
                if f"aerial-cactus/train/{row['id']}" not in held_out]
    chosen = np.random.default_rng(0).choice(len(training), 300, replace=False)
    train_folder = DATA_DIR / "aerial-cactus" / "train"
    calibration = np.stack([decode_image(train_folder / training[i]["id"]) for i in chosen]).astype(np.float32)
    layers = list(get_backbone("mobilenet_v2").guard_layers)
    int8 = Path(tempfile.mkdtemp()) / "tiles_int8.tflite"
    int8.write_bytes(convert(feature_model(model, layers, 32, views=1)[0], calibration))  # as tiles.tflite
    guard = DistributionGuard.load(folder)
    rows = []
    for name, path in (("float32 (ships)", folder / TILE_MODEL), ("int8, full integer", int8)):
        runner = LiteRTModel(path)
        runner(tiles[:64])  # allocate and warm up
        started = time.perf_counter()
        features, probabilities = runner(tiles)
        seconds = time.perf_counter() - started
        predicted = probabilities[:, 0] >= 0.5
        rows.append({"tile model": name, "validation_accuracy": float((predicted == truth).mean()),
                     "errors": int((predicted != truth).sum()), "guard_flags": float(guard.flags(features).mean()),
                     "tiles_per_s": len(tiles) / seconds, "megabytes": path.stat().st_size / 1e6})
    float32, quantized = rows
    verdict = ("int8" if quantized["validation_accuracy"] >= float32["validation_accuracy"] - 0.001
               and quantized["tiles_per_s"] > float32["tiles_per_s"] else "float32")
    report("tile_model_int8", rows, {"validation_tiles": len(tiles), "survey_default": verdict})
    print(f"survey default: {verdict}")


if __name__ == "__main__":
    main()
