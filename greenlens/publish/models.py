"""Publishing a model repo: the card and metrics.json name the repo they live in, and a few held-out test
images ride along (examples/, and the card's widget with what the model answered for each), taken from the
data folder at push time so that the model folders committed here hold no dataset images."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

from greenlens.core.repository import write_json
from greenlens.core.tasks import Task, get_task
from greenlens.publish.hub import PushError, replace_repo, repo_id_of
from greenlens.training.card import render_card

EXAMPLES_PER_CLASS = 2


def push(folder: Path, repo_id: str, *, private: bool = False, message: str | None = None,
         data_dir: Path | None = None):
    """Uploads a model repo folder to the Hub in one commit (creating the repo if needed); the repo's files
    become exactly the folder's plus, with `data_dir` (the folder of the Kaggle data), its examples.
    Returns huggingface_hub's CommitInfo."""
    folder = Path(folder)
    repo_id = repo_id_of(repo_id)
    if not (folder / "config.json").is_file() or not (folder / "model.weights.h5").is_file():
        raise PushError(f"{folder} is not a model repo folder (config.json and model.weights.h5 expected)")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / folder.name
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(".*"))
        task = get_task(json.loads((staged / "task.json").read_text())["name"])
        examples = add_examples(staged, task, Path(data_dir)) if data_dir else []
        record = retarget(staged, repo_id, widget=widget(examples, repo_id, task.name))
        return replace_repo(staged, repo_id, private=private, message=message or commit_message(record))


def add_examples(folder: Path, task: Task, data_dir: Path, per_class: int = EXAMPLES_PER_CLASS) -> list[dict]:
    """Copies the first `per_class` test images of each class into `folder/examples/<task>/`, listed in
    examples/examples.json as the app's own examples are (the app falls back to them). Returns the entries,
    each with the model's probabilities for it from test.csv; none where the images are not in `data_dir`."""
    root = task.data_root(data_dir)
    rows = list(csv.DictReader((folder / "test.csv").read_text().splitlines()))
    score_column = next(column for column in rows[0] if column.startswith("p_")) if rows else ""
    entries: list[dict] = []
    for label in task.labels:
        for number, row in enumerate([r for r in rows if r["label"] == label and (root / r["file"]).is_file()][:per_class]):
            name = f"{label.replace(' ', '-')}-{number + 1}{Path(row['file']).suffix.lower()}"
            target = folder / "examples" / task.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / row["file"], target)
            positive = float(row[score_column])
            others = {other: 1 - positive for other in task.labels if other != task.positive_label}
            scores = {task.positive_label: positive, **others}
            entries.append({"name": name, "label": label, "source": row["file"], "scores": scores})
    if entries:
        write_json(folder / "examples" / "examples.json", {task.name: entries})
    return entries


def widget(examples: list[dict], repo_id: str, task: str) -> list[dict]:
    """The card's `widget:` entries: each example by its URL in the repo, titled with its true class, and
    `output:` what the model answered for it (from test.csv)."""
    from huggingface_hub import constants

    return [
        {"src": f"{constants.ENDPOINT}/{repo_id}/resolve/main/examples/{task}/{example['name']}",
         "example_title": f"{example['label']} (held-out test image)",
         "output": [{"label": label, "score": round(score, 4)} for label, score in example["scores"].items()]}
        for example in examples
    ]


def retarget(folder: Path, repo_id: str, *, widget: list[dict] | None = None) -> dict:
    """Makes metrics.json and the card name `repo_id` (the card's load snippet then points at the repo it
    lives in) and puts `widget` on the card; returns the run record."""
    metrics_path = Path(folder) / "metrics.json"
    if not metrics_path.is_file():
        return {}
    record = json.loads(metrics_path.read_text())
    if record.get("repo_id") != repo_id or widget:
        record["repo_id"] = repo_id
        write_json(metrics_path, record)
        render_card(record, widget=widget).save(Path(folder) / "README.md")
    return record


def commit_message(record: dict) -> str:
    if not record:
        return "Upload model"
    task, metrics = record["task"], record["metrics"]
    auc = "" if metrics.get("roc_auc") is None else f", ROC AUC {metrics['roc_auc']:.5f}"
    return (
        f"Upload {task['title'].lower()} model: {task['backbone_display']} {task['image_size']}px, "
        f"test accuracy {metrics['accuracy']:.4f}{auc}"
    )
