"""Classify images from the command line, survey a large aerial image, or write a Kaggle submission.

    python predict.py models/leaf photos/ --out predictions.csv         # a folder, a zip or image files
    python predict.py models/cactus ../shared/data/aerial-cactus/test --kaggle-submission --out submission.csv
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
    parser.add_argument("--kaggle-submission", action="store_true", help="write id,has_cactus like sample_submission.csv")
    parser.add_argument("--survey", action="store_true", help="tile a large aerial image and map the cactus tiles")
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
    repo = classifier.repo
    if args.survey:
        return survey(repo, repo.labels.index(classifier.positive_label), args)
    if args.kaggle_submission and "cactus" not in repo.labels:
        print("error: --kaggle-submission needs the cactus model", file=sys.stderr)
        return 2

    from greenlens.batch import classify_many, list_inputs

    result = classify_many(classifier, list_inputs(args.inputs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.kaggle_submission:
        result.write_kaggle_submission(args.out, classifier.positive_label)
    else:
        result.write_csv(args.out)
    print(f"Wrote {len(result.names)} rows to {args.out}")
    if result.failures:
        print(f"Skipped {len(result.failures)} unreadable file(s):", file=sys.stderr)
        for name, why in result.failures[:20]:
            print(f"  {name}: {why}", file=sys.stderr)
    return 0 if result.names else 1


def survey(repo, positive: int, args) -> int:
    from PIL import Image
    from tqdm.auto import tqdm

    from greenlens import survey as surveying
    from greenlens.images import ImageError, decode_image

    if len(args.inputs) != 1:
        print("error: --survey takes one image", file=sys.stderr)
        return 2
    try:
        image = decode_image(args.inputs[0])
        with tqdm(desc="Surveying", unit="tile") as bar:
            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            result = surveying.survey(repo.model, image, positive, args.stride, args.threshold, progress=progress)
    except (ImageError, surveying.SurveyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(surveying.overlay(image, result)).save(args.out / "overlay.png")
    (args.out / "tiles.csv").write_text(result.csv_text())
    (args.out / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
    print(json.dumps(result.summary))
    print(f"Wrote overlay.png, tiles.csv and summary.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
