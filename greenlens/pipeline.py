"""From a data folder to a model repo: read, split, fine-tune, evaluate, write. One call per task."""

from __future__ import annotations

import csv
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import data, evaluation, guard_fitting, litert, repository
from .backbones import get_backbone
from .batch import probability_column
from .card import render_card
from .tasks import Task
from .training import TrainConfig, fine_tune

AUGMENTATIONS = {
    "flips": "random horizontal and vertical flips",
    "dihedral": "random flips and 90-degree rotations",
}
ORIGINAL_RECIPE_NOTE = (
    "The original project fine-tuned {original}; this model was trained with the `{recipe}` recipe because "
    "{original}'s ImageNet weights could not be downloaded where it was trained. `train.py {task} --recipe "
    "{original_recipe}` trains the original recipe wherever Keras can download them."
)


def train_task(
    task: Task,
    data_dirs: list[Path],
    out_dir: Path,
    config: TrainConfig,
    repo_id: str,
    command: str,
    recipe_name: str = "",
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    group_csv: Path | None = None,
    limit: int | None = None,
    other_images: dict[str, list[np.ndarray]] | None = None,
    log=print,
) -> dict:
    """Trains `task` on `data_dirs` and writes the model repo to `out_dir` atomically.

    Returns the run record that is also written as metrics.json. Its headline `metrics` are
    measured on the test split, which nothing in training or selection looked at."""
    started = time.perf_counter()
    examples = data.find_examples(task, data_dirs, group_csv)
    if limit:
        examples = examples.subset(data.stratified_sample(examples.labels, limit, config.seed))
    log(f"Found {data.describe(task, examples)}")
    examples, skipped = data.read_images(examples)
    if skipped:
        log(f"Skipped {len(skipped)} unreadable image(s), e.g. {', '.join(Path(s).name for s in skipped[:5])}")
    indices = data.split(examples, validation_fraction, test_fraction, config.seed)
    splits = {name: examples.subset(getattr(indices, name)) for name in ("train", "validation", "test")}
    for name, part in splits.items():
        log(f"{name.capitalize()}: {data.describe(task, part)}")
    read_seconds = time.perf_counter() - started

    train, validation, test = splits["train"], splits["validation"], splits["test"]
    result = fine_tune(config, len(task.labels), train.images, train.labels, validation.images, validation.labels)

    evaluate_started = time.perf_counter()
    recipe = config.recipe
    spec = get_backbone(recipe.backbone)
    guard, guard_report, probabilities = guard_fitting.fit_and_measure(
        result.model, list(spec.guard_layers), train.images, train.labels, validation.images, test.images,
        other_images or {}, _typical_size(examples),
    )
    metrics = {name: evaluation.evaluate(task, probabilities[name], splits[name].labels, splits[name].sources)
               for name in ("test", "validation")}
    timings = {
        "read_data": read_seconds, **result.timings,
        "evaluate_and_out_of_distribution_guard": time.perf_counter() - evaluate_started,
    }
    timings["total"] = time.perf_counter() - started
    log(_guard_summary(guard_report))
    for name in ("test", "validation"):
        log(_summary(name, metrics[name]))

    original = task.recipes.get(task.original_recipe)
    record = {
        "repo_id": repo_id,
        "task": {
            "name": task.name,
            "title": task.title,
            "summary": task.summary,
            "labels": task.labels,
            "positive_label": task.positive_label,
            "out_of_distribution_label": task.out_of_distribution_label,
            "backbone": spec.name,
            "backbone_display": spec.display_name,
            "image_size": recipe.image_size,
            "alpha": recipe.alpha,
            "fine_tune_after": recipe.fine_tune_after,
            "preprocessing": f"inside the model: resize to {recipe.image_size}x{recipe.image_size}, "
            f"x * {spec.scale:.6g} + {spec.offset:g}",
            "dataset_tags": list(task.dataset_tags),
            "survey_tile": task.survey_tile,
        },
        "metrics": metrics["test"],
        "validation_metrics": metrics["validation"],
        "ood": guard_report,
        "history": result.history,
        "timings": timings,
        "recipe_name": recipe_name,
        "recipe": asdict(recipe),
        "run": {"augmentation": config.augmentation, "weights": _weights_name(config.weights), "seed": config.seed},
        "counts": {
            "total": len(examples),
            "skipped": len(skipped),
            "skipped_files": [Path(s).name for s in skipped[:20]],
            **{name: len(part) for name, part in splits.items()},
            "balance": data.class_balance(task, examples.labels),
        },
        "split_description": (
            f"seeded, stratified by class, {test_fraction:.0%} test and {validation_fraction:.0%} validation, "
            + ("grouped by physical leaf (`leaf_id` of leaf_groups.csv): no leaf in two splits" if task.group_csv
               else "each tile its own group")
        ),
        "augmentation_description": AUGMENTATIONS[config.augmentation],
        "weights_description": _weights_description(config.weights),
        "backbone_note": ORIGINAL_RECIPE_NOTE.format(
            original=get_backbone(original.backbone).display_name, recipe=recipe_name, task=task.name,
            original_recipe=task.original_recipe,
        ) if original and original.backbone != recipe.backbone else "",
        "machine": f"{platform.machine()} CPU, {_cpu_count()} cores, no GPU" if not _has_gpu() else "GPU",
        "versions": _versions(),
        "command": command,
    }
    write_repo(out_dir, task, result.model, record, probabilities, splits, guard)
    log(f"Wrote {out_dir}")
    return record


