"""Labelled training tiles from GIS annotations: orthomosaics, a layer of marked cacti (points, or crown
polygons) and a layer of annotated areas (polygons inside which every cactus is marked).

Only tiles wholly inside an annotated area, wholly in the data, are used: outside the annotated areas an
unmarked cactus would become a negative. A tile is positive when a marked point lies inside it (or it holds
POLYGON_SHARE of a marked polygon, or the polygon covers TILE_COVER of it); a tile that a mark only grazes (a
point within EDGE of its border from outside, a polygon below both shares) is ambiguous and left out, as no
label would be true of it. Tiles are cut on the survey's grid by the survey's own reader
(greenlens.survey.grid.read_chunk), so the model is trained on tiles resampled exactly as a survey
resamples them, and each tile belongs to a spatial block of `block_tiles` x `block_tiles` tiles: the
train / validation / test split keeps blocks whole, as neighbouring tiles share ground and look alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from greenlens.survey.areas import Layer, VectorFile, in_pixels, read_vector
from greenlens.survey.grid import Grid, SurveyError, read_chunk
from greenlens.survey.outputs import pixel_size_m
from greenlens.survey.rasters import Raster, open_raster

EDGE = 0.125  # share of the tile side: a point this close to a tile from outside makes it ambiguous
POLYGON_SHARE = 0.5  # a tile holds a marked polygon that has this share of its area inside the tile...
TILE_COVER = 0.25  # ...or that covers this share of the tile
BLOCK_TILES = 4
# The two layers, as messages name them.
MARKS, ANNOTATED = "cactus annotations", "annotated areas"
NO_AREAS = ("adapting needs an annotated-area layer (--areas): polygons inside which every cactus is marked. "
            "Without it, every cactus you did not mark would become a training example of no cactus. Draw "
            "polygons around the parts of the flight where you marked all of them (see the README)")


class AnnotationError(ValueError):
    """Annotations that cannot make training tiles; the message says what to fix."""


@dataclass
class AnnotatedTiles:
    """Tiles at the model's tile side, with whether each holds a marked cactus, its spatial block, its
    raster and its place (`raster.tif/x<col px>_y<row px>`)."""

    images: list[np.ndarray]
    positive: np.ndarray
    blocks: list[str]
    sources: list[str]
    names: list[str]
    tile_ground_m: float
    rasters: list[dict] = field(default_factory=list)  # per raster: what was cut and why


def annotated_tiles(rasters, points, areas, *, model_tile: int, tile_size: int | None = None,
                    tile_ground_m: float | None = None, block_tiles: int = BLOCK_TILES, log=print) -> AnnotatedTiles:
    """Cuts labelled tiles of `tile_size` source pixels (or of `tile_ground_m` metres of ground) from each
    raster, resampled to `model_tile`. `points`: cactus points or crown polygons; `areas`: the annotated-area
    polygons; both in GeoPackage, Shapefile or GeoJSON, in any CRS. Raises AnnotationError (bad annotations)
    or SurveyError (an unreadable raster or layer) before anything is trained or written."""
    if areas is None:
        raise AnnotationError(NO_AREAS)
    if points is None:
        raise AnnotationError("adapting needs a layer of marked cacti (--points): points, or crown polygons")
    if not tile_size and not tile_ground_m:
        raise AnnotationError(
            "the model does not record the ground size of its training tiles (the bundled model was trained on "
            "Kaggle's 32 x 32 tiles of an unknown ground resolution): give --tile-size, the number of your "
            "raster's pixels one tile of the model should cover (look at a cactus: a training tile holds about "
            "one, with some ground around it)")
    if block_tiles < 1:
        raise AnnotationError("--block-tiles must be at least 1")
    paths = [Path(path) for path in rasters]
    if not paths:
        raise AnnotationError("no raster given")
    parts, placed_marks, areas_used, layers = [], None, False, None
    for path in paths:
        with open_raster(path) as raster:
            if raster.crs is None:
                raise AnnotationError(f"{raster.name} has no CRS: annotations are placed on a georeferenced raster "
                                      "(a GeoTIFF with its CRS and transform)")
            layers = layers or (read_vector(points, kinds=("points", "polygons"), what=MARKS),  # read once
                                read_vector(areas, kinds=("polygons",), what=ANNOTATED))
            part, placed, used = _cut_raster(raster, *layers, model_tile=model_tile, tile_size=tile_size,
                                             tile_ground_m=tile_ground_m, block_tiles=block_tiles)
        parts.append(part)
        placed_marks = placed if placed_marks is None else placed_marks | placed
        areas_used |= used
        log(f"{part['raster']}: {part['tiles']} tiles of {part['tile_size_px']} px ({part['tile_ground_m']:.3g} m) "
            f"inside the annotated areas, {part['positive']} with a marked cactus; {part['ambiguous']} left out as "
            f"ambiguous, {part['incomplete']} for missing data")
    _check_placement(placed_marks, areas_used, points, areas, paths)
    tiles = _concatenate(parts)
    _check_classes(tiles, areas)
    return tiles


def _cut_raster(raster: Raster, points: VectorFile, areas: VectorFile, *, model_tile: int, tile_size: int | None,
                tile_ground_m: float | None, block_tiles: int) -> tuple[dict, np.ndarray, bool]:
    """One raster's labelled tiles; with which marks lie on it, and whether an annotated area does."""
    import shapely

    pixel_m = pixel_size_m(raster.crs, raster.transform, (raster.width, raster.height))
    if not pixel_m:
        raise AnnotationError(f"{raster.name}: its pixel size in metres is unknown (no CRS or transform)")
    size = tile_size or max(1, round((tile_ground_m or 0) / pixel_m))
    annotated = in_pixels(areas, raster, what=ANNOTATED)
    marks = in_pixels(points, raster, what=MARKS)
    grid = Grid(raster.width, raster.height, size, size, model_tile)
    frame = shapely.box(0, 0, raster.width, raster.height)
    shapes = np.array(marks.shapes, dtype=object)
    placed = shapely.intersects(frame, shapes) if marks.kind == "polygons" else shapely.within(shapes, frame)
    cover = shapely.intersection(shapely.union_all(np.array(annotated.shapes, dtype=object)), frame)
    rows, cols = _tiles_inside(cover, grid)
    positive, ambiguous = _labels(marks, grid)
    key = rows * grid.cols + cols
    keep = ~np.isin(key, ambiguous)
    rows, cols = rows[keep], cols[keep]
    images, kept = _read_tiles(raster, grid, rows, cols)
    rows, cols = rows[kept], cols[kept]
    labels = np.isin(rows * grid.cols + cols, positive)
    part = {
        "raster": raster.name, "tile_size_px": size, "pixel_size_m": pixel_m, "tile_ground_m": size * pixel_m,
        "tiles": len(rows), "positive": int(labels.sum()), "ambiguous": int((~keep).sum()),
        "incomplete": int(keep.sum() - len(rows)), "marks_on_raster": int(placed.sum()),
        "images": images, "labels": labels,
        "blocks": [f"{raster.name}:{r // block_tiles}:{c // block_tiles}" for r, c in zip(rows, cols)],
        "names": [f"{raster.name}/x{c * size}_y{r * size}" for r, c in zip(rows, cols)],
    }
    return part, placed, not cover.is_empty


