"""Areas of interest: the polygons (management units, transects, the reserve's boundary) a survey is limited
to and reported by. A tile at least half outside every polygon is skipped and counted, as a tile at least
half outside the data is; each classified tile belongs to the polygon that holds its centre (where polygons
overlap, the later one in the file). Per polygon: its own attributes, then the survey's figures.

The polygons are read with pyogrio (GeoPackage, GeoJSON, Shapefile, a zipped Shapefile), in any CRS, and
carried in the raster's pixel coordinates: as such they travel to Dask workers with each raster's chunks.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenlens.survey.grid import Grid, SurveyError
from greenlens.survey.rasters import Raster, Window

# Shapely's geometry type ids, by the kind of layer they make.
GEOMETRIES = {"polygons": {3, 6}, "points": {0, 4}}  # Polygon, MultiPolygon; Point, MultiPoint
TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
              6: "MultiPolygon", 7: "GeometryCollection"}
# An upload (the app's) is opened only as the format its name claims, and its size is capped: rasterizing
# costs time in proportion to the vertices.
UNTRUSTED_FORMATS = {".gpkg": ("GeoPackage", (b"SQLite format 3\x00",)), ".geojson": ("GeoJSON", (b"{",)),
                     ".json": ("GeoJSON", (b"{",)), ".zip": ("zipped Shapefile", (b"PK\x03\x04",))}
MAX_POLYGONS = 1_000
MAX_VERTICES = 1_000_000


@dataclass(frozen=True)
class Layer:
    """The features of a vector layer in a raster's pixel coordinates (shapely), with each one's attributes,
    in the file's order; `kind` is "points" or "polygons"."""

    name: str
    shapes: tuple
    fields: tuple[str, ...]
    attributes: tuple[dict, ...]
    kind: str = "polygons"


class Areas(Layer):
    """Polygons that a survey is limited to and reported by."""

    def mask(self, window: Window, scale: float, shape: tuple[int, int]) -> np.ndarray:
        """Which pixels of `window`, read at `scale`, lie inside a polygon (pixel centres)."""
        import shapely
        from affine import Affine
        from rasterio.features import rasterize

        box = shapely.box(window.x, window.y, window.x + window.width, window.y + window.height)
        touching = [shape for shape in self.shapes if shape.intersects(box)]
        if not touching:
            return np.zeros(shape, bool)
        transform = Affine(1 / scale, 0, window.x, 0, 1 / scale, window.y)
        return rasterize([(shape, 1) for shape in touching], out_shape=shape, transform=transform, fill=0,
                         dtype="uint8") > 0

    def index(self, grid: Grid) -> np.ndarray:
        """(rows, cols) int32: 1 + the polygon that holds each tile's centre, 0 where none does."""
        from affine import Affine
        from rasterio.features import rasterize

        offset = grid.tile_size / 2 - grid.stride / 2  # cell centres at tile centres
        transform = Affine(grid.stride, 0, offset, 0, grid.stride, offset)
        shapes = [(shape, number) for number, shape in enumerate(self.shapes, start=1)]
        return rasterize(shapes, out_shape=(grid.rows, grid.cols), transform=transform, fill=0, dtype="int32")


@dataclass(frozen=True)
class VectorFile:
    """A vector layer as read from its file, in its own CRS: read once, then placed on each raster
    (`in_pixels`)."""

    name: str
    crs: str
    shapes: np.ndarray  # shapely geometries
    fields: tuple[str, ...]
    attributes: tuple[dict, ...]
    kind: str


AREAS = "areas of interest"


def areas_on(vector: VectorFile, raster: Raster) -> Areas:
    """Polygons read once (`read_vector` with kinds=("polygons",)) as the Areas of one raster."""
    layer = in_pixels(vector, raster, what=AREAS)
    return Areas(layer.name, layer.shapes, layer.fields, layer.attributes)


