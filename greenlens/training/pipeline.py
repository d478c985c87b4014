"""From a data folder to a model repo, in named steps: read the data, split it, fine-tune, fit the guard and
the quality check, evaluate, make the run record, write the repo. `train_task` runs them in that order."""

from __future__ import annotations

import csv
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from greenlens.core import litert, repository, runtimes
from greenlens.core.backbones import answering_on_views, get_backbone
from greenlens.core.folder_csv import probability_column
from greenlens.core.ood import DistributionGuard
from greenlens.core.quality import QualityCheck
from greenlens.core.tasks import Task
from greenlens.training import data, evaluation
from greenlens.training import guard as guard_fitting
from greenlens.training.card import render_card
from greenlens.training.finetune import TrainConfig, TrainResult, augment, fine_tune
from greenlens.training.quality_sweep import widen_limits

# Augmented views per image that the guard and the quality check are fitted on (training images) and
# whose thresholds they set (validation images), beside the images themselves: realistic variation is
# then in distribution, and only what lies beyond it is refused.
GUARD_VIEWS = 2
# Crops of bundled natural photos (guard.BUNDLED_PHOTOS) among the made-up outliers the guard's outlier boundary is
# fitted against: natural scenes at every scale are what a user most often uploads by mistake.
GUARD_PHOTO_CROPS = 1500
SPLITS = ("train", "validation", "test")
ORIGINAL_RECIPE_NOTE = (
    "The original project fine-tuned {original}; this model was trained with the `{recipe}` recipe because "
    "its ImageNet weights could not be downloaded where it was trained. `train.py {task} --recipe "
    "{original_recipe}` trains the original recipe wherever Keras can download them."
)


@dataclass(frozen=True)
class RunSettings:
    """What a training run is asked for besides the recipe and the seed (TrainConfig): where the repo will
    live, how to split, what to export, and the command that reproduces it."""

    repo_id: str
    command: str
    recipe_name: str = ""
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    group_csv: Path | None = None
    limit: int | None = None  # train on a stratified sample of this many images (tests, quick looks)
    exports: str = "all"  # "all" (LiteRT, int8 where it keeps accuracy, ONNX), "float" (no int8) or "none"


@dataclass
class Fitted:
    """The guard and the quality check fitted on a trained model, and its held-out probabilities."""

    guard: DistributionGuard
    report: dict
    probabilities: dict[str, np.ndarray]
    quality: QualityCheck


def train_task(task: Task, data_dirs: list[Path], out_dir: Path, config: TrainConfig, *, run: RunSettings,
               other_images: dict[str, list[np.ndarray]] | None = None, log=print) -> dict:
    """Trains `task` on `data_dirs` and writes the model repo to `out_dir` atomically.

    Returns the run record that is also written as metrics.json. Its headline `metrics` are
    measured on the test split, which nothing in training or selection looked at."""
    started = time.perf_counter()
    examples, skipped = read_data(task, data_dirs, run=run, seed=config.seed, log=log)
    splits = split_data(task, examples, run=run, seed=config.seed, log=log)
    read_seconds = time.perf_counter() - started
    train, validation = splits["train"], splits["validation"]
    result = fine_tune(config, len(task.labels), train.images, train.labels, validation.images, validation.labels)
    done = after_fine_tuning(task, result.model, config, splits, typical_size=_typical_size(examples.images),
                             other_images=other_images or {},
                             unlabelled=read_unlabelled(task, data_dirs, limit=run.limit), log=log)
    timings = {"read_data": read_seconds, **result.timings, **done.timings, "total": time.perf_counter() - started}
    log(_guard_summary(done.fitted.report))
    for name in ("test", "validation"):
        log(_summary(name, done.metrics[name]))
    record = run_record(task, config, run, examples=examples, skipped=skipped, splits=splits, result=result,
                        metrics=done.metrics, guard_report=done.fitted.report, timings=timings, machine=machine(),
                        versions=versions())
    write_repo(out_dir, task, result.model, record, done.fitted.probabilities, splits, done.fitted.guard, run.exports,
               quality=done.fitted.quality, student=done.student)
    log(f"Wrote {out_dir}")
    return record


