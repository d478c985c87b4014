"""A survey's output files, for people and for GIS: CSV, GeoPackage, GeoJSON, a probability GeoTIFF,
the summary and a preview. File and layer names come from the model's positive label
(`cactus_tiles.gpkg` for the cactus model).

Map geometry goes through the raster's geotransform, in the raster's CRS; the GeoJSON is in WGS84
longitude/latitude (RFC 7946), for web maps. A raster without a CRS gets the CSV, the summary and the
preview only, in pixel coordinates.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

NODATA = -1.0  # probability.tif: not classified, or flagged by the out-of-distribution guard


def crs_name(crs) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def pixel_size_m(crs, transform, size) -> float | None:
    """The side of one source pixel in metres: the CRS's linear unit for projected rasters, the
    geodesic size at the raster's centre for geographic ones. `size` is (width, height), or a Grid."""
    if crs is None or transform is None:
        return None
    if crs.is_projected:
        return abs(transform.a) * crs.linear_units_factor[1]
    from pyproj import Geod

    width, height = (size.width, size.height) if hasattr(size, "width") else size
    geod = Geod(ellps="WGS84")
    x, y = transform @ (width / 2, height / 2)
    dx, dy = transform.a, transform.e
    across = geod.inv(x, y, x + dx, y)[2]
    down = geod.inv(x, y, x, y + dy)[2]
    return float(np.sqrt(across * down))


def tile_boxes(result, mask: np.ndarray):
    """Shapely polygons of the tiles where `mask` is true, in pixel coordinates, row by row."""
    import shapely

    rings, rows, cols = tile_rings(result, mask)
    return shapely.polygons(rings), rows, cols


