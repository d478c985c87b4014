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
    model: "keras.Model"
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


def save_model(model: "keras.Model", folder: Path) -> None:
    import keras

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
    import keras

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


class PushError(RuntimeError):
    """A push the Hub refused or could not receive; the message says what to set."""


def push(folder: Path, repo_id: str, private: bool = False, message: str | None = None):
    """Uploads a model repo folder to the Hub in one commit, creating the repo if needed.

    The card and metrics.json are rewritten to name `repo_id`, so the card's load snippet points
    at the repo it lives in. The token comes from HF_TOKEN or `hf auth login`; it is never printed.
    Returns huggingface_hub's CommitInfo.
    """
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if parse_hub_id(repo_id) is None or "@" in repo_id:
        raise PushError(f"{repo_id!r} is not a Hub repo id of the form org/name")
    repo_id = parse_hub_id(repo_id)[0]
    if not (folder / "config.json").is_file() or not (folder / "model.weights.h5").is_file():
        raise PushError(f"{folder} is not a model repo folder (config.json and model.weights.h5 expected)")
    if get_token() is None:
        raise PushError("No Hugging Face token found: set HF_TOKEN to a token with write access, or run `hf auth login`")
    api = HfApi(library_name="greenlens")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / folder.name
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(".*"))
        record = retarget(staged, repo_id)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            return api.upload_folder(
                repo_id=repo_id, folder_path=staged, commit_message=message or commit_message(record)
            )
        except HfHubHTTPError as error:
            status = getattr(error.response, "status_code", None)
            if status in (401, 403):
                raise PushError(
                    f"The Hub refused the push to {repo_id} (HTTP {status}): set HF_TOKEN to a token with write "
                    f"access to {repo_id.split('/')[0]}, or run `hf auth login`"
                ) from None
            raise PushError(f"The Hub refused the push to {repo_id}: {str(error).strip().splitlines()[0]}") from None
        except Exception as error:
            if type(error).__module__.split(".")[0].startswith("httpx"):
                raise PushError(f"The Hub at {constants.ENDPOINT} could not be reached: {error}") from None
            raise


def retarget(folder: Path, repo_id: str) -> dict:
    """Makes metrics.json and the card name `repo_id`; returns the run record."""
    from .card import render_card

    metrics_path = Path(folder) / "metrics.json"
    if not metrics_path.is_file():
        return {}
    record = json.loads(metrics_path.read_text())
    if record.get("repo_id") != repo_id:
        record["repo_id"] = repo_id
        write_json(metrics_path, record)
        render_card(record).save(Path(folder) / "README.md")
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