def read_data(task: Task, data_dirs: list[Path], *, run: RunSettings, seed: int, log=print) -> tuple[data.Examples, list]:
    """The task's labelled images in `data_dirs` (a stratified sample of `run.limit` of them), decoded;
    unreadable files are reported and left out rather than stopping the run."""
    examples = data.find_examples(task, data_dirs, run.group_csv)
    if run.limit:
        examples = examples.subset(data.stratified_sample(examples.labels, run.limit, seed))
    log(f"Found {data.describe(task, examples)}")
    examples, skipped = data.read_images(examples)
    if skipped:
        log(f"Skipped {len(skipped)} unreadable image(s), e.g. {', '.join(Path(s).name for s in skipped[:5])}")
    return examples, skipped


def split_data(task: Task, examples: data.Examples, *, run: RunSettings, seed: int, log=print) -> dict[str, data.Examples]:
    """Train, validation and test splits, stratified by class and grouped as the task says (no physical
    leaf in two splits): the test split is drawn first and looked at by nothing but the final numbers."""
    indices = data.split(examples, run.validation_fraction, run.test_fraction, seed)
    splits = {name: examples.subset(getattr(indices, name)) for name in SPLITS}
    for name, part in splits.items():
        log(f"{name.capitalize()}: {data.describe(task, part)}")
    return splits


def fit_guard(model, config: TrainConfig, splits: dict[str, data.Examples], *, typical_size: int,
              other_images: dict[str, list[np.ndarray]]) -> Fitted:
    """The quality check and the out-of-distribution guard, fitted on the training images and fresh augmented
    views of them (realistic variation is then in distribution); the guard's thresholds come from validation
    images and their views, never from the test split, and so do the quality check's `min_confidence` (the views'
    classes are known) and how far its blur, noise and contrast limits reach beyond the training views (`widen_limits`:
    as far as the model judges blurred, noised and washed-out validation images). Measured on the test split and
    `other_images`."""
    train, validation, test = (splits[name] for name in SPLITS)
    spec = get_backbone(config.recipe.backbone)
    train_views, train_view_labels = _views(train, config, seed=config.seed + 101)
    validation_views, validation_view_labels = _views(validation, config, seed=config.seed + 202)
    quality = QualityCheck.fit(train.images + train_views, config.recipe.image_size)
    quality, sweeps = widen_limits(quality, model, validation.images, validation.labels, seed=config.seed + 303)
    guard, fitted_quality, report, probabilities = guard_fitting.fit_and_measure(
        model, list(spec.guard_layers), train.images + train_views, np.concatenate([train.labels, train_view_labels]),
        validation.images, test.images, other_images, typical_size, threshold_images=validation_views,
        threshold_labels=validation_view_labels,
        outlier_images=guard_fitting.outlier_images(config.augmentation, typical_size, photo_crops=GUARD_PHOTO_CROPS),
        quality=quality,
    )
    assert fitted_quality is not None  # given, so returned with its min_confidence
    return Fitted(guard, {**report, "quality_sweeps": sweeps}, probabilities, fitted_quality)


@dataclass
class AfterFineTuning:
    """What training and adapting both make of a fine-tuned model before writing its repo."""

    fitted: Fitted
    metrics: dict[str, dict]  # "test" and "validation"
    student: object | None  # the distilled tile model (greenlens.training.distill), where the task has one
    timings: dict[str, float]


