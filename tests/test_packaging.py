"""The repository as an installable package: `pip install .` in a fresh virtual environment gives a
`greenlens` command; the pinned requirements.txt (the Space's) and pyproject's ranges agree; the import
arrows between the package's parts point one way, and a survey needs no TensorFlow."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from .conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What each part may import: core is the base, survey and training build on it, adapt on both (tiles cut by
# the survey's grid, trained by training's steps), publish on training (the card), cli on everything.
MAY_IMPORT = {"core": {"core"}, "survey": {"core", "survey"}, "training": {"core", "training"},
              "adapt": {"core", "survey", "training", "adapt"}, "publish": {"core", "training", "publish"},
              "cli": {"core", "survey", "training", "adapt", "publish", "cli"}}
NO_TENSORFLOW = {"tensorflow", "keras", "tf-keras", "tensorflow-cpu", "tf-nightly"}
# Runs a survey (the Python API and the command) where only the distributions named in argv[4] can be
# imported (stdlib aside): TensorFlow, Keras and whatever else this dev venv has are blocked, as on a worker
# with `pip install greenlens[survey]`. Prints what was loaded.
SURVEY_WITH_ONLY = """
import importlib.abc, json, sys
from importlib.metadata import packages_distributions
raster, model, out, allowed = sys.argv[1], sys.argv[2], sys.argv[3], set(json.loads(sys.argv[4]))
owners = packages_distributions()
class OnlyAllowed(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in owners and not {d.lower().replace("_", "-") for d in owners[top]} & allowed:
            raise ImportError(name + " is not installed on this survey worker")
sys.meta_path.insert(0, OnlyAllowed())
from greenlens.cli.main import main
from greenlens.survey import survey_raster
result = survey_raster(raster, model, out + "/api")
assert main(["survey", model, raster, "--out", out + "/cli"]) == 0
loaded = sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})
print(json.dumps({"tiles": result.summary["tiles"], "distributions": loaded}))
"""


def test_fresh_virtual_environment_gets_the_greenlens_command(tmp_path):
    """Installed with --no-deps: what is checked is the package, its command and its data files
    (the dependencies are the pinned set that `make install` resolves and the rest of the suite uses)."""
    import shutil

    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "greenlens", source / "greenlens", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "model_card.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    import greenlens

    version = subprocess.run([str(venv / "bin" / "greenlens"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"greenlens {greenlens.__version__}"
    survey = subprocess.run([str(venv / "bin" / "greenlens"), "survey", "--help"], capture_output=True, text=True, timeout=60)
    assert survey.returncode == 0, survey.stderr
    assert "usage: greenlens survey" in survey.stdout
    assert "--scheduler ADDRESS|local:N" in survey.stdout
    assert (venv / "share" / "greenlens" / "model_card.md").read_text() == (ROOT / "model_card.md").read_text()


def test_pinned_requirements_lie_in_the_packages_ranges():
    requirements = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    ranges = {Requirement(r).name.lower().replace("_", "-"): Requirement(r)
              for r in requirements if not r.startswith("greenlens[")}
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            pins[requirement.name.lower().replace("_", "-")] = next(iter(requirement.specifier)).version
    assert set(pins) == set(ranges)
    for name, version in pins.items():
        assert ranges[name].specifier.contains(version), (name, version, str(ranges[name].specifier))


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_the_parts_import_one_way():
    """core <- survey, core <- training <- publish, everything <- cli; imports inside functions count too."""
    wrong = []
    for path in sorted((ROOT / "greenlens").rglob("*.py")):
        part = path.relative_to(ROOT / "greenlens").parts
        if len(part) < 2:
            continue
        for module in _imports(path):
            if module.startswith("greenlens.") and module.split(".")[1] not in MAY_IMPORT[part[0]]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, wrong
    assert not list((ROOT / "greenlens").glob("[!_]*.py")), "modules belong in a part's folder"


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions that `requirements` pull in (markers evaluated for this machine)."""
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name == "greenlens":
            todo += [Requirement(r) for extra in requirement.extras for r in PROJECT["optional-dependencies"][extra]]
            continue
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            dependency = Requirement(line)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                todo.append(dependency)
    return seen


def test_the_survey_extra_brings_no_tensorflow():
    survey = _closure(PROJECT["dependencies"] + ["greenlens[survey]"])
    assert {"ai-edge-litert", "rasterio", "distributed", "pyogrio"} <= survey
    assert not survey & NO_TENSORFLOW, survey & NO_TENSORFLOW
    assert "tensorflow" in _closure(["greenlens[classify]"])


def test_a_survey_runs_where_tensorflow_cannot_be_imported(tmp_path):
    """What a Dask worker with `pip install greenlens[survey]` has: the survey, through the API and the
    command, runs with TensorFlow blocked, and every distribution it loaded is in the `[survey]` extra."""
    import numpy as np
    import rasterio
    from affine import Affine

    raster = tmp_path / "ortho.tif"
    pixels = np.random.default_rng(0).integers(60, 200, (3, 256, 256), dtype=np.uint8)
    with rasterio.open(raster, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8", crs="EPSG:32614",
                       transform=Affine(0.05, 0, 500_000.0, 0, -0.05, 2_000_000.0)) as out:
        out.write(pixels)
    # setuptools: the venv's site hook (_distutils_hack) loads before anything can be blocked.
    allowed = _closure(PROJECT["dependencies"] + ["greenlens[survey]"]) | {"greenlens", "setuptools"}
    run = subprocess.run([sys.executable, "-c", SURVEY_WITH_ONLY, str(raster), str(ROOT / "models" / "cactus"), str(tmp_path),
                          json.dumps(sorted(allowed))], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["tiles"] > 0
    assert (tmp_path / "cli" / "summary.json").is_file()
    assert (tmp_path / "api" / "cactus_tiles.gpkg").is_file()
    assert {"ai-edge-litert", "rasterio", "pyogrio"} <= set(report["distributions"])
    assert not set(report["distributions"]) & NO_TENSORFLOW
