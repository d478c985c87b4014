"""Aerial survey and batch prediction: tiles are classified exactly as single tiles are."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from greenlens import survey
from greenlens.images import decode_image
from greenlens.inference import Classifier
from greenlens.litert import LiteRTModel

from .conftest import ROOT


@pytest.fixture(scope="module")
def cactus():
    return Classifier.load(str(ROOT / "models" / "cactus"))


@pytest.fixture(scope="module")
def mosaic(cactus_dir, tmp_path_factory):
    """A 12 x 10 grid of labelled real tiles, stitched into one 384 x 320 aerial image."""
    rows = list(csv.DictReader(open(cactus_dir / "train.csv")))[-120:]
    tiles = [decode_image(cactus_dir / "train" / row["id"]) for row in rows]
    image = np.concatenate([np.concatenate(tiles[r * 12 : (r + 1) * 12], axis=1) for r in range(10)], axis=0)
    path = tmp_path_factory.mktemp("mosaic") / "mosaic.png"
    Image.fromarray(image).save(path)
    return path, image, tiles, np.array([row["has_cactus"] == "1" for row in rows])


def test_cut_tiles_positions_and_strides():
    image = np.arange(70 * 100 * 3, dtype=np.uint8).reshape(70, 100, 3)
    tiles, positions = survey.cut_tiles(image)
    assert tiles.shape == (2 * 3, 32, 32, 3)
    assert positions.tolist() == [[0, 0], [32, 0], [64, 0], [0, 32], [32, 32], [64, 32]]
    assert np.array_equal(tiles[4], image[32:64, 32:64])
    tiles, positions = survey.cut_tiles(image, stride=16)
    assert len(tiles) == 3 * 5 and np.array_equal(tiles[-1], image[32:64, 64:96])
    with pytest.raises(survey.SurveyError, match="20 x 10 pixels, smaller than one 32 x 32 tile"):
        survey.cut_tiles(np.zeros((10, 20, 3), np.uint8))


def test_survey_agrees_with_single_tile_classification(cactus, mosaic):
    _, image, tiles, labels = mosaic
    result = survey.survey(cactus.tile_classifier, image, cactus.labels, "cactus")
    single = np.array([cactus.model.predict_on_batch(t[None].astype(np.float32))[0, 0] for t in tiles])
    np.testing.assert_allclose(result.probabilities, single, atol=1e-4)
    assert ((result.probabilities >= 0.5) == labels).mean() == ((single >= 0.5) == labels).mean() >= 0.95
    assert result.summary == {"tiles": 120, "cactus_tiles": int((single >= 0.5).sum()),
                              "cactus_fraction": round(float((single >= 0.5).mean()), 6), "threshold": 0.5}
    shown = survey.overlay(image, result)
    assert shown.shape == image.shape and shown.dtype == np.uint8


def test_surveys_run_on_the_repos_litert_tile_model_with_keras_numbers(cactus, mosaic):
    _, _, tiles, _ = mosaic
    many = np.concatenate([tiles] * 5).astype(np.float32)  # 600 tiles: nine full batches of 64 and a padded one
    assert isinstance(cactus.tile_classifier, LiteRTModel)
    np.testing.assert_allclose(cactus.tile_classifier(many), cactus.model.predict(many, batch_size=256, verbose=0), atol=1e-4)


def test_survey_command_line(mosaic, tmp_path):
    path, _, _, labels = mosaic
    out = tmp_path / "survey"
    result = subprocess.run([sys.executable, "predict.py", "models/cactus", str(path), "--survey", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiles"] == 120 and abs(summary["cactus_tiles"] - labels.sum()) <= 6
    rows = list(csv.DictReader(open(out / "tiles.csv")))
    assert len(rows) == 120 and rows[13] == {"x": "32", "y": "32", "probability": rows[13]["probability"]}
    assert Image.open(out / "overlay.png").size == (384, 320)


def test_batch_and_kaggle_submission_command_line(cactus_dir, tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    names = sorted(p.name for p in (cactus_dir / "test").iterdir())[:12]
    for name in names:
        (folder / name).write_bytes((cactus_dir / "test" / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    submission = tmp_path / "submission.csv"
    result = subprocess.run([sys.executable, "predict.py", "models/cactus", str(folder), "--kaggle-submission", "--out", str(submission)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Skipped 1 unreadable file(s)" in result.stderr and "broken.jpg" in result.stderr
    header = (cactus_dir / "sample_submission.csv").read_text().splitlines()[0]
    lines = submission.read_text().splitlines()
    assert lines[0] == header == "id,has_cactus"
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == names
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)

    table = tmp_path / "predictions.csv"
    result = subprocess.run([sys.executable, "predict.py", "models/cactus", str(folder), "--out", str(table)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(table)))
    assert len(rows) == 12 and set(rows[0]) == {"file", "label", "p_cactus", "p_no_cactus", "out_of_distribution"}
    for row in rows:
        expected = "not an aerial tile" if row["out_of_distribution"] == "True" else (
            "cactus" if float(row["p_cactus"]) >= 0.5 else "no cactus")
        assert row["label"] == expected
    assert sum(row["out_of_distribution"] == "True" for row in rows) <= 1  # real competition tiles