def georeferenced(raster: Raster, what: str):
    """The raster's CRS and transform; SurveyError for a raster without them (said before any layer file is
    opened)."""
    if raster.crs is None or raster.transform is None:
        raise SurveyError(f"{raster.name} has no CRS: {what} need a georeferenced raster")
    return raster.crs, raster.transform


def read_vector(path, *, kinds: tuple[str, ...], what: str, untrusted: bool = False) -> VectorFile:
    """The features of the first layer of `path` (all of one of `kinds`, keys of GEOMETRIES), in the layer's CRS.
    `what` names the layer in messages. Raises SurveyError for a layer without a CRS, an empty layer, features
    without a geometry, geometries of another kind or of mixed kinds. `untrusted` (an upload): opened only as
    the GeoPackage, GeoJSON or zipped Shapefile its name claims, with GDAL's network and sidecar files off, and
    at most MAX_POLYGONS features of MAX_VERTICES vertices in all."""
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError
    from pyogrio.raw import read

    path = Path(path)
    if untrusted:
        _check_claimed_format(path)
    try:
        with _untrusted_gdal() if untrusted else nullcontext():
            meta, _, geometry, values = read(str(path))
    except (DataSourceError, DataLayerError) as error:
        raise SurveyError(f"{path.name} is not a vector layer GDAL can read (GeoPackage, GeoJSON, Shapefile): "
                          f"{str(error).splitlines()[0]}") from None
    if meta.get("crs") is None:
        raise SurveyError(f"{path.name} has no CRS: set the layer's CRS in QGIS (Layer > Set CRS) and save it again")
    if geometry is None or not len(geometry):
        raise SurveyError(f"{path.name} holds no features: {what} need at least one")
    shapes = shapely.from_wkb(geometry)
    if untrusted and (len(shapes) > MAX_POLYGONS or int(shapely.get_num_coordinates(shapes).sum()) > MAX_VERTICES):
        raise SurveyError(f"{path.name} holds more than this server takes ({MAX_POLYGONS:,} polygons, "
                          f"{MAX_VERTICES:,} vertices): simplify it, or survey on your own machine")
    kind = _kind(path, shapes, kinds, what)
    fields = tuple(str(name) for name in meta["fields"])
    rows = tuple({name: _plain(column[i]) for name, column in zip(fields, values)} for i in range(len(shapes)))
    return VectorFile(path.name, str(meta["crs"]), shapes, fields, rows, kind)


def in_pixels(vector: VectorFile, raster: Raster, *, what: str) -> Layer:
    """`vector` reprojected from its CRS into `raster`'s pixel coordinates with pyproj. Raises SurveyError for a
    raster without a CRS."""
    import shapely
    from pyproj import CRS, Transformer

    crs, transform = georeferenced(raster, what)
    to_raster = Transformer.from_crs(CRS.from_user_input(vector.crs), CRS.from_user_input(crs.to_wkt()), always_xy=True)
    to_pixels = ~transform

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_raster.transform(xy[:, 0], xy[:, 1])
        return np.column_stack(to_pixels @ (np.asarray(x), np.asarray(y)))

    pixels = shapely.transform(vector.shapes, project)
    return Layer(vector.name, tuple(pixels.tolist()), vector.fields, vector.attributes, vector.kind)


def _kind(path: Path, shapes: np.ndarray, kinds: tuple[str, ...], what: str) -> str:
    """Which of `kinds` every geometry of the layer is; SurveyError when none or a mix."""
    import shapely

    types = set(shapely.get_type_id(shapes).tolist())
    if -1 in types:
        missing = int(sum(shape is None for shape in shapes))
        raise SurveyError(f"{path.name} has {missing} feature(s) without a geometry: delete them or draw them")
    found = [kind for kind in kinds if types <= GEOMETRIES[kind]]
    expected = " or ".join(kinds)
    if not found:
        names = ", ".join(sorted({TYPE_NAMES.get(t, str(t)) for t in types}))
        mixed = [kind for kind in kinds if types & GEOMETRIES[kind]]
        if mixed:
            raise SurveyError(f"{path.name} mixes {names} geometries: {what} are all {expected}")
        raise SurveyError(f"{path.name} holds {names} geometries: {what} are {expected}")
    return found[0]