def tile_rings(result, mask: np.ndarray, to=None, *, top: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 5, 2) closed rings of the tiles where `mask` (the grid's rows from `top` on) is true, row by row, and their
    (rows, cols): in pixel coordinates, or through `to` ((n, 2) pixel points -> (n, 2)). Neighbouring tiles share
    corners, so `to` sees each corner once: reprojecting a survey's hundreds of thousands of tiles costs a quarter as
    much."""
    rows, cols = np.nonzero(mask)
    rows = rows + top
    grid = result.grid
    x0, y0 = cols * grid.stride, rows * grid.stride
    x1, y1 = x0 + grid.tile_size, y0 + grid.tile_size
    # Starting bottom left, then bottom right: counterclockwise on a north-up map (RFC 7946's orientation).
    xs = np.stack([x0, x1, x1, x0, x0], axis=1).astype(np.int64)
    ys = np.stack([y1, y1, y0, y0, y1], axis=1).astype(np.int64)
    if to is None:
        return np.stack([xs, ys], axis=-1).astype(np.float64), rows, cols
    span = grid.width + grid.tile_size + 1  # corner x < span: (x, y) -> one integer key
    keys, where = np.unique(ys * span + xs, return_inverse=True)
    corners = to(np.column_stack([keys % span, keys // span]).astype(np.float64))
    return corners[where.reshape(xs.shape)], rows, cols


def affine_points(transform):
    """(n, 2) pixel points -> (n, 2) points in the raster's CRS, through its geotransform."""
    return lambda xy: np.column_stack(transform @ (xy[:, 0], xy[:, 1]))


def to_map(geometries, transform):
    """Pixel-coordinate geometries -> the raster's CRS through its geotransform."""
    import shapely

    return shapely.transform(geometries, affine_points(transform))


def patches(result) -> list[tuple[object, int]]:
    """Touching positive tiles dissolved into patches: (polygon in pixel coordinates, tiles in it)."""
    import shapely

    if result.grid.stride == result.grid.tile_size:
        return _grid_patches(result)
    boxes, _, _ = tile_boxes(result, result.hits)
    if not len(boxes):
        return []
    merged = shapely.get_parts(shapely.union_all(boxes))
    centres = shapely.centroid(boxes)
    patch_of = shapely.STRtree(merged).query(centres, predicate="within")
    counts = np.bincount(patch_of[1], minlength=len(merged)) if patch_of.size else np.zeros(len(merged), int)
    return list(zip(merged, counts.tolist()))


def _grid_patches(result) -> list[tuple[object, int]]:
    """Where tiles do not overlap (stride = tile size), patches are the 4-connected regions of positive cells:
    GDAL's polygonize traces them in one pass over the grid (dissolving hundreds of thousands of boxes with
    shapely took most of a large survey's output time), each with its number of tiles."""
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    hits = result.hits
    if not hits.any():
        return []
    size = result.grid.stride
    traced = shapes(hits.astype(np.uint8), mask=hits, connectivity=4, transform=Affine(size, 0, 0, 0, size, 0))
    # Built in two vectorised calls from all rings' corners, rather than a shapely object per traced shape:
    # a large survey's patches have many holes (each gap of negative tiles they enclose), and one shapely object
    # per traced shape, built ring by ring, took twice as long.
    corners: list = []
    corners_per_ring, rings_per_patch = [], []
    for geometry, _ in traced:
        outline_and_holes = geometry["coordinates"]
        rings_per_patch.append(len(outline_and_holes))
        for ring in outline_and_holes:
            corners.extend(ring)
            corners_per_ring.append(len(ring))
    rings = shapely.linearrings(np.array(corners), indices=np.repeat(np.arange(len(corners_per_ring)), corners_per_ring))
    polygons = shapely.polygons(rings, indices=np.repeat(np.arange(len(rings_per_patch)), rings_per_patch))
    tiles = np.rint(shapely.area(polygons) / (size * size)).astype(int)
    return list(zip(polygons.tolist(), tiles.tolist()))


def write_outputs(result, out_dir: Path) -> dict[str, Path]:
    """Every output file of one survey into `out_dir`; returns their paths by kind. One after another: written side
    by side on two threads they took a ninth less time but held a third more memory at their peak (the map layers'
    writers hold the GIL; benchmarks/survey_outputs.py, docs/results.md)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"tiles": out_dir / "tiles.csv", "summary": out_dir / "summary.json", "overlay": out_dir / "overlay.png"}
    write_tiles_csv(result, files["tiles"])
    if result.crs is not None:
        files["geopackage"] = out_dir / f"{result.key}_tiles.gpkg"
        files["geojson"] = out_dir / f"{result.key}_tiles.geojson"
        files["probability"] = out_dir / "probability.tif"
        write_geopackage(result, result.patches, files["geopackage"])
        write_geojson(result, files["geojson"])
        write_probability_tif(result, files["probability"])
    if result.areas is not None:
        files["areas"] = out_dir / "areas.csv"
        write_table(result.area_rows, files["areas"])
        if result.crs is not None:
            write_areas_layer(result, files["geopackage"])
    write_overlay(result, files["overlay"])
    files["summary"].write_text(json.dumps(result.summary, indent=2) + "\n")
    return files


def write_overlay(result, path: Path) -> None:
    """The preview with the survey drawn on it (`overlay`), as a PNG. Level 1 and run-length matching: a
    4,096-pixel preview compresses in a fifth of the time of the default (its dimmed and nodata areas are runs),
    a little larger."""
    from PIL import Image

    Image.fromarray(overlay(result)).save(path, compress_level=1, compress_type=zlib.Z_RLE)


def bands(grid, block: int) -> Iterator[slice]:
    """Bands of whole grid rows, about `block` tiles each. The per-tile output files are made a band at a time, so
    what a writer holds is bounded by the band, not by the survey (a dense survey's positive tiles' rings alone
    took 80 bytes a tile)."""
    rows_per_band = max(1, block // grid.cols)
    return (slice(top, top + rows_per_band) for top in range(0, grid.rows, rows_per_band))


def positive_tiles(result, block: int, to) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The positive tiles' rings (their corners through `to`: `tile_rings`) and probabilities, a band of about
    `block` tiles at a time (`bands`), one pair per band, empty ones too."""
    for band in bands(result.grid, block):
        rings, rows, cols = tile_rings(result, result.hits[band], to, top=band.start)
        yield rings, result.probability[rows, cols].astype(np.float64)


def write_tiles_csv(result, path: Path, block: int = 50_000) -> None:
    """x,y (top-left source pixel), probability, and with a CRS map_x,map_y (the tile's centre);
    then out_of_distribution (1 where the guard flagged the tile). Classified tiles only, row by row.
    Formatted about `block` tiles at a time with one format string, as the csv module writes rows (comma,
    CRLF): a writer call per row took twice as long on a large survey's hundreds of thousands of tiles."""
    grid = result.grid
    georeferenced = result.crs is not None
    fields = [("x", "%d"), ("y", "%d"), ("probability", "%.6f"),
              *([("map_x", "%.3f"), ("map_y", "%.3f")] if georeferenced else []), ("out_of_distribution", "%d")]
    row_format = ",".join(form for _, form in fields) + "\r\n"
    with open(path, "w", newline="") as handle:
        handle.write(",".join(name for name, _ in fields) + "\r\n")
        for band in bands(grid, block):
            rows, cols = np.nonzero(result.classified[band])
            rows += band.start
            x, y = cols * grid.stride, rows * grid.stride
            columns = [x, y, result.probability[rows, cols].astype(np.float64)]
            if georeferenced:
                columns += list(result.transform @ (x + grid.tile_size / 2, y + grid.tile_size / 2))
            columns.append(result.flagged[rows, cols].astype(int))
            handle.write("".join(row_format % row for row in zip(*(column.tolist() for column in columns))))


def write_geopackage(result, found: list[tuple[object, int]], path: Path, block: int = 200_000) -> None:
    """Layer `<label>_tiles`: one polygon per positive tile with its probability, appended a band of about `block`
    tiles at a time (`bands`); layer `<label>_patches`: touching tiles dissolved, with `area_m2` and `tiles`. Bands
    larger than the CSV's: the first band's spatial index is built in one go, every later tile's entered one by one
    (the 20,000 x 20,000 benchmark's 289,559 tiles took 1.6 s in one band, 2.9 s in bands of 50,000)."""
    import shapely
    from pyogrio.raw import write

    path.unlink(missing_ok=True)
    crs, to_map_points = result.crs.to_wkt(), affine_points(result.transform)
    for index, (rings, probability) in enumerate(positive_tiles(result, block, to_map_points)):
        if index and not len(rings):
            continue  # the first band makes the layer, however empty; the rest only add tiles
        write(path, shapely.to_wkb(shapely.polygons(rings)), [probability], ["probability"], layer=f"{result.key}_tiles",
              driver="GPKG", geometry_type="Polygon", crs=crs, append=index > 0)
    shapes = (to_map(np.array([polygon for polygon, _ in found], dtype=object), result.transform) if found
              else np.empty(0, dtype=object))
    write(path, shapely.to_wkb(shapes), [_areas_m2(shapes, result.crs), np.array([n for _, n in found], np.int64)],
          ["area_m2", "tiles"], layer=f"{result.key}_patches", driver="GPKG", geometry_type="MultiPolygon",
          promote_to_multi=True, crs=crs)


def _areas_m2(shapes, crs) -> np.ndarray:
    import shapely

    if not len(shapes):
        return np.zeros(0)
    if crs.is_projected:
        return shapely.area(shapes) * crs.linear_units_factor[1] ** 2
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    return np.array([abs(geod.geometry_area_perimeter(shape)[0]) for shape in shapes])


# One feature of the GeoJSON: RFC 7946 asks for no more precision than needed (7 decimals: about 1 cm).
_FEATURE = ('{"type": "Feature", "properties": {"probability": %.6f}, "geometry": {"type": "Polygon", '
            '"coordinates": [[' + ", ".join(["[%.7f, %.7f]"] * 5) + "]]}}")


def write_geojson(result, path: Path, block: int = 20_000) -> None:
    """The positive tiles in WGS84 longitude/latitude (RFC 7946: no `crs` member, exterior rings
    counterclockwise), with their probability. Every feature is a box of five corners, so it is written
    here, a band of about `block` tiles at a time (`bands`): GDAL's GeoJSON driver took a tenth of a large survey's
    time for it."""
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(result.crs, "EPSG:4326", always_xy=True)
    to_map_points = affine_points(result.transform)

    def to_lonlat(xy):
        projected = to_map_points(xy)
        return np.column_stack(to_wgs84.transform(projected[:, 0], projected[:, 1]))

    with open(path, "w") as handle:
        name = json.dumps(f"{result.key}_tiles")
        handle.write(f'{{"type": "FeatureCollection", "name": {name}, "features": [\n')
        separator = ""
        for rings, probability in positive_tiles(result, block, to_lonlat):
            if not len(rings):
                continue
            if _signed_area(rings[0]) < 0:  # a raster that is not north-up: mirror every ring
                rings = rings[:, ::-1]
            values = np.column_stack([probability, rings.reshape(len(rings), 10)])
            # One format for the band: a third faster than one per feature.
            handle.write(separator + ",\n".join([_FEATURE] * len(values)) % tuple(values.ravel().tolist()))
            separator = ",\n"
        handle.write("\n]}\n")


def _signed_area(ring: np.ndarray) -> float:
    """The shoelace formula: positive for a counterclockwise ring."""
    x, y = ring[:, 0], ring[:, 1]
    return float((x[:-1] * y[1:] - x[1:] * y[:-1]).sum() / 2)


def write_probability_tif(result, path: Path) -> None:
    """One float32 pixel per stride cell, centred on its tile, in the raster's CRS: opened beside the
    orthomosaic in QGIS it lies over the tiles it scores."""
    import rasterio
    from affine import Affine

    grid = result.grid
    offset = (grid.tile_size - grid.stride) / 2
    transform = result.transform @ Affine.translation(offset, offset) @ Affine.scale(grid.stride)
    values = np.where(result.classified & ~result.flagged, result.probability, NODATA).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=grid.cols, height=grid.rows, count=1, dtype="float32",
                       crs=result.crs, transform=transform, nodata=NODATA, compress="deflate", tiled=grid.cols >= 256
                       and grid.rows >= 256) as dataset:
        dataset.write(values, 1)
        dataset.set_band_description(1, f"probability of {result.positive_label}")


