"""Classify images from the command line, survey a large aerial image, or write a Kaggle submission.

    python predict.py models/leaf photos/ --out predictions.csv         # a folder, a zip or image files
    python predict.py models/cactus DATA/aerial-cactus/test --kaggle-submission --out submission.csv
    python predict.py models/cactus aerial.jpg --survey --out survey/    # overlay.png, tiles.csv, summary.json

MODEL is a model folder or a Hub repo id (org/name, hf://org/name, org/name@revision).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("inputs", nargs="+", type=Path, help="image files, folders or zip files")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write (a folder with --survey)")
    parser.add_argument("--kaggle-submission", action="store_true",
                        help="write the competition's submission format (id,has_cactus) like sample_submission.csv")
    parser.add_argument("--survey", action="store_true", help="tile a large aerial image and map the positive tiles")
    parser.add_argument("--stride", type=int, default=32, help="survey: pixels between tiles (default 32)")
    parser.add_argument("--threshold", type=float, default=0.5, help="survey: cactus probability that counts as a hit")
    args = parser.parse_args(argv)

    from greenlens.inference import Classifier
    from greenlens.repository import ModelSourceError

    try:
        classifier = Classifier.load(args.model)
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.survey:
        return survey(classifier, args)

    from greenlens.batch import classify_to_csv

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


def survey(classifier, args) -> int:
    from tqdm.auto import tqdm

    from greenlens.images import ImageError
    from greenlens.survey import SurveyError, run_survey

    if len(args.inputs) != 1:
        print("error: --survey takes one image", file=sys.stderr)
        return 2
    try:
        with tqdm(desc="Surveying", unit="tile") as bar:
            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            result = run_survey(classifier, args.inputs[0], args.out, args.stride, args.threshold, progress=progress)
    except (ImageError, SurveyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result.summary))
    print(f"Wrote overlay.png, tiles.csv and summary.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
