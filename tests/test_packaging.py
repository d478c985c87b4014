"""The repository as an installable package: `pip install .` in a fresh virtual environment gives a
`greenlens` command; the pinned requirements.txt (the Space's) and pyproject's ranges agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from .conftest import ROOT


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
    assert version.returncode == 0 and version.stdout.strip() == f"greenlens {greenlens.__version__}"
    survey = subprocess.run([str(venv / "bin" / "greenlens"), "survey", "--help"], capture_output=True, text=True, timeout=60)
    assert survey.returncode == 0, survey.stderr
    assert "usage: greenlens survey" in survey.stdout and "--scheduler ADDRESS|local:N" in survey.stdout
    assert (venv / "share" / "greenlens" / "model_card.md").read_text() == (ROOT / "model_card.md").read_text()


def test_pinned_requirements_lie_in_the_packages_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(r).name.lower().replace("_", "-"): Requirement(r)
              for r in project["dependencies"] + project["optional-dependencies"]["app"]}
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            pins[requirement.name.lower().replace("_", "-")] = next(iter(requirement.specifier)).version
    assert set(pins) == set(ranges)
    for name, version in pins.items():
        assert ranges[name].specifier.contains(version), (name, version, str(ranges[name].specifier))
