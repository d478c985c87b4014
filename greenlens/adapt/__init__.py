"""Adapting a tile model to one's own flight: training tiles from GIS annotations (cactus points or crowns
and the areas where every cactus is marked), split by spatial blocks, and the two-stage fine-tuning of
greenlens.training started from an existing model repo. It builds on survey (rasters, layers, the tile
grid) and training; only the command line builds on it."""

from greenlens.adapt.annotations import AnnotationError, annotated_tiles
from greenlens.adapt.run import AdaptSettings, adapt

__all__ = ["AdaptSettings", "AnnotationError", "adapt", "annotated_tiles"]
