"""Decoding what users upload: every colour mode, EXIF rotation, damaged files, size limits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from greenlens.core.images import ImageError, decode_image

from .conftest import decompression_bomb


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)
    return buffer.getvalue()


def test_grayscale_rgba_palette_cmyk_become_rgb():
    gray = decode_image(png_bytes(Image.new("L", (5, 4), 128)))
    assert gray.shape == (4, 5, 3)
    assert (gray == 128).all()
    rgba = Image.new("RGBA", (3, 3), (200, 100, 50, 255))
    rgba.putpixel((0, 0), (255, 255, 255, 0))
    out = decode_image(png_bytes(rgba))
    assert tuple(out[1, 1]) == (200, 100, 50)
    assert tuple(out[0, 0]) == (0, 0, 0)
    palette = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.abs(decode_image(png_bytes(palette))[0, 0].astype(int) - (10, 200, 30)).max() <= 4
    cmyk = decode_image(png_bytes(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), format="JPEG"))
    assert cmyk[0, 0, 0] > 200
    assert cmyk[0, 0, 1] < 60


def test_16_bit_grayscale_is_scaled_not_clipped():
    deep = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    out = decode_image(png_bytes(deep))
    assert 125 <= out[0, 0, 0] <= 130


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    out = decode_image(png_bytes(image, format="JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 2] > 200  # the blue half is on top after rotation


def test_bad_files_give_plain_messages(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello, I am not a picture")
    with pytest.raises(ImageError, match="not an image"):
        decode_image(text)
    jpeg = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 3])
    with pytest.raises(ImageError, match="damaged or truncated"):
        decode_image(truncated)
    with pytest.raises(ImageError, match="No image"):
        decode_image(None)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = decompression_bomb()
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="over the limit of 67,108,864 pixels"):
        decode_image(bomb)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buffer.getvalue())
    assert out[0, 0, 0] > 200
    assert out[0, 0, 1] < 50


def test_large_photos_are_decoded_downscaled():
    """An 8,000 x 6,000 JPEG decoded with max_side=1,024 (serving uses SERVING_SIDE, 512) comes back at most
    1,024 pixels long, like the full decode shrunk, without ever holding the full-size image (JPEG's DCT scaling)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((8000, 6000), Image.Resampling.BILINEAR)
    data = png_bytes(photo, format="JPEG", quality=90)
    out = decode_image(data, max_side=1024)
    assert out.shape == (768, 1024, 3)
    reference = np.asarray(photo.resize((1024, 768), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(out.astype(float) - reference).mean() < 6
    assert decode_image(png_bytes(Image.fromarray(small)), max_side=1024).shape == (60, 80, 3)  # small ones untouched


def test_only_the_named_formats_are_decoded():
    """The same picture decodes from each format the app names (and a phone's multi-picture JPEG), and from
    formats Pillow could read but the app does not name (EPS, which Pillow hands to Ghostscript; Targa; PPM;
    PCX; JPEG 2000) it is refused with the plain message, named as a JPEG or not: no other decoder is tried."""
    rows, columns = np.mgrid[0:24, 0:32]
    picture = Image.fromarray(np.stack([rows * 10, columns * 8, 255 - rows * 5], axis=2).astype(np.uint8))
    named = {"JPEG": {"quality": 95}, "PNG": {}, "GIF": {}, "WEBP": {"lossless": True}, "BMP": {}, "TIFF": {},
             "MPO": {"save_all": True, "append_images": [picture]}}
    for format, options in named.items():
        out = decode_image(png_bytes(picture, format=format, **options))
        assert out.shape == (24, 32, 3), format
        assert np.abs(out.astype(int) - np.asarray(picture, int)).mean() < 8, format
    for format in ("EPS", "TGA", "PPM", "PCX", "JPEG2000"):
        data = png_bytes(picture, format=format)
        assert Image.open(io.BytesIO(data)).format == format  # Pillow alone would read it
        with pytest.raises(ImageError, match=r"not an image this app can read \(JPEG, PNG, GIF, WebP, BMP, TIFF\)"):
            decode_image(data)
