"""Classify images from the command line, survey a large aerial image, or write a Kaggle submission.

    python predict.py models/leaf photos/ --out predictions.csv         # a folder, a zip or image files
    python predict.py models/cactus DATA/aerial-cactus/test --kaggle-submission --out submission.csv
    python predict.py models/cactus ortho.tif --survey --out survey/     # GeoTIFF, PNG or JPEG: map, counts, density
    python predict.py models/cactus flights/*.tif --survey --out season/ --scheduler local:2   # one subfolder each

MODEL is a model folder or a Hub repo id (org/name, hf://org/name, org/name@revision).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("inputs", nargs="+", type=Path, help="image files, folders or zip files (rasters with --survey)")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write (a folder with --survey)")
    parser.add_argument("--kaggle-submission", action="store_true",
                        help="write the competition's submission format (id,has_cactus) like sample_submission.csv")
    parser.add_argument("--survey", action="store_true",
                        help="tile aerial images or orthomosaics and map the positive tiles (see greenlens.survey.run)")
    add_survey_options(parser)
    args = parser.parse_args(argv)
    if args.survey:
        return survey(args)

    from greenlens.core.inference import Classifier
    from greenlens.core.repository import ModelSourceError

    try:
        classifier = Classifier.load(args.model)
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from greenlens.core.folder_csv import classify_to_csv

    try:
        result = classify_to_csv(classifier, args.inputs, args.out, kaggle_submission=args.kaggle_submission)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {len(result.names)} rows to {args.out}")
    if result.failures:
        print(f"Skipped {len(result.failures)} unreadable file(s):", file=sys.stderr)
        for name, why in result.failures[:20]:
            print(f"  {name}: {why}", file=sys.stderr)
    return 0 if result.names else 1


def add_survey_options(parser) -> None:
    parser.add_argument("--tile-size", type=int,
                        help="survey: source pixels per tile, resampled to the model's training tile (default: that "
                        "tile's side, e.g. 32 for the cactus model: the training ground resolution)")
    parser.add_argument("--stride", type=int, help="survey: source pixels between tiles (default: the tile size)")
    parser.add_argument("--threshold", type=float, help="survey: probability that counts as a hit (default: "
                        "greenlens.survey.THRESHOLD, 0.5)")  # not imported here: `--help` needs no dependency
    parser.add_argument("--aoi", type=Path, metavar="FILE",
                        help="survey: only inside these polygons (GeoPackage, GeoJSON, Shapefile; any CRS), and per "
                        "polygon its attributes and figures in areas.csv and the GeoPackage's areas layer")
    parser.add_argument("--scheduler", metavar="ADDRESS|local:N",
                        help="survey: spread the work over a Dask cluster (a scheduler's address, or N local workers)")
    parser.add_argument("--untrusted", action="store_true",
                        help="survey files from people you do not trust as the public app does: each opened only as the "
                        "GeoTIFF, PNG or JPEG its name claims, no references to other files or URLs followed (no VRT), "
                        "and held to the app's limits (GREENLENS_SURVEY_MAX_PIXELS, _MAX_WINDOWS, _TIME_LIMIT_S)")


def survey_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`greenlens survey MODEL RASTER [RASTER ...] --out DIR [options]`: predict.py --survey, on its own."""
    parser = argparse.ArgumentParser(prog=prog, description=SURVEY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder or Hub repo id (e.g. models/cactus)")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="RASTER", help="GeoTIFFs, PNGs or JPEGs")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (a subfolder per raster for several)")
    add_survey_options(parser)
    return survey(parser.parse_args(argv))


SURVEY_HELP = """Surveys aerial images and drone orthomosaics: where the positive tiles (cacti) are on the
map, how many, and how dense. Writes tiles.csv, summary.json and overlay.png, and for georeferenced
rasters cactus_tiles.gpkg, cactus_tiles.geojson (WGS84) and probability.tif; with several rasters one
subfolder each and surveys.csv."""


def survey(args) -> int:
    from tqdm.auto import tqdm

    from greenlens.core.repository import ModelSourceError
    from greenlens.survey import THRESHOLD, SurveyError, survey_rasters

    try:
        with tqdm(desc="Surveying", unit="tile", unit_scale=True) as bar:
            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            results = survey_rasters(args.inputs, args.model, args.out, stride=args.stride,
                                     threshold=THRESHOLD if args.threshold is None else args.threshold,
                                     tile_size=args.tile_size, areas=args.aoi, scheduler=args.scheduler, progress=progress,
                                     subfolders=len(args.inputs) > 1, untrusted=args.untrusted)
    except (SurveyError, ModelSourceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        summary = result.summary
        print(f"{result.name}: {json.dumps(summary)}")
        for row in result.area_rows:
            print(f"  area {json.dumps(row, default=str)}")
        if summary["warning"]:
            print(f"warning: {result.name}: {summary['warning']}", file=sys.stderr)
    where = args.out if len(results) == 1 else f"{args.out}/<raster>/ and {args.out / 'surveys.csv'}"
    print(f"Wrote {', '.join(path.name for path in results[0].files.values())} to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
