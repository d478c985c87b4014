"""The command lines as people run them: what `--help` promises, what a run records, and that
neither `--help` nor pushing a folder pays for importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from greenlens.core.tasks import TASKS

from .conftest import ROOT

# Runs train.py as `python train.py ARGS` would, then reports which heavy modules were imported.
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['train.py', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_path('train.py', run_name='__main__')\n"
    "except SystemExit as exit:\n"
    "    print('EXIT', exit.code)\n"
    "print('IMPORTED', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
)


def probe(*args, env=None):
    import os

    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    return result.stdout, result.stderr


@pytest.mark.parametrize("task", list(TASKS))
def test_help_shows_the_tasks_recipe_without_loading_tensorflow(task):
    out, _ = probe(task, "--help")
    recipe = TASKS[task].recipe()
    assert "IMPORTED []" in out
    assert f"(recipe: {recipe.image_size})" in out
    assert f"(recipe: {recipe.fine_tune_after})" in out
    assert f"(recipe: {recipe.views})" in out
    assert f"(recipe: {recipe.fine_tune_epochs})" in out
    assert all(name in out for name in TASKS[task].recipes)


def test_unknown_recipe_is_refused_with_the_choices():
    result = subprocess.run([sys.executable, "train.py", "leaf", "--recipe", "resnet"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "mobilenet_v2" in result.stderr
    assert "inception_v3" in result.stderr


def test_recorded_command_has_no_machine_paths(tmp_path, monkeypatch):
    from greenlens.cli import train

    data_root = tmp_path / "datasets"
    monkeypatch.setattr(train, "DATA_DIR", data_root)
    monkeypatch.chdir(ROOT)
    argv = ["cactus", "--data", str(data_root / "aerial-cactus"), "--out", str(ROOT / "models" / "cactus"),
            "--ood-data", str(tmp_path / "elsewhere" / "leaves"), "--views", "2"]
    assert train.portable_command(argv) == (
        "python train.py cactus --data $DATA_DIR/aerial-cactus --out models/cactus --ood-data '<leaves>' --views 2")
    assert str(tmp_path) not in train.portable_command(argv)
    assert str(ROOT) not in train.portable_command(argv)
    assert train.portable_command(["leaf", "--out", "relative/out"]) == "python train.py leaf --out relative/out"


def test_export_writes_the_runtime_files_into_a_model_folder(tmp_path):
    import shutil

    from greenlens.core.litert import TILE_MODEL

    folder = tmp_path / "cactus"
    shutil.copytree(ROOT / "models" / "cactus", folder, ignore=shutil.ignore_patterns(TILE_MODEL, "classifier*"))
    result = subprocess.run([sys.executable, "train.py", "export", str(folder), "--data-root", str(tmp_path / "no-data")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "not measured: the data is not at hand" in result.stdout
    for name in (TILE_MODEL, "classifier.tflite"):
        assert Path(folder / name).read_bytes()[4:8] == b"TFL3"  # the flatbuffer's file identifier
    assert (folder / "classifier.onnx").stat().st_size > 1_000_000
