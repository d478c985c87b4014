"""Areas of interest (issue 20): a survey limited to polygons given in another CRS reports, per polygon, its
attributes and figures, equal to the ground truth of the held-out tiles within the model's errors, the same in
one process and on Dask; bad layers get their own message."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from greenlens import survey

from . import test_survey
from .test_survey import CRS, GRID, MARGIN, MODEL, TRANSFORM, mosaic, write_geotiff

labelled = test_survey.labelled  # the held-out tiles with their labels, a fixture shared with the survey tests

TILE = 32
# (unit, first row, last row + 1, first col, last col + 1) of the labelled block's tiles.
UNITS = [("north", 0, 6, 0, 12), ("south", 6, 10, 0, 8)]


def write_layer(path: Path, shapes_px, fields: dict, crs: str | None = "EPSG:4326", geometry_type="Polygon") -> Path:
    """Pixel-space shapes of the mosaic -> a layer in `crs` (WGS84 by default: another CRS than the raster's)."""
    import shapely
    from pyogrio.raw import write
    from pyproj import Transformer

    to_crs = Transformer.from_crs(CRS, crs or CRS, always_xy=True)

    def project(xy):
        x, y = TRANSFORM @ (xy[:, 0], xy[:, 1])
        return np.column_stack(to_crs.transform(x, y))

    shapes = shapely.transform(np.array(shapes_px, dtype=object), project)
    write(str(path), shapely.to_wkb(shapes), [np.array(v, dtype=object) for v in fields.values()], list(fields),
          driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON", geometry_type=geometry_type, crs=crs)
    return path


def unit_boxes():
    import shapely

    offset = MARGIN * TILE
    return [shapely.box(offset + c0 * TILE, offset + r0 * TILE, offset + c1 * TILE, offset + r1 * TILE)
            for _, r0, r1, c0, c1 in UNITS]


@pytest.fixture(scope="module")
def areas_run(labelled, tmp_path_factory):
    tiles, labels = labelled
    folder = tmp_path_factory.mktemp("areas")
    raster = write_geotiff(folder / "ortho.tif", mosaic(tiles))
    layer = write_layer(folder / "units.geojson", unit_boxes(), {"unit": [u[0] for u in UNITS]})
    result = survey.survey_raster(raster, str(MODEL), folder / "out", areas=layer)
    return result, folder, raster, layer, labels.reshape(GRID, GRID)


def test_per_area_counts_match_the_ground_truth(areas_run):
    result, folder, _, _, truth = areas_run
    rows = list(csv.DictReader((folder / "out" / "areas.csv").read_text().splitlines()))
    assert [row["unit"] for row in rows] == ["north", "south"]
    for row, (_, r0, r1, c0, c1) in zip(rows, UNITS):
        assert int(row["tiles"]) == (r1 - r0) * (c1 - c0)
        expected = int(truth[r0:r1, c0:c1].sum())
        # The model's test error is 0.7%: within two tiles of the truth in either unit.
        assert abs(int(row["cactus_tiles"]) - expected) <= 2, (row, expected)
        hectares = (r1 - r0) * (c1 - c0) * (TILE * 0.05) ** 2 / 10_000
        assert float(row["surveyed_ha"]) == pytest.approx(hectares, rel=1e-6)
        assert float(row["cactus_tiles_per_ha"]) == pytest.approx(int(row["cactus_tiles"]) / hectares, rel=1e-5)
    summary = result.summary
    assert summary["tiles"] == sum((r1 - r0) * (c1 - c0) for _, r0, r1, c0, c1 in UNITS)
    assert summary["outside_area_tiles"] == GRID * GRID - summary["tiles"]  # skipped and counted


def test_the_geopackage_has_an_areas_layer(areas_run):
    from pyogrio import list_layers
    from pyogrio.raw import read

    _, folder, _, _, _ = areas_run
    gpkg = folder / "out" / "cactus_tiles.gpkg"
    assert "areas" in {name for name, _ in list_layers(gpkg)}
    meta, _, geometry, values = read(str(gpkg), layer="areas")
    assert list(meta["fields"])[:2] == ["unit", "surveyed_ha"]
    assert len(geometry) == len(UNITS)
    assert list(values[0]) == ["north", "south"]


@pytest.mark.slow
def test_dask_gives_the_same_areas(areas_run, tmp_path):
    _, folder, raster, layer, _ = areas_run
    survey.survey_rasters([raster], str(MODEL), tmp_path / "out", areas=layer, scheduler="local:2")
    assert (tmp_path / "out" / "ortho" / "areas.csv").read_bytes() == (folder / "out" / "areas.csv").read_bytes()


def test_one_layer_is_placed_on_each_raster_of_a_multi_raster_survey(areas_run, tmp_path):
    """Several rasters and one areas layer (read once, placed on each): each raster's areas.csv is what surveying
    it alone gives, though the second raster's origin lies 2 tiles further west, so that the same polygons cover
    other tiles of it (the north unit takes in 2 columns of its nodata margin)."""
    import rasterio
    from affine import Affine

    _, folder, raster, layer, _ = areas_run
    with rasterio.open(raster) as source:
        profile, pixels = source.profile, source.read()
    profile["transform"] = TRANSFORM * Affine.translation(-2 * TILE, 0)
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **profile) as out:
        out.write(pixels)
    both = survey.survey_rasters([raster, shifted], str(MODEL), tmp_path / "both", areas=layer)
    alone = survey.survey_raster(shifted, str(MODEL), tmp_path / "alone", areas=layer)
    assert (tmp_path / "both" / "ortho" / "areas.csv").read_bytes() == (folder / "out" / "areas.csv").read_bytes()
    assert (tmp_path / "both" / "shifted" / "areas.csv").read_bytes() == (tmp_path / "alone" / "areas.csv").read_bytes()
    assert alone.area_rows == both[1].area_rows != both[0].area_rows


def test_bad_area_layers_each_get_their_message(areas_run, tmp_path):
    import shapely

    _, folder, raster, _, _ = areas_run
    cases = {
        "has no CRS": write_layer(tmp_path / "nocrs.gpkg", unit_boxes(), {"unit": ["a", "b"]}, crs=None),
        "holds Point geometries": write_layer(tmp_path / "points.gpkg", [shapely.Point(100, 100)], {"unit": ["a"]},
                                              geometry_type="Point"),
        "is not a vector layer GDAL can read": tmp_path / "notes.geojson",
    }
    (tmp_path / "notes.geojson").write_text("not json")
    for message, path in cases.items():
        with pytest.raises(survey.SurveyError, match=message):
            survey.survey_raster(raster, str(MODEL), tmp_path / "out", areas=path)
    picture = tmp_path / "picture.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(picture)
    with pytest.raises(survey.SurveyError, match="has no CRS: areas of interest need a georeferenced raster"):
        survey.survey_raster(picture, str(MODEL), tmp_path / "out", areas=folder / "units.geojson")


def test_the_tile_size_follows_the_ground_resolution_when_the_model_records_it(labelled, tmp_path):
    """A model that records its tiles' ground size (an adapted one does) surveys a raster of half the pixel
    size with tiles of twice the pixels, and says so; the bundled model, which does not, says its tile size is
    a guess and how to set it."""
    import json
    import shutil

    import rasterio
    from affine import Affine

    tiles, _ = labelled
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    task = json.loads((model / "task.json").read_text())
    (model / "task.json").write_text(json.dumps({**task, "tile_ground_m": TILE * 0.05}))
    fine = np.repeat(np.repeat(mosaic(tiles), 2, axis=0), 2, axis=1)  # 2.5 cm pixels: the same ground, twice the pixels
    path = tmp_path / "fine.tif"
    with rasterio.open(path, "w", driver="GTiff", width=fine.shape[1], height=fine.shape[0], count=3, dtype="uint8",
                       crs=CRS, transform=TRANSFORM @ Affine.scale(0.5), nodata=0) as out:
        out.write(fine.transpose(2, 0, 1))
    adapted = survey.survey_raster(path, str(model), tmp_path / "adapted").summary
    assert adapted["tile_size"] == 2 * TILE
    assert adapted["tile_size_from"].startswith("from the ground resolution: the model's tiles cover 1.6 m")
    assert adapted["tiles"] == GRID * GRID
    bundled = survey.survey_raster(path, str(MODEL), tmp_path / "bundled").summary
    assert bundled["tile_size"] == TILE
    assert bundled["tile_size_from"].startswith("a guess")
    assert "--tile-size" in bundled["tile_size_from"]
    forced = survey.survey_raster(path, str(MODEL), tmp_path / "forced", tile_size=64).summary
    assert forced["tile_size_from"] == "set by --tile-size"
    assert forced["cactus_tiles"] == adapted["cactus_tiles"]


def test_an_uploaded_layer_is_opened_only_as_what_it_claims_and_capped(areas_run, tmp_path):
    """As the app opens an upload (untrusted): an OGR VRT (which can name other files and URLs) named .geojson is
    refused before GDAL sees it, and a layer of more polygons than the server takes is refused by count."""
    import shapely

    from greenlens.survey import areas as areas_module

    _, _, raster, layer, _ = areas_run
    vrt = tmp_path / "units.geojson"
    vrt.write_text('<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>/etc/passwd</SrcDataSource>'
                   "</OGRVRTLayer></OGRVRTDataSource>")
    with pytest.raises(survey.SurveyError, match="its content is not the GeoJSON its name says"):
        survey.survey_raster(raster, str(MODEL), tmp_path / "out", areas=vrt, untrusted=True)
    many = [shapely.box(64 + i % 40, 64 + i // 40, 65 + i % 40, 65 + i // 40) for i in range(areas_module.MAX_POLYGONS + 1)]
    crowded = write_layer(tmp_path / "many.geojson", many, {"unit": [str(i) for i in range(len(many))]})
    with pytest.raises(survey.SurveyError, match="holds more than this server takes"):
        survey.survey_raster(raster, str(MODEL), tmp_path / "out", areas=crowded, untrusted=True)
    trusted = survey.survey_raster(raster, str(MODEL), tmp_path / "trusted", areas=layer, untrusted=True)
    assert len(trusted.area_rows) == len(UNITS)  # a real upload still works
