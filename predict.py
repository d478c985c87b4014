"""Classify images, survey aerial images and orthomosaics, or write a Kaggle submission:
`python predict.py --help` (the same as `greenlens predict` and `greenlens survey`; the code is
greenlens/predict_cli.py)."""

import sys

from greenlens.predict_cli import main

if __name__ == "__main__":
    sys.exit(main())
