"""A synthetic "new flight" built from real labelled cactus tiles, for the adapt test and benchmark.

Real Kaggle tiles (the bundled model's held-out test split, so the base model has not trained on them) are
laid edge to edge and seen through another camera: 1.5x the ground resolution, a colour response of its own
(channels mixed, as a camera with other filters records them, with a gamma) and a softer lens. The mosaic is
a GeoTIFF in UTM zone 14N (the Tehuacán valley); the truth is each tile's label. Layers are written in other
CRSs (WGS84, Web Mercator), as a QGIS user's layers often are.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CRS = "EPSG:32614"
ORIGIN = (680_000.0, 2_040_000.0)  # metres, UTM 14N
PIXEL_M = 0.05
SCALE = 1.5  # the new camera's pixels per Kaggle pixel
TILE = 32
FLIGHT_TILE = round(TILE * SCALE)
# The new camera's response: each output channel a mix of the scene's, then a gamma.
MIX = np.array([[0.30, 0.55, 0.15], [0.15, 0.35, 0.50], [0.55, 0.10, 0.35]])
GAMMA = 0.5
BLUR = 2.5  # Gaussian sigma of the softer lens, in the new camera's pixels


@dataclass
class Flight:
    path: Path
    labels: np.ndarray  # (rows, cols): 1 where the tile holds a cactus
    transform: object  # affine: pixel -> metres in CRS

    @property
    def tile(self) -> int:
        return FLIGHT_TILE


def held_out_tiles(data_dir: Path, model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The real tiles of the base model's test split (test.csv) and their labels (1: cactus)."""
    from PIL import Image

    with open(model_dir / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tiles = np.stack([np.asarray(Image.open(data_dir / row["file"]).convert("RGB")) for row in rows])
    return tiles, np.array([row["label"] == "cactus" for row in rows], np.int64)


def new_camera(mosaic: np.ndarray) -> np.ndarray:
    """Kaggle pixels -> the new camera's: resampled to 1.5x, its own colour response, a softer lens."""
    from PIL import Image, ImageFilter

    height, width = mosaic.shape[:2]
    image = Image.fromarray(mosaic).resize((round(width * SCALE), round(height * SCALE)), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.GaussianBlur(BLUR))
    rgb = np.asarray(image, np.float32) / 255.0
    mixed = np.clip(rgb @ MIX.T, 0, 1) ** GAMMA
    return (mixed * 255 + 0.5).astype(np.uint8)


def make_flight(path: Path, tiles: np.ndarray, labels: np.ndarray, *, cols: int, origin=ORIGIN) -> Flight:
    """Lays `tiles` out `cols` to a row and writes the new camera's view of them as a GeoTIFF."""
    import rasterio
    from affine import Affine

    rows = len(tiles) // cols
    tiles, labels = tiles[: rows * cols], labels[: rows * cols]
    mosaic = tiles.reshape(rows, cols, TILE, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(rows * TILE, cols * TILE, 3)
    pixels = new_camera(mosaic)
    transform = Affine(PIXEL_M, 0, origin[0], 0, -PIXEL_M, origin[1])
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[1], height=pixels.shape[0], count=3, dtype="uint8",
                       crs=CRS, transform=transform, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate") as out:
        out.write(pixels.transpose(2, 0, 1))
    return Flight(Path(path), labels.reshape(rows, cols), transform)


def cactus_points(flight: Flight, seed: int = 0) -> list:
    """A point on each cactus tile (pixel coordinates), where an annotator would click: near its middle."""
    import shapely

    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(flight.labels)
    jitter = rng.uniform(-0.25, 0.25, (len(rows), 2)) * flight.tile
    return [shapely.Point((c + 0.5) * flight.tile + dx, (r + 0.5) * flight.tile + dy)
            for r, c, (dx, dy) in zip(rows, cols, jitter)]


def tile_box(flight: Flight, row0: int, row1: int, col0: int, col1: int, *, grow: float = 2.0):
    """A polygon over tiles [row0, row1) x [col0, col1), grown by `grow` pixels: reprojected to another
    CRS and back, its edges still enclose the tiles."""
    import shapely

    t = flight.tile
    return shapely.box(col0 * t - grow, row0 * t - grow, col1 * t + grow, row1 * t + grow)


def write_layer(path: Path, flight: Flight, shapes_px: list, fields: dict, *, crs: str | None = "EPSG:4326",
                geometry_type: str = "Polygon") -> Path:
    """Shapes in the flight's pixel coordinates -> a layer file in `crs` (GeoPackage or GeoJSON by suffix)."""
    import shapely
    from pyogrio.raw import write
    from pyproj import Transformer

    to_crs = Transformer.from_crs(CRS, crs or CRS, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = flight.transform @ (xy[:, 0], xy[:, 1])
        return np.column_stack(to_crs.transform(x, y))

    shapes = shapely.transform(np.array(shapes_px, dtype=object), project)
    write(str(path), shapely.to_wkb(shapes), [np.array(v, dtype=object) for v in fields.values()], list(fields),
          driver="GPKG" if path.suffix == ".gpkg" else "GeoJSON", geometry_type=geometry_type, crs=crs)
    return path


def data_dir() -> Path:
    """$DATA_DIR, or the shared folder beside the checkout."""
    return Path(os.environ.get("DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data").resolve()
