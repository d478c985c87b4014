"""`greenlens deploy` as a user runs it, against the local Hub stand-in: the Space it makes is downloaded
into a fresh folder and its app started from there, answering /classify_leaf and showing example images;
a second deploy removes a file deleted locally; `--models hub` makes a Space that pulls model repos pushed
with their examples and shows those examples."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import urllib.request

import pytest
from gradio_client import Client, handle_file

from greenlens.core.examples import example_files
from greenlens.publish.space import SPACE_FILES, SPACE_FOLDERS

from .apprunner import running_app
from .conftest import DATA_DIR, ROOT
from .hubserver import TOKEN
from .test_mcp import list_and_call


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of this checkout's Space files: the tests change it without touching the real one."""
    if not (example_files("leaf") or DATA_DIR.is_dir()):
        pytest.skip(f"no example images: neither examples/ copied in nor {DATA_DIR} present (set DATA_DIR)")
    folder = tmp_path_factory.mktemp("checkout")
    for name in SPACE_FILES:
        shutil.copy2(ROOT / name, folder / name)
    for name in ("examples", "models", *SPACE_FOLDERS):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    return folder


def run(args, env, *, cwd=ROOT, timeout=300):
    environment = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")} | env
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def download(space: str, folder, env) -> None:
    """What Spaces does before it starts the app: the Space repo's files, into an empty folder."""
    run(["-c", f"from huggingface_hub import snapshot_download\n"
               f"snapshot_download({space!r}, repo_type='space', local_dir={str(folder)!r})"], env)


def gallery_files(url: str, task: str) -> list[str]:
    config = json.loads(urllib.request.urlopen(url + "config").read())
    galleries = [c for c in config["components"] if c.get("props", {}).get("elem_id") == f"examples-{task}"]
    return [item["image"]["path"] for gallery in galleries for item in gallery["props"]["value"]]


def test_deploy_then_the_downloaded_space_serves_and_shows_examples(hub, hf_env, checkout, tmp_path):
    (checkout / "greenlens" / "core" / "obsolete.py").write_text('"""removed before the second deploy"""\n')
    output = run(["-m", "greenlens.cli.main", "deploy", "tester/demo", "--examples-from", str(DATA_DIR)], hf_env, cwd=checkout)
    assert f"{hub.url}/spaces/tester/demo" in output
    assert TOKEN not in output
    files = hub.store.files("spaces/tester/demo", hub.store.resolve("spaces/tester/demo", "main"))
    assert {"app.py", "README.md", "requirements.txt", "greenlens/core/obsolete.py", "models/leaf/model.weights.h5",
            "docs/results.md", "docs/screenshot.png"} <= set(files)
    assert any(name.startswith("examples/leaf/") for name in files)
    assert hub.store.settings("spaces/tester/demo")["sdk"] == "gradio"
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in files)

    space = tmp_path / "space"
    download("tester/demo", space, hf_env)
    # What Spaces set: Gradio then names the MCP tools after the Space, as the README says.
    with running_app(env={**hf_env, "SYSTEM": "spaces", "SPACE_ID": "tester/demo"}, folder=space) as (url, _):
        leaf = example_files("leaf", space / "examples")
        assert leaf, "the Space holds no leaf examples"
        path, expected = leaf[0]
        assert Client(url, verbose=False).predict(handle_file(str(path)), api_name="/classify_leaf")["label"] == expected
        assert len(gallery_files(url, "leaf")) == len(leaf)
        tools, _ = asyncio.run(list_and_call(url, []))
        assert {"demo_classify_leaf", "demo_classify_cactus", "demo_survey", "demo_survey_files"} <= set(tools), sorted(tools)

    (checkout / "greenlens" / "core" / "obsolete.py").unlink()
    run(["-m", "greenlens.cli.main", "deploy", "tester/demo"], hf_env, cwd=checkout)
    files = hub.store.files("spaces/tester/demo", hub.store.resolve("spaces/tester/demo", "main"))
    assert "greenlens/core/obsolete.py" not in files
    assert "app.py" in files


def test_a_space_of_hub_models_shows_the_model_repos_examples(hub, hf_env, checkout, tmp_path):
    """Model repos pushed with held-out examples and a widget; a Space deployed with --models hub and no
    data folder has no example images of its own, and shows the model repos' instead."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set DATA_DIR): the pushed examples come from it")
    for task in ("leaf", "cactus"):
        run(["train.py", "push", str(ROOT / "models" / task), f"tester/{task}-classifier", "--examples-from", str(DATA_DIR)],
            hf_env)
        files = hub.store.files(f"tester/{task}-classifier", hub.store.resolve(f"tester/{task}-classifier", "main"))
        assert f"examples/{task}/examples.json" not in files
        assert "examples/examples.json" in files
        card = hub.store.blob(f"tester/{task}-classifier", files["README.md"]).decode()
        assert "widget:" in card
        assert f"{hub.url}/tester/{task}-classifier/resolve/main/examples/{task}/" in card
    bare = tmp_path / "bare"
    shutil.copytree(checkout, bare, ignore=shutil.ignore_patterns("leaf", "cactus"))  # no examples, no models
    run(["-m", "greenlens.cli.main", "deploy", "tester/hub-demo", "--models", "hub", "--examples-from", str(tmp_path / "none")],
        hf_env, cwd=bare)
    files = hub.store.files("spaces/tester/hub-demo", hub.store.resolve("spaces/tester/hub-demo", "main"))
    assert not any(name.startswith(("models/", "examples/leaf", "examples/cactus")) for name in files)
    variables = {key: value["value"] for key, value in hub.store.settings("spaces/tester/hub-demo")["variables"].items()}
    assert variables == {"LEAF_MODEL": "tester/leaf-classifier", "CACTUS_MODEL": "tester/cactus-classifier"}

    space = tmp_path / "space"
    download("tester/hub-demo", space, hf_env)
    with running_app(env={**hf_env, **variables}, folder=space) as (url, _):  # Spaces pass variables as environment
        shown = gallery_files(url, "leaf")
        # The model repo's (named by class and number), not the checkout's examples (named e.g. healthy-color-1.jpg).
        assert sorted(path.rsplit("/", 1)[1] for path in shown) == [
            "healthy-1.jpg", "healthy-2.jpg", "leaf-scorch-1.jpg", "leaf-scorch-2.jpg"], shown
        answer = Client(url, verbose=False).predict(handle_file(shown[0]), api_name="/classify_leaf")
        assert answer["label"] in {"healthy", "leaf scorch"}
