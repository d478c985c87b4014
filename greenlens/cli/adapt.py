"""Adapt a tile model to your own flight, from GIS annotations (the same as `python train.py adapt`):

    greenlens adapt --from models/cactus reserve.tif --points cacti.gpkg --areas annotated.gpkg \
        --tile-size 48 --out models/cactus-reserve

RASTER... are orthomosaics with a CRS; --points a layer of the cacti you marked (points, or crown
polygons); --areas a layer of polygons inside which you marked every cactus (tiles there without a
mark are the examples of no cactus). Layers in GeoPackage, Shapefile or GeoJSON, in any CRS. The base
model (--from, a folder or a Hub id) is fine-tuned with the recipe it was trained with; the command
prints base vs adapted model on held-out spatial blocks and writes a full model repo to --out.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="base", required=True, metavar="MODEL",
                        help="the model repo to start from: a folder (models/cactus) or a Hub id (org/name)")
    parser.add_argument("rasters", nargs="+", type=Path, metavar="RASTER", help="orthomosaic(s) with a CRS (GeoTIFF)")
    parser.add_argument("--points", type=Path, required=True, help="the marked cacti: points or crown polygons")
    parser.add_argument("--areas", type=Path, help="polygons inside which every cactus is marked (required: "
                        "without it unmarked cacti would be taught as no cactus)")
    parser.add_argument("--out", type=Path, required=True, help="model repo folder to write")
    parser.add_argument("--tile-size", type=int, help="source pixels per tile (default: from the base model's "
                        "tile ground size; required for the bundled Kaggle model, which does not know it)")
    parser.add_argument("--block-tiles", type=int, default=4, help="side of the split's spatial blocks, in tiles "
                        "(default: 4)")
    parser.add_argument("--validation-fraction", type=float, default=0.15, help="share of blocks for early stopping "
                        "and the guard's thresholds (default: 0.15)")
    parser.add_argument("--test-fraction", type=float, default=0.15, help="share of blocks held out for the "
                        "base-vs-adapted comparison and the card's numbers (default: 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="of the split, the augmentation and training (default: 0)")
    parser.add_argument("--exports", choices=["all", "float", "none"], default="all",
                        help="LiteRT and ONNX files as for training (the survey's tile model is always written)")
    parser.add_argument("--repo-id", default="greenlens/cactus-adapted", help="Hub repo id named on the card")
    args = parser.parse_args(argv)

    from greenlens.adapt import AdaptSettings, AnnotationError, adapt
    from greenlens.cli.train import portable_command
    from greenlens.core.repository import ModelSourceError
    from greenlens.survey import SurveyError
    from greenlens.survey.rasters import RasterError
    from greenlens.training.finetune import interrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    words = sys.argv[1:] if argv is None else argv
    settings = AdaptSettings(tile_size=args.tile_size, block_tiles=args.block_tiles, seed=args.seed,
                             validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
                             exports=args.exports, repo_id=args.repo_id,
                             command=portable_command(["adapt", *words]))
    try:
        adapt(args.base, args.rasters, args.out, points=args.points, areas=args.areas, settings=settings)
    except (AnnotationError, SurveyError, RasterError, ModelSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: nothing was written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