def write_table(rows: list[dict], path: Path) -> None:
    """Rows of equal keys as a CSV (None as an empty cell)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def write_areas_layer(result, path: Path) -> None:
    """The `areas` layer of the GeoPackage: each polygon with its attributes and figures, in the raster's CRS."""
    import shapely
    from pyogrio.raw import write

    rows = result.area_rows
    shapes = to_map(np.array(result.areas.shapes, dtype=object), result.transform)
    columns = list(rows[0]) if rows else []
    values = [_column([row[column] for row in rows]) for column in columns]
    write(path, shapely.to_wkb(shapes), values, columns, layer="areas", driver="GPKG", geometry_type="MultiPolygon",
          promote_to_multi=True, crs=result.crs.to_wkt(), append=False)


def _column(values: list) -> np.ndarray:
    """A field for GDAL: integers, else numbers (None as NaN), else text."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, np.int64)
    if all(v is None or isinstance(v, int | float) for v in values):
        return np.array([np.nan if v is None else v for v in values], np.float64)
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def write_survey_table(results, path: Path) -> None:
    """One row per raster: its name and its summary."""
    summaries = [result.summary for result in results]
    columns = ["raster", *summaries[0]] if summaries else ["raster"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for result, summary in zip(results, summaries):
            writer.writerow({"raster": result.name, **{k: "" if v is None else v for k, v in summary.items()}})


def overlay(result, strip: int = 256) -> np.ndarray:
    """The preview (at most tiling.PREVIEW_SIDE pixels on its long side): positive tiles tinted by their
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


def _covering_max(values: np.ndarray, grid, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
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
