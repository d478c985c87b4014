"""Train a classifier, publish or export a model repo: `python train.py --help` (the same as `greenlens train`,
`greenlens push` and `greenlens export`; the code is greenlens/cli/train.py)."""

import sys

from greenlens.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
