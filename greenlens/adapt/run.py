"""Adapting a tile model to a new flight, in named steps: cut labelled tiles from the annotations, split
them by spatial blocks, judge the base model on the held-out blocks, fine-tune it there with the two stages
and the recipe it was trained with, refit the guard, judge the adapted model on the same blocks, write the
model repo. `adapt` runs them in that order; nothing is written unless every step succeeded."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from greenlens.adapt.annotations import BLOCK_TILES, AnnotatedTiles, AnnotationError, annotated_tiles, check_blocks
from greenlens.core import repository
from greenlens.core.backbones import feature_model
from greenlens.core.batches import predict_images
from greenlens.core.tasks import Dataset, Recipe, Task, get_task
from greenlens.survey.run import THRESHOLD
from greenlens.training import data, evaluation, pipeline
from greenlens.training.finetune import TrainConfig, fine_tune


@dataclass(frozen=True)
class AdaptSettings:
    """What an adaptation is asked for besides the base model, the rasters and the annotations."""

    tile_size: int | None = None  # source pixels per tile; default: from the base model's tile ground size
    block_tiles: int = BLOCK_TILES  # side of a spatial block of the split, in tiles
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    exports: str = "all"
    repo_id: str = "greenlens/cactus-adapted"
    command: str = ""
    recipe: dict = field(default_factory=dict)  # overrides of single values of the base model's recipe


def adapt(base: str, rasters, out_dir, *, points, areas, settings: AdaptSettings = AdaptSettings(), log=print) -> dict:
    """Fine-tunes the model repo `base` (a folder or Hub id) on tiles cut from `rasters` where `points` marks
    the cacti inside the polygons of `areas` (every cactus there marked), and writes the adapted model repo to
    `out_dir`. Returns its record (metrics.json), whose `adaptation` compares the base and the adapted model on
    the same held-out blocks. Raises AnnotationError, SurveyError or ModelSourceError before writing anything."""
    started = time.perf_counter()
    folder, source = repository.fetch(base)
    recorded = repository.read_json(folder, "task.json", source, default={})
    task = tile_task(recorded, source)
    tiles = annotated_tiles(rasters, points, areas, model_tile=task.survey_tile, tile_size=settings.tile_size,
                            tile_ground_m=recorded.get("tile_ground_m"), block_tiles=settings.block_tiles, log=log)
    run = pipeline.RunSettings(settings.repo_id, settings.command, validation_fraction=settings.validation_fraction,
                               test_fraction=settings.test_fraction, exports=settings.exports)
    check_blocks(tiles, data.folds_needed(run.validation_fraction, run.test_fraction), settings.block_tiles)
    repo = repository.load(str(folder))  # Keras loads only once the annotations are known to be good
    repo.source = source
    run = replace(run, recipe_name=f"{repo.metrics.get('recipe_name') or task.default_recipe}+adapting")
    examples = as_examples(task, tiles)
    splits = pipeline.split_data(task, examples, run=run, seed=settings.seed, log=log)
    before = judge(task, repo.model, repository.load_guard(repo.path, repo.source), splits["test"])
    recipe = adapting_recipe(task, repo, settings.recipe)
    config = TrainConfig(recipe, augmentation=task.augmentation, weights=None, seed=settings.seed)
    read_seconds = time.perf_counter() - started
    train, validation = splits["train"], splits["validation"]
    result = fine_tune(config, len(task.labels), train.images, train.labels, validation.images, validation.labels,
                       start=repo.model)
    done = pipeline.after_fine_tuning(task, result.model, config, splits, typical_size=task.survey_tile,
                                      other_images={}, unlabelled=[], log=log)
    after = judge(task, result.model, done.fitted.guard, splits["test"])
    timings = {"cut_tiles_and_judge_base_model": read_seconds, **result.timings, **done.timings,
               "total": time.perf_counter() - started}
    record = pipeline.run_record(task, config, run, examples=examples, skipped=[], splits=splits, result=result,
                                 metrics=done.metrics, guard_report=done.fitted.report, timings=timings,
                                 machine=pipeline.machine(), versions=pipeline.versions())
    describe_adaptation(record, repo, tiles, settings, splits, before=before, after=after)
    log(comparison_table(record["adaptation"]))
    pipeline.write_repo(Path(out_dir), task, result.model, record, done.fitted.probabilities, splits, done.fitted.guard,
                        run.exports, quality=done.fitted.quality, student=done.student)
    log(f"Wrote {out_dir}")
    return record


def tile_task(recorded: dict, source: str) -> Task:
    """The task a model repo's task.json names, if its model surveys tiles (only those adapt to a flight)."""
    try:
        task = get_task(recorded.get("name", ""))
    except ValueError:
        raise repository.ModelSourceError(f"{source} names no task this version knows (task.json)") from None
    if not task.survey_tile or len(task.labels) != 2:
        raise repository.ModelSourceError(f"{source} is a {task.title.lower()} model: only tile models "
                                          "(e.g. the aerial cactus one) are adapted to a flight")
    return task


