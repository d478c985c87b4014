"""The demo as a Hugging Face Space, in one command: the app, the package, the Space's front matter (the
README), the pinned requirements, the example images copied from the data folder at deploy time (never
committed here), and either the bundled models or Space variables that name Hub model repos."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from greenlens.core.examples import LISTING, copy_examples, example_files, listing
from greenlens.core.tasks import TASKS
from greenlens.publish.hub import PushError, replace_repo, repo_id_of

# The checkout this package runs from: what a Space is built of.
CHECKOUT = Path(__file__).resolve().parents[2]
SPACE_FILES = ("app.py", "README.md", "requirements.txt", "model_card.md")
# The package, and what the README links to (its screenshot, the results in full) so that its links work on the Space.
SPACE_FOLDERS = ("greenlens", "docs")
# Never uploaded: caches, editor and build leftovers, half-written model folders.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.egg-info")


def stage(folder: Path, *, checkout: Path = CHECKOUT, hub_models: dict[str, str] | None = None,
          data_dir: Path | None = None) -> int:
    """Writes the Space's files into `folder`; returns how many example images it holds. With
    `hub_models` ({task: repo id}) the models stay out of the Space, which pulls them at start."""
    for name in SPACE_FILES:
        shutil.copy2(checkout / name, folder / name)
    for name in SPACE_FOLDERS:
        shutil.copytree(checkout / name, folder / name, ignore=IGNORED)
    examples = folder / "examples"
    examples.mkdir()
    shutil.copy2(checkout / "examples" / LISTING.name, examples / LISTING.name)
    for task in TASKS:  # the ones `make` already copied into the checkout, then the rest from the data folder
        for path, _ in example_files(task, checkout / "examples"):
            (examples / task).mkdir(exist_ok=True)
            shutil.copy2(path, examples / task / path.name)
    if data_dir:
        copy_examples(data_dir, examples)
    copied = sum(len(example_files(task, examples)) for task in TASKS)
    if not hub_models:
        for task in TASKS:
            shutil.copytree(checkout / "models" / task, folder / "models" / task, ignore=IGNORED)
    return copied


def deploy(space: str, *, data_dir: Path | None, hub_models: dict[str, str] | None = None, private: bool = False,
           checkout: Path = CHECKOUT, message: str | None = None) -> tuple[str, int]:
    """Creates or updates the Space `space` (org/name) so that it holds exactly this checkout's Space files;
    files deleted here are deleted there in the same commit. Returns (the Space's URL, example images sent)."""
    from huggingface_hub import constants

    space = repo_id_of(space)
    if hub_models and set(hub_models) != set(TASKS):
        raise PushError(f"--models hub needs a Hub repo for every task: {', '.join(sorted(TASKS))}")
    expected = sum(len(entries) for entries in listing(checkout / "examples").values())
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        copied = stage(staged, checkout=checkout, hub_models=hub_models, data_dir=data_dir)
        variables = {TASKS[task].model_variable: repo for task, repo in (hub_models or {}).items()}
        where = "Hub models " + ", ".join(variables.values()) if variables else "the bundled models"
        replace_repo(staged, space, repo_type="space", space_sdk="gradio", private=private, variables=variables,
                     message=message or f"Deploy greenlens with {where} and {copied} of {expected} example images")
    return f"{constants.ENDPOINT}/spaces/{space}", copied