def _check_claimed_format(path: Path) -> None:
    """The first bytes must be those of the format the suffix claims."""
    kind, magics = UNTRUSTED_FORMATS.get(path.suffix.lower(), (None, ()))
    if kind is None:
        raise SurveyError(f"{path.name} is not a GeoPackage, GeoJSON or zipped Shapefile (.gpkg, .geojson, .zip)")
    with open(path, "rb") as file:
        head = file.read(16).lstrip()
    if not head.startswith(magics):
        raise SurveyError(f"{path.name} is not a GeoPackage, GeoJSON or zipped Shapefile: its content is not the "
                          f"{kind} its name says")


@contextmanager
def _untrusted_gdal():
    """pyogrio has its own GDAL (not rasterio's): the settings of untrusted rasters (no network, no sidecar
    files) while an upload is read, then the earlier ones again (writing the GeoPackage needs none of them)."""
    import pyogrio

    from greenlens.survey.rasters import UNTRUSTED_GDAL

    earlier = {key: pyogrio.get_gdal_config_option(key) for key in UNTRUSTED_GDAL}
    pyogrio.set_gdal_config_options(UNTRUSTED_GDAL)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(earlier)


def area_rows(result, areas: Areas, pixel_m: float | None) -> list[dict]:
    """Per polygon: its attributes, then surveyed_ha, tiles, <positive>_tiles, <positive>_tiles_per_ha,
    patches (of touching positive tiles, counted in each area they reach) and ood_tiles."""
    index = areas.index(result.grid)
    count = len(areas.attributes) + 1  # index 0: no area

    def per_area(mask: np.ndarray) -> np.ndarray:
        """Tiles of `mask` in each area, in one pass over the grid (not one per polygon)."""
        return np.bincount(index[mask], minlength=count)

    tiles, positives = per_area(result.classified), per_area(result.hits)
    ood = per_area(result.flagged & result.classified)
    hit_area = index[result.hits]  # row-major, as the patch of each positive tile
    pairs = np.unique(np.stack([hit_area, _patch_of_hits(result)]), axis=1) if len(hit_area) else np.zeros((2, 0), int)
    patches = np.bincount(pairs[0], minlength=count)
    tile_ha = (result.grid.stride * pixel_m) ** 2 / 10_000 if pixel_m else None
    rows = []
    for number, attributes in enumerate(areas.attributes, start=1):
        hectares = int(tiles[number]) * tile_ha if tile_ha else None
        rows.append({
            **attributes,
            "surveyed_ha": round(hectares, 6) if hectares else None,
            "tiles": int(tiles[number]),
            f"{result.key}_tiles": int(positives[number]),
            f"{result.key}_tiles_per_ha": round(int(positives[number]) / hectares, 6) if hectares else None,
            "patches": int(patches[number]),
            "ood_tiles": int(ood[number]),
        })
    return rows


def _patch_of_hits(result) -> np.ndarray:
    """For each positive tile (row-major order), the index of the patch it belongs to."""
    import shapely

    from greenlens.survey.outputs import tile_boxes

    boxes, _, _ = tile_boxes(result, result.hits)
    if not len(boxes):
        return np.zeros(0, int)
    merged = [shape for shape, _ in result.patches]
    found = shapely.STRtree(merged).query(shapely.centroid(boxes), predicate="within")
    patch = np.full(len(boxes), -1)
    patch[found[0]] = found[1]
    return patch


def _plain(value):
    """A field value as JSON and CSV take it."""
    if isinstance(value, np.generic):
        return value.item()
    return value
