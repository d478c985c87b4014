"""Kaggle layouts -> image files, labels and leaf groups; decoding with bad-data reports; splits.

Two layouts, named in the task spec:
- class_folders: `<dir>/<Class>/*.jpg` (Kaggle "plantvillage dataset/<variant>"); several dirs
  (e.g. color + segmented) may be combined.
- csv: `<dir>/train.csv` with `id,<label column>` and the images in `<dir>/train/<id>`.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from tqdm.auto import tqdm

from greenlens.core.images import IMAGE_SUFFIXES, ImageError, decode_image
from greenlens.core.tasks import Task


class DataError(ValueError):
    """The data folder is not in the layout the task expects; the message says what was expected."""


@dataclass
class Examples:
    """Labelled image files. `groups` keeps near-duplicates together in splits (PlantVillage
    photographed each leaf several times); `sources` names the variant an image came from."""

    files: list[Path]
    labels: np.ndarray
    groups: list[str]
    sources: list[str]
    images: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices) -> Examples:
        indices = list(indices)
        return Examples(
            files=[self.files[i] for i in indices],
            labels=self.labels[indices],
            groups=[self.groups[i] for i in indices],
            sources=[self.sources[i] for i in indices],
            images=[self.images[i] for i in indices] if self.images else [],
        )


def find_examples(task: Task, data_dirs: list[Path], group_csv: Path | None = None) -> Examples:
    """Lists the labelled files of `data_dirs` in the task's layout (no image is decoded yet)."""
    if not data_dirs:
        raise DataError("no data folder given")
    parts = []
    for data_dir in map(Path, data_dirs):
        if not data_dir.is_dir():
            raise DataError(f"data folder {data_dir} does not exist")
        if task.layout == "class_folders":
            parts.append(_find_in_class_folders(task, data_dir, group_csv))
        elif task.layout == "csv":
            parts.append(_find_in_csv(task, data_dir))
        else:
            raise ValueError(f"unknown layout {task.layout!r}")
    examples = Examples(
        files=[f for p in parts for f in p.files],
        labels=np.concatenate([p.labels for p in parts]),
        groups=[g for p in parts for g in p.groups],
        sources=[s for p in parts for s in p.sources],
    )
    _check_every_class_present(task, examples, data_dirs)
    return examples


def _find_in_class_folders(task: Task, data_dir: Path, group_csv: Path | None) -> Examples:
    present = {p.name for p in data_dir.iterdir() if p.is_dir()}
    if not present & set(task.classes):
        raise DataError(
            f"{data_dir} has none of the class folders expected for the {task.name} task: "
            f"expected {', '.join(task.classes)} (layout <dir>/<Class>/*.jpg); found "
            f"{', '.join(sorted(present)) or 'no folders'}"
        )
    leaf_ids = _read_groups(group_csv or _find_group_csv(task, data_dir))
    files, labels = [], []
    for index, class_name in enumerate(task.classes):
        class_dir = data_dir / class_name
        class_files = sorted(
            p for p in class_dir.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ) if class_dir.is_dir() else []
        if not class_files:
            raise DataError(f"class folder {class_dir} is missing or holds no images; every class needs images")
        files += class_files
        labels += [index] * len(class_files)
    # A photo not named in the groups file is its own group: safe, merely less strict.
    groups = [leaf_ids.get(f.name, f"{f.parent.name}/{f.stem}") for f in files]
    return Examples(files, np.array(labels, dtype=np.int64), groups, [data_dir.name] * len(files))


def _find_group_csv(task: Task, data_dir: Path) -> Path | None:
    if not task.group_csv:
        return None
    for folder in (data_dir, data_dir.parent):
        if (folder / task.group_csv).is_file():
            return folder / task.group_csv
    return None