def write_repo(out_dir: Path, task: Task, model, record: dict, probabilities: dict[str, np.ndarray],
               splits: dict[str, data.Examples], guard) -> None:
    with repository.atomic_directory(out_dir) as folder:
        repository.save_model(model, folder)
        guard.save(folder)
        repository.write_json(folder / "labels.json", task.labels)
        repository.write_json(folder / "task.json", record["task"])
        repository.write_json(folder / "metrics.json", record)
        for name in ("validation", "test"):
            _write_predictions(folder / f"{name}.csv", task, splits[name], probabilities[name])
        evaluation.plot_training_curves(record["history"], folder / "training_curves.png")
        evaluation.plot_confusion_matrix(task, record["metrics"], folder / "confusion_matrix.png", split="test")
        if record["metrics"]["roc_auc"] is not None:
            evaluation.plot_roc_curve(task, probabilities["test"], splits["test"].labels, folder / "roc_curve.png", split="test")
        if task.survey_tile:
            litert.write_tile_model(model, folder, task.survey_tile, list(guard.layers))
        render_card(record).save(folder / "README.md")


def _write_predictions(path: Path, task: Task, examples: data.Examples, probabilities: np.ndarray) -> None:
    """Files relative to their data folder's parent (e.g. `color/Strawberry___healthy/x.JPG`),
    so the numbers can be reproduced with the same --data."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", probability_column(task.positive_label)])
        for file, label, p in zip(examples.files, examples.labels, probabilities[:, task.positive_index]):
            writer.writerow([_relative_to_data_parent(file), task.labels[label], f"{p:.6f}"])


def _relative_to_data_parent(file: Path) -> str:
    return "/".join(Path(file).parts[-3:])  # both layouts: <dir>/<Class or train>/<file>


def _typical_size(examples: data.Examples) -> int:
    """The most common image side in the data: synthetic test images are made at this size."""
    sides = [image.shape[0] for image in examples.images]
    return int(np.bincount(sides).argmax())


def _summary(split: str, metrics: dict) -> str:
    auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.5f}"
    per_source = ", ".join(f"{s} {r['accuracy']:.4f}" for s, r in metrics["per_source"].items())
    return (
        f"{split.capitalize()} accuracy {metrics['accuracy']:.4f} ({metrics['errors']} errors of {metrics['count']}; "
        f"{per_source}), ROC AUC {auc}"
    )


def _guard_summary(report: dict) -> str:
    return (f"out-of-distribution guard flags {report['test_flagged']:.2%} of test images, "
            f"{report['out_of_distribution_flagged_overall']:.2%} of out-of-distribution images")


def _weights_name(weights: str | None) -> str:
    """The weights as a record names them: `imagenet`, `none`, or a file's name (never its path)."""
    return "none" if weights is None else weights if weights == "imagenet" else Path(weights).name


def _weights_description(weights: str | None) -> str:
    if weights == "imagenet":
        return "`weights=\"imagenet\"` from keras.applications"
    return "none: random initialisation" if weights is None else f"from the file {Path(weights).name}"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _versions() -> dict[str, str]:
    import keras
    import sklearn
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__}
