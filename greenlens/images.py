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

# 8,000 x 8,000 aerial surveys must pass; a decompression bomb (e.g. 30,000 x 30,000 PNG of a
# few kilobytes) must not be decoded at all. Only the header is read before this check.
MAX_PIXELS = int(os.environ.get("GREENLENS_MAX_PIXELS", 8_192 * 8_192))
Image.MAX_IMAGE_PIXELS = None  # our own limit below gives a clear message instead of PIL's


class ImageError(ValueError):
    """An input that is not a usable image; the message is meant for the user."""


def decode_image(source: str | Path | bytes | Image.Image, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Returns the image as a (height, width, 3) uint8 RGB array."""
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
                image = Image.open(io.BytesIO(source))
            else:
                if os.path.getsize(source) == 0:
                    raise ImageError(f"{name} is empty (0 bytes).")
                image = Image.open(source)
        except (UnidentifiedImageError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise ImageError(f"{name} does not exist.") from None
            raise ImageError(f"{name} is not an image this app can read (JPEG, PNG, GIF, WebP, BMP, TIFF).") from None
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
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
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
