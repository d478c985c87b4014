"""Train a classifier and write its model repo, or publish a model repo to the Hugging Face Hub.

    python train.py leaf   --data DATA/strawberry-leaf/color DATA/strawberry-leaf/segmented --out models/leaf
    python train.py cactus --data DATA/aerial-cactus --out models/cactus
    python train.py push models/cactus ORG/NAME
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from greenlens.tasks import TASKS, get_task  # noqa: E402
from greenlens.training import TrainConfig  # noqa: E402

DATA_DIR = Path(os.environ.get("DATA_DIR", "../shared/data"))
DEFAULT_DATA = {
    "leaf": [DATA_DIR / "strawberry-leaf" / "color", DATA_DIR / "strawberry-leaf" / "segmented"],
    "cactus": [DATA_DIR / "aerial-cactus"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = TrainConfig(backbone="", image_size=0)
    for name, task in TASKS.items():
        sub = commands.add_parser(name, help=task.summary)
        sub.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA[name],
                         help="data folder(s) in the Kaggle layout (default: under $DATA_DIR)")
        sub.add_argument("--out", type=Path, default=Path("models") / name, help="model repo folder to write")
        sub.add_argument("--backbone", default=task.backbone, help=f"inception_v3 or mobilenet_v2 (default {task.backbone})")
        sub.add_argument("--image-size", type=int, help="input size of the backbone (default: the task's, or the backbone's)")
        sub.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width (1.0 or 0.5 have ImageNet weights)")
        sub.add_argument("--weights", default="imagenet", help="imagenet, none, or a weights file")
        sub.add_argument("--views", type=int, default=defaults.views, help="augmented views cached per training image")
        sub.add_argument("--head-epochs", type=int, default=defaults.head_epochs, help="stage 1 epochs (early stopping)")
        sub.add_argument("--fine-tune-epochs", type=int, default=defaults.fine_tune_epochs, help="stage 2 epochs (early stopping)")
        sub.add_argument("--fine-tune-after", help="last frozen layer (default: the backbone's, e.g. block_12_add)")
        sub.add_argument("--batch-size", type=int, default=defaults.batch_size)
        sub.add_argument("--validation-fraction", type=float, default=0.2)
        sub.add_argument("--groups", type=Path, help="leaf_groups.csv (default: found beside the data)")
        sub.add_argument("--limit", type=int, help="train on a stratified sample of this many images")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--repo-id", default=f"greenlens/{name}-classifier", help="Hub repo id named on the card")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return train(args)
    except KeyboardInterrupt:
        print("Interrupted: nothing was written; any existing model folder is untouched.", file=sys.stderr)
        return 130


def train(args) -> int:
    from greenlens.backbones import get_backbone, parse_weights
    from greenlens.data import DataError
    from greenlens.pipeline import train_task

    task = get_task(args.command)
    backbone = get_backbone(args.backbone)
    image_size = args.image_size or (task.image_size if backbone.name == task.backbone else backbone.default_size)
    config = TrainConfig(
        backbone=backbone.name, image_size=image_size, weights=parse_weights(args.weights), alpha=args.alpha,
        augmentation=task.augmentation, views=args.views, head_epochs=args.head_epochs,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_after=args.fine_tune_after, batch_size=args.batch_size,
        seed=args.seed,
    )
    command = "python train.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        train_task(task, args.data, args.out, config, args.repo_id, command, args.validation_fraction, args.groups, args.limit)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
