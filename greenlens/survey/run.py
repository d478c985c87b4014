"""Aerial surveys: an image or an orthomosaic of any size, cut into tiles at the scale of the training
tiles and classified; where the positive tiles are (on the map when the raster has a CRS), how many,
and how dense.

The raster is read in chunks of whole tiles (windows of about CHUNK x CHUNK source pixels), so memory
is set by the chunk and the model's batch, never by the raster. Tiles at least half outside the data
(nodata, alpha, mask) are not classified; tiles the out-of-distribution guard flags are counted and
never called positive. A chunk is the unit of work both here and on a Dask cluster (greenlens.survey.cluster),
so both give the same numbers.

    from greenlens.survey import survey_raster
    result = survey_raster("ortho.tif", "models/cactus", "survey/")
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from greenlens.survey.grid import CHUNK, ChunkResult, Grid, SurveyError, classify_chunks
from greenlens.survey.rasters import Raster, RasterError, Window, open_raster
from greenlens.survey.tile_model import TileClassifier, TileModelMissing

if TYPE_CHECKING:
    from greenlens.survey.areas import Areas

# A survey whose classified tiles are mostly flagged by the guard says so plainly.
MOSTLY_OUT_OF_DISTRIBUTION = 0.5
# A tile counts as the positive class at or above this probability (and not flagged by the guard).
THRESHOLD = 0.5


@dataclass(frozen=True)
class Limits:
    """What one survey of an untrusted file (an upload to the public app) may cost. Bytes are bounded
    by the upload limit, but a sparse GeoTIFF of 2 MB can declare 4 x 10^10 pixels: the declared size
    and the windows that hold data are checked before any pixel is read, and the time as it runs.

    - max_pixels: declared width x height (10^9 lets a sparse 30,000 x 30,000 mosaic through);
    - max_windows: CHUNK x CHUNK windows that hold stored data (24: about 10^8 pixels, 100,000 tiles);
    - time_limit_s: the survey is stopped, with a message, once it has run this long."""

    max_pixels: int = 1_000_000_000
    max_windows: int = 24
    time_limit_s: float = 120.0

    @classmethod
    def from_environment(cls) -> Limits:
        """The defaults, or GREENLENS_SURVEY_MAX_PIXELS, GREENLENS_SURVEY_MAX_WINDOWS and
        GREENLENS_SURVEY_TIME_LIMIT_S where set."""
        get = os.environ.get
        return cls(int(float(get("GREENLENS_SURVEY_MAX_PIXELS", cls.max_pixels))),
                   int(get("GREENLENS_SURVEY_MAX_WINDOWS", cls.max_windows)),
                   float(get("GREENLENS_SURVEY_TIME_LIMIT_S", cls.time_limit_s)))

    def check(self, raster: Raster, windows: list[Window]) -> None:
        """Refuses, before a pixel is read, a raster over the pixel or window budget."""
        pixels = raster.width * raster.height
        elsewhere = "survey it on your own machine with `greenlens survey`"
        if pixels > self.max_pixels:
            raise SurveyError(f"{raster.name} declares {raster.width:,} x {raster.height:,} pixels, over this "
                              f"server's limit of {self.max_pixels:,} pixels for one survey; {elsewhere}.")
        try:
            holding = raster.windows_with_data(windows)
        except RasterError as error:
            raise SurveyError(str(error)) from None
        if holding > self.max_windows:
            raise SurveyError(f"{raster.name} holds data in {holding:,} windows of {CHUNK:,} x {CHUNK:,} pixels, over "
                              f"this server's limit of {self.max_windows:,} windows for one survey; {elsewhere}.")


@dataclass
class SurveyResult:
    """Per grid cell: the positive label's probability (NaN where not classified) and the guard's flag;
    the raster at the preview's scale."""

    name: str
    grid: Grid
    probability: np.ndarray
    flagged: np.ndarray
    threshold: float
    positive_label: str
    preview: np.ndarray
    preview_valid: np.ndarray
    crs: object = None
    transform: object = None
    # Tiles in the data but at least half outside the areas of interest, and those areas (None: no AOI).
    outside_area: np.ndarray | None = None
    areas: Areas | None = None
    files: dict[str, Path] = field(default_factory=dict)  # what was written, by kind (set by survey_rasters)

    @property
    def classified(self) -> np.ndarray:
        return ~np.isnan(self.probability)

    @property
    def hits(self) -> np.ndarray:
        """Cells called positive: classified, not flagged, at or above the threshold."""
        with np.errstate(invalid="ignore"):
            return self.classified & ~self.flagged & (self.probability >= self.threshold)

    @property
    def key(self) -> str:
        return self.positive_label.replace(" ", "_")

    @cached_property
    def patches(self) -> list[tuple[object, int]]:
        """Connected groups of positive tiles: (shape in map or pixel coordinates, tiles in it)."""
        from greenlens.survey import outputs

        return outputs.patches(self)

    @cached_property
    def summary(self) -> dict:
        """Counts, fractions and densities: what summary.json, surveys.csv, the app and the command show."""
        from greenlens.survey import outputs

        tiles = int(self.classified.sum())
        hits = int(self.hits.sum())
        ood = int((self.flagged & self.classified).sum())
        pixel = outputs.pixel_size_m(self.crs, self.transform, self.grid) if self.crs is not None else None
        hectares = tiles * (self.grid.stride * pixel) ** 2 / 10_000 if pixel else None
        outside = int(self.outside_area.sum()) if self.outside_area is not None else 0
        summary = {
            "tiles": tiles, f"{self.key}_tiles": hits, f"{self.key}_fraction": round(hits / tiles, 6) if tiles else 0.0,
            "threshold": self.threshold, "nodata_tiles": int((~self.classified).sum()) - outside,
            "outside_area_tiles": outside, "ood_tiles": ood,
            "tile_size": self.grid.tile_size, "tile_size_from": self.grid.note, "stride": self.grid.stride,
            "crs": outputs.crs_name(self.crs),
            "pixel_size_m": round(pixel, 6) if pixel else None,
            "surveyed_ha": round(hectares, 6) if hectares else None,
            f"{self.key}_tiles_per_ha": round(hits / hectares, 6) if hectares else None,
            "patches": len(self.patches),
            "warning": self.warning,
        }
        return summary

    @cached_property
    def area_rows(self) -> list[dict]:
        """Per area of interest: its attributes and the survey's figures inside it (empty without areas)."""
        from greenlens.survey import outputs
        from greenlens.survey.areas import area_rows

        if self.areas is None:
            return []
        return area_rows(self, self.areas, outputs.pixel_size_m(self.crs, self.transform, self.grid))

    @property
    def warning(self) -> str | None:
        tiles = int(self.classified.sum())
        ood = int((self.flagged & self.classified).sum())
        if tiles == 0:
            return "No tile lies at least half inside the data: nothing was classified."
        if ood / tiles > MOSTLY_OUT_OF_DISTRIBUTION:
            return (f"{ood / tiles:.0%} of the tiles do not look like the aerial tiles the model was trained on "
                    "(other land cover, sensor or ground resolution; see --tile-size): the counts are not reliable.")
        return None