def after_fine_tuning(task: Task, model, config: TrainConfig, splits: dict[str, data.Examples], *, typical_size: int,
                      other_images: dict[str, list[np.ndarray]], unlabelled: list[np.ndarray],
                      log=print) -> AfterFineTuning:
    """The steps after fine-tuning, shared by training and adapting: the guard and the quality check (`fit_guard`),
    the held-out splits' metrics from the probabilities its pass computed, and the distilled tile model."""
    started = time.perf_counter()
    fitted = fit_guard(model, config, splits, typical_size=typical_size, other_images=other_images)
    metrics = {name: evaluation.evaluate(task, fitted.probabilities[name], splits[name].labels, splits[name].sources)
               for name in ("test", "validation")}
    timings = {"evaluate_and_out_of_distribution_guard": time.perf_counter() - started}
    started = time.perf_counter()
    student = distill_step(task, model, splits, backbone=config.recipe.backbone, guard_report=fitted.report,
                           seed=config.seed, unlabelled=unlabelled, other_images=other_images, log=log)
    if student is not None:
        timings["distill_tile_model"] = time.perf_counter() - started
    return AfterFineTuning(fitted, metrics, student, timings)


def run_record(task: Task, config: TrainConfig, run: RunSettings, *, examples: data.Examples, skipped: list,
               splits: dict[str, data.Examples], result: TrainResult, metrics: dict, guard_report: dict,
               timings: dict, machine: str, versions: dict) -> dict:
    """The run's record (metrics.json), from what the steps produced and nothing else: the card and the
    README's numbers are rendered from it."""
    recipe = config.recipe
    spec = get_backbone(recipe.backbone)
    original = task.recipes.get(task.original_recipe)
    return {
        "repo_id": run.repo_id,
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
            "survey_tile": task.survey_tile,
            "dataset": asdict(task.dataset),
            "backbone_paper": spec.paper,
        },
        "metrics": metrics["test"],
        "validation_metrics": metrics["validation"],
        "ood": guard_report,
        "history": result.history,
        "timings": timings,
        "recipe_name": run.recipe_name,
        "recipe": asdict(recipe),
        "run": {"augmentation": asdict(config.augmentation), "weights": _weights_name(config.weights), "seed": config.seed},
        "counts": {
            "total": len(examples),
            "skipped": len(skipped),
            "skipped_files": [Path(s).name for s in skipped[:20]],
            "limit": run.limit,  # a stratified sample of this many (repo_splits draws it again)
            **{name: len(part) for name, part in splits.items()},
            "balance": data.class_balance(task, examples.labels),
        },
        "split_description": (
            f"seeded, stratified by class, {run.test_fraction:.0%} test and {run.validation_fraction:.0%} validation, "
            f"{task.grouping}"
        ),
        "augmentation_description": config.augmentation.description,
        "weights_description": _weights_description(config.weights),
        "backbone_note": ORIGINAL_RECIPE_NOTE.format(
            original=_linked(get_backbone(original.backbone)), recipe=run.recipe_name, task=task.name,
            original_recipe=task.original_recipe,
        ) if original and original.backbone != recipe.backbone else "",
        "machine": machine,
        "versions": versions,
        "command": run.command,
    }


def _linked(spec) -> str:
    return f"[{spec.display_name}]({spec.paper})"


def machine() -> str:
    return f"{platform.machine()} CPU, {_cpu_count()} cores, no GPU" if not _has_gpu() else "GPU"


