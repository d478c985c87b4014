"""Classify images, survey aerial images and orthomosaics, or write a Kaggle submission:
`python predict.py --help` (the same as `greenlens predict` and `greenlens survey`; the code is
greenlens/cli/predict.py)."""

import sys

from greenlens.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