def survey_raster(path, model, out_dir, *, stride: int | None = None, threshold: float = THRESHOLD, tile_size: int | None = None,
                  areas=None, scheduler: str | None = None, progress=None, untrusted: bool = False,
                  limits: Limits | None = None) -> SurveyResult:
    """Surveys one raster (GeoTIFF, PNG or JPEG) and writes every output file into `out_dir`:
    tiles.csv, overlay.png and summary.json, and with a CRS cactus_tiles.gpkg, cactus_tiles.geojson
    (WGS84) and probability.tif (named after the model's positive label). Returns the result.

    `model` is a model folder or Hub repo id, or a loaded TileClassifier; `tile_size` (source pixels per
    training tile) defaults to the model's training tile, `stride` to `tile_size`; `scheduler` ("ADDRESS"
    or "local:N") spreads the chunks over a Dask cluster; `progress(done, total)` counts tiles. `areas`, a
    polygon layer (GeoPackage, GeoJSON, Shapefile; any CRS), limits the survey to its polygons and adds
    areas.csv (and an `areas` layer in the GeoPackage): per polygon its attributes and figures. Raises
    SurveyError with a message meant for the user.

    `untrusted=True` is for files from strangers (the public app's uploads): each is opened only as
    the GeoTIFF, PNG or JPEG it claims to be, with GDAL's references to other files and URLs off
    (greenlens.survey.rasters), and held to `limits` (default: Limits.from_environment())."""
    return survey_rasters([path], model, out_dir, stride=stride, threshold=threshold, tile_size=tile_size,
                          areas=areas, scheduler=scheduler, progress=progress, subfolders=False, untrusted=untrusted,
                          limits=limits)[0]


