"""Aerial surveys: an image or an orthomosaic of any size, cut into tiles at the scale of the training
tiles and classified; where the positive tiles are (on the map when the raster has a CRS), how many,
and how dense.

The raster is read in chunks of whole tiles (windows of about CHUNK x CHUNK source pixels), so memory
is set by the chunk and the model's batch, never by the raster. Tiles at least half outside the data
(nodata, alpha, mask) are not classified; tiles the out-of-distribution guard flags are counted and
never called positive. A chunk is the unit of work both here and on a Dask cluster (greenlens.cluster),
so both give the same numbers.

    from greenlens.survey import survey_raster
    result = survey_raster("ortho.tif", "models/cactus", "survey/")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .rasters import Raster, RasterError, Window, open_raster
from .tiles import TileClassifier, TileModelMissing

TILE = 32  # source pixels per tile by default: the training tiles' size at their ground resolution
CHUNK = 2048  # source pixels per side of a chunk, about: 12 MB of RGB at a time
# A survey whose classified tiles are mostly flagged by the guard says so plainly.
MOSTLY_OUT_OF_DISTRIBUTION = 0.5
PREVIEW_SIDE = 4096


class SurveyError(ValueError):
    """An image or setting that cannot be surveyed; the message is meant for the user."""


@dataclass(frozen=True)
class Grid:
    """Tiles of `tile_size` source pixels every `stride` pixels, each resampled to the model's tile."""

    width: int
    height: int
    tile_size: int
    stride: int
    model_tile: int

    def __post_init__(self):
        if self.tile_size < 1 or self.stride < 1:
            raise SurveyError("tile size and stride must be at least 1 pixel")
        if (self.stride * self.model_tile) % self.tile_size:
            step = self.tile_size // np.gcd(self.tile_size, self.model_tile)
            raise SurveyError(f"with --tile-size {self.tile_size}, the stride must be a multiple of {step} pixels "
                              f"(tiles are resampled to {self.model_tile} x {self.model_tile})")
        if self.width < self.tile_size or self.height < self.tile_size:
            raise SurveyError(f"the image is {self.width} x {self.height} pixels, smaller than one "
                              f"{self.tile_size} x {self.tile_size} tile")

    @property
    def rows(self) -> int:
        return (self.height - self.tile_size) // self.stride + 1

    @property
    def cols(self) -> int:
        return (self.width - self.tile_size) // self.stride + 1

    @property
    def scale(self) -> float:
        return self.model_tile / self.tile_size

    def chunks(self, side: int = CHUNK) -> list[Chunk]:
        cells = max(1, side // self.stride)
        return [Chunk(r, min(r + cells, self.rows), c, min(c + cells, self.cols))
                for r in range(0, self.rows, cells) for c in range(0, self.cols, cells)]

    def window(self, chunk: Chunk) -> Window:
        """What a chunk reads: its tiles, and the part of the raster its cells stand for in the preview."""
        region = self.region(chunk)
        return Window(region.x, region.y,
                      max((chunk.col1 - chunk.col0 - 1) * self.stride + self.tile_size, region.width),
                      max((chunk.row1 - chunk.row0 - 1) * self.stride + self.tile_size, region.height))

    def region(self, chunk: Chunk) -> Window:
        """The chunk's cells, stride by stride; the last row and column of chunks reach the raster's edge."""
        x, y = chunk.col0 * self.stride, chunk.row0 * self.stride
        right = chunk.col1 * self.stride if chunk.col1 < self.cols else self.width
        bottom = chunk.row1 * self.stride if chunk.row1 < self.rows else self.height
        return Window(x, y, right - x, bottom - y)

    @property
    def preview_factor(self) -> float:
        """Source pixels per preview pixel: the preview is at most PREVIEW_SIDE on its long side."""
        return max(1.0, max(self.width, self.height) / PREVIEW_SIDE)

    def preview_box(self, region: Window) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a source region in preview pixels."""
        f = self.preview_factor
        return (round(region.x / f), round(region.y / f), round((region.x + region.width) / f),
                round((region.y + region.height) / f))


@dataclass(frozen=True)
class Chunk:
    row0: int
    row1: int
    col0: int
    col1: int


@dataclass
class ChunkResult:
    chunk: Chunk
    probability: np.ndarray  # (rows, cols) float32, NaN where not classified
    flagged: np.ndarray  # (rows, cols) bool: classified, but out of distribution
    # The chunk's region at the preview's scale, from the pixels read for the tiles: the preview
    # needs no second pass over the raster.
    thumbnail: np.ndarray  # (h, w, 3) uint8
    thumbnail_valid: np.ndarray  # (h, w) bool


def classify_chunk(raster: Raster, grid: Grid, chunk: Chunk, classifier: TileClassifier, batch_size: int = 512) -> ChunkResult:
    """Reads one chunk's window (resampled to the model's scale) and classifies its tiles that lie
    at least half inside the data."""
    shape = (chunk.row1 - chunk.row0, chunk.col1 - chunk.col0)
    probability = np.full(shape, np.nan, np.float32)
    flagged = np.zeros(shape, bool)
    pixels, valid = raster.read(grid.window(chunk), grid.scale)
    tile, step = grid.model_tile, round(grid.stride * grid.scale)
    # Share of valid pixels under each tile, from an integral image of the mask.
    integral = np.pad(valid.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    top, left = np.arange(shape[0]) * step, np.arange(shape[1]) * step
    inside = (integral[np.ix_(top + tile, left + tile)] - integral[np.ix_(top, left + tile)]
              - integral[np.ix_(top + tile, left)] + integral[np.ix_(top, left)]) / (tile * tile)
    rows, cols = np.nonzero(inside > 0.5)  # at least half outside the data: not classified
    if len(rows):
        windows = sliding_window_view(pixels, (tile, tile), axis=(0, 1))[::step, ::step]  # (r, c, 3, t, t)
        for start in range(0, len(rows), batch_size):
            r, c = rows[start : start + batch_size], cols[start : start + batch_size]
            tiles = windows[r, c].transpose(0, 2, 3, 1)
            probability[r, c], flagged[r, c] = classifier(tiles)
    return ChunkResult(chunk, probability, flagged, *_thumbnail(grid, chunk, pixels, valid))


def _thumbnail(grid: Grid, chunk: Chunk, pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    region = grid.region(chunk)
    left, top, right, bottom = grid.preview_box(region)
    size = (max(1, right - left), max(1, bottom - top))
    height, width = round(region.height * grid.scale), round(region.width * grid.scale)
    shrink = Image.Resampling.BOX
    rgb = np.asarray(Image.fromarray(pixels[:height, :width]).resize(size, shrink))
    mask = np.asarray(Image.fromarray(valid[:height, :width].astype(np.uint8) * 255).resize(size, shrink)) > 127
    return rgb, mask


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
    files: dict[str, Path] = field(default_factory=dict)

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

    def summary(self, patches: int | None = None) -> dict:
        from . import gis

        tiles = int(self.classified.sum())
        hits = int(self.hits.sum())
        ood = int((self.flagged & self.classified).sum())
        pixel = gis.pixel_size_m(self.crs, self.transform, self.grid) if self.crs is not None else None
        hectares = tiles * (self.grid.stride * pixel) ** 2 / 10_000 if pixel else None
        summary = {
            "tiles": tiles, f"{self.key}_tiles": hits, f"{self.key}_fraction": round(hits / tiles, 6) if tiles else 0.0,
            "threshold": self.threshold, "nodata_tiles": int((~self.classified).sum()), "ood_tiles": ood,
            "tile_size": self.grid.tile_size, "stride": self.grid.stride, "crs": gis.crs_name(self.crs),
            "pixel_size_m": round(pixel, 6) if pixel else None,
            "surveyed_ha": round(hectares, 6) if hectares else None,
            f"{self.key}_tiles_per_ha": round(hits / hectares, 6) if hectares else None,
            "patches": patches if patches is not None else len(gis.patches(self)),
            "warning": self.warning,
        }
        return summary

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


def survey_raster(path, model, out_dir, stride: int | None = None, threshold: float = 0.5, tile_size: int = TILE,
                  scheduler: str | None = None, progress=None) -> SurveyResult:
    """Surveys one raster (GeoTIFF, PNG or JPEG) and writes every output file into `out_dir`:
    tiles.csv, overlay.png and summary.json, and with a CRS cactus_tiles.gpkg, cactus_tiles.geojson
    (WGS84) and probability.tif (named after the model's positive label). Returns the result.

    `model` is a model folder or Hub repo id, or a loaded TileClassifier; `stride` defaults to
    `tile_size`; `scheduler` ("ADDRESS" or "local:N") spreads the chunks over a Dask cluster;
    `progress(done, total)` counts tiles. Raises SurveyError with a message meant for the user."""
    return survey_rasters([path], model, out_dir, stride, threshold, tile_size, scheduler, progress, subfolders=False)[0]


def survey_rasters(paths, model, out_dir, stride: int | None = None, threshold: float = 0.5, tile_size: int = TILE,
                   scheduler: str | None = None, progress=None, subfolders: bool = True) -> list[SurveyResult]:
    """Surveys several rasters; each one's files go into a subfolder of `out_dir` named after it,
    and `out_dir/surveys.csv` gets one row per raster with its summary."""
    from . import gis

    if not 0 < threshold < 1:
        raise SurveyError("threshold must lie between 0 and 1")
    classifier = _load_classifier(model)
    plans = []
    for path in map(Path, paths):
        raster = _open(path)
        grid = Grid(raster.width, raster.height, tile_size, stride or tile_size, classifier.tile)
        plans.append((path, raster, grid, grid.chunks()))
    total = sum(grid.rows * grid.cols for _, _, grid, _ in plans)
    counter = _Progress(progress, total)
    if scheduler:
        from .cluster import classify_on_cluster

        chunk_results = classify_on_cluster(scheduler, classifier.source, [(p, g, c) for p, _, g, c in plans], counter)
    else:
        chunk_results = (
            [counter.done(classify_chunk(raster, grid, chunk, classifier)) for chunk in chunks]
            for _, raster, grid, chunks in plans
        )
    results = []
    out_dir = Path(out_dir)
    for (path, raster, grid, _), chunks in zip(plans, chunk_results):
        result = _assemble(path, raster, grid, chunks, threshold, classifier.positive_label)
        target = out_dir / _folder_name(path, results) if subfolders else out_dir
        gis.write_outputs(result, target)
        raster.close()
        results.append(result)
    if subfolders:
        gis.write_survey_table([r for r in results], out_dir / "surveys.csv")
    return results


def _load_classifier(model) -> TileClassifier:
    if isinstance(model, TileClassifier):
        return model
    try:
        return TileClassifier.load(str(model))
    except TileModelMissing as error:
        raise SurveyError(str(error)) from None


def _open(path: Path) -> Raster:
    try:
        return open_raster(path)
    except RasterError as error:
        raise SurveyError(str(error)) from None


def _assemble(path: Path, raster: Raster, grid: Grid, chunks, threshold: float, positive_label: str) -> SurveyResult:
    probability = np.full((grid.rows, grid.cols), np.nan, np.float32)
    flagged = np.zeros((grid.rows, grid.cols), bool)
    _, _, width, height = grid.preview_box(Window(0, 0, grid.width, grid.height))
    preview, preview_valid = np.zeros((height, width, 3), np.uint8), np.zeros((height, width), bool)
    for part in chunks:
        c = part.chunk
        probability[c.row0 : c.row1, c.col0 : c.col1] = part.probability
        flagged[c.row0 : c.row1, c.col0 : c.col1] = part.flagged
        left, top, right, bottom = grid.preview_box(grid.region(c))
        preview[top:bottom, left:right] = part.thumbnail[: bottom - top, : right - left]
        preview_valid[top:bottom, left:right] = part.thumbnail_valid[: bottom - top, : right - left]
    return SurveyResult(path.name, grid, probability, flagged, threshold, positive_label, preview, preview_valid,
                        raster.crs, raster.transform)


def _folder_name(path: Path, earlier: list[SurveyResult]) -> str:
    """The raster's file name without its suffix; a number is added where two rasters share it."""
    stem, taken = path.stem, {result.files["summary"].parent.name for result in earlier}
    name, number = stem, 2
    while name in taken:
        name, number = f"{stem}-{number}", number + 1
    return name


class _Progress:
    def __init__(self, report, total: int):
        self.report, self.total, self.count = report, total, 0

    def done(self, part: ChunkResult) -> ChunkResult:
        self.count += part.probability.size
        if self.report is not None:
            self.report(self.count, self.total)
        return part


def overlay(result: SurveyResult, strip: int = 256) -> np.ndarray:
    """The preview (at most PREVIEW_SIDE pixels on its long side): positive tiles tinted by their
    probability and outlined, tiles the guard flagged tinted blue, the rest dimmed, no data grey.
    Drawn in strips of rows, so its float temporaries stay small whatever the preview's size."""
    pixels, valid = result.preview.copy(), result.preview_valid
    height, width = valid.shape
    grid = result.grid
    # Each preview pixel takes the largest value of the tiles that cover its source pixel.
    ys = (np.arange(height) + 0.5) * grid.height / height
    xs = (np.arange(width) + 0.5) * grid.width / width
    heat_grid = np.where(result.hits, result.probability, 0).astype(np.float32)
    odd_grid = (result.flagged & result.classified).astype(np.float32)
    hit = np.zeros((height, width), bool)
    highlight = np.array([255, 40, 200], np.float32)  # magenta: stands out on desert greens and browns
    for top in range(0, height, strip):
        rows = slice(top, top + strip)
        heat = _covering_max(heat_grid, grid, ys[rows], xs)
        odd = _covering_max(odd_grid, grid, ys[rows], xs) > 0
        hit[rows] = heat > 0
        part = pixels[rows].astype(np.float32)
        alpha = (0.15 + 0.35 * heat)[..., None]
        shown = np.where(hit[rows][..., None], part * (1 - alpha) + highlight * alpha, part * 0.5)
        blue = odd & ~hit[rows]
        shown[blue] = shown[blue] * 0.6 + np.array([40, 120, 255], np.float32) * 0.4
        shown[~valid[rows]] = 60
        pixels[rows] = np.clip(shown, 0, 255).astype(np.uint8)
    pixels[hit & ~_eroded(hit)] = highlight.astype(np.uint8)
    return pixels


def _covering_max(values: np.ndarray, grid: Grid, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """For source coordinates ys x xs, the largest of `values` over the tiles covering each point."""
    span = -(-grid.tile_size // grid.stride)  # tiles that can cover one point, along each axis
    padded = np.pad(values, ((span, span), (span, span)))
    covering = np.zeros((len(ys), len(xs)), np.float32)
    for dr in range(span):
        for dc in range(span):
            rows = np.floor(ys / grid.stride).astype(int) - dr
            cols = np.floor(xs / grid.stride).astype(int) - dc
            inside_r = (rows >= 0) & (rows < grid.rows) & (ys < rows * grid.stride + grid.tile_size)
            inside_c = (cols >= 0) & (cols < grid.cols) & (xs < cols * grid.stride + grid.tile_size)
            part = padded[np.ix_(rows + span, cols + span)] * np.outer(inside_r, inside_c)
            np.maximum(covering, part, out=covering)
    return covering


def _eroded(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def write_summary(result: SurveyResult, path: Path, patches: int) -> dict:
    summary = result.summary(patches)
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
