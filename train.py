"""Train a classifier, publish or export a model repo: `python train.py --help` (the same as `greenlens train`,
`greenlens push` and `greenlens export`; the code is greenlens/train_cli.py)."""

import sys

from greenlens.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
