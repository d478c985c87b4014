"""Training views that look like what real users send: phone photos (blur, sensor noise, JPEG, exposure,
white balance, framing, occlusion, other backgrounds) and other flights (sensor, light, ground resolution).

A task's `Augmentation` (greenlens.core.tasks) says how strong each change gets; this module turns it into an
albumentations pipeline (OpenCV kernels, a few milliseconds an image). View 0 of every training image
stays the image itself.

The AugMix protocol (Hendrycks et al. 2020): robustness is measured with the ImageNet-C corruptions of the
`imagecorruptions` package (benchmarks/robustness.py), and none of them is used here. Training blurs,
adds noise and re-compresses with albumentations' own implementations and parameters; snow, frost, fog,
zoom and glass blur, elastic transforms and pixelation have no counterpart here at all, so they measure
changes the model has never seen.
"""

from __future__ import annotations

import random

import numpy as np

from greenlens.core.tasks import Augmentation

# A border mostly this dark is PlantVillage's segmented variant: the leaf cut out on black (it may
# touch the edge in places).
BLACK_BORDER = 12


def view(image: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """One random realistic variation of `image` (uint8 RGB, any size; the same size back)."""
    if augmentation.backgrounds and _has_black_border(image) and rng.random() < 0.8:
        image = composite(image, background(image.shape[:2], rng), rng, augmentation.zoom_out)
    elif augmentation.zoom_out < 1 and rng.random() < 0.3:
        image = _shrink_onto(image, _border_colour_canvas(image, rng), rng, augmentation.zoom_out)
    pipeline = _pipeline(augmentation, image.shape[0])
    # The views follow the run's seed alone, through one stream that every transform draws from in turn.
    # Not `set_random_seed`: albumentations 2.0.8 gives each transform its own generator seeded alike, so their
    # draws coincide and the changes came only in 14-20 fixed combinations (noise always with blur, JPEG and a
    # colour cast; 40% of views with none of them), where they are meant to combine independently.
    seed = int(rng.integers(2**31))
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline(image=image)["image"]


def geometric(image: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """A flip or rotation that leaves the pixels alone (the guard's and the evaluation's cheap views)."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if augmentation.geometry == "dihedral":
        image = np.rot90(image, k=int(rng.integers(4)))
    elif rng.random() < 0.5:
        image = image[::-1]
    return np.ascontiguousarray(image)


_PIPELINES: dict = {}


def _pipeline(augmentation: Augmentation, side: int):
    """The albumentations pipeline for images of about `side` pixels (built once per augmentation)."""
    key = (augmentation, side)
    if key not in _PIPELINES:
        _PIPELINES[key] = _build(augmentation, side)
    return _PIPELINES[key]


def _build(a: Augmentation, side: int):
    import albumentations as A
    import cv2

    flips = [A.HorizontalFlip(), A.VerticalFlip()] if a.geometry == "flips" else [A.D4()]
    blur_px = max(a.blur * side, 0.35)  # a.blur is relative to the image side

    def odd(value: float) -> int:  # blur kernel sizes must be odd
        return int(value) | 1

    return A.Compose([
        *flips,
        A.Affine(scale=a.scale, rotate=(-a.rotation, a.rotation), translate_percent=(-0.05, 0.05),
                 border_mode=cv2.BORDER_REFLECT_101, p=0.6),
        A.OneOf([
            A.GaussianBlur(blur_limit=0, sigma_limit=(0.3, blur_px)),
            A.MotionBlur(blur_limit=(3, max(3, odd(blur_px * a.motion))), angle_range=(0, 360)),
            A.Defocus(radius=(1, max(1, round(blur_px * 1.5))), alias_blur=(0.1, 0.4)),
        ], p=0.45),
        A.OneOf([
            A.GaussNoise(std_range=(0.01, a.noise), per_channel=True),
            A.ISONoise(color_shift=(0.01, 0.06), intensity=(0.1, 0.2 + 4 * a.noise)),
            A.MultiplicativeNoise(multiplier=(1 - 2 * a.noise, 1 + 2 * a.noise), per_channel=True, elementwise=True),
        ], p=a.noise_share),
        # Darkening is held to 0.7 of the lightening: with a lowered contrast and a dark subject it soon
        # leaves nothing to see.
        A.RandomBrightnessContrast(brightness_limit=(-0.7 * a.light, a.light), contrast_limit=(-max(a.light, a.haze), a.light),
                                   p=0.6),
        A.RandomGamma(gamma_limit=(int(100 - 100 * a.light), int(100 + 120 * a.light)), p=0.3),
        A.OneOf([
            A.PlanckianJitter(mode="blackbody"),
            A.RGBShift(r_shift_limit=int(60 * a.colour), g_shift_limit=int(40 * a.colour), b_shift_limit=int(60 * a.colour)),
            A.HueSaturationValue(hue_shift_limit=int(12 * a.colour), sat_shift_limit=int(40 * a.colour), val_shift_limit=0),
        ], p=0.5),
        A.RandomShadow(shadow_roi=(0, 0, 1, 1), num_shadows_limit=(1, 2), shadow_dimension=4, p=0.15 * (a.occlusion > 0)),
        A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.05, max(a.occlusion, 0.06)),
                        hole_width_range=(0.05, max(a.occlusion, 0.06)), fill="random_uniform", p=0.25 * (a.occlusion > 0)),
        A.ImageCompression(quality_range=(a.jpeg_quality, 95), p=0.4),
    ])


def _has_black_border(image: np.ndarray) -> bool:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(border.max(axis=1))) < BLACK_BORDER


def leaf_mask(image: np.ndarray) -> np.ndarray:
    """The cut-out leaf of a segmented photo: pixels clearly above black, holes (dark scorch spots) filled."""
    from scipy import ndimage

    mask = ndimage.binary_opening(image.max(axis=2) > 24, iterations=1)
    labels, count = ndimage.label(mask)
    if count > 1:  # the leaf is the largest piece; specks of JPEG noise on the black go
        mask = labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, count + 1))))
    return ndimage.binary_fill_holes(mask)


def composite(image: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, zoom_out: float) -> np.ndarray:
    """The cut-out leaf of `image` on `canvas` (same size), at a random scale down to `zoom_out` of the
    frame and a random place, with a softened edge."""
    from PIL import Image, ImageFilter

    mask = leaf_mask(image)
    scale = rng.uniform(zoom_out, 1.0) if rng.random() < 0.6 else 1.0
    leaf, place = _scaled_and_placed(image, scale, rng)
    size = leaf.shape[1], leaf.shape[0]
    soft_edge = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    alpha = np.asarray(soft_edge.filter(ImageFilter.GaussianBlur(1.0)), np.float32)[..., None] / 255
    out = canvas.astype(np.float32)
    out[place] = out[place] * (1 - alpha) + leaf * alpha
    return out.astype(np.uint8)


def _shrink_onto(image: np.ndarray, canvas: np.ndarray, rng: np.random.Generator, zoom_out: float) -> np.ndarray:
    """The whole photo shrunk (a photo taken from further away) at a random place on `canvas`."""
    small, place = _scaled_and_placed(image, rng.uniform(zoom_out, 0.95), rng)
    out = canvas.copy()
    out[place] = small
    return out


def _scaled_and_placed(image: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, tuple[slice, slice]]:
    """`image` resized by `scale` (at least 8 pixels a side), and a random place for it within the frame."""
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    scaled = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    x, y = int(rng.integers(0, width - size[0] + 1)), int(rng.integers(0, height - size[1] + 1))
    return scaled, (slice(y, y + size[1]), slice(x, x + size[0]))


def _border_colour_canvas(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plain surface of about the photo's own border colour, slightly shaded and grainy."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    colour = np.median(border, axis=0) * rng.uniform(0.85, 1.15, 3)
    height, width = image.shape[:2]
    shade = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), width)[None, :, None]
    canvas = colour[None, None] * shade + rng.normal(0, 3, (height, width, 3))
    return np.clip(canvas, 0, 255).astype(np.uint8)


def background(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A made-up surface a leaf might be photographed on: soil, a table, cloth, grass or a hand's
    palm in colour; smooth fractal noise in one or two colours, sometimes grained or striped."""
    height, width = shape
    palettes = np.array([
        [92, 64, 40], [120, 90, 60], [60, 45, 30], [150, 120, 90],  # soil, wood
        [200, 200, 195], [235, 235, 230], [130, 130, 135], [40, 40, 45],  # paper, table, slate, dark cloth
        [70, 110, 50], [100, 140, 70], [45, 80, 35],  # grass, foliage
        [210, 170, 140], [180, 130, 100],  # skin (a hand holding the leaf)
        [60, 90, 140], [150, 60, 60],  # painted surfaces
    ], np.float32)
    first, second = palettes[rng.integers(len(palettes), size=2)] * rng.uniform(0.8, 1.2, (2, 3))
    field = _fractal_noise(height, width, rng)
    canvas = first * (1 - field[..., None]) + second * field[..., None]
    if rng.random() < 0.3:  # wood grain or woven cloth
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
        y, x = np.mgrid[0:height, 0:width]
        canvas *= (1 + 0.08 * np.sin((x * np.cos(angle) + y * np.sin(angle)) / period * 2 * np.pi))[..., None]
    canvas += rng.normal(0, rng.uniform(1, 8), canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _fractal_noise(height: int, width: int, rng: np.random.Generator, octaves: int = 4) -> np.ndarray:
    """Smooth noise in [0, 1]: random grids of growing fineness, upsampled and summed."""
    from PIL import Image

    total = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        grid = rng.random((cells, cells)).astype(np.float32)
        layer = np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC))
        total += layer / 2**octave
    total -= total.min()
    return total / max(float(total.max()), 1e-6)
