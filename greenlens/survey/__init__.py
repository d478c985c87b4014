"""Surveys of aerial images and orthomosaics, without TensorFlow: rasters (opening what an upload claims
to be), grid (tiles, chunks and the classification of one chunk), tile_model (the LiteRT tile model and
guard of a model repo), run (a survey of one or many rasters), outputs (CSV, GeoPackage, GeoJSON,
GeoTIFF, preview) and cluster (the same chunks on Dask workers). Uses core/'s TensorFlow-free modules
only; `import greenlens.survey` loads no TensorFlow (tests/test_packaging.py)."""

from greenlens.survey.grid import CHUNK, SurveyError
from greenlens.survey.run import THRESHOLD, Limits, SurveyResult, survey_raster, survey_rasters

__all__ = ["CHUNK", "THRESHOLD", "Limits", "SurveyError", "SurveyResult", "survey_raster", "survey_rasters"]
