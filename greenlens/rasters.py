"""Aerial images read window by window: GeoTIFFs (tiled or striped, BigTIFF, Cloud-Optimized) through
rasterio, never whole in memory; PNG and JPEG through the app's own decoder (they carry no CRS).

A window comes back as RGB uint8 and a mask of the pixels that hold data:
- Bands: the first three are red, green, blue; a single band is grey; a band GDAL calls alpha, the
  nodata value and an internal mask all mark pixels without data (rasterio's dataset mask).
- 16-bit and other non-8-bit data is scaled to 8 bits linearly, 0 to 0 and the 99.9th percentile of
  the valid pixels (read once from a decimated view of the whole raster) to 255, the same for every
  window: many 16-bit orthomosaics use only 10 or 12 of their bits.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# GDAL keeps decoded blocks in a cache of 5% of the machine's memory by default (1.2 GB on 24 GB);
# windows are read once each, so a small cache costs no speed and bounds the memory.
os.environ.setdefault("GDAL_CACHEMAX", "64")

from .images import ImageError, decode_image

GEOTIFF_SUFFIXES = {".tif", ".tiff", ".gtiff", ".vrt"}
# The decimated view that sets the 16-bit scale: enough pixels for a stable percentile.
STATISTICS_SIDE = 1024


class RasterError(ValueError):
    """A file that cannot be read as an aerial image; the message is meant for the user."""


@dataclass(frozen=True)
class Window:
    x: int
    y: int
    width: int
    height: int


class Raster:
    """Common face of the two readers: size, georeferencing, windows."""

    name: str
    width: int
    height: int
    crs = None  # rasterio.crs.CRS, or None: positions stay in pixels
    transform = None  # affine.Affine from pixel to map coordinates, or None

    def read(self, window: Window, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 (h, w, 3), valid bool (h, w)) of `window`, resampled by `scale` (averaging)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_raster(path: str | Path) -> Raster:
    """Opens an aerial image; raises RasterError with a plain message when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise RasterError(f"{path.name} does not exist.")
    if path.stat().st_size == 0:
        raise RasterError(f"{path.name} is empty (0 bytes).")
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        return GeoRaster(path)
    try:
        return PictureRaster(path)
    except ImageError as error:
        try:  # any other format GDAL reads (e.g. a GeoTIFF without its suffix)
            return GeoRaster(path)
        except RasterError:
            raise RasterError(str(error)) from None


class GeoRaster(Raster):
    def __init__(self, path: Path):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        self.name = path.name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.dataset = rasterio.open(path)
        except RasterioIOError:
            raise RasterError(f"{path.name} is not a raster this app can read (GeoTIFF, PNG, JPEG).") from None
        self.width, self.height = self.dataset.width, self.dataset.height
        self.crs = self.dataset.crs
        georeferenced = self.crs is not None and not self.dataset.transform.is_identity
        self.transform = self.dataset.transform if georeferenced else None
        if not georeferenced:
            self.crs = None
        colour = [i for i, c in enumerate(self.dataset.colorinterp, start=1) if c.name != "alpha"]
        if not colour:
            raise RasterError(f"{path.name} has no colour band.")
        self.bands = colour[:3] if len(colour) >= 3 else [colour[0]] * 3
        self.scale_to_8_bits = self._scale() if self.dataset.dtypes[0] != "uint8" else None

    def _scale(self) -> float:
        """255 / the 99.9th percentile of valid pixels, from a decimated read of the whole raster."""
        from rasterio.enums import Resampling

        factor = max(1.0, max(self.width, self.height) / STATISTICS_SIDE)
        shape = (max(1, round(self.height / factor)), max(1, round(self.width / factor)))
        values = self._guarded(lambda: self.dataset.read(self.bands, out_shape=(3, *shape), resampling=Resampling.nearest))
        valid = self._guarded(lambda: self.dataset.dataset_mask(out_shape=shape)) > 0
        data = values[:, valid].astype(np.float64)
        peak = float(np.percentile(data, 99.9)) if data.size else 1.0
        return 255.0 / max(peak, 1e-12)

    def read(self, window: Window, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.enums import Resampling
        from rasterio.windows import Window as RioWindow

        rio_window = RioWindow(window.x, window.y, window.width, window.height)
        shape = (max(1, round(window.height * scale)), max(1, round(window.width * scale)))
        resampling = Resampling.average if scale < 1 else Resampling.nearest
        values = self._guarded(lambda: self.dataset.read(self.bands, window=rio_window, out_shape=(3, *shape),
                                                         resampling=resampling))
        valid = self._guarded(lambda: self.dataset.dataset_mask(window=rio_window, out_shape=shape)) > 0
        if self.scale_to_8_bits is not None:
            values = np.clip(values.astype(np.float32) * self.scale_to_8_bits + 0.5, 0, 255)
        return np.ascontiguousarray(values.astype(np.uint8).transpose(1, 2, 0)), valid

    def _guarded(self, read):
        from rasterio.errors import RasterioIOError

        try:
            return read()
        except RasterioIOError as error:
            raise RasterError(f"{self.name} is damaged and cannot be read ({str(error).splitlines()[0]}).") from None

    def close(self) -> None:
        self.dataset.close()


class PictureRaster(Raster):
    """A PNG, JPEG or other picture: decoded once (within the app's pixel limit), no CRS."""

    def __init__(self, path: Path):
        self.name = path.name
        self.pixels = decode_image(path)
        self.height, self.width = self.pixels.shape[:2]

    def read(self, window: Window, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        pixels = self.pixels[window.y : window.y + window.height, window.x : window.x + window.width]
        if scale != 1.0:
            size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))
        return pixels, np.ones(pixels.shape[:2], bool)
