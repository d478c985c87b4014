"""From a data folder to a model repo: read, split, fine-tune, evaluate, write. One call per task."""

from __future__ import annotations

import csv
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import data, evaluation, guard_fitting, litert, repository, runtimes
from .backbones import get_backbone
from .batch import probability_column
from .card import render_card
from .quality import QualityCheck
from .tasks import Task
from .training import TrainConfig, augment, fine_tune

# Augmented views per image that the guard and the quality check are fitted on (training images) and
# whose thresholds they set (validation images), beside the images themselves: realistic variation is
# then in distribution, and only what lies beyond it is refused.
GUARD_VIEWS = 2
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
    exports: str = "all",
) -> dict:
    """Trains `task` on `data_dirs` and writes the model repo to `out_dir` atomically.

    Returns the run record that is also written as metrics.json. Its headline `metrics` are
    measured on the test split, which nothing in training or selection looked at. `exports`: "all"
    (LiteRT, int8 where it keeps accuracy, ONNX), "float" (no int8 attempt) or "none"."""
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
    train_views, train_view_labels = _views(train, config, seed=config.seed + 101)
    validation_views, _ = _views(validation, config, seed=config.seed + 202)
    quality = QualityCheck.fit(train.images + train_views, recipe.image_size)
    guard, guard_report, probabilities = guard_fitting.fit_and_measure(
        result.model, list(spec.guard_layers), train.images + train_views, np.concatenate([train.labels, train_view_labels]),
        validation.images, test.images, other_images or {}, _typical_size(examples), threshold_images=validation_views,
        outlier_images=guard_fitting.outlier_images(config.augmentation, _typical_size(examples)), quality=quality,
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
        "run": {"augmentation": asdict(config.augmentation), "weights": _weights_name(config.weights), "seed": config.seed},
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
        "augmentation_description": config.augmentation.description,
        "weights_description": _weights_description(config.weights),
        "backbone_note": ORIGINAL_RECIPE_NOTE.format(
            original=get_backbone(original.backbone).display_name, recipe=recipe_name, task=task.name,
            original_recipe=task.original_recipe,
        ) if original and original.backbone != recipe.backbone else "",
        "machine": f"{platform.machine()} CPU, {_cpu_count()} cores, no GPU" if not _has_gpu() else "GPU",
        "versions": _versions(),
        "command": command,
    }
    write_repo(out_dir, task, result.model, record, probabilities, splits, guard, exports, quality=quality)
    log(f"Wrote {out_dir}")
    return record


def _views(examples: data.Examples, config: TrainConfig, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """GUARD_VIEWS fresh augmented views of every image (not the cached training views), with labels."""
    rng = np.random.default_rng(seed)
    views = [augment(image, config.augmentation, rng, view=2) for _ in range(GUARD_VIEWS) for image in examples.images]
    return views, np.tile(np.asarray(examples.labels), GUARD_VIEWS)


def write_repo(out_dir: Path, task: Task, model, record: dict, probabilities: dict[str, np.ndarray],
               splits: dict[str, data.Examples], guard, exports: str = "all", *, quality: QualityCheck | None = None) -> None:
    with repository.atomic_directory(out_dir) as folder:
        repository.save_model(model, folder)
        guard.save(folder)
        if quality is not None:
            quality.save(folder)
        test, train = splits["test"], splits["train"]
        if exports != "none":
            calibration = [train.images[i] for i in np.random.default_rng(0).permutation(len(train))[:200]]
            runtimes.write(model, folder, runtimes.at_input_size(model, calibration) if exports == "all" else None)
            record["runtimes"] = runtimes.measure(folder, model, test.images, test.labels)
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


def export(model_dir: Path, data_root: Path | None, log=print) -> dict | None:
    """(Re)writes the files for other runtimes into an existing model repo: the survey tile model, and
    classifier.tflite / classifier.onnx. With `data_root` (the parent of the data folders the repo's
    test.csv names), int8 is tried and every format measured on the repo's own test split, and the
    numbers go into metrics.json and the card. Weights untouched. Returns the measurement."""
    import json

    from .tasks import get_task

    folder = Path(model_dir)
    repo = repository.load(str(folder))
    task = get_task(repo.task["name"])
    if task.survey_tile:
        litert.write_tile_model(repo.model, folder, task.survey_tile, list(get_backbone(repo.task["backbone"]).guard_layers))
        log(f"Wrote {folder / litert.TILE_MODEL}")
    record = json.loads((folder / "metrics.json").read_text())
    held_out = {split: _read_listed(folder / f"{split}.csv", data_root, task) for split in ("test", "validation")} if data_root else {}
    if held_out and held_out["test"] and held_out["validation"]:
        calibration = runtimes.at_input_size(repo.model, held_out["validation"][0][:200])
        log(f"Wrote {', '.join(runtimes.write(repo.model, folder, calibration))}")
        images, labels = held_out["test"]
        record["runtimes"] = runtimes.measure(folder, repo.model, images, labels)
    else:
        log(f"Wrote {', '.join(runtimes.write(repo.model, folder))} (not measured: the data is not at hand)")
        record["runtimes"] = None
    repository.write_json(folder / "metrics.json", record)
    render_card(record).save(folder / "README.md")
    return record["runtimes"]


def _read_listed(listing: Path, data_root: Path, task: Task) -> tuple[list[np.ndarray], np.ndarray] | None:
    """The images a repo's test.csv or validation.csv names, with their labels; None if any is missing."""
    from .images import decode_image

    with open(listing, newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [Path(data_root) / row["file"] for row in rows]
    if not rows or not all(path.is_file() for path in paths):
        return None
    return [decode_image(path) for path in paths], np.array([task.labels.index(row["label"]) for row in rows])