def adapting_recipe(task: Task, repo: repository.ModelRepo, overrides: dict) -> Recipe:
    """The recipe the base model was trained with (its record: stage 2 unfreezes the same blocks), changed
    as the task says adapting changes it (`Task.adapting`), then by `overrides`."""
    recorded = repo.metrics.get("recipe") or {}
    known = {f.name for f in fields(Recipe)}
    base = replace(task.recipe(), **{k: v for k, v in recorded.items() if k in known})
    return replace(base, **{**task.adapting, **overrides})


def as_examples(task: Task, tiles: AnnotatedTiles) -> data.Examples:
    """The tiles as the training steps take them: class indices in the task's order, blocks as groups."""
    negative = 1 - task.positive_index
    labels = np.where(tiles.positive, task.positive_index, negative).astype(np.int64)
    return data.Examples([Path(name) for name in tiles.names], labels, list(tiles.blocks), list(tiles.sources),
                         list(tiles.images))


def judge(task: Task, model, guard, examples: data.Examples) -> dict:
    """A model on held-out tiles as a survey runs it (one view of each tile: greenlens.core.litert.write_tile_model):
    accuracy and ROC AUC of its probabilities, the share its guard flags, and the survey's count (tiles at or above
    the survey's THRESHOLD and not flagged) against the marked cacti's tiles."""
    layers = list(guard.layers) if guard is not None else []
    features, probabilities = predict_images(feature_model(model, layers, views=1)[0], examples.images)
    flagged = guard.flags(features) if guard is not None else np.zeros(len(examples), bool)
    metrics = evaluation.evaluate(task, probabilities, examples.labels, examples.sources)
    marked = int((examples.labels == task.positive_index).sum())
    counted = int(((probabilities[:, task.positive_index] >= THRESHOLD) & ~flagged).sum())
    return {"accuracy": metrics["accuracy"], "roc_auc": metrics["roc_auc"], "flagged": float(flagged.mean()),
            "marked": marked, "counted": counted, "count_error": (counted - marked) / marked if marked else None}


def describe_adaptation(record: dict, repo: repository.ModelRepo, tiles: AnnotatedTiles, settings: AdaptSettings,
                        splits: dict[str, data.Examples], *, before: dict, after: dict) -> None:
    """What the record says of an adapted model: where it started, what it was adapted on, the tile ground
    size it now knows, the split by blocks, and base vs adapted on the held-out blocks."""
    names = ", ".join(part["raster"] for part in tiles.rasters)
    ground = tiles.tile_ground_m
    block_m = settings.block_tiles * ground
    record["task"]["tile_ground_m"] = round(ground, 6)
    record["task"]["dataset"] = asdict(Dataset(
        f"annotated flight ({names})", citation="annotations of the model's user", url="",
        limitations=f"- Adapted to {names}: other flights, seasons or sensors need annotations of their own.",
    ))
    record["split_description"] = (
        f"by spatial blocks of {settings.block_tiles} x {settings.block_tiles} tiles ({block_m:.3g} m square), "
        f"stratified by class, {settings.test_fraction:.0%} test and {settings.validation_fraction:.0%} validation: "
        "no block in two splits, as neighbouring tiles share ground"
    )
    record["weights_description"] = f"via the model repo {_portable(repo.source)}, which this one was adapted from"
    record["backbone_note"] = ""
    record["run"]["weights"] = _portable(repo.source)
    record["adaptation"] = {
        "base": _portable(repo.source),
        "rasters": tiles.rasters,
        "tile_ground_m": round(ground, 6),
        "block_tiles": settings.block_tiles,
        "held_out": {"tiles": len(splits["test"]), "blocks": len(set(splits["test"].groups))},
        "threshold": THRESHOLD,
        "base_model": before,
        "adapted_model": after,
    }


def comparison_table(adaptation: dict) -> str:
    """Base vs adapted model on the held-out blocks, as the command prints it."""
    held = adaptation["held_out"]
    lines = [f"On {held['tiles']} held-out tiles ({held['blocks']} blocks):",
             f"{'':16}{'accuracy':>10}{'ROC AUC':>10}{'flagged':>10}{'counted':>10}{'marked':>8}{'count error':>13}"]
    for name, key in (("base model", "base_model"), ("adapted model", "adapted_model")):
        row = adaptation[key]
        auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.4f}"
        error = "n/a" if row["count_error"] is None else f"{row['count_error']:+.1%}"
        lines.append(f"{name:16}{row['accuracy']:>10.4f}{auc:>10}{row['flagged']:>10.1%}{row['counted']:>10}"
                     f"{row['marked']:>8}{error:>13}")
    return "\n".join(lines)


def _portable(source: str) -> str:
    """A Hub source as it is, a folder by its name (a path of this machine means nothing elsewhere)."""
    return source if source.startswith("hf://") else Path(source).name


__all__ = ["AdaptSettings", "AnnotationError", "adapt", "comparison_table"]
