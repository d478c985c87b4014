"""The unit of work of a survey: the grid of tiles over a raster, chunks of it, and the classification
of one chunk, read as one window. The single-process survey (greenlens.survey.run) and the workers of a
Dask cluster (greenlens.survey.cluster) run the same `classify_chunk`, so they give the same numbers."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from greenlens.survey.rasters import Raster, Window
from greenlens.survey.tile_model import TileClassifier

if TYPE_CHECKING:
    from greenlens.survey.areas import Areas

CHUNK = 2048  # source pixels per side of a chunk, about: 12 MB of RGB at a time
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
    note: str = ""  # where tile_size came from, for the summary

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
    outside: np.ndarray  # (rows, cols) bool: in the data, but at least half outside the areas of interest
    # The chunk's region at the preview's scale, from the pixels read for the tiles: the preview
    # needs no second pass over the raster.
    thumbnail: np.ndarray  # (h, w, 3) uint8
    thumbnail_valid: np.ndarray  # (h, w) bool


@dataclass
class ChunkPixels:
    """One chunk's window read at the model's scale, and its tiles: what a survey classifies and what
    `greenlens adapt` trains on are cut by the same code, so both see a tile resampled the same way."""

    window: Window
    pixels: np.ndarray  # (h, w, 3) uint8
    valid: np.ndarray  # (h, w) bool: holds data
    tile: int  # the model's tile side
    step: int  # the stride at the model's scale
    shape: tuple[int, int]  # the chunk's (rows, cols) of tiles

    def share(self, mask: np.ndarray) -> np.ndarray:
        """(rows, cols): the share of `mask` (h, w) under each tile: block sums where tiles do not overlap (the
        default stride), else from an integral image."""
        rows, cols = self.shape
        tile = self.tile
        if self.step == tile and mask.shape[0] >= rows * tile and mask.shape[1] >= cols * tile:
            blocks = mask[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile)
            return np.count_nonzero(blocks, axis=(1, 3)) / (tile * tile)
        top, left = np.arange(rows) * self.step, np.arange(cols) * self.step
        integral = np.pad(mask.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return (integral[np.ix_(top + tile, left + tile)] - integral[np.ix_(top, left + tile)]
                - integral[np.ix_(top + tile, left)] + integral[np.ix_(top, left)]) / (tile * tile)

    def tiles(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(n, t, t, 3) uint8: the tiles at (rows, cols) of the chunk."""
        windows = sliding_window_view(self.pixels, (self.tile, self.tile), axis=(0, 1))[::self.step, ::self.step]
        return windows[rows, cols].transpose(0, 2, 3, 1)


def read_chunk(raster: Raster, grid: Grid, chunk: Chunk) -> ChunkPixels:
    window = grid.window(chunk)
    pixels, valid = raster.read(window, grid.scale)
    shape = (chunk.row1 - chunk.row0, chunk.col1 - chunk.col0)
    return ChunkPixels(window, pixels, valid, grid.model_tile, round(grid.stride * grid.scale), shape)


def classify_chunk(raster: Raster, grid: Grid, chunk: Chunk, classifier: TileClassifier, batch_size: int = 512, *,
                   areas: Areas | None = None) -> ChunkResult:
    """Reads one chunk's window (resampled to the model's scale) and classifies its tiles that lie
    at least half inside the data (and, with `areas`, at least half inside the areas of interest)."""
    return classify_read(read_chunk(raster, grid, chunk), grid, chunk, classifier, batch_size, areas=areas)


def classify_read(read: ChunkPixels, grid: Grid, chunk: Chunk, classifier: TileClassifier, batch_size: int = 512, *,
                  areas: Areas | None = None) -> ChunkResult:
    """Classifies the tiles of a chunk already read (a survey reads the next chunk meanwhile)."""
    probability = np.full(read.shape, np.nan, np.float32)
    flagged = np.zeros(read.shape, bool)
    in_data = read.share(read.valid) > 0.5  # at least half outside the data: not classified
    chosen = in_data
    if areas:
        chosen = in_data & (read.share(read.valid & areas.mask(read.window, grid.scale, read.valid.shape)) > 0.5)
    rows, cols = np.nonzero(chosen)
    for start in range(0, len(rows), batch_size):
        r, c = rows[start : start + batch_size], cols[start : start + batch_size]
        probability[r, c], flagged[r, c] = classifier(read.tiles(r, c))
    return ChunkResult(chunk, probability, flagged, in_data & ~chosen, *_thumbnail(grid, chunk, read.pixels, read.valid))


def classify_chunks(raster: Raster, grid: Grid, chunks: list[Chunk], classifier: TileClassifier, *,
                    areas: Areas | None = None):
    """classify_chunk over `chunks`, in order, with the next chunk read in a second thread while one is
    classified: GDAL's decoding and LiteRT both release the GIL, so reading costs no time of its own
    where classifying takes longer. One read at a time: the raster's handle is never used by two threads.

    NumPy's matrix products run on one thread meanwhile (threadpoolctl; Dask's workers get the same from
    OPENBLAS_NUM_THREADS=1). The guard's products are small (512 tiles by at most ~1,400 features), and
    OpenBLAS split each over every core and then kept its threads spinning for the next, taking the cores LiteRT
    and the reader need: on 2026-12-06's 2-core AMD EPYC a 20,000 x 20,000 survey with the distilled candidate took
    70.9 s with them and 54.6 s without, and one with the classifier's slower tile model 3-17% longer
    (benchmarks/survey_blas_threads.py)."""
    from concurrent.futures import ThreadPoolExecutor

    if not chunks:
        return
    with _ONE_BLAS_THREAD, ThreadPoolExecutor(max_workers=1, thread_name_prefix="greenlens-read") as reader:
        pending = reader.submit(read_chunk, raster, grid, chunks[0])
        for index, chunk in enumerate(chunks):
            read = pending.result()
            if index + 1 < len(chunks):
                pending = reader.submit(read_chunk, raster, grid, chunks[index + 1])
            yield classify_read(read, grid, chunk, classifier, areas=areas)


class _OneBlasThread:
    """NumPy's matrix products on one thread while any survey of this process classifies: the first survey to start
    sets it, the last to finish gives back what the first found. Surveys that overlap (the app's, with
    GREENLENS_HEAVY_JOBS above 1) would otherwise each give back what it found, and the last could leave the process
    on one thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._surveys = 0
        self._limit = None

    def __enter__(self):
        from threadpoolctl import threadpool_limits

        with self._lock:
            if self._surveys == 0:
                self._limit = threadpool_limits(limits=1, user_api="blas")
            self._surveys += 1

    def __exit__(self, *exception):
        with self._lock:
            self._surveys -= 1
            if self._surveys == 0:
                self._limit.__exit__(None, None, None)
                self._limit = None


_ONE_BLAS_THREAD = _OneBlasThread()


def _thumbnail(grid: Grid, chunk: Chunk, pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    region = grid.region(chunk)
    left, top, right, bottom = grid.preview_box(region)
    size = (max(1, right - left), max(1, bottom - top))
    height, width = round(region.height * grid.scale), round(region.width * grid.scale)
    # reducing_gap: PIL first shrinks by a whole factor (its fast path), then resamples the rest; a preview
    # looks the same and a survey's thumbnails take half the time.
    def shrink(image: Image.Image) -> np.ndarray:
        return np.asarray(image.resize(size, Image.Resampling.BOX, reducing_gap=1.1))

    rgb = shrink(Image.fromarray(pixels[:height, :width]))
    mask = shrink(Image.fromarray(valid[:height, :width].astype(np.uint8) * 255)) > 127
    return rgb, mask
