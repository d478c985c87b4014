"""Survey files from strangers (issue 22), in process: what GDAL would have done with them when trusted,
what `untrusted=True` refuses instead, and the limits on pixels, windows and time. The same files go
through HTTP to the running app in benchmarks/hostile_inputs.py (tests/test_hostile.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from greenlens import survey
from greenlens.survey import rasters
from greenlens.survey.rasters import RasterError, Window, open_raster

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from hostile_inputs import RecordingServer, build_survey_corpus, simple_bands, vrt

MODEL = ROOT / "models" / "cactus"
PROFILE = dict(driver="GTiff", count=3, dtype="uint8", crs="EPSG:32614",
               transform=Affine(0.05, 0, 500_000.0, 0, -0.05, 2_000_000.0))


@pytest.fixture(scope="module")
def recorder():
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, recorder):
    if not list((ROOT / "examples" / "cactus").glob("*.jpg")):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    return build_survey_corpus(tmp_path_factory.mktemp("corpus"), recorder.url)


def test_a_trusted_open_of_a_vrt_named_tif_reads_the_local_file_it_names(corpus):
    """The hole was real: GDAL opens by content, so the .tif is a window onto the server's screenshot."""
    screenshot = np.asarray(Image.open(ROOT / "docs" / "screenshot.png").convert("RGB"))
    with open_raster(corpus["vrt_local"]) as raster:
        pixels, _ = raster.read(Window(0, 0, 64, 64))
    assert np.array_equal(pixels, screenshot[:64, :64])


@pytest.mark.parametrize("kind", ["vrt_local", "vrt_raw", "vrt_url", "wms_url"])
def test_untrusted_references_are_refused_by_their_first_bytes_and_fetch_nothing(corpus, recorder, kind):
    before = len(recorder.requests)
    with pytest.raises(RasterError, match=r"is not a GeoTIFF, PNG or JPEG.*its content is not the"):
        open_raster(corpus[kind], untrusted=True)
    assert len(recorder.requests) == before


def test_gdal_itself_opens_only_geotiffs_for_untrusted_files(corpus):
    """Behind the first-bytes check, GDAL is given the GTiff driver alone: a VRT still does not open."""
    with pytest.raises(RasterError, match="GDAL cannot read it as a GeoTIFF"):
        rasters.GeoRaster(corpus["vrt_local"], untrusted=True)


def test_an_overview_file_named_in_the_metadata_is_followed_when_trusted_and_refused_when_not(tmp_path, corpus, recorder):
    import rasterio

    secret, decoy = tmp_path / "secret.tif", tmp_path / "decoy.tif"
    with rasterio.open(secret, "w", width=64, height=64, **PROFILE) as out:
        out.write(np.full((3, 64, 64), 200, np.uint8))
    with rasterio.open(decoy, "w", width=128, height=128, **PROFILE) as out:
        out.write(np.zeros((3, 128, 128), np.uint8))
        out.update_tags(ns="OVERVIEWS", OVERVIEW_FILE=str(secret))
    with open_raster(decoy) as raster:  # trusted: a downsampled read comes from the other file
        assert raster.read(Window(0, 0, 128, 128), scale=0.5)[0].mean() == 200
    for path in (decoy, corpus["overview_url"]):
        with pytest.raises(RasterError, match="names an overview file elsewhere"):
            open_raster(path, untrusted=True)
    assert not recorder.requests


def test_suffix_and_content_must_agree(tmp_path):
    png = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 64)).save(png, format="PNG")
    with pytest.raises(RasterError, match="its content is not the JPEG its name says"):
        open_raster(png, untrusted=True)
    webp = png.rename(tmp_path / "photo.webp")
    with pytest.raises(RasterError, match=r"is not a GeoTIFF, PNG or JPEG \(the only formats opened here\)\.$"):
        open_raster(webp, untrusted=True)
    assert open_raster(webp.rename(tmp_path / "photo.png"), untrusted=True).width == 64


def sparse_raster(path, side: int, data_windows: int):
    """A sparse GeoTIFF with nodata 0 whose only stored blocks lie in the first `data_windows` chunks."""
    import rasterio
    from rasterio.windows import Window as RioWindow

    with rasterio.open(path, "w", width=side, height=side, tiled=True, blockxsize=256, blockysize=256, sparse_ok=True,
                       nodata=0, **PROFILE) as out:
        for index in range(data_windows):
            column, row = (index % (side // 2048)) * 2048, (index // (side // 2048)) * 2048
            out.write(np.full((3, 256, 256), 90, np.uint8), window=RioWindow(column, row, 256, 256))
    return path


def test_the_window_budget_counts_stored_blocks_without_reading_pixels(tmp_path):
    limits = survey.Limits(max_windows=2)
    path = sparse_raster(tmp_path / "many.tif", 6_144, data_windows=3)
    with pytest.raises(survey.SurveyError, match=r"holds data in 3 windows of 2,048 x 2,048 pixels, over this server's "
                       r"limit of 2 windows"):
        survey.survey_raster(path, MODEL, tmp_path / "out", untrusted=True, limits=limits)
    result = survey.survey_raster(sparse_raster(tmp_path / "few.tif", 6_144, data_windows=2), MODEL, tmp_path / "out2",
                                  untrusted=True, limits=limits)
    assert result.summary["tiles"] == 2 * 64  # 256 x 256 pixels of data in each of 2 windows
    with pytest.raises(survey.SurveyError, match=r"declares 6,144 x 6,144 pixels, over this server's limit of 10,000,000"):
        survey.survey_raster(path, MODEL, tmp_path / "out3", untrusted=True, limits=survey.Limits(max_pixels=10**7))


def test_a_survey_past_its_time_limit_is_stopped_with_a_message(tmp_path):
    import rasterio

    path = tmp_path / "wide.tif"
    with rasterio.open(path, "w", width=4096, height=256, **PROFILE) as out:
        out.write(np.full((3, 256, 4096), 90, np.uint8))
    with pytest.raises(survey.SurveyError, match=r"stopped after 0 s, this server's time limit for one survey, with "
                       r"512 of 1,024 tiles done"):
        survey.survey_raster(path, MODEL, tmp_path / "out", untrusted=True, limits=survey.Limits(time_limit_s=0))


def test_the_command_line_opens_vrt_mosaics_unless_told_the_files_are_untrusted(tmp_path, corpus):
    """A VRT mosaic of a local user's own tiles is a normal input; --untrusted refuses it as the app does."""
    mosaic = tmp_path / "mosaic.vrt"
    mosaic.write_text(vrt(256, 256, simple_bands(str(corpus["good_geotiff"]))))
    command = [sys.executable, "-m", "greenlens.cli.main", "survey", str(MODEL), str(mosaic)]
    trusted = subprocess.run([*command, "--out", str(tmp_path / "a")], capture_output=True, text=True, cwd=ROOT)
    assert trusted.returncode == 0, trusted.stderr
    assert '"tiles": 64' in trusted.stdout, trusted.stderr
    refused = subprocess.run([*command, "--out", str(tmp_path / "b"), "--untrusted"], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2, refused.stderr
    assert "mosaic.vrt is not a GeoTIFF, PNG or JPEG" in refused.stderr, refused.stderr