def survey_rasters(paths, model, out_dir, *, stride: int | None = None, threshold: float = THRESHOLD,
                   tile_size: int | None = None, areas=None, scheduler: str | None = None, progress=None,
                   subfolders: bool = True, untrusted: bool = False, limits: Limits | None = None) -> list[SurveyResult]:
    """Surveys several rasters; each one's files go into a subfolder of `out_dir` named after it,
    and `out_dir/surveys.csv` gets one row per raster with its summary. `untrusted` and `limits` as
    for survey_raster; the limits hold for each raster, the time limit for the whole call."""
    from greenlens.survey import outputs
    from greenlens.survey.areas import AREAS, areas_on, georeferenced, read_vector

    if not 0 < threshold < 1:
        raise SurveyError("threshold must lie between 0 and 1")
    if untrusted and limits is None:
        limits = Limits.from_environment()
    classifier = _load_classifier(model)
    plans, opened, vector = [], [], None
    try:
        for path in map(Path, paths):
            opened.append(raster := _open(path, untrusted))
            size, note = (tile_size, "set by --tile-size") if tile_size else _tile_size(raster, classifier)
            grid = Grid(raster.width, raster.height, size, stride or size, classifier.tile, note)
            chunks = grid.chunks()
            if limits is not None:
                limits.check(raster, [grid.window(chunk) for chunk in chunks])
            if areas:  # the layer is read once, and placed on each raster
                georeferenced(raster, AREAS)
                vector = vector or read_vector(areas, kinds=("polygons",), what=AREAS, untrusted=untrusted)
            plans.append((path, raster, grid, chunks, areas_on(vector, raster) if vector else None))
        total = sum(grid.rows * grid.cols for _, _, grid, _, _ in plans)
        counter = _Progress(progress, total, limits.time_limit_s if limits else None)
        if scheduler:
            from greenlens.survey.cluster import classify_on_cluster

            work = [(path, grid, chunks, polygons) for path, _, grid, chunks, polygons in plans]
            chunk_results: Iterable[list[ChunkResult]] = classify_on_cluster(scheduler, classifier.source, work, counter)
        else:
            chunk_results = (
                [counter.done(part) for part in classify_chunks(raster, grid, chunks, classifier, areas=polygons)]
                for _, raster, grid, chunks, polygons in plans
            )
        results: list[SurveyResult] = []
        out_dir = Path(out_dir)
        for (path, raster, grid, _, polygons), classified in zip(plans, chunk_results):
            result = _assemble(path, raster, grid, classified, threshold, classifier.positive_label, polygons)
            target = out_dir / _folder_name(path, results) if subfolders else out_dir
            result.files = outputs.write_outputs(result, target)
            results.append(result)
    finally:
        for raster in opened:
            raster.close()
    if subfolders:
        outputs.write_survey_table([r for r in results], out_dir / "surveys.csv")
    return results


