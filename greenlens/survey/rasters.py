"""Aerial images read window by window: GeoTIFFs (tiled or striped, BigTIFF, Cloud-Optimized) through
rasterio, never whole in memory; PNG and JPEG through the app's own decoder (they carry no CRS).

A window comes back as RGB uint8 and a mask of the pixels that hold data:
- Bands: the first three are red, green, blue; a single band is grey; a band GDAL calls alpha, the
  nodata value and an internal mask all mark pixels without data (rasterio's dataset mask).
- 16-bit and other non-8-bit data is scaled to 8 bits linearly, 0 to 0 and the 99.9th percentile of
  the valid pixels (read once from a decimated view of the whole raster) to 255, the same for every
  window: many 16-bit orthomosaics use only 10 or 12 of their bits.

Untrusted files (uploads to the public app: `untrusted=True`) are opened only as what they claim to be:
the first bytes must be a TIFF's, a PNG's or a JPEG's and match the file's suffix; a TIFF goes to GDAL's
GTiff driver alone, never to VRT, WMS or any other driver that follows references to files or URLs,
with sidecar files, PAM, raw-raster bands, overviews and GDAL's network access off, and a TIFF whose
metadata names an overview file elsewhere is refused. PNG and JPEG are decoded by PIL only. A trusted
path (the command line, the Python API) opens whatever GDAL reads, VRT mosaics included.
"""

from __future__ import annotations

import os
import secrets
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

# GDAL keeps decoded blocks in a cache of 5% of the machine's memory by default (1.2 GB on 24 GB);
# windows are read once each, so a small cache costs no speed and bounds the memory.
os.environ.setdefault("GDAL_CACHEMAX", "64")

from greenlens.core.images import FORMATS, ImageError, decode_image

