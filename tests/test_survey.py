"""Aerial surveys of orthomosaics: GeoTIFFs written here with rasterio from labelled held-out tiles in a
known grid (known CRS and geotransform, a nodata margin; variants with an alpha band, 16-bit data and a
striped layout). Every output is checked against the tiles and the geotransform, not against itself."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from greenlens import survey
from greenlens.core.images import decode_image
from greenlens.core.inference import Classifier
from greenlens.survey.tile_model import TileClassifier

from .conftest import ROOT

MODEL = ROOT / "models" / "cactus"
GRID = 12  # tiles per side of the labelled block
MARGIN = 2  # tiles of nodata around it
TRANSFORM = Affine(0.05, 0, 500_000.0, 0, -0.05, 2_000_000.0)  # 5 cm pixels, UTM zone 14N
CRS = "EPSG:32614"


@pytest.fixture(scope="module")
def labelled(cactus_dir):
    """GRID x GRID held-out tiles (the cactus model's test split) with their labels."""
    rows = list(csv.DictReader(Path(MODEL / "test.csv").read_text().splitlines()))[: GRID * GRID]
    tiles = np.stack([decode_image(cactus_dir.parent / row["file"]) for row in rows])
    return tiles, np.array([row["label"] == "cactus" for row in rows])


def mosaic(tiles: np.ndarray) -> np.ndarray:
    """The tiles in a GRID x GRID block inside a margin of MARGIN tiles of zeros."""
    block = tiles.reshape(GRID, GRID, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(GRID * 32, GRID * 32, 3)
    side = (GRID + 2 * MARGIN) * 32
    image = np.zeros((side, side, 3), np.uint8)
    image[MARGIN * 32 : -MARGIN * 32, MARGIN * 32 : -MARGIN * 32] = block
    return image


def write_geotiff(path, image, variant="tiled"):
    import rasterio

    bands = image.transpose(2, 0, 1)
    profile = dict(driver="GTiff", width=image.shape[1], height=image.shape[0], crs=CRS, transform=TRANSFORM)
    if variant == "alpha":
        alpha = np.zeros(image.shape[:2], np.uint8)
        alpha[MARGIN * 32 : -MARGIN * 32, MARGIN * 32 : -MARGIN * 32] = 255
        with rasterio.open(path, "w", count=4, dtype="uint8", photometric="RGB", alpha="YES", **profile) as out:
            out.write(np.concatenate([bands, alpha[None]]))
        return path
    if variant == "16-bit":
        bands = bands.astype(np.uint16) * 257
    layout = dict(tiled=True, blockxsize=128, blockysize=128) if variant != "striped" else dict(tiled=False)
    with rasterio.open(path, "w", count=3, dtype=bands.dtype, nodata=0, **layout, **profile) as out:
        out.write(bands)
    return path


@pytest.fixture(scope="module")
def classifier():
    return TileClassifier(MODEL)


@pytest.fixture(scope="module")
def surveyed(labelled, classifier, tmp_path_factory):
    """The base GeoTIFF (tiled, nodata margin) surveyed once: (result, folder, tiles, labels)."""
    tiles, labels = labelled
    folder = tmp_path_factory.mktemp("survey")
    path = write_geotiff(folder / "ortho.tif", mosaic(tiles))
    return survey.survey_raster(path, classifier, folder / "out"), folder / "out", tiles, labels


def single_tile_probabilities(tiles) -> np.ndarray:
    """The classifier's probability of a cactus for each tile on its own, on the one view a survey's tile model
    answers on (the app averages the recipe's views: greenlens.core.litert.write_tile_model says why surveys don't)."""
    from greenlens.core.backbones import answering_on_views

    model = answering_on_views(Classifier.load(str(MODEL)).model, 1)
    return np.concatenate([model.predict_on_batch(tile[None].astype(np.float32))[:, 0] for tile in tiles])


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("variant", ["tiled", *(pytest.param(v, marks=pytest.mark.slow) for v in ("alpha", "16-bit", "striped"))])
def test_survey_agrees_with_single_tile_classification(variant, labelled, classifier, tmp_path):
    tiles, labels = labelled
    result = survey.survey_raster(write_geotiff(tmp_path / "ortho.tif", mosaic(tiles), variant), classifier, tmp_path / "out")
    inner = slice(MARGIN, MARGIN + GRID)
    assert result.classified[inner, inner].all()
    assert result.classified.sum() == GRID * GRID
    probabilities = result.probability[inner, inner].ravel()
    single = single_tile_probabilities(tiles)
    np.testing.assert_allclose(probabilities, single, atol=1e-4)
    agreement = ((probabilities >= 0.5) == labels).mean()
    assert agreement == ((single >= 0.5) == labels).mean() >= 0.97
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["nodata_tiles"] == (GRID + 2 * MARGIN) ** 2 - GRID * GRID
    assert summary["tiles"] == GRID * GRID
    assert summary["crs"] == CRS


def blas_threads() -> set[int]:
    """The threads of each BLAS library loaded in this process (NumPy's OpenBLAS)."""
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_survey_classifies_on_one_blas_thread_and_gives_the_setting_back(labelled, tmp_path):
    """While a survey classifies, NumPy's matrix products (the guard's) run on one thread, so that OpenBLAS's
    spinning threads leave the cores to LiteRT and the reader (greenlens.survey.grid.classify_chunks); after it,
    the process's own setting is back."""
    from threadpoolctl import threadpool_limits

    seen = []

    class Watched(TileClassifier):  # the real tile model and guard, noting the BLAS threads they ran on
        def __call__(self, tiles):
            seen.append(blas_threads())
            return super().__call__(tiles)

    tiles, _ = labelled
    path = write_geotiff(tmp_path / "ortho.tif", mosaic(tiles))
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        result = survey.survey_raster(path, Watched(MODEL), tmp_path / "out")
        assert blas_threads() == {2}
    assert result.classified.sum() == GRID * GRID
    assert seen
    assert all(threads == {1} for threads in seen)


def test_overlapping_surveys_give_the_blas_setting_back_when_the_last_ends(labelled, tmp_path):
    """Two surveys of one process (the app's, with GREENLENS_HEAVY_JOBS above 1) that overlap: the one that ends
    first leaves the other on one thread, and the last gives back the setting the first found."""
    from threadpoolctl import threadpool_limits

    from greenlens.survey.grid import Grid, classify_chunks
    from greenlens.survey.rasters import open_raster

    tiles, _ = labelled
    classifier = TileClassifier(MODEL)
    with open_raster(write_geotiff(tmp_path / "ortho.tif", mosaic(tiles))) as raster, \
            threadpool_limits(limits=2, user_api="blas"):
        grid = Grid(raster.width, raster.height, 32, 32, 32)
        first, second = (classify_chunks(raster, grid, grid.chunks(), classifier) for _ in range(2))
        next(first)
        next(second)
        assert blas_threads() == {1}
        list(first)  # the first survey ends while the second still classifies
        assert blas_threads() == {1}
        list(second)
        assert blas_threads() == {2}


@pytest.mark.slow
def test_the_blas_benchmark_surveys_with_and_without_the_limit(cactus_dir, tmp_path):
    """benchmarks/survey_blas_threads.py on a small orthomosaic of real tiles: each row's surveys ran with the BLAS
    threads it names (one as surveys run, NumPy's default without the limit); the timings are the machine's."""
    # An earlier test's Dask cluster may have set OPENBLAS_NUM_THREADS=1 in this process's environment: the
    # benchmark's surveys run without it, and NumPy's default is what a fresh process without it gets.
    environment = {**os.environ, "BENCHMARK_RESULTS": str(tmp_path), "TMPDIR": str(tmp_path),
                   "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    probe = ("import numpy, threadpoolctl; "
             "print(max(p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'))")
    fresh = {name: value for name, value in environment.items() if not name.endswith("_NUM_THREADS")}
    default = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=fresh,
                                 check=True).stdout)
    run = subprocess.run([sys.executable, "benchmarks/survey_blas_threads.py", "--size", "1024", "--rounds", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "survey_blas_threads.json").read_text())["rows"]
    assert [row["BLAS threads"] for row in rows] == [1, default]
    assert all(row["mean seconds"] > 0 for row in rows)


