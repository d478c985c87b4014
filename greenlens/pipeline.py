"""From a data folder to a model repo: read, split, fine-tune, evaluate, write. One call per task."""

from __future__ import annotations

import csv
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import data, evaluation, ood, repository
from .backbones import get_backbone
from .batch import probability_column
from .card import render_card
from .tasks import Task
from .training import TrainConfig, fine_tune, fine_tune_cut

AUGMENTATIONS = {
    "flips": "random horizontal and vertical flips",
    "dihedral": "random flips and 90-degree rotations",
}
INCEPTION_NOTE = (
    "This model was trained on {backbone} because the InceptionV3 ImageNet weights could not be "
    "downloaded where it was trained. InceptionV3 (299x299) stays the default of `train.py leaf` "
    "wherever Keras can download its ImageNet weights."
)


def train_task(
    task: Task,
    data_dirs: list[Path],
    out_dir: Path,
    config: TrainConfig,
    repo_id: str,
    command: str,
    validation_fraction: float = 0.2,
    group_csv: Path | None = None,
    limit: int | None = None,
    other_images: dict[str, list[np.ndarray]] | None = None,
    log=print,
) -> dict:
    """Trains `task` on `data_dirs` and writes the model repo to `out_dir` atomically.

    Returns the run record that is also written as metrics.json.
    """
    started = time.perf_counter()
    examples = data.find_examples(task, data_dirs, group_csv)
    if limit:
        examples = examples.subset(data.stratified_sample(examples.labels, limit, config.seed))
    log(f"Found {data.describe(task, examples)}")
    examples, skipped = data.read_images(examples)
    if skipped:
        log(f"Skipped {len(skipped)} unreadable image(s), e.g. {', '.join(Path(s).name for s in skipped[:5])}")
    train_index, validation_index = data.split(examples, validation_fraction, config.seed)
    train, validation = examples.subset(train_index), examples.subset(validation_index)
    log(f"Training on {data.describe(task, train)}")
    log(f"Validating on {data.describe(task, validation)}")
    read_seconds = time.perf_counter() - started

    result = fine_tune(config, len(task.labels), train.images, train.labels, validation.images, validation.labels)

    evaluate_started = time.perf_counter()
    spec = get_backbone(config.backbone)
    guard, guard_report, probabilities = ood.fit_and_measure(
        result.model, list(spec.guard_layers), train.images, train.labels, validation.images,
        other_images or {}, _typical_size(examples),
    )
    metrics = evaluation.evaluate(task, probabilities, validation.labels, validation.sources)
    timings = {
        "read_data": read_seconds, **result.timings,
        "evaluate_and_out_of_distribution_guard": time.perf_counter() - evaluate_started,
    }
    timings["total"] = time.perf_counter() - started
    log(_guard_summary(guard_report))
    log(_summary(metrics, timings))

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
            "image_size": config.image_size,
            "alpha": config.alpha,
            "fine_tune_after": fine_tune_cut(config),
            "preprocessing": f"inside the model: resize to {config.image_size}x{config.image_size}, "
            f"x * {spec.scale:.6g} + {spec.offset:g}",
            "dataset_tags": list(task.dataset_tags),
        },
        "metrics": metrics,
        "ood": guard_report,
        "history": result.history,
        "timings": timings,
        "config": asdict(config),
        "counts": {
            "total": len(examples),
            "skipped": len(skipped),
            "skipped_files": [Path(s).name for s in skipped[:20]],
            "train": len(train),
            "validation": len(validation),
            "balance": data.class_balance(task, examples.labels),
        },
        "split_description": (
            f"stratified by class, {validation_fraction:.0%} validation, "
            + ("grouped by physical leaf (`leaf_id` of leaf_groups.csv): no leaf on both sides" if task.group_csv else "one tile per group")
        ),
        "augmentation_description": AUGMENTATIONS[config.augmentation],
        "weights_description": _weights_description(config.weights),
        "backbone_note": INCEPTION_NOTE.format(backbone=spec.display_name) if spec.name != task.backbone else "",
        "machine": f"{platform.machine()} CPU, {_cpu_count()} cores, no GPU" if not _has_gpu() else "GPU",
        "versions": _versions(),
        "command": command,
    }
    write_repo(out_dir, task, result.model, record, probabilities, validation, guard)
    log(f"Wrote {out_dir}")
    return record


