"""Model repositories: the folder a training writes, the Hub pushes, and the app and Keras load.

Layout (the Keras Hub layout plus our records): config.json, metadata.json, model.weights.h5,
README.md (the card), labels.json, task.json, metrics.json, test.csv and validation.csv (each
held-out image with its probability), ood.npz (the guard), the plots, and for survey models
tiles.tflite (the LiteRT tile model).
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Keras (and TensorFlow) load only where a model does: pushing a folder needs neither
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
    """The Keras files (config.json, metadata.json, model.weights.h5) into `folder`, replacing those of a repo
    already there: Keras writes them into an empty folder beside it, and each then replaces its namesake (Keras
    refuses a folder that holds an `assets/` of an earlier save)."""
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.keras-", dir=folder.parent) as staging:
        keras.saving.save_model(model, staging, zipped=False)
        for path in Path(staging).iterdir():
            if path.is_file():
                os.replace(path, folder / path.name)


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


def read_json(folder: Path, name: str, description: str | None = None, default=None):
    """A JSON file of a model repo; a missing or damaged one is a ModelSourceError that names it.
    With a `default`, a missing file gives the default."""
    path = Path(folder) / name
    description = description or str(folder)
    if not path.is_file():
        if default is not None:
            return default
        raise ModelSourceError(f"{description} is not a complete model repo: {name} is missing")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelSourceError(
            f"{description}: {name} is damaged (not valid JSON: {error}); download or train it again"
        ) from None


def damaged(description: str, name: str, error: Exception) -> ModelSourceError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ModelSourceError(f"{description}: {name} is damaged or truncated ({first_line}); download or train it again")


def load_guard(folder: Path, description: str, name: str = "ood.npz"):
    """The repo's out-of-distribution guard (`name`: ood.npz, the classifier's), or None where it has none."""
    from greenlens.core.ood import DistributionGuard

    try:
        return DistributionGuard.load(folder, name)
    except Exception as error:
        raise damaged(description, name, error) from None


def load(source: str) -> ModelRepo:
    """Loads a model repo; `safe_mode` refuses models that would run code (Lambda layers). A missing
    or damaged file is a ModelSourceError that names it."""
    import h5py
    import keras

    path, description = fetch(source)
    read_json(path, "config.json", description)
    if not (path / "model.weights.h5").is_file():
        raise ModelSourceError(f"{description} is not a complete model repo: model.weights.h5 is missing")
    try:  # Keras reports a truncated weights file with an error of its own (UnboundLocalError)
        h5py.File(path / "model.weights.h5", "r").close()
    except OSError as error:
        raise damaged(description, "model.weights.h5", error) from None
    labels = read_json(path, "labels.json", description)
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "lambda" in str(error).lower():
            raise ModelSourceError(f"{description} contains code (a Lambda layer) and was refused: {error}") from None
        raise ModelSourceError(f"{description} could not be loaded by Keras: {error}") from None
    except Exception as error:
        raise damaged(description, "model.weights.h5", error) from None
    task = read_json(path, "task.json", description, default={})
    metrics = read_json(path, "metrics.json", description, default={})
    return ModelRepo(model, labels, task, metrics, path, description)
