"""Many images at once: a folder, a zip or a list of files in; one row per image out (label and
each class probability), unreadable files reported rather than fatal; Kaggle submission format."""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from greenlens.core.images import IMAGE_SUFFIXES, SERVING_SIDE, ImageError, decode_image
from greenlens.core.tasks import Task, get_task


@dataclass
class BatchResult:
    labels: list[str]
    names: list[str] = field(default_factory=list)
    predictions: list = field(default_factory=list)  # inference.Prediction, one per name
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    @property
    def columns(self) -> list[str]:
        probabilities = [probability_column(label) for label in self.labels]
        return ["file", "label", *probabilities, "out_of_distribution", "too_poor_to_judge"]

    def rows(self) -> list[dict]:
        """`label` is the answer (a class, the out-of-distribution label or why the image is too poor
        to judge); `out_of_distribution` and `too_poor_to_judge` say which kind of refusal it is."""
        return [
            {"file": name, "label": p.label, **{probability_column(label): p.probabilities[label] for label in self.labels},
             "out_of_distribution": p.out_of_distribution, "too_poor_to_judge": p.problem is not None}
            for name, p in zip(self.names, self.predictions)
        ]

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            for row in self.rows():
                writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})

    def write_kaggle_submission(self, path: Path, task: Task) -> None:
        """The task's id and label columns with the positive label's probability, like the
        competition's sample_submission.csv (`id,has_cactus` for the cactus task)."""
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([task.csv_id_column, task.csv_label_column])
            for name, p in zip(self.names, self.predictions):
                writer.writerow([Path(name).name, f"{p.probabilities[task.positive_label]:.6f}"])


def probability_column(label: str) -> str:
    """`p_leaf_scorch`: the CSV column of a label's probability (here and in validation.csv)."""
    return f"p_{label.replace(' ', '_')}"


@dataclass(frozen=True)
class ZipLimits:
    """What one zip may hold: zips are read entry by entry, and these caps stop a zip bomb (a few
    megabytes that expand to gigabytes) or a zip of countless tiny files before they cost memory."""

    entries: int = 10_000  # image entries
    entry_bytes: int = 32 * 2**20  # uncompressed, per entry
    total_bytes: int = 512 * 2**20  # uncompressed, all entries together


def iter_inputs(inputs: list[Path], limits: ZipLimits = ZipLimits()):
    """(name, source) for every image of the inputs, one at a time: folders are walked, zip entries
    read when their turn comes. A source that cannot be had is an ImageError saying why."""
    for path in map(Path, inputs):
        if path.is_dir():
            yield from ((str(p.relative_to(path)), p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
        elif zipfile.is_zipfile(path):
            yield from _zip_entries(path, limits)
        else:
            yield path.name, path


def _zip_entries(path: Path, limits: ZipLimits):
    read = count = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = Path(info.filename).name
            if info.is_dir() or Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            count += 1
            if count > limits.entries:
                yield path.name, ImageError(f"{path.name} holds more than {limits.entries:,} images, the most one zip may "
                                            "hold: the rest were not read.")
                return
            with archive.open(info) as member:
                data = member.read(min(limits.entry_bytes, limits.total_bytes - read) + 1)
            read += len(data)
            if len(data) > limits.entry_bytes:
                yield info.filename, ImageError(f"{info.filename} expands to more than {limits.entry_bytes // 2**20} MB, "
                                                "the most one file in a zip may.")
            elif read > limits.total_bytes:
                yield path.name, ImageError(f"{path.name} expands to more than {limits.total_bytes // 2**20} MB, the most "
                                            "one zip may: the rest were not read.")
                return
            else:
                yield info.filename, data


def classify_many(classifier, items, progress: bool = True) -> BatchResult:
    """Decodes and classifies in chunks, so a folder of any size fits in memory."""
    result = BatchResult(classifier.labels)
    pending_names: list[str] = []
    pending_images: list[np.ndarray] = []

    def flush():
        if pending_images:
            result.predictions.extend(classifier.classify(pending_images))
            result.names.extend(pending_names)
            pending_names.clear()
            pending_images.clear()

    for name, source in tqdm(items, desc="Classifying", unit="img", disable=not progress):
        try:
            if isinstance(source, ImageError):
                raise source
            pending_images.append(decode_image(source, max_side=SERVING_SIDE))
            pending_names.append(name)
        except ImageError as error:
            result.failures.append((name, str(error)))
        if len(pending_images) >= 1024:
            flush()
    flush()
    return result


def classify_to_csv(classifier, inputs: list[Path], out: Path, kaggle_submission: bool = False,
                    progress: bool = True) -> BatchResult:
    """Classifies image files, folders and zips and writes one CSV row per readable image to `out`
    (or the task's Kaggle submission); unreadable files are in the result's `failures`."""
    task = get_task(classifier.repo.task["name"]) if kaggle_submission else None
    if task is not None and not task.csv_label_column:
        raise ValueError(f"the {task.name} task has no Kaggle submission format")
    result = classify_many(classifier, iter_inputs(inputs), progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if task is not None:
        result.write_kaggle_submission(out, task)
    else:
        result.write_csv(out)
    return result
