"""Model repositories: the folder a training writes, the Hub pushes, and the app and Keras load.

Layout (the Keras Hub layout plus our records): config.json, metadata.json, model.weights.h5,
README.md (the card), labels.json, task.json, metrics.json, validation.csv and the plots.
`keras.saving.load_model(folder)` and `keras.saving.load_model("hf://org/name")` both read it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras

HUB_ID = re.compile(r"^(?:hf://)?(?P<repo_id>[\w.-]+/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")


class ModelSourceError(RuntimeError):
    """A model folder or Hub repo that cannot be used; the message says what to fix."""


@dataclass
class ModelRepo:
    model: keras.Model
    labels: list[str]
    task: dict
    metrics: dict
    path: Path
    source: str  # where it came from, for people: "models/leaf" or "hf://org/name@<commit>"


@contextmanager
def atomic_directory(destination: Path):
    """Yields an empty folder beside `destination` that replaces it only if the block completes.

    An interrupted or failed run leaves whatever was at `destination` untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = None
    if destination.exists():
        previous = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
        os.rename(destination, previous / destination.name)
    os.rename(staging, destination)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def save_model(model: keras.Model, folder: Path) -> None:
    keras.saving.save_model(model, str(folder), zipped=False)


def write_json(path: Path, value) -> None:
    Path(path).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def parse_hub_id(source: str) -> tuple[str, str | None] | None:
    """`org/name`, `hf://org/name` or either with `@revision` -> (repo_id, revision)."""
    match = HUB_ID.match(source.strip())
    return (match["repo_id"], match["revision"]) if match else None


def fetch(source: str) -> tuple[Path, str]:
    """A local model folder, or a Hub repo downloaded into the huggingface_hub cache."""
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser(), source
    parsed = parse_hub_id(source)
    if parsed is None:
        raise ModelSourceError(
            f"{source!r} is neither a model folder nor a Hub repo id (org/name, hf://org/name, org/name@revision)"
        )
    repo_id, revision = parsed
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = Path(snapshot_download(repo_id, revision=revision, library_name="greenlens"))
    except RevisionNotFoundError:
        raise ModelSourceError(f"Hub repo {repo_id} has no revision {revision!r}") from None
    except GatedRepoError:
        raise ModelSourceError(f"Hub repo {repo_id} is gated: accept its terms and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise ModelSourceError(
            f"Hub repo {repo_id} was not found, or it is private: check the name, or set HF_TOKEN "
            "(or run `hf auth login`) with access to it"
        ) from None
    except LocalEntryNotFoundError:
        raise ModelSourceError(
            f"Hub repo {repo_id} could not be downloaded (Hub unreachable or HF_HUB_OFFLINE=1) and is not in "
            "the huggingface_hub cache: connect, or point the variable at a local model folder"
        ) from None
    except HfHubHTTPError as error:
        raise ModelSourceError(f"the Hub refused {repo_id}: {error}") from None
    commit = path.name
    return path, f"hf://{repo_id}@{commit[:12]}"


def load(source: str) -> ModelRepo:
    """Loads a model repo; `safe_mode` refuses models that would run code (Lambda layers)."""
    path, description = fetch(source)
    for name in ("config.json", "model.weights.h5", "labels.json"):
        if not (path / name).is_file():
            raise ModelSourceError(f"{description} is not a model repo: {name} is missing")
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "lambda" in str(error).lower():
            raise ModelSourceError(f"{description} contains code (a Lambda layer) and was refused: {error}") from None
        raise ModelSourceError(f"{description} could not be loaded by Keras: {error}") from None
    labels = json.loads((path / "labels.json").read_text())
    task = json.loads((path / "task.json").read_text()) if (path / "task.json").is_file() else {}
    metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
    return ModelRepo(model, labels, task, metrics, path, description)
