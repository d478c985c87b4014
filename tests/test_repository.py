"""Model repo I/O: source names, refusing models that carry code, clear errors for bad sources."""

from __future__ import annotations

import json

import keras
import pytest

from greenlens.core import repository


def test_hub_ids_and_revisions_are_parsed():
    assert repository.parse_hub_id("org/name") == ("org/name", None)
    assert repository.parse_hub_id("hf://org/name") == ("org/name", None)
    assert repository.parse_hub_id("org/name@v1.0") == ("org/name", "v1.0")
    assert repository.parse_hub_id("hf://org/my-model.v2@0123abc") == ("org/my-model.v2", "0123abc")
    assert repository.parse_hub_id("/a/b/c") is None
    assert repository.parse_hub_id("no-slash") is None


def test_model_with_code_is_refused(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    folder = tmp_path / "evil"
    keras.saving.save_model(keras.Model(inputs, outputs), str(folder), zipped=False)
    (folder / "labels.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(repository.ModelSourceError, match="Lambda"):
        repository.load(str(folder))


def test_a_model_saved_again_into_its_repo_replaces_only_the_keras_files(tmp_path):
    """`train.py views` saves a model into a repo that holds one already (and the empty `assets/` an earlier
    save left, which Keras itself refuses): the Keras files are replaced, the repo's other files stay."""
    import numpy as np

    first = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    repository.save_model(first, tmp_path)
    (tmp_path / "assets").mkdir(exist_ok=True)
    (tmp_path / "labels.json").write_text('["a", "b"]')
    second = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="ones")])
    repository.save_model(second, tmp_path)
    reloaded = keras.saving.load_model(str(tmp_path), compile=False)
    np.testing.assert_allclose(reloaded.predict_on_batch(np.ones((1, 3))), [[3.0, 3.0]])
    assert (tmp_path / "labels.json").read_text() == '["a", "b"]'
    assert not [path for path in tmp_path.parent.iterdir() if path.name.startswith(f".{tmp_path.name}.keras-")]


def test_folder_without_model_files_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(repository.ModelSourceError, match=r"model\.weights\.h5 is missing"):
        repository.load(str(tmp_path))


def test_unknown_source_is_explained(tmp_path):
    with pytest.raises(repository.ModelSourceError, match="neither a model folder nor a Hub repo id"):
        repository.load(str(tmp_path / "missing" / "folder"))


def test_hub_repo_missing_from_cache_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(repository.ModelSourceError, match="not in the huggingface_hub cache"):
        repository.fetch("someone/not-cached")


def test_readme_front_matter_is_a_valid_space_config():
    from huggingface_hub import metadata_load

    from .conftest import ROOT

    meta = metadata_load(ROOT / "README.md")
    from packaging.requirements import Requirement

    pinned = {Requirement(line).name: str(Requirement(line).specifier).lstrip("=")
              for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == pinned["gradio"]
    assert "mcp-server" in meta["tags"]
    assert meta["app_file"] == "app.py"
    assert (ROOT / meta["app_file"]).is_file()
    assert meta["license"]
    assert meta["title"]
    assert meta["emoji"]
    assert all(repository.parse_hub_id(model) for model in meta["models"])


def damage(folder, case):
    """A copy of the bundled cactus repo with one file truncated, broken or missing."""
    import shutil

    from .conftest import ROOT

    shutil.copytree(ROOT / "models" / "cactus", folder)
    truncate = {"weights": "model.weights.h5", "config": "config.json", "guard": "ood.npz", "tiles": "tiles.tflite"}
    if case in truncate:
        path = folder / truncate[case]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif case == "labels":
        (folder / "labels.json").write_text('["cactus", ')
    elif case == "task":
        (folder / "task.json").unlink()
    return folder


DAMAGES = {"weights": "model.weights.h5 is damaged or truncated", "config": "config.json is damaged",
           "guard": "ood.npz is damaged or truncated", "tiles": "tiles.tflite is damaged or truncated",
           "labels": "labels.json is damaged", "task": "task.json is missing"}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DAMAGES))
def test_damaged_model_repo_stops_the_app_naming_the_file(case, tmp_path, monkeypatch):
    import app

    folder = damage(tmp_path / "cactus", case)
    monkeypatch.setenv("CACTUS_MODEL", str(folder))
    with pytest.raises(SystemExit) as stopped:
        app.load_models("cactus")
    message = str(stopped.value.code)
    assert message.startswith("Cannot start: CACTUS_MODEL="), message
    assert DAMAGES[case] in message, message


@pytest.mark.slow
def test_damaged_model_repo_stops_the_command_line_naming_the_file(tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    folder = damage(tmp_path / "cactus", "weights")
    run = subprocess.run([sys.executable, "predict.py", str(folder), str(ROOT / "README.md"), "--out", str(tmp_path / "x.csv")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "model.weights.h5 is damaged or truncated" in run.stderr
    assert "Traceback" not in run.stderr
