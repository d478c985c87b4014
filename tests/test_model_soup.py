"""benchmarks/model_soup.py writes the element-wise mean of real model repos' weights into a repo that loads and
answers, and refuses repos whose models differ in their variables."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from greenlens.core import repository
from greenlens.core.inference import Classifier

from .conftest import ROOT

pytestmark = pytest.mark.slow  # two model loads and a save in a subprocess: about 25 s


def soup(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/model_soup.py", *map(str, arguments)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_a_soup_is_the_mean_of_its_models_weights_and_answers(tmp_path):
    bundled = ROOT / "models" / "cactus"
    shifted = tmp_path / "shifted"
    shutil.copytree(bundled, shifted)
    model = repository.load(str(shifted)).model
    original = model.get_weights()
    model.set_weights([w + np.asarray(0.01, w.dtype) if w.dtype.kind == "f" else w for w in original])
    repository.save_model(model, shifted)

    made = soup(bundled, shifted, "--out", tmp_path / "soup")
    assert made.returncode == 0, made.stderr[-3000:]
    floats = sum(w.dtype.kind == "f" for w in original)
    assert f"{floats} of {len(original)} variables differed" in made.stdout
    averaged = repository.load(str(tmp_path / "soup")).model.get_weights()
    for mean, before in zip(averaged, original):
        expected = before + np.asarray(0.005, before.dtype) if before.dtype.kind == "f" else before
        np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-6)
    tile = np.full((32, 32, 3), 120, np.uint8)
    assert len(Classifier.load(str(tmp_path / "soup")).classify([tile])) == 1


def test_repos_of_other_architectures_make_no_soup(tmp_path):
    made = soup(ROOT / "models" / "cactus", ROOT / "models" / "leaf", "--out", tmp_path / "soup")
    assert made.returncode != 0
    assert "a soup needs one architecture" in made.stderr
    assert not (tmp_path / "soup").exists()