def _tiles_inside(cover, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the grid's tiles wholly inside `cover`."""
    import shapely

    if cover.is_empty:
        return np.zeros(0, int), np.zeros(0, int)
    left, top, right, bottom = cover.bounds
    size = grid.tile_size
    rows = np.arange(int(top // size), min(grid.rows, int(np.ceil(bottom / size))))
    cols = np.arange(int(left // size), min(grid.cols, int(np.ceil(right / size))))
    rows, cols = (axis.ravel() for axis in np.meshgrid(rows, cols, indexing="ij"))
    shapely.prepare(cover)
    inside = shapely.covers(cover, shapely.box(cols * size, rows * size, (cols + 1) * size, (rows + 1) * size))
    return rows[inside], cols[inside]


def _labels(marks: Layer, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Tile keys (row * cols + col) that hold a mark, and those a mark only grazes (without the first)."""
    import shapely

    size, cols = grid.tile_size, grid.cols
    shapes = np.array(marks.shapes, dtype=object)
    if marks.kind == "points":
        xy = shapely.get_coordinates(shapes)
        own = (xy[:, 1] // size) * cols + xy[:, 0] // size
        margin = EDGE * size
        near = [((xy[:, 1] + dy) // size) * cols + (xy[:, 0] + dx) // size
                for dx in (-margin, 0, margin) for dy in (-margin, 0, margin)]
        positive = np.unique(own).astype(int)
        return positive, np.setdiff1d(np.unique(np.concatenate(near)).astype(int), positive)
    boxes_tree = shapely.STRtree(shapes)
    left, top, right, bottom = shapely.total_bounds(shapes)
    rows = np.arange(max(0, int(top // size)), min(grid.rows, int(np.ceil(bottom / size))))
    col_range = np.arange(max(0, int(left // size)), min(cols, int(np.ceil(right / size))))
    rows, tile_cols = (axis.ravel() for axis in np.meshgrid(rows, col_range, indexing="ij"))
    boxes = shapely.box(tile_cols * size, rows * size, (tile_cols + 1) * size, (rows + 1) * size)
    tile_index, mark_index = boxes_tree.query(boxes, predicate="intersects")
    overlap = shapely.area(shapely.intersection(boxes[tile_index], shapes[mark_index]))
    holds = (overlap >= POLYGON_SHARE * shapely.area(shapes[mark_index])) | (overlap >= TILE_COVER * size * size)
    keys = rows[tile_index] * cols + tile_cols[tile_index]
    positive = np.unique(keys[holds])
    return positive, np.setdiff1d(np.unique(keys[overlap > 0]), positive)


def _read_tiles(raster: Raster, grid: Grid, rows: np.ndarray, cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The tiles at (rows, cols) wholly in the data, read chunk by chunk (only chunks that hold one), and
    which of the given tiles they are."""
    images: list[np.ndarray] = [np.zeros(0)] * len(rows)
    complete = np.zeros(len(rows), bool)
    held = [(chunk, np.flatnonzero((rows >= chunk.row0) & (rows < chunk.row1) & (cols >= chunk.col0) & (cols < chunk.col1)))
            for chunk in grid.chunks()]
    held = [(chunk, mine) for chunk, mine in held if len(mine)]
    for chunk, mine in tqdm(held, desc=f"Cutting tiles of {raster.name}", unit="chunk", disable=len(held) < 4):
        read = read_chunk(raster, grid, chunk)
        r, c = rows[mine] - chunk.row0, cols[mine] - chunk.col0
        full = read.share(read.valid)[r, c] >= 1.0
        for index, tile in zip(mine[full], read.tiles(r[full], c[full])):
            images[index] = np.array(tile)
        complete[mine[full]] = True
    return [image for image, ok in zip(images, complete) if ok], complete


def _check_placement(placed: np.ndarray | None, areas_used: bool, points, areas, paths: list[Path]) -> None:
    names = ", ".join(path.name for path in paths)
    if not areas_used:
        raise AnnotationError(f"no annotated area of {Path(areas).name} overlaps {names}: check that the layer belongs "
                              "to these rasters (and its CRS)")
    if placed is not None and not placed.all():
        outside = np.flatnonzero(~placed)
        raise AnnotationError(
            f"{len(outside)} of the {len(placed)} marked cacti of {Path(points).name} lie outside every raster "
            f"({names}), the first of them feature {outside[0] + 1}: check the layer's CRS (a layer saved without "
            "reprojection lands elsewhere), or delete marks of places you did not fly")


def _check_classes(tiles: AnnotatedTiles, areas) -> None:
    if not len(tiles.images):
        raise AnnotationError(f"no tile lies wholly inside the annotated areas of {Path(areas).name} and the data: draw "
                              "larger areas (a tile is --tile-size pixels) or check the tile size")
    positives = int(tiles.positive.sum())
    if positives == 0 or positives == len(tiles.positive):
        kind = "no" if positives == 0 else "only"
        raise AnnotationError(f"the annotated areas hold {kind} tiles with a marked cactus ({len(tiles.positive)} tiles): "
                              "the model needs examples of both; annotate areas with and without cacti")


def _concatenate(parts: list[dict]) -> AnnotatedTiles:
    ground = [part["tile_ground_m"] for part in parts if part["tiles"]] or [parts[0]["tile_ground_m"]]
    return AnnotatedTiles(
        images=[image for part in parts for image in part["images"]],
        positive=np.concatenate([part["labels"] for part in parts]),
        blocks=[block for part in parts for block in part["blocks"]],
        sources=[part["raster"] for part in parts for _ in part["names"]],
        names=[name for part in parts for name in part["names"]],
        tile_ground_m=float(np.mean(ground)),
        rasters=[{key: value for key, value in part.items() if key not in ("images", "labels", "blocks", "names")}
                 for part in parts],
    )


def check_blocks(tiles: AnnotatedTiles, needed: int, block_tiles: int) -> None:
    """The split keeps blocks whole: it needs at least `needed` of them."""
    blocks = len(set(tiles.blocks))
    if blocks < needed:
        raise AnnotationError(
            f"the annotated areas hold {blocks} spatial blocks of {block_tiles} x {block_tiles} tiles; a train / "
            f"validation / test split by blocks needs at least {needed}: annotate more of the flight, or give a "
            "smaller --block-tiles")


__all__ = ["AnnotatedTiles", "AnnotationError", "SurveyError", "annotated_tiles", "check_blocks"]