def test_summary_counts_density_and_guard(surveyed):
    result, out, _, labels = surveyed
    summary = json.loads((out / "summary.json").read_text())
    hits = result.hits
    assert summary["cactus_tiles"] == hits.sum()
    assert abs(summary["cactus_tiles"] - labels.sum()) <= 5
    assert summary["ood_tiles"] == (result.flagged & result.classified).sum() <= 3  # real held-out tiles
    assert summary["pixel_size_m"] == 0.05
    assert summary["tile_size"] == summary["stride"] == 32
    assert summary["surveyed_ha"] == pytest.approx(GRID * GRID * (32 * 0.05) ** 2 / 10_000)
    assert summary["cactus_tiles_per_ha"] == pytest.approx(summary["cactus_tiles"] / summary["surveyed_ha"], rel=1e-5)
    assert summary["cactus_fraction"] == pytest.approx(summary["cactus_tiles"] / GRID / GRID, abs=1e-6)
    assert summary["warning"] is None
    assert summary["patches"] >= 1


def test_tiles_csv_places_each_tile_on_the_map(surveyed):
    result, out, _, _ = surveyed
    rows = read_csv(out / "tiles.csv")
    assert list(rows[0]) == ["x", "y", "probability", "map_x", "map_y", "out_of_distribution"]
    assert len(rows) == GRID * GRID
    assert (rows[0]["x"], rows[0]["y"]) == (str(MARGIN * 32), str(MARGIN * 32))
    for row in rows[::17]:
        x, y = int(row["x"]), int(row["y"])
        centre = TRANSFORM @ (x + 16, y + 16)
        assert (float(row["map_x"]), float(row["map_y"])) == pytest.approx(centre, abs=1e-3)
        assert float(row["probability"]) == pytest.approx(result.probability[y // 32, x // 32], abs=1e-6)


def test_geopackage_polygons_are_the_tiles_footprints(surveyed):
    import shapely
    from pyogrio import list_layers
    from pyogrio.raw import read

    result, out, _, _ = surveyed
    gpkg = out / "cactus_tiles.gpkg"
    assert {name for name, _ in list_layers(gpkg)} == {"cactus_tiles", "cactus_patches"}
    meta, _, geometry, (probability,) = read(gpkg, layer="cactus_tiles")
    assert meta["crs"] == CRS
    hits = [row for row in read_csv(out / "tiles.csv")
            if float(row["probability"]) >= 0.5 and row["out_of_distribution"] == "0"]
    assert len(geometry) == len(hits) == result.hits.sum()
    for polygon, p, row in zip(shapely.from_wkb(geometry), probability, hits):
        x, y = int(row["x"]), int(row["y"])
        corners = [TRANSFORM @ corner for corner in ((x, y), (x + 32, y), (x + 32, y + 32), (x, y + 32))]
        assert shapely.equals_exact(shapely.normalize(polygon), shapely.normalize(shapely.Polygon(corners)), 1e-6)
        assert p == pytest.approx(float(row["probability"]), abs=1e-6)
    _, _, patches, (area, counts) = read(gpkg, layer="cactus_patches")
    assert counts.sum() == len(hits)  # every cactus tile lies in exactly one patch
    assert area == pytest.approx(counts * (32 * 0.05) ** 2)  # patches of whole tiles at 5 cm
    assert shapely.union_all(shapely.from_wkb(patches)).equals(shapely.union_all(shapely.from_wkb(geometry)))


def test_geojson_is_wgs84_longitude_latitude(surveyed):
    from pyproj import Transformer

    _, out, _, _ = surveyed
    collection = json.loads((out / "cactus_tiles.geojson").read_text())
    assert "crs" not in collection  # RFC 7946: WGS84 is implied
    first = collection["features"][0]
    rows = [row for row in read_csv(out / "tiles.csv") if float(row["probability"]) >= 0.5 and row["out_of_distribution"] == "0"]
    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(float(rows[0]["map_x"]), float(rows[0]["map_y"]))
    ring = np.array(first["geometry"]["coordinates"][0])
    assert ring[:-1, 0].mean() == pytest.approx(lon, abs=1e-6)
    assert ring[:-1, 1].mean() == pytest.approx(lat, abs=1e-6)
    assert -100 < lon < -98
    assert 17 < lat < 19
    # GDAL reads it back as the same tiles, each ring counterclockwise (RFC 7946) and closed.
    import shapely
    from pyogrio.raw import read as read_layer

    _, _, geometry, (probability,) = read_layer(out / "cactus_tiles.geojson")
    assert len(geometry) == len(rows) == len(collection["features"])
    assert probability == pytest.approx([float(row["probability"]) for row in rows], abs=1e-6)
    rings = shapely.get_exterior_ring(shapely.from_wkb(geometry))
    assert shapely.is_ccw(rings).all()
    assert shapely.is_closed(rings).all()


def test_probability_tif_lies_over_the_tiles(surveyed):
    import rasterio

    _result, out, _, _ = surveyed
    with rasterio.open(out / "probability.tif") as grid:
        assert grid.crs.to_string() == CRS
        assert grid.shape == (GRID + 2 * MARGIN, GRID + 2 * MARGIN)
        values, nodata = grid.read(1), grid.nodata
        for row in read_csv(out / "tiles.csv")[::11]:
            col_row = ~grid.transform @ (float(row["map_x"]), float(row["map_y"]))
            c, r = int(col_row[0]), int(col_row[1])
            assert col_row == pytest.approx((c + 0.5, r + 0.5))  # the tile's centre is its pixel's centre
            expected = nodata if row["out_of_distribution"] == "1" else float(row["probability"])
            assert values[r, c] == pytest.approx(expected, abs=1e-6)
        assert (values[:MARGIN] == nodata).all()  # the nodata margin stays nodata


def with_hits(result, hits: np.ndarray):
    """The surveyed result with these cells called cactus (probability 0.9) and the rest not (0.1), none flagged."""
    from dataclasses import replace

    assert hits.shape == result.probability.shape
    return replace(result, probability=np.where(hits, 0.9, 0.1).astype(np.float32), flagged=np.zeros_like(hits))


def test_patches_are_4_connected_groups_of_tiles_with_their_holes(surveyed):
    """A ring of tiles around a 3 x 3 gap with one tile in its middle, and two tiles that touch only at a corner:
    four patches, the ring with its hole, each with its number of tiles; the same as dissolving the tiles' boxes."""
    import shapely

    from greenlens.survey import outputs

    hits = np.zeros(surveyed[0].probability.shape, bool)
    hits[2:7, 2:7] = True
    hits[3:6, 3:6] = False
    hits[4, 4] = True
    hits[10, 10] = hits[11, 11] = True
    found = outputs.patches(with_hits(surveyed[0], hits))
    assert sorted(tiles for _, tiles in found) == [1, 1, 1, 16]
    ring = next(polygon for polygon, tiles in found if tiles == 16)
    assert shapely.get_num_interior_rings(ring) == 1
    assert shapely.area(ring) == (25 - 9) * 32 * 32
    dissolved = shapely.get_parts(shapely.union_all(outputs.tile_boxes(with_hits(surveyed[0], hits), hits)[0]))
    assert shapely.equals(shapely.normalize(shapely.union_all([polygon for polygon, _ in found])),
                          shapely.normalize(shapely.union_all(dissolved)))
    assert len(dissolved) == len(found)


def test_tile_files_hold_every_tile_whatever_their_bands(surveyed, tmp_path):
    """The CSV, the GeoJSON and the GeoPackage's tiles are made a band of grid rows at a time: bands of a grid row each
    give the same bytes (the GeoPackage: the same tiles, in order) as a survey's; the CSV has every classified tile in
    row order, as the csv module writes rows (CRLF)."""
    from pyogrio.raw import read

    from greenlens.survey import outputs

    result, out, _, _ = surveyed
    outputs.write_tiles_csv(result, tmp_path / "tiles.csv", block=7)
    outputs.write_geojson(result, tmp_path / "cactus_tiles.geojson", block=7)
    for name in ("tiles.csv", "cactus_tiles.geojson"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    outputs.write_geopackage(result, result.patches, tmp_path / "cactus_tiles.gpkg", block=7)
    banded, whole = (read(folder / "cactus_tiles.gpkg", layer="cactus_tiles") for folder in (tmp_path, out))
    assert len(banded[2]) == len(whole[2]) == result.hits.sum() > result.grid.cols  # more than one band's tiles
    assert list(banded[2]) == list(whole[2])
    np.testing.assert_array_equal(banded[3][0], whole[3][0])
    text = (out / "tiles.csv").read_bytes()
    assert text.count(b"\r\n") == text.count(b"\n") == result.classified.sum() + 1
    rows = read_csv(out / "tiles.csv")
    cells = np.nonzero(result.classified)
    assert [(int(row["y"]) // 32, int(row["x"]) // 32) for row in rows] == list(zip(*(c.tolist() for c in cells)))
    np.testing.assert_allclose([float(row["probability"]) for row in rows], result.probability[cells], atol=5e-7)
    assert [row["out_of_distribution"] for row in rows] == [str(int(f)) for f in result.flagged[cells]]


@pytest.mark.slow
def test_tile_size_resamples_other_ground_resolutions(labelled, classifier, tmp_path):
    """The same ground at twice the resolution: 64 x 64 source tiles averaged down to the model's 32."""
    tiles, _labels = labelled
    image = mosaic(tiles)
    fine = np.asarray(Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.Resampling.NEAREST))
    result = survey.survey_raster(write_geotiff(tmp_path / "fine.tif", fine), classifier, tmp_path / "out", tile_size=64)
    inner = slice(MARGIN, MARGIN + GRID)
    assert result.grid.stride == 64
    assert result.classified.sum() == GRID * GRID
    np.testing.assert_allclose(result.probability[inner, inner].ravel(), single_tile_probabilities(tiles), atol=1e-4)
    with pytest.raises(survey.SurveyError, match="stride must be a multiple of 2"):
        survey.survey_raster(tmp_path / "fine.tif", classifier, tmp_path / "bad", tile_size=64, stride=33)


@pytest.mark.slow
def test_pictures_survey_in_pixels_without_geospatial_files(labelled, classifier, tmp_path):
    tiles, _labels = labelled
    path = tmp_path / "aerial.png"
    Image.fromarray(mosaic(tiles)[MARGIN * 32 : -MARGIN * 32, MARGIN * 32 : -MARGIN * 32]).save(path)
    result = survey.survey_raster(path, classifier, tmp_path / "out", stride=16)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"tiles.csv", "summary.json", "overlay.png"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["crs"] is None
    assert summary["surveyed_ha"] is None
    assert summary["pixel_size_m"] is None
    assert summary["tiles"] == (GRID * 2 - 1) ** 2
    assert summary["nodata_tiles"] == 0
    assert list(read_csv(tmp_path / "out" / "tiles.csv")[0]) == ["x", "y", "probability", "out_of_distribution"]
    np.testing.assert_allclose(result.probability[::2, ::2].ravel(), single_tile_probabilities(tiles), atol=1e-4)
    assert Image.open(tmp_path / "out" / "overlay.png").size == (GRID * 32, GRID * 32)


def test_mostly_out_of_distribution_survey_says_so(classifier, tmp_path):
    path = tmp_path / "blue.png"
    Image.new("RGB", (320, 320), (20, 60, 230)).save(path)
    summary = survey.survey_raster(path, classifier, tmp_path / "out").summary
    assert summary["ood_tiles"] == summary["tiles"] == 100
    assert summary["cactus_tiles"] == 0
    assert "do not look like the aerial tiles" in summary["warning"]


@pytest.mark.slow
def test_dask_cluster_gives_exactly_the_single_process_result(surveyed, labelled, tmp_path):
    """A real distributed.LocalCluster of two worker processes, each reading its own windows."""
    _, single_out, tiles, _ = surveyed
    path = write_geotiff(tmp_path / "ortho.tif", mosaic(tiles))
    second = write_geotiff(tmp_path / "second.tif", mosaic(tiles[::-1]))
    results = survey.survey_rasters([path, second], str(MODEL), tmp_path / "out", scheduler="local:2")
    assert (tmp_path / "out" / "ortho" / "tiles.csv").read_bytes() == (single_out / "tiles.csv").read_bytes()
    summary = json.loads((tmp_path / "out" / "ortho" / "summary.json").read_text())
    assert summary == json.loads((single_out / "summary.json").read_text())
    table = read_csv(tmp_path / "out" / "surveys.csv")
    assert [row["raster"] for row in table] == ["ortho.tif", "second.tif"]
    assert [int(row["cactus_tiles"]) for row in table] == [int(r.hits.sum()) for r in results]
    assert results[1].hits.sum() == results[0].hits.sum()  # the same tiles, in another order


def page_faults_of_reused_arrays(times: int = 200) -> int:
    """Minor page faults while a 1 MB array is allocated, written and freed `times` times: 256 each time where every
    allocation is a fresh mmap (4 KB pages; 1 MB is too small for the kernel's huge pages), near none where freed
    memory is reused."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        np.ones(2**20, np.uint8)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc settings: Linux only")
def test_cluster_workers_reuse_the_memory_a_survey_frees(surveyed, tmp_path):
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and zero-fill every
    large array afresh; a worker that has surveyed a chunk reuses freed memory again (greenlens.survey.cluster)."""
    from distributed import Client, LocalCluster

    _, single_out, tiles, _ = surveyed
    path = write_geotiff(tmp_path / "ortho.tif", mosaic(tiles))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        before = next(iter(client.run(page_faults_of_reused_arrays).values()))
        assert before > 200 * 256 * 0.9  # the nanny's setting is in effect: every array faulted in afresh
        survey.survey_raster(path, str(MODEL), tmp_path / "out", scheduler=cluster.scheduler_address)
        after = next(iter(client.run(page_faults_of_reused_arrays).values()))
    assert after < before / 20
    assert (tmp_path / "out" / "tiles.csv").read_bytes() == (single_out / "tiles.csv").read_bytes()


@pytest.mark.slow
def test_the_worker_memory_benchmark_surveys_with_and_without_the_reset(cactus_dir, tmp_path):
    """benchmarks/survey_worker_memory.py on a small orthomosaic of real tiles: its local:2 row without the reset ran on
    workers that kept Dask's setting, the others on none; the timings are the machine's."""
    environment = {**os.environ, "BENCHMARK_RESULTS": str(tmp_path), "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "benchmarks/survey_worker_memory.py", "--size", "1024", "--rounds", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "survey_worker_memory.json").read_text())["rows"]
    kept = [row["workers that kept Dask's setting"] for row in rows]
    assert kept[:2] == [0, 0]
    assert kept[2] >= 1  # a 1,024-pixel raster is one chunk: one worker may get it
    assert all(row["mean seconds"] > 0 for row in rows)


@pytest.mark.slow
def test_the_outputs_benchmark_times_each_writer_and_all_of_them(cactus_dir, tmp_path):
    """benchmarks/survey_outputs.py on a small orthomosaic of real tiles: a row for every writer and one for
    write_outputs, and write_outputs' peak memory; the timings are the machine's."""
    environment = {**os.environ, "BENCHMARK_RESULTS": str(tmp_path), "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "benchmarks/survey_outputs.py", "--size", "1024", "--rounds", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    written = json.loads((tmp_path / "survey_outputs.json").read_text())
    steps = [row["step"] for row in written["rows"]]
    assert steps[1:6] == ["tiles.csv", "GeoPackage (tiles, patches)", "GeoJSON", "probability.tif", "overlay.png"]
    assert steps[-1] == "every file (write_outputs)"
    assert all(row["median seconds"] > 0 for row in written["rows"])
    assert written["peak_mb"]["after_write_outputs"] >= written["peak_mb"]["result_loaded"] > 0
    assert written["tiles"] == (1024 - 2 * 64) ** 2 // 32**2  # the survey_speed raster: a 64-pixel nodata margin


def test_survey_command_line_and_its_errors(surveyed, tmp_path):
    _, single_out, tiles, _ = surveyed
    path = write_geotiff(tmp_path / "ortho.tif", mosaic(tiles), "striped")
    run = subprocess.run([sys.executable, "predict.py", "models/cactus", str(path), "--survey", "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert read_csv(tmp_path / "out" / "tiles.csv") == read_csv(single_out / "tiles.csv")
    cells = (GRID + 2 * MARGIN) ** 2
    assert "Surveying" in run.stderr
    assert f"{cells}/{cells}" in run.stderr
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster")
    for bad, message in ((truncated, "truncated.tif is damaged"), (notes, "notes.tif is not a raster")):
        run = subprocess.run([sys.executable, "predict.py", "models/cactus", str(bad), "--survey", "--out", str(tmp_path / "x")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr
        assert message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr, run.stderr


@pytest.mark.slow
def test_large_sparse_raster_stays_within_memory(classifier, labelled, tmp_path):
    """20,000 x 20,000 pixels, 99.9% nodata (a sparse tiled GeoTIFF of a few kilobytes), surveyed by the
    command line: the data block is found and the process's peak memory stays far below the raster's 1.2 GB."""
    import rasterio
    from rasterio.windows import Window

    tiles, _labels = labelled
    path = tmp_path / "sparse.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20_000, height=20_000, count=3, dtype="uint8", crs=CRS,
                       transform=TRANSFORM, nodata=0, tiled=True, blockxsize=512, blockysize=512, sparse_ok=True,
                       compress="deflate", BIGTIFF="YES") as out:
        side = (GRID + 2 * MARGIN) * 32
        out.write(mosaic(tiles).transpose(2, 0, 1), window=Window(9_984, 9_984, side, side))
    probe = ("import resource, subprocess, sys\n"
             "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
             "print(run.stderr[-2000:])\n")
    run = subprocess.run([sys.executable, "-c", probe, sys.executable, "predict.py", "models/cactus", str(path), "--survey",
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    returncode, peak_mb = map(int, run.stdout.split()[:2])
    assert returncode == 0, run.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["tiles"] == GRID * GRID
    assert summary["nodata_tiles"] == 625 * 625 - GRID * GRID
    assert peak_mb < 1024, peak_mb
    assert Image.open(tmp_path / "out" / "overlay.png").size == (4096, 4096)


@pytest.mark.slow
def test_batch_and_kaggle_submission_command_line(cactus_dir, tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    names = sorted(p.name for p in (cactus_dir / "test").iterdir())[:12]
    for name in names:
        (folder / name).write_bytes((cactus_dir / "test" / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    submission = tmp_path / "submission.csv"
    command = [sys.executable, "predict.py", "models/cactus", str(folder), "--kaggle-submission", "--out", str(submission)]
    result = subprocess.run(command,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Skipped 1 unreadable file(s)" in result.stderr
    assert "broken.jpg" in result.stderr
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
    rows = list(csv.DictReader(Path(table).read_text().splitlines()))
    assert len(rows) == 12
    assert set(rows[0]) == {"file", "label", "p_cactus", "p_no_cactus", "out_of_distribution",
                                                 "too_poor_to_judge"}
    for row in rows:
        expected = "not an aerial tile" if row["out_of_distribution"] == "True" else (
            "cactus" if float(row["p_cactus"]) >= 0.5 else "no cactus")
        assert row["label"] == expected
    assert sum(row["out_of_distribution"] == "True" for row in rows) <= 1  # real competition tiles