def _tile_size(raster: Raster, classifier: TileClassifier) -> tuple[int, str]:
    """Source pixels per tile when none is given, and why: the model's tile ground size over the raster's
    pixel size where both are known, else the training tiles' side in pixels (a guess, said so)."""
    from greenlens.survey import outputs

    pixel_m = outputs.pixel_size_m(raster.crs, raster.transform, (raster.width, raster.height))
    if classifier.tile_ground_m and pixel_m:
        size = max(1, round(classifier.tile_ground_m / pixel_m))
        return size, (f"from the ground resolution: the model's tiles cover {classifier.tile_ground_m:g} m, this "
                      f"raster's pixels {pixel_m:.4g} m")
    return classifier.tile, (f"a guess: the model's training tiles are {classifier.tile} pixels, of a ground size it does "
                             "not record; set --tile-size to the number of your pixels that cover one training tile")


def _load_classifier(model) -> TileClassifier:
    if isinstance(model, TileClassifier):
        return model
    try:
        return TileClassifier.load(str(model))
    except TileModelMissing as error:
        raise SurveyError(str(error)) from None


def _open(path: Path, untrusted: bool) -> Raster:
    try:
        return open_raster(path, untrusted=untrusted)
    except RasterError as error:
        raise SurveyError(str(error)) from None


def _assemble(path: Path, raster: Raster, grid: Grid, chunks, threshold: float, positive_label: str,
              areas: Areas | None) -> SurveyResult:
    probability = np.full((grid.rows, grid.cols), np.nan, np.float32)
    flagged = np.zeros((grid.rows, grid.cols), bool)
    outside = np.zeros((grid.rows, grid.cols), bool)
    _, _, width, height = grid.preview_box(Window(0, 0, grid.width, grid.height))
    preview, preview_valid = np.zeros((height, width, 3), np.uint8), np.zeros((height, width), bool)
    for part in chunks:
        c = part.chunk
        probability[c.row0 : c.row1, c.col0 : c.col1] = part.probability
        flagged[c.row0 : c.row1, c.col0 : c.col1] = part.flagged
        outside[c.row0 : c.row1, c.col0 : c.col1] = part.outside
        left, top, right, bottom = grid.preview_box(grid.region(c))
        preview[top:bottom, left:right] = part.thumbnail[: bottom - top, : right - left]
        preview_valid[top:bottom, left:right] = part.thumbnail_valid[: bottom - top, : right - left]
    return SurveyResult(path.name, grid, probability, flagged, threshold, positive_label, preview, preview_valid,
                        raster.crs, raster.transform, outside_area=outside if areas else None, areas=areas)


def _folder_name(path: Path, earlier: list[SurveyResult]) -> str:
    """The raster's file name without its suffix; a number is added where two rasters share it."""
    stem, taken = path.stem, {result.files["summary"].parent.name for result in earlier}
    name, number = stem, 2
    while name in taken:
        name, number = f"{stem}-{number}", number + 1
    return name


class _Progress:
    """Counts the classified tiles for `report(done, total)`, and stops a survey past its time limit."""

    def __init__(self, report, total: int, time_limit_s: float | None = None):
        self.report, self.total, self.count = report, total, 0
        self.time_limit_s, self.started = time_limit_s, time.monotonic()

    def done(self, part: ChunkResult) -> ChunkResult:
        self.count += part.probability.size
        if self.report is not None:
            self.report(self.count, self.total)
        if self.time_limit_s is not None and time.monotonic() - self.started > self.time_limit_s and self.count < self.total:
            raise SurveyError(f"The survey was stopped after {self.time_limit_s:g} s, this server's time limit for one "
                              f"survey, with {self.count:,} of {self.total:,} tiles done; survey it on your own machine "
                              "with `greenlens survey`.")
        return part
