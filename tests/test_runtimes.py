"""The bundled repos' files for other runtimes, each run with its own runtime (ai-edge-litert,
onnxruntime) on real images, agree with Keras: the same labels, and probabilities within 1e-4 for
float32 files (0.05 for int8, which ships only where the test split allowed it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from greenlens.core import repository, runtimes
from greenlens.core.examples import example_files
from greenlens.core.images import decode_image
from greenlens.core.litert import LiteRTModel

from .conftest import ROOT

TOLERANCE = {runtimes.LITERT: 1e-4, runtimes.ONNX: 1e-4, runtimes.LITERT_INT8: 0.05}


@pytest.fixture(scope="module", params=["leaf", "cactus"])
def bundled(request):
    files = example_files(request.param)
    if not files:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    repo = repository.load(str(ROOT / "models" / request.param))
    images = [decode_image(path) for path, _ in files]
    inputs = runtimes.at_input_size(repo.model, images)
    return repo, inputs, np.asarray(repo.model.predict_on_batch(inputs))


def test_each_runtime_file_agrees_with_keras_on_real_images(bundled):
    repo, inputs, keras_probabilities = bundled
    shipped = [name for name in TOLERANCE if (repo.path / name).is_file()]
    assert runtimes.LITERT in shipped
    assert runtimes.ONNX in shipped
    for name in shipped:
        run = runtimes.OnnxModel(repo.path / name) if name.endswith(".onnx") else LiteRTModel(repo.path / name)
        probabilities = run(inputs)
        assert (probabilities.argmax(axis=1) == keras_probabilities.argmax(axis=1)).all(), name
        np.testing.assert_allclose(probabilities, keras_probabilities, atol=TOLERANCE[name], err_msg=name)


def test_card_reports_each_format_as_measured(bundled):
    repo, inputs, _ = bundled
    record = json.loads((repo.path / "metrics.json").read_text())["runtimes"]
    assert record["side"] == inputs.shape[1]
    assert record["test_images"] == record_test_count(repo)
    formats = record["formats"]
    assert formats[runtimes.LITERT]["test_accuracy"] == formats["Keras"]["test_accuracy"]
    int8 = formats.get(runtimes.LITERT_INT8)
    if int8 is not None:  # shipped exactly when it is within 0.1 point of float32
        within = int8["test_accuracy"] >= formats[runtimes.LITERT]["test_accuracy"] - runtimes.INT8_TOLERANCE
        assert (repo.path / runtimes.LITERT_INT8).is_file() == within
    card = (repo.path / "README.md").read_text()
    assert "## Run it elsewhere" in card
    assert f"{record['side']} x {record['side']}" in card


def record_test_count(repo) -> int:
    return len((repo.path / "test.csv").read_text().splitlines()) - 1
