"""Many images at once: a folder, a zip or a list of files in; one row per image out (label and
each class probability), unreadable files reported rather than fatal; Kaggle submission format."""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .data import IMAGE_SUFFIXES
from .images import ImageError, decode_image
from .tasks import Task, get_task


@dataclass
class BatchResult:
    labels: list[str]
    names: list[str] = field(default_factory=list)
    predictions: list = field(default_factory=list)  # inference.Prediction, one per name
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    @property
    def columns(self) -> list[str]:
        return ["file", "label", *(probability_column(label) for label in self.labels), "out_of_distribution"]

    def rows(self) -> list[dict]:
        return [
            {"file": name, "label": p.label, **{probability_column(label): p.probabilities[label] for label in self.labels},
             "out_of_distribution": p.out_of_distribution}
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


def list_inputs(inputs: list[Path]) -> list[tuple[str, object]]:
    """(name, source) for every image of the inputs: folders are walked, zips read in memory."""
    items = []
    for path in map(Path, inputs):
        if path.is_dir():
            items += [(str(p.relative_to(path)), p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                items += [
                    (info.filename, archive.read(info))
                    for info in archive.infolist()
                    if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_SUFFIXES
                    and not Path(info.filename).name.startswith(".")
                ]
        else:
            items.append((path.name, path))
    return items


def classify_many(classifier, items, progress: bool = True) -> BatchResult:
    """Decodes and classifies in chunks, so a folder of any size fits in memory."""
    result = BatchResult(classifier.labels)
    pending_names, pending_images = [], []

    def flush():
        if pending_images:
            result.predictions.extend(classifier.classify(pending_images))
            result.names.extend(pending_names)
            pending_names.clear()
            pending_images.clear()

    for name, source in tqdm(items, desc="Classifying", unit="img", disable=not progress):
        try:
            pending_images.append(decode_image(source))
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
    result = classify_many(classifier, list_inputs(inputs), progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if task is not None:
        result.write_kaggle_submission(out, task)
    else:
        result.write_csv(out)
    return result