GEOTIFF_SUFFIXES = {".tif", ".tiff", ".gtiff", ".vrt"}
# Untrusted files: the formats they may claim (by suffix) and the first bytes each must start with.
UNTRUSTED_FORMATS = {
    "GeoTIFF": ({".tif", ".tiff"}, (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),  # TIFF and BigTIFF
    "PNG": ({".png"}, (b"\x89PNG\r\n\x1a\n",)),
    "JPEG": ({".jpg", ".jpeg"}, (b"\xff\xd8\xff",)),
}
NOT_ALLOWED = "is not a GeoTIFF, PNG or JPEG (the only formats opened here)"
# GDAL's settings while it reads an untrusted file (GDAL's "Security considerations").
UNTRUSTED_GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no sidecar files: .ovr, .msk, .aux.xml, world files
    "GDAL_PAM_ENABLED": "NO",  # no .aux.xml read (or written beside the upload)
    "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",  # no raw bytes of other files as pixels
    # Network off: /vsicurl/ and every handler built on it (/vsis3/, /vsigs/, ...) open only this one
    # name, which is random per process and so named by no file.
    "CPL_VSIL_CURL_ALLOWED_FILENAME": f"/vsicurl/greenlens-network-off-{secrets.token_hex(16)}",
}
# GTiff open option: no overviews, internal or named in the metadata; every read is of full-resolution blocks.
UNTRUSTED_OPEN = {"OVERVIEW_LEVEL": "NONE"}
# The decimated view that sets the 16-bit scale: enough pixels for a stable percentile.
STATISTICS_SIDE = 1024
# Counting a file's stored blocks is cheap per block; a file of more blocks than this is refused.
MAX_BLOCKS = 1 << 20


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

    def windows_with_data(self, windows: list[Window]) -> int:
        """How many of `windows` hold data, known without reading pixels (at most len(windows))."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_raster(path: str | Path, *, untrusted: bool = False) -> Raster:
    """Opens an aerial image; raises RasterError with a plain message when it cannot be read.

    `untrusted`: open it only as the GeoTIFF, PNG or JPEG its suffix claims, with GDAL's references to
    other files and URLs off (see the module's docstring); only the header is read here."""
    path = Path(path)
    if not path.is_file():
        raise RasterError(f"{path.name} does not exist.")
    if path.stat().st_size == 0:
        raise RasterError(f"{path.name} is empty (0 bytes).")
    if untrusted:
        kind = claimed_format(path)
        return GeoRaster(path, untrusted=True) if kind == "GeoTIFF" else PictureRaster(path, formats=[kind])
    if path.suffix.lower() in GEOTIFF_SUFFIXES:
        return GeoRaster(path)
    try:
        return PictureRaster(path)
    except RasterError as error:
        try:  # any other format GDAL reads (e.g. a GeoTIFF without its suffix)
            return GeoRaster(path)
        except RasterError:
            raise error from None


def claimed_format(path: Path) -> str:
    """"GeoTIFF", "PNG" or "JPEG": what the suffix claims, when the first bytes agree; else RasterError."""
    with open(path, "rb") as file:
        head = file.read(8)
    for kind, (suffixes, magics) in UNTRUSTED_FORMATS.items():
        if path.suffix.lower() in suffixes:
            if head.startswith(magics):
                return kind
            raise RasterError(f"{path.name} {NOT_ALLOWED}: its content is not the {kind} its name says.")
    raise RasterError(f"{path.name} {NOT_ALLOWED}.")


class GeoRaster(Raster):
    def __init__(self, path: Path, *, untrusted: bool = False):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        self.name = path.name
        self.untrusted = untrusted
        # Untrusted: GTiff is the only driver GDAL may try.
        options = dict(driver="GTiff", **UNTRUSTED_OPEN) if untrusted else {}
        try:
            with warnings.catch_warnings(), self._gdal():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.dataset = rasterio.open(path, **options)
        except RasterioIOError:
            if untrusted:
                raise RasterError(f"{path.name} {NOT_ALLOWED}: GDAL cannot read it as a GeoTIFF.") from None
            raise RasterError(f"{path.name} is not a raster this app can read (GeoTIFF, PNG, JPEG).") from None
        overviews = self.dataset.tags(ns="OVERVIEWS") or any(self.dataset.tags(b, ns="OVERVIEWS") for b in self.dataset.indexes)
        if untrusted and overviews:
            self.dataset.close()
            raise RasterError(f"{path.name} names an overview file elsewhere; files that refer to other files or "
                              "URLs are not opened here.")
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

    def _gdal(self):
        """GDAL's settings for every call on this file: the untrusted ones, or GDAL's own."""
        import rasterio

        return rasterio.Env(**UNTRUSTED_GDAL) if self.untrusted else nullcontext()

    def windows_with_data(self, windows: list[Window]) -> int:
        """How many of `windows` overlap a block stored in the file, from the TIFF's block offsets: no
        pixel is read. A sparse GeoTIFF's empty blocks are stored as nothing (and read as nodata)."""
        block_height, block_width = self.dataset.block_shapes[0]
        rows, cols = -(-self.height // block_height), -(-self.width // block_width)
        if rows * cols > MAX_BLOCKS:
            raise RasterError(f"{self.name} is stored in {rows * cols:,} blocks, over the limit of {MAX_BLOCKS:,}.")
        with self._gdal():
            stored = np.array([[self.dataset.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=self.bands[0]) is not None
                                for c in range(cols)] for r in range(rows)], bool)
        return sum(bool(stored[w.y // block_height : -(-(w.y + w.height) // block_height),
                               w.x // block_width : -(-(w.x + w.width) // block_width)].any()) for w in windows)

    @cached_property
    def scale_to_8_bits(self) -> float | None:
        """255 / the 99.9th percentile of valid pixels, from a decimated read of the whole raster; None
        for 8-bit data. Read on first use, so that opening a file reads no pixel."""
        from rasterio.enums import Resampling

        if self.dataset.dtypes[0] == "uint8":
            return None
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
            with self._gdal():
                return read()
        except RasterioIOError as error:
            raise RasterError(f"{self.name} is damaged and cannot be read ({str(error).splitlines()[0]}).") from None

    def close(self) -> None:
        self.dataset.close()


class PictureRaster(Raster):
    """A PNG, JPEG or other picture: decoded once (within the app's pixel limit), no CRS. `formats` are
    the PIL decoders that may open it (by default those of any image the app reads)."""

    def __init__(self, path: Path, *, formats: tuple[str, ...] | list[str] = FORMATS):
        self.name = path.name
        try:
            self.pixels = decode_image(path, formats=formats)
        except ImageError as error:
            raise RasterError(str(error)) from None
        self.height, self.width = self.pixels.shape[:2]

    def windows_with_data(self, windows: list[Window]) -> int:
        return len(windows)

    def read(self, window: Window, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        pixels = self.pixels[window.y : window.y + window.height, window.x : window.x + window.width]
        if scale != 1.0:
            size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))
        return pixels, np.ones(pixels.shape[:2], bool)
