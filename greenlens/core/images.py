"""Turning whatever a user or a dataset hands us into an RGB uint8 array.

Training and serving decode through this one function, so a photo is seen the same way
by the model at both times (EXIF rotation applied, every colour mode mapped to RGB).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 8,000 x 8,000 aerial pictures must pass; a decompression bomb (e.g. 30,000 x 30,000 PNG of a
# few kilobytes) must not be decoded at all. Only the header is read before this check. PIL's own
# limit is set to the same number: it refuses what is over twice its limit while opening, and
# that refusal becomes the same message as ours.
MAX_PIXELS = int(os.environ.get("GREENLENS_MAX_PIXELS", 8_192 * 8_192))
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Serving decodes uploads to at most this long side: over 3x the largest model input (160), and
# the size of the Grad-CAM overlay a person sees. A request then holds about a megabyte, whatever was
# uploaded: eight 8,000 x 8,000 photos at once cost the app ~90 MB (at 1,024 pixels, ~450 MB).
SERVING_SIDE = int(os.environ.get("GREENLENS_SERVING_SIDE", 512))
# What a folder, a zip or a data folder counts as an image, by name.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# The only decoders an image is opened with (PIL's names; JPEG also opens phones' multi-picture MPO files).
# Pillow tries some forty by default, EPS among them, which runs Ghostscript: an upload is untrusted, and
# each decoder beyond the formats we name is attack surface that serves no user.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
NOT_READABLE = "is not an image this app can read (JPEG, PNG, GIF, WebP, BMP, TIFF)."


class ImageError(ValueError):
    """An input that is not a usable image; the message is meant for the user."""


def decode_image(source: str | Path | bytes | Image.Image, max_pixels: int = MAX_PIXELS,
                 max_side: int | None = None, *, formats: tuple[str, ...] | list[str] = FORMATS) -> np.ndarray:
    """Returns the image as a (height, width, 3) uint8 RGB array.

    With `max_side`, the image comes back at most that many pixels on its long side, decoded
    downscaled where the format allows (JPEG's DCT scaling): an 8,000 x 8,000 photo costs a few
    megabytes, not 200. `formats` (PIL's names, e.g. ["PNG"]) are the decoders tried: by default FORMATS."""
    if source is None:
        raise ImageError("No image was given.")
    name = "the image" if isinstance(source, (bytes, Image.Image)) else Path(source).name
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            if isinstance(source, bytes):
                if not source:
                    raise ImageError("The file is empty (0 bytes).")
                image = Image.open(io.BytesIO(source), formats=formats)
            else:
                if os.path.getsize(source) == 0:
                    raise ImageError(f"{name} is empty (0 bytes).")
                image = Image.open(source, formats=formats)
        except Image.DecompressionBombError:
            raise ImageError(f"{name} is over the limit of {max_pixels:,} pixels; scale it down first.") from None
        except (UnidentifiedImageError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise ImageError(f"{name} does not exist.") from None
            raise ImageError(f"{name} {NOT_READABLE}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width} x {height} pixels, over the limit of {max_pixels:,} pixels; scale it down first."
        )
    if width < 1 or height < 1:
        raise ImageError(f"{name} has no pixels.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if max_side is not None:
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            pixels = _to_rgb(ImageOps.exif_transpose(image))
        if max_side is not None and max(pixels.shape[:2]) > max_side:
            smaller = Image.fromarray(pixels)
            smaller.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            pixels = np.asarray(smaller)
        return pixels
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded.") from error


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and 32-bit grayscale: PIL's convert("RGB") clips instead of scaling.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become black: the nearest thing in the training data is the
        # black background of PlantVillage's segmented leaves.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