def _views(examples: data.Examples, config: TrainConfig, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """GUARD_VIEWS fresh augmented views of every image (not the cached training views), with labels."""
    rng = np.random.default_rng(seed)
    views = [augment(image, config.augmentation, rng, view=2) for _ in range(GUARD_VIEWS) for image in examples.images]
    return views, np.tile(np.asarray(examples.labels), GUARD_VIEWS)


def write_repo(out_dir: Path, task: Task, model, record: dict, probabilities: dict[str, np.ndarray],
               splits: dict[str, data.Examples], guard, exports: str = "all", *, quality: QualityCheck | None = None,
               student=None) -> None:
    with repository.atomic_directory(out_dir) as folder:
        repository.save_model(model, folder)
        guard.save(folder)
        if quality is not None:
            quality.save(folder)
        if exports != "none":
            record["runtimes"] = write_runtimes(folder, model, splits, int8=exports == "all")
        if student is not None:
            record["tile_student"] = student_record(student)
            write_student(folder, student)
        repository.write_json(folder / "labels.json", task.labels)
        repository.write_json(folder / "task.json", record["task"])
        repository.write_json(folder / "metrics.json", record)
        write_evaluation(folder, task, record, probabilities, splits)
        evaluation.plot_training_curves(record["history"], folder / "training_curves.png")
        if task.survey_tile:
            litert.write_tile_model(model, folder, task.survey_tile, list(guard.layers))
        render_card(record).save(folder / "README.md")


def write_runtimes(folder: Path, model, splits: dict[str, data.Examples], *, int8: bool) -> dict:
    """The classifier's files for other runtimes (greenlens.core.runtimes; int8 calibrated on 200 training images),
    measured on the test split: the record's `runtimes`."""
    test, train = splits["test"], splits["train"]
    calibration = [train.images[i] for i in np.random.default_rng(0).permutation(len(train))[:200]]
    runtimes.write(model, folder, runtimes.at_input_size(model, calibration) if int8 else None)
    return runtimes.measure(folder, model, test.images, test.labels)


def write_evaluation(folder: Path, task: Task, record: dict, probabilities: dict[str, np.ndarray],
                     splits: dict[str, data.Examples]) -> None:
    """test.csv and validation.csv (each held-out image with its probability), and the test split's plots."""
    for name in ("validation", "test"):
        _write_predictions(folder / f"{name}.csv", task, splits[name], probabilities[name])
    evaluation.plot_confusion_matrix(task, record["metrics"], folder / "confusion_matrix.png", split="test")
    if record["metrics"]["roc_auc"] is not None:
        evaluation.plot_roc_curve(task, probabilities["test"], splits["test"].labels, folder / "roc_curve.png", split="test")


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


def _typical_size(images: list[np.ndarray]) -> int:
    """The most common image side in the data: synthetic test images are made at this size."""
    sides = [image.shape[0] for image in images]
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

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def versions() -> dict[str, str]:
    import keras
    import sklearn
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def distill_step(task: Task, teacher, splits: dict[str, data.Examples], *, backbone: str, guard_report: dict, seed: int,
                 unlabelled: list[np.ndarray], other_images: dict[str, list[np.ndarray]], log=print):
    """The survey's distilled tile model (greenlens.training.distill) where the task has one, else None."""
    from greenlens.training.distill import distill

    if task.tile_student is None or not task.survey_tile:
        return None
    return distill(teacher, task.tile_student, task.augmentation, splits, tile=task.survey_tile,
                   positive_index=task.positive_index, unlabelled=unlabelled, teacher_guard=guard_report,
                   teacher_layers=list(get_backbone(backbone).guard_layers),
                   other_images=other_images, seed=seed, log=log)


def student_record(student) -> dict:
    """What the record says of the distilled tile model: its measurements, and its guard's refusal rates."""
    report = {key: value for key, value in student.report.items() if key != "guard"}
    report["guard"] = {key: student.report["guard"][key] for key in
                       ("test_flagged", "validation_flagged", "out_of_distribution_flagged", "out_of_distribution_counts")}
    return report


def write_student(folder: Path, student) -> None:
    """The student's LiteRT tile model and guard where it passed the rule (surveys then run them: see
    greenlens.survey.tile_model), else both under the candidate's names, which no survey runs."""
    for name in (litert.SMALL_TILE_MODEL, litert.SMALL_GUARD, litert.SMALL_CANDIDATE, litert.SMALL_CANDIDATE_GUARD):
        (Path(folder) / name).unlink(missing_ok=True)
    if student.report["shipped"]:
        (Path(folder) / litert.SMALL_TILE_MODEL).write_bytes(student.tile_model)
        student.guard.save(folder, litert.SMALL_GUARD)
    else:
        (Path(folder) / litert.SMALL_CANDIDATE).write_bytes(student.tile_model)
        student.guard.save(folder, litert.SMALL_CANDIDATE_GUARD)


def read_unlabelled(task: Task, data_dirs: list[Path], *, limit: int | None = None) -> list[np.ndarray]:
    """The task's unlabelled images (`Task.unlabelled_folder` in each data folder; none where absent)."""
    from greenlens.core.images import IMAGE_SUFFIXES, decode_image

    if not task.unlabelled_folder:
        return []
    files = sorted(path for folder in data_dirs for path in (Path(folder) / task.unlabelled_folder).glob("*")
                   if path.suffix.lower() in IMAGE_SUFFIXES)
    return [decode_image(path) for path in files[:limit]]


def repo_splits(folder: Path, task: Task, data_dirs: list[Path], record: dict) -> dict[str, data.Examples]:
    """An existing model repo's splits, decoded, in the order training had them: test and validation as its
    test.csv and validation.csv name them, training the rest of the task's images in `data_dirs` (of the same
    stratified sample where the run was limited to one)."""
    examples = data.find_examples(task, data_dirs)
    if record["counts"].get("limit"):
        examples = examples.subset(data.stratified_sample(examples.labels, record["counts"]["limit"], record["run"]["seed"]))
    held = {}
    for name in ("test", "validation"):
        with open(Path(folder) / f"{name}.csv", newline="") as handle:
            held[name] = {row["file"] for row in csv.DictReader(handle)}
    names = [_relative_to_data_parent(file) for file in examples.files]
    indices = {name: [i for i, n in enumerate(names) if n in held[name]] for name in held}
    indices["train"] = [i for i, n in enumerate(names) if n not in held["test"] and n not in held["validation"]]
    return {name: data.read_images(examples.subset(indices[name]))[0] for name in SPLITS}


def load_with_splits(folder: Path, data_dirs: list[Path]) -> tuple[repository.ModelRepo, Task, dict[str, data.Examples]]:
    """An existing model repo (`distill` and `guard` make a part of it again), its task and its splits."""
    from greenlens.core.tasks import get_task

    repo = repository.load(str(folder))
    task = get_task(repo.task["name"])
    return repo, task, repo_splits(folder, task, data_dirs, repo.metrics)


def distill_into(model_dir: Path, data_dirs: list[Path], *, command: str, other_images: dict | None = None,
                 log=print) -> dict:
    """Distils the survey's tile model from an existing model repo's classifier, on the same splits (its
    test.csv and validation.csv; training: the rest of the data) and, for a run limited to a sample, as many
    unlabelled images as the run had; adds it to the repo. Returns the record."""
    folder = Path(model_dir)
    repo, task, splits = load_with_splits(folder, data_dirs)
    record = repo.metrics
    student = distill_step(task, repo.model, splits, backbone=repo.task["backbone"], guard_report=record.get("ood") or {},
                           seed=record["run"]["seed"],
                           unlabelled=read_unlabelled(task, data_dirs, limit=record["counts"].get("limit")),
                           other_images=other_images or {}, log=log)
    if student is None:
        raise ValueError(f"the {task.name} task has no distilled tile model")
    record["tile_student"] = {**student_record(student), "command": command}
    card = render_card(record)  # before anything is replaced: a card that cannot be made stops it here
    write_student(folder, student)
    repository.write_json(folder / "metrics.json", record)
    card.save(folder / "README.md")
    return record


def refit_guard_into(model_dir: Path, data_dirs: list[Path], *, command: str, other_images: dict | None = None,
                     log=print) -> dict:
    """Fits the guard and the quality check of an existing model repo again, as training does (`fit_guard`, with
    the run's recipe, augmentation and seed), on the same splits, and replaces them: for a repo trained before the
    guard's fitting changed. The weights, and so every other number, stay as they are. Returns the record."""
    folder = Path(model_dir)
    again = _fit_guard_again(folder, data_dirs, command=command, other_images=other_images)
    card = render_card(again.record)  # before anything is replaced: a card that cannot be made stops it here
    again.save_guard(folder)
    repository.write_json(folder / "metrics.json", again.record)
    card.save(folder / "README.md")
    log(_guard_summary(again.fitted.report))
    return again.record


def answer_on_views_into(model_dir: Path, data_dirs: list[Path], *, views: int, command: str,
                         other_images: dict | None = None, log=print) -> dict:
    """Makes an existing model repo's classifier answer on `views` flips and quarter turns of each image
    (`Recipe.answer_views`; the weights stay as they are), as training a recipe with those views would have: evaluated
    again on its own splits (the metrics, test.csv, validation.csv and plots), its guard and quality check fitted
    again on what it now answers (`fit_guard`: the guard reads the image's own view, so what moves is the quality
    check's `min_confidence`), its files for other runtimes written and measured again (int8 tried where the run
    that made the repo tried it), the card rendered. The survey's tile models (one view) stay. For a repo trained
    before its recipe answered on views. Returns the record."""
    folder = Path(model_dir)
    again = _fit_guard_again(folder, data_dirs, command=command, other_images=other_images, views=views)
    record, fitted, splits = again.record, again.fitted, again.splits
    metrics = {name: evaluation.evaluate(again.task, fitted.probabilities[name], splits[name].labels,
                                         splits[name].sources) for name in ("test", "validation")}
    record.update(metrics=metrics["test"], validation_metrics=metrics["validation"], recipe=asdict(again.config.recipe),
                  views_command=command)
    render_card(record)  # before anything is replaced: a card that cannot be made stops it here
    repository.save_model(again.model, folder)
    again.save_guard(folder)
    write_evaluation(folder, again.task, record, fitted.probabilities, splits)
    if record.get("runtimes"):
        tried_int8 = runtimes.LITERT_INT8 in record["runtimes"].get("formats", {})
        record["runtimes"] = write_runtimes(folder, again.model, splits, int8=tried_int8)
    repository.write_json(folder / "metrics.json", record)
    render_card(record).save(folder / "README.md")
    for name in ("test", "validation"):
        log(_summary(name, metrics[name]))
    return record


@dataclass
class _FittedAgain:
    """A model repo's classifier, its splits and its run's config, with the guard and quality check fitted again."""

    task: Task
    model: Any
    config: TrainConfig
    splits: dict[str, data.Examples]
    fitted: Fitted
    record: dict  # the repo's metrics.json, its `ood` the new guard's report

    def save_guard(self, folder: Path) -> None:
        self.fitted.guard.save(folder)
        self.fitted.quality.save(folder)


def _fit_guard_again(folder: Path, data_dirs: list[Path], *, command: str, other_images: dict | None,
                     views: int | None = None) -> _FittedAgain:
    """`fit_guard` on the repo in `folder` as the run that made it fitted it (its recipe, augmentation and seed, on
    its splits), for its classifier answering on `views` views where given."""
    repo, task, splits = load_with_splits(folder, data_dirs)
    config, model = recorded_config(repo.metrics), repo.model
    if views is not None:
        config = replace(config, recipe=replace(config.recipe, answer_views=views))
        model = answering_on_views(model, views)
    fitted = fit_guard(model, config, splits, typical_size=_typical_size_of(splits), other_images=other_images or {})
    record = {**repo.metrics, "ood": {**fitted.report, "command": command}}
    return _FittedAgain(task, model, config, splits, fitted, record)


def recorded_config(record: dict) -> TrainConfig:
    """The TrainConfig of the run a record describes: its recipe, augmentation and seed."""
    from greenlens.core.tasks import Augmentation, Recipe

    augmentation: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                    for key, value in record["run"]["augmentation"].items()}
    return TrainConfig(Recipe(**record["recipe"]), augmentation=Augmentation(**augmentation), seed=record["run"]["seed"])


def _typical_size_of(splits: dict[str, data.Examples]) -> int:
    return _typical_size([image for part in splits.values() for image in part.images])
