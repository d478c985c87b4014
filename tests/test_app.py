"""The real app in a subprocess, called over HTTP with gradio_client as programs call it."""

from __future__ import annotations

import io
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from greenlens.core.examples import example_files

from .conftest import ROOT


def require_examples(task):
    files = example_files(task)
    if not files:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    return files


@pytest.mark.parametrize("task", ["leaf", "cactus"])
def test_endpoint_classifies_the_examples(client, task):
    for path, expected in require_examples(task):
        result = client.predict(handle_file(str(path)), api_name=f"/classify_{task}")
        assert result["label"] == expected, (path, result)
        confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
        labels = {"leaf": {"healthy", "leaf scorch"}, "cactus": {"cactus", "no cactus"}}[task]
        assert set(confidences) == labels
        assert sum(confidences.values()) == pytest.approx(1, abs=1e-4)
        assert confidences[expected] > 0.5


def test_endpoints_are_named_in_the_api(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify_leaf", "/classify_cactus"} <= set(endpoints)


def test_out_of_distribution_image_is_named_so_with_probabilities_listed(client, tmp_path):
    path = tmp_path / "green.png"
    Image.new("RGB", (300, 200), (30, 150, 40)).save(path)
    result = client.predict(handle_file(str(path)), api_name="/classify_leaf")
    assert result["label"] == "not a strawberry leaf"
    assert {c["label"] for c in result["confidences"]} == {"healthy", "leaf scorch"}
    result = client.predict(handle_file(str(path)), api_name="/classify_cactus")
    assert result["label"] == "not an aerial tile"
    assert {c["label"] for c in result["confidences"]} == {"cactus", "no cactus"}


def test_bad_model_source_stops_the_app_with_the_variable_named(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "LEAF_MODEL": str(tmp_path / "nowhere" / "model"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "LEAF_MODEL=" in result.stderr
    assert "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_survey_endpoint_returns_overlay_summary_and_csv(client, tmp_path):
    """/survey keeps its three outputs in their order for existing callers."""
    import csv

    from greenlens.core.images import decode_image

    files = require_examples("cactus")
    tiles = [decode_image(path) for path, _ in files][:6]
    mosaic = np.concatenate([np.concatenate(tiles[:3], axis=1), np.concatenate(tiles[3:6], axis=1)], axis=0)
    path = tmp_path / "mosaic.png"
    Image.fromarray(mosaic).save(path)
    overlay, summary, tiles_csv = client.predict(handle_file(str(path)), api_name="/survey")
    assert Image.open(overlay).size == (96, 64)
    expected_hits = sum(label == "cactus" for _, label in files[:6])
    assert {k: summary[k] for k in ("tiles", "cactus_tiles", "threshold", "nodata_tiles", "ood_tiles", "crs")} == {
        "tiles": 6, "cactus_tiles": expected_hits, "threshold": 0.5, "nodata_tiles": 0, "ood_tiles": 0, "crs": None}
    rows = list(csv.DictReader(Path(tiles_csv).read_text().splitlines()))
    assert [(r["x"], r["y"]) for r in rows] == [("0", "0"), ("32", "0"), ("64", "0"), ("0", "32"), ("32", "32"), ("64", "32")]
    small = tmp_path / "small.png"
    Image.fromarray(mosaic[:20, :20]).save(small)
    with pytest.raises(Exception, match="smaller than one 32 x 32 tile"):
        client.predict(handle_file(str(small)), api_name="/survey")


def test_survey_files_endpoint_offers_every_output_of_a_geotiff(client, cactus_dir, tmp_path):
    from pathlib import Path

    from greenlens.core.images import decode_image

    from .test_survey import CRS, GRID, mosaic, write_geotiff

    tiles = np.stack([decode_image(p) for p in sorted((cactus_dir / "train").iterdir())[: GRID * GRID]])
    path = write_geotiff(tmp_path / "ortho.tif", mosaic(tiles), "alpha")
    _overlay, summary, _tiles_csv, files = client.predict(handle_file(str(path)), 32, 0.5, 32, api_name="/survey_files")
    names = sorted(Path(f).name for f in files)
    assert names == ["cactus_tiles.geojson", "cactus_tiles.gpkg", "overlay.png", "probability.tif", "summary.json", "tiles.csv"]
    assert summary["crs"] == CRS
    assert summary["tiles"] == GRID * GRID
    assert summary["nodata_tiles"] > 0
    broken = tmp_path / "broken.tif"
    broken.write_text("no pixels here")
    with pytest.raises(Exception, match=r"broken\.tif is not a GeoTIFF, PNG or JPEG"):
        client.predict(handle_file(str(broken)), api_name="/survey")


def test_survey_files_takes_areas_of_interest_and_refuses_what_is_not_polygons(client, cactus_dir, tmp_path):
    """The endpoint (as the tab) takes an optional polygon layer: areas.csv comes back with the other files; a
    file whose content is not the format its name claims is refused before GDAL opens it."""
    from pathlib import Path

    from greenlens.core.images import decode_image

    from .test_areas import UNITS, unit_boxes, write_layer
    from .test_survey import GRID, mosaic, write_geotiff

    tiles = np.stack([decode_image(p) for p in sorted((cactus_dir / "train").iterdir())[: GRID * GRID]])
    path = write_geotiff(tmp_path / "ortho.tif", mosaic(tiles))
    layer = write_layer(tmp_path / "units.geojson", unit_boxes(), {"unit": [u[0] for u in UNITS]})
    _overlay, summary, _tiles_csv, files = client.predict(handle_file(str(path)), 32, 0.5, 32, handle_file(str(layer)),
                                                          api_name="/survey_files")
    by_name = {Path(f).name: Path(f) for f in files}
    rows = by_name["areas.csv"].read_text().splitlines()
    assert rows[0].startswith("unit,surveyed_ha,tiles,cactus_tiles")
    assert [row.split(",")[0] for row in rows[1:]] == ["north", "south"]
    assert summary["outside_area_tiles"] == GRID * GRID - summary["tiles"] > 0
    fake = tmp_path / "units.gpkg"
    fake.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(Exception, match=r"units\.gpkg is not a GeoPackage, GeoJSON or zipped Shapefile: its content"):
        client.predict(handle_file(str(path)), 32, 0.5, 32, handle_file(str(fake)), api_name="/survey_files")


def test_batch_endpoint_takes_a_zip_and_reports_bad_files(client, tmp_path):
    import csv
    import zipfile

    files = require_examples("leaf")
    archive = tmp_path / "leaves.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path, _ in files:
            zipped.write(path, f"leaves/{path.name}")
        zipped.writestr("leaves/broken.jpg", b"not an image")
        # A picture Pillow could read, but in a format the app does not name (Ghostscript's EPS).
        postscript = io.BytesIO()
        Image.open(files[0][0]).convert("RGB").save(postscript, format="EPS")
        zipped.writestr("leaves/postscript.jpg", postscript.getvalue())
    table, csv_path, skipped = client.predict([handle_file(str(archive))], api_name="/batch_leaf")
    rows = list(csv.DictReader(Path(csv_path).read_text().splitlines()))
    assert {r["file"]: r["label"] for r in rows} == {f"leaves/{p.name}": label for p, label in files}
    assert len(table["data"]) == len(files)
    assert [entry["file"] for entry in skipped] == ["leaves/broken.jpg", "leaves/postscript.jpg"]
    assert all("not an image this app can read" in entry["error"] for entry in skipped), skipped


@pytest.mark.parametrize("task", ["leaf", "cactus"])
def test_explain_endpoint_returns_the_image_with_a_heat_map(client, task):
    path, _ = require_examples(task)[0]
    overlay = client.predict(handle_file(str(path)), api_name=f"/explain_{task}")
    original, explained = Image.open(path), Image.open(overlay)
    assert explained.size == original.size
    assert np.abs(np.asarray(explained.convert("RGB"), int) - np.asarray(original.convert("RGB"), int)).mean() > 5


def test_the_same_explanation_twice_is_two_files(app_url):
    """Gradio saves a returned array under its content's hash and rewrites that file for every request with the same
    answer, which cut concurrent downloads short (2-3 of 48 identical requests with a large image); the endpoint
    hands Gradio a file of its own per request instead, so no request's file is rewritten while it is served."""
    from gradio_client import Client

    path, _ = require_examples("leaf")[0]
    client = Client(app_url, verbose=False, download_files=False)
    first, second = (client.predict(handle_file(str(path)), api_name="/explain_leaf") for _ in range(2))
    assert first["path"] != second["path"]
    for result in (first, second):
        with urllib.request.urlopen(result["url"]) as response:
            Image.open(io.BytesIO(response.read())).load()  # whole


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGINT"])
def test_results_live_in_gradios_cache_and_stopping_leaves_nothing_behind(tmp_path, stop_signal):
    """Result files are written into Gradio's cache, served from there without a copy, and removed
    by its delete_cache after their age; SIGTERM (Spaces, Docker) and SIGINT (Ctrl-C) then leave no
    file, folder or child process of ours behind."""
    import os
    import signal
    import time

    from gradio_client import Client

    from .apprunner import running_app
    from .conftest import make_image

    cache = tmp_path / "gradio"
    image = make_image(tmp_path / "leaf.png", (90, 140, 60), size=(64, 64))
    env = {"TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(cache), "GREENLENS_RESULT_MAX_AGE_S": "2"}
    with running_app(env=env) as (url, process):
        client = Client(url, verbose=False)
        table, _, _ = client.predict([handle_file(str(image))], api_name="/batch_leaf")
        assert len(table["data"]) == 1
        written = list(cache.glob("greenlens-results-*/*/leaf_predictions.csv"))
        assert len(written) == 1
        assert list(cache.rglob("leaf_predictions.csv")) == written
        deadline = time.time() + 20
        while written[0].exists() and time.time() < deadline:
            time.sleep(0.5)
        assert not written[0].exists()  # removed by age while the app runs
        client.predict([handle_file(str(image))], api_name="/batch_leaf")
        assert list(cache.glob("greenlens-results-*/*/leaf_predictions.csv"))  # a fresh result to clean up at stop
        children = [int(pid) for pid in os.popen(f"pgrep -P {process.pid}").read().split()]
        process.send_signal(getattr(signal, stop_signal))
        assert process.wait(timeout=30) == 0
    # What stays is the example gallery's copies: Gradio keeps a component's own value between runs.
    examples = {path.name for task in ("leaf", "cactus") for path, _ in example_files(task)}
    assert not [path for path in cache.rglob("*") if path.is_file() and path.name not in examples]
    assert not list(cache.glob("greenlens-*"))
    assert not list(tmp_path.glob("greenlens-*"))
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]
