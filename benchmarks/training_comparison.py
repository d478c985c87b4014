"""Training, side by side on the same data and split: our two-stage pipeline vs the original
notebooks' approach (the ImageNet backbone frozen inside `model.fit`, every augmented image pushed
through the whole backbone in every epoch, the head trained for the same number of epochs, Adam).

    python benchmarks/training_comparison.py [--tasks leaf cactus] [--limit 2000] [--head-epochs 10]

Needs the data folder (DATA_DIR, default ../shared/data) and the ImageNet weights in the Keras cache.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
from common import RESULTS, ROOT, report

from greenlens import data
from greenlens.backbones import build_backbone, build_classifier, get_backbone
from greenlens.inference import predict_images
from greenlens.tasks import get_task
from greenlens.training import TrainConfig, augment, fine_tune

DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data"))
DATA = {"leaf": [DATA_DIR / "strawberry-leaf" / "color", DATA_DIR / "strawberry-leaf" / "segmented"],
        "cactus": [DATA_DIR / "aerial-cactus"]}


def bundled(task_name: str) -> dict:
    """The bundled model's backbone, input size, width and cut, so the comparison trains what we ship."""
    task = json.loads((ROOT / "models" / task_name / "task.json").read_text())
    return {"backbone": task["backbone"], "image_size": task["image_size"], "alpha": task.get("alpha", 1.0),
            "fine_tune_after": task["fine_tune_after"]}


def kept_rows(rerun: list[str]) -> list[dict]:
    """The last results of the tasks not re-run now, so `--tasks cactus` updates only cactus's rows."""
    path = RESULTS / "training_comparison.json"
    if not path.is_file():
        return []
    return [row for row in json.loads(path.read_text())["rows"] if row["task"] not in rerun]


class AugmentedImages(keras.utils.PyDataset):
    """The originals' generator: a fresh random augmentation of every image in every epoch."""

    def __init__(self, images, labels, batch_size, kind, seed):
        super().__init__()
        self.images, self.labels, self.batch_size, self.kind = images, labels, batch_size, kind
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        batch = np.stack([augment(self.images[i], self.kind, self.rng, view=1) for i in chosen]).astype(np.float32)
        return batch, self.labels[chosen]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.images))


def original_approach(config: TrainConfig, num_classes, train, validation) -> keras.Model:
    backbone = build_backbone(get_backbone(config.backbone), config.weights, config.alpha)
    backbone.trainable = False
    model, _ = build_classifier(backbone, get_backbone(config.backbone), config.image_size, num_classes, config.dropout)
    model.compile(optimizer=keras.optimizers.Adam(config.head_learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(AugmentedImages(train.images, train.labels, config.batch_size, config.augmentation, config.seed),
              validation_data=(np.stack(validation.images).astype(np.float32), validation.labels),
              epochs=config.head_epochs, verbose=2)
    return model


def accuracy(model, validation) -> float:
    return float((predict_images(model, validation.images).argmax(axis=1) == validation.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["leaf", "cactus"])
    parser.add_argument("--limit", type=int, default=2000, help="images per task (stratified sample)")
    parser.add_argument("--head-epochs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for name in args.tasks:
        task = get_task(name)
        examples = data.find_examples(task, DATA[name])
        examples = examples.subset(data.stratified_sample(examples.labels, args.limit, seed=0))
        examples, _ = data.read_images(examples)
        train_index, validation_index = data.split(examples, 0.2, seed=0)
        train, validation = examples.subset(train_index), examples.subset(validation_index)
        # No early stopping, so both train the head for exactly --head-epochs.
        config = TrainConfig(**bundled(name), augmentation=task.augmentation,
                             head_epochs=args.head_epochs, patience=args.head_epochs)

        keras.utils.set_random_seed(0)
        started = time.perf_counter()
        model = original_approach(config, len(task.labels), train, validation)
        original_s = time.perf_counter() - started
        rows.append({"task": name, "approach": f"original: frozen backbone inside fit, {args.head_epochs} epochs",
                     "wall_s": original_s, "val_accuracy": accuracy(model, validation), "speed-up": 1.0})

        result = fine_tune(config, len(task.labels), train.images, train.labels, validation.images, validation.labels)
        stage1_s = result.timings["build"] + result.timings["cache_activations"] + result.timings["stage1_head"]
        rows.append({"task": name, "approach": f"ours, stage 1: cached activations, {args.head_epochs} head epochs",
                     "wall_s": stage1_s, "val_accuracy": result.history["stage1_head"]["val_accuracy"][-1],
                     "speed-up": original_s / stage1_s})
        total_s = stage1_s + result.timings["stage2_fine_tune"]
        rows.append({"task": name, "approach": "ours, both stages (+ fine-tuned top blocks)", "wall_s": total_s,
                     "val_accuracy": accuracy(result.model, validation), "speed-up": original_s / total_s})
    rows = sorted(kept_rows(args.tasks) + rows, key=lambda row: list(DATA).index(row["task"]))
    report("training_comparison", rows, {"limit": args.limit, "head_epochs": args.head_epochs,
                                         "train_fraction": 0.8, "bundled": {name: bundled(name) for name in DATA}})


if __name__ == "__main__":
    main()
