"""Training, side by side on the same data and split: our two-stage pipeline vs the original
notebooks' approach (the ImageNet backbone frozen inside `model.fit`, every augmented image pushed
through the whole backbone in every epoch, the head trained for the same number of epochs, Adam).

    python benchmarks/training_comparison.py [--tasks leaf cactus] [--limit 2000] [--head-epochs 10]

Needs the data folder (DATA_DIR, default ../shared/data) and the ImageNet weights in the Keras cache.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import keras
import numpy as np
from common import DATA_DIR, RESULTS, report

from greenlens.core.backbones import build_backbone, build_classifier, get_backbone
from greenlens.core.batches import predict_images
from greenlens.core.tasks import TASKS, get_task
from greenlens.training import data
from greenlens.training.finetune import TrainConfig, augment, fine_tune


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
    recipe = config.recipe
    backbone = build_backbone(get_backbone(recipe.backbone), config.weights, recipe.alpha)
    backbone.trainable = False
    model, _ = build_classifier(backbone, get_backbone(recipe.backbone), recipe.image_size, num_classes, recipe.dropout)
    model.compile(optimizer=keras.optimizers.Adam(recipe.head_learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(AugmentedImages(train.images, train.labels, recipe.batch_size, config.augmentation, config.seed),
              validation_data=(np.stack(validation.images).astype(np.float32), validation.labels),
              epochs=recipe.head_epochs, verbose=2)
    return model


def accuracy(model, test) -> float:
    return float((predict_images(model, test.images).argmax(axis=1) == test.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["leaf", "cactus"])
    parser.add_argument("--limit", type=int, default=2000, help="images per task (stratified sample)")
    parser.add_argument("--head-epochs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for name in args.tasks:
        task = get_task(name)
        examples = data.find_examples(task, [DATA_DIR / folder for folder in task.data_folders])
        examples = examples.subset(data.stratified_sample(examples.labels, args.limit, seed=0))
        examples, _ = data.read_images(examples)
        split = data.split(examples, seed=0)
        train, validation, test = (examples.subset(getattr(split, name)) for name in ("train", "validation", "test"))
        # The bundled model's recipe, with no early stopping in stage 1, so both train the head for exactly
        # --head-epochs.
        recipe = replace(task.recipe(), head_epochs=args.head_epochs, patience=args.head_epochs)
        config = TrainConfig(recipe, augmentation=task.augmentation)

        keras.utils.set_random_seed(0)
        started = time.perf_counter()
        model = original_approach(config, len(task.labels), train, validation)
        original_s = time.perf_counter() - started
        rows.append({"task": name, "approach": f"original: frozen backbone inside fit, {args.head_epochs} epochs",
                     "wall_s": original_s, "test_accuracy": accuracy(model, test), "speed-up": 1.0})

        head_only = fine_tune(replace(config, recipe=replace(recipe, fine_tune_epochs=0)), len(task.labels),
                              train.images, train.labels, validation.images, validation.labels)
        stage1_s = sum(head_only.timings.values())
        rows.append({"task": name, "approach": f"ours, stage 1: cached activations, {args.head_epochs} head epochs",
                     "wall_s": stage1_s, "test_accuracy": accuracy(head_only.model, test), "speed-up": original_s / stage1_s})
        result = fine_tune(config, len(task.labels), train.images, train.labels, validation.images, validation.labels)
        total_s = sum(result.timings.values())
        rows.append({"task": name, "approach": "ours, both stages (+ fine-tuned top blocks)", "wall_s": total_s,
                     "test_accuracy": accuracy(result.model, test), "speed-up": original_s / total_s})
    rows = sorted(kept_rows(args.tasks) + rows, key=lambda row: list(TASKS).index(row["task"]))
    report("training_comparison", rows, {"limit": args.limit, "head_epochs": args.head_epochs, "split": "70/15/15",
                                         "recipes": {name: asdict(task.recipe()) for name, task in TASKS.items()}})


if __name__ == "__main__":
    main()