def write_repo(out_dir: Path, task: Task, model, record: dict, probabilities: np.ndarray, validation: data.Examples,
               guard: ood.DistributionGuard) -> None:
    with repository.atomic_directory(out_dir) as folder:
        repository.save_model(model, folder)
        guard.save(folder)
        repository.write_json(folder / "labels.json", task.labels)
        repository.write_json(folder / "task.json", record["task"])
        repository.write_json(folder / "metrics.json", record)
        _write_validation_list(folder / "validation.csv", task, validation, probabilities)
        evaluation.plot_training_curves(record["history"], folder / "training_curves.png")
        evaluation.plot_confusion_matrix(task, record["metrics"], folder / "confusion_matrix.png")
        if record["metrics"]["roc_auc"] is not None:
            evaluation.plot_roc_curve(task, probabilities, validation.labels, folder / "roc_curve.png")
        render_card(record).save(folder / "README.md")


def _write_validation_list(path: Path, task: Task, validation: data.Examples, probabilities: np.ndarray) -> None:
    """Files relative to their data folder's parent (e.g. `color/Strawberry___healthy/x.JPG`),
    so the numbers can be reproduced with the same --data."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", probability_column(task.positive_label)])
        for file, label, p in zip(validation.files, validation.labels, probabilities[:, task.positive_index]):
            writer.writerow([_relative_to_data_parent(file), task.labels[label], f"{p:.6f}"])


def _relative_to_data_parent(file: Path) -> str:
    return "/".join(Path(file).parts[-3:])  # both layouts: <dir>/<Class or train>/<file>


def _typical_size(examples: data.Examples) -> int:
    """The most common image side in the data: synthetic test images are made at this size."""
    sides = [image.shape[0] for image in examples.images]
    return int(np.bincount(sides).argmax())


def _summary(metrics: dict, timings: dict) -> str:
    auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.5f}"
    per_source = ", ".join(f"{s} {r['accuracy']:.4f}" for s, r in metrics["per_source"].items())
    return (
        f"Validation accuracy {metrics['accuracy']:.4f} ({metrics['errors']} errors of {metrics['count']}; "
        f"{per_source}), ROC AUC {auc}"
    )


def _guard_summary(report: dict) -> str:
    return (f"out-of-distribution guard flags {report['validation_flagged']:.2%} of validation images, "
            f"{report['out_of_distribution_flagged_overall']:.2%} of out-of-distribution images")


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


def add_guard(model_dir: Path, task: Task, data_dirs: list[Path], other_images: dict[str, list[np.ndarray]], log=print) -> dict:
    """Fits the out-of-distribution guard of an existing model repo on the split it was trained on
    (validation.csv names the validation files; the rest of the data trained it). Weights untouched."""
    import json
    import shutil

    model_dir = Path(model_dir)
    repo = repository.load(str(model_dir))
    with open(model_dir / "validation.csv", newline="") as handle:
        validation_files = {row["file"] for row in csv.DictReader(handle)}
    examples, _ = data.read_images(data.find_examples(task, data_dirs))
    is_validation = np.array([_relative_to_data_parent(f) in validation_files for f in examples.files])
    if is_validation.sum() != len(validation_files):
        raise data.DataError(
            f"{len(validation_files) - is_validation.sum()} validation file(s) of {model_dir} are missing from "
            "the data or unreadable: the guard must be fitted on the split the model was trained on"
        )
    layers = list(get_backbone(repo.task["backbone"]).guard_layers)
    guard, report, _ = ood.fit_and_measure(
        repo.model, layers, [im for im, v in zip(examples.images, is_validation) if not v], examples.labels[~is_validation],
        [im for im, v in zip(examples.images, is_validation) if v], other_images, _typical_size(examples),
    )
    record = json.loads((model_dir / "metrics.json").read_text())
    record["ood"] = report
    with repository.atomic_directory(model_dir) as folder:
        shutil.copytree(model_dir, folder, dirs_exist_ok=True)
        guard.save(folder)
        repository.write_json(folder / "metrics.json", record)
        render_card(record).save(folder / "README.md")
    log(f"{model_dir}: {_guard_summary(report)}")
    return report
