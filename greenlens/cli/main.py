"""The `greenlens` command (`pip install .` puts it on the PATH):

    greenlens train leaf|cactus [--data DIR ...] [--out DIR] [recipe overrides]
    greenlens adapt --from MODEL RASTER... --points FILE --areas FILE --out DIR [--tile-size N]
    greenlens predict MODEL IMAGES... --out predictions.csv [--kaggle-submission]
    greenlens survey MODEL RASTER... --out DIR [--aoi FILE] [--tile-size N] [--stride N] [--threshold P]
                     [--scheduler ADDRESS|local:N]
    greenlens push MODEL_DIR ORG/NAME [--private] [--min-accuracy X]
    greenlens export MODEL_DIR [--data-root DIR]
    greenlens deploy ORG/NAME [--models bundled|hub] [--private]
    greenlens --version

`python train.py` and `python predict.py` in a checkout run the same code.
"""

from __future__ import annotations

import sys

from greenlens import __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("--help", [])
    if command == "--version":
        print(f"greenlens {__version__}")
        return 0
    if command == "train":
        from greenlens.cli.train import main as train

        return train(rest, prog="greenlens train")
    if command in ("push", "export"):
        from greenlens.cli.train import main as train

        return train([command, *rest], prog="greenlens")
    if command == "adapt":
        from greenlens.cli.adapt import main as adapt

        return adapt(rest, prog="greenlens adapt")
    if command == "predict":
        from greenlens.cli.predict import main as predict

        return predict(rest, prog="greenlens predict")
    if command == "survey":
        from greenlens.cli.predict import survey_main

        return survey_main(rest, prog="greenlens survey")
    if command == "deploy":
        from greenlens.cli.deploy import main as deploy

        return deploy(rest, prog="greenlens deploy")
    print(__doc__.strip())
    return 0 if command in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