def _read_groups(group_csv: Path | None) -> dict[str, str]:
    """Maps every file name in a `leaf_groups.csv` (any `*_file` column) to its `leaf_id`."""
    if group_csv is None:
        return {}
    with open(group_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if "leaf_id" not in columns:
            raise DataError(f"{group_csv} has no leaf_id column (expected class,leaf_id,<variant>_file,...)")
        file_columns = [c for c in columns if c.endswith("_file")]
        return {row[c]: row["leaf_id"] for row in reader for c in file_columns if row[c]}


def _find_in_csv(task: Task, data_dir: Path) -> Examples:
    csv_path, image_dir = data_dir / "train.csv", data_dir / "train"
    expected = f"{task.csv_id_column},{task.csv_label_column}"
    if not csv_path.is_file() or not image_dir.is_dir():
        raise DataError(
            f"{data_dir} is not in the {task.name} layout: expected {csv_path.name} ({expected}) "
            f"and the images in {image_dir.name}/"
        )
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if task.csv_id_column not in columns or task.csv_label_column not in columns:
            raise DataError(f"{csv_path} has columns {','.join(columns)}; expected {expected}")
        rows = list(reader)
    unknown = sorted({r[task.csv_label_column] for r in rows} - set(task.classes))
    if unknown:
        raise DataError(
            f"{csv_path}: unexpected {task.csv_label_column} values {unknown[:5]}; expected {sorted(task.classes)}"
        )
    files = [image_dir / r[task.csv_id_column] for r in rows]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} row(s) of {csv_path} name files missing from {image_dir}/, "
            f"e.g. {', '.join(missing[:5])}"
        )
    order = list(task.classes)
    labels = np.array([order.index(r[task.csv_label_column]) for r in rows], dtype=np.int64)
    # Each aerial tile is its own group: the competition gives no finer grouping.
    return Examples(files, labels, [f.name for f in files], [data_dir.name] * len(files))


def _check_every_class_present(task: Task, examples: Examples, data_dirs) -> None:
    counts = np.bincount(examples.labels, minlength=len(task.classes))
    empty = [label for label, count in zip(task.labels, counts) if count == 0]
    if empty:
        raise DataError(f"no images of class {', '.join(empty)} in {', '.join(map(str, data_dirs))}")


def class_balance(task: Task, labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(task.labels))
    return {label: int(count) for label, count in zip(task.labels, counts)}


def read_images(examples: Examples, progress: bool = True) -> tuple[Examples, list[str]]:
    """Decodes every image; unreadable ones are dropped and returned by name, so one corrupt file
    in thousands does not stop a training."""
    images, kept, skipped = [], [], []
    for index, path in enumerate(tqdm(examples.files, desc="Reading images", unit="img", disable=not progress)):
        try:
            images.append(decode_image(path))
            kept.append(index)
        except ImageError:
            skipped.append(str(path))
    result = examples.subset(kept)
    result.images = images
    return result, skipped


def stratified_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of about `limit` examples drawn at random with the class shares of `labels`."""
    rng = np.random.default_rng(seed)
    share = min(1.0, limit / len(labels))
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=max(1, round(share * (labels == c).sum())), replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen))


@dataclass
class Split:
    """Indices of the three splits: training; validation (early stopping, guard thresholds, any
    choice); test (nothing in training or selection looks at it: the numbers we publish)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split(examples: Examples, validation_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0) -> Split:
    """Seeded split, stratified by class, that never puts one group (leaf) in two splits.

    The data is cut into equal folds of the smaller fraction's size (StratifiedGroupKFold); the
    test split takes the first folds and validation the next, so both keep the class balance."""
    if not (validation_fraction > 0 and test_fraction > 0 and validation_fraction + test_fraction < 1):
        raise ValueError("validation and test fractions must be positive and leave images to train on")
    unit = min(validation_fraction, test_fraction)
    n_splits = folds_needed(validation_fraction, test_fraction)
    test_folds, validation_folds = max(1, round(test_fraction / unit)), max(1, round(validation_fraction / unit))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = [held for _, held in splitter.split(np.zeros(len(examples)), examples.labels, examples.groups)]
    test = np.sort(np.concatenate(folds[:test_folds]))
    validation = np.sort(np.concatenate(folds[test_folds : test_folds + validation_folds]))
    train = np.sort(np.concatenate(folds[test_folds + validation_folds :]))
    return Split(train, validation, test)


def folds_needed(validation_fraction: float, test_fraction: float) -> int:
    """How many folds `split` cuts the groups into: it needs at least this many groups."""
    return max(3, round(1 / min(validation_fraction, test_fraction)))


def describe(task: Task, examples: Examples) -> str:
    balance = ", ".join(f"{label}: {count}" for label, count in class_balance(task, examples.labels).items())
    sources = Counter(examples.sources)
    by_source = ", ".join(f"{source}: {count}" for source, count in sorted(sources.items()))
    return f"{len(examples)} images ({balance}; {by_source}; {len(set(examples.groups))} groups)"
