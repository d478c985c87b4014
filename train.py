"""Train a classifier and write its model repo, or publish a model repo to the Hugging Face Hub.

    python train.py leaf   --data DATA/strawberry-leaf/color DATA/strawberry-leaf/segmented --out models/leaf
    python train.py cactus --data DATA/aerial-cactus --out models/cactus
    python train.py cactus --push-to-hub ORG/NAME --min-accuracy 0.99
    python train.py push models/cactus ORG/NAME

Pushing needs a token with write access: HF_TOKEN, or `hf auth login`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")

from greenlens.tasks import TASKS, get_task  # noqa: E402
from greenlens.training import TrainConfig, interrupt  # noqa: E402

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
        sub.add_argument("--alpha", type=float,
                         help=f"MobileNetV2 width, 1.0 or 0.5 have ImageNet weights (default {task.alpha} with the task's backbone, else 1.0)")
        sub.add_argument("--weights", default="imagenet", help="imagenet, none, or a weights file")
        sub.add_argument("--views", type=int, default=defaults.views, help="augmented views cached per training image")
        sub.add_argument("--head-epochs", type=int, default=defaults.head_epochs, help="stage 1 epochs (early stopping)")
        sub.add_argument("--fine-tune-epochs", type=int, default=defaults.fine_tune_epochs, help="stage 2 epochs (early stopping)")
        sub.add_argument("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate,
                         help="stage 2 peak learning rate (Adam, warm-up then cosine decay)")
        sub.add_argument("--fine-tune-after", help="last frozen layer (default: the backbone's, e.g. block_12_add)")
        sub.add_argument("--patience", type=int, default=defaults.patience,
                         help="epochs without a better validation loss before a stage stops")
        sub.add_argument("--batch-size", type=int, default=defaults.batch_size)
        sub.add_argument("--validation-fraction", type=float, default=0.2)
        sub.add_argument("--groups", type=Path, help="leaf_groups.csv (default: found beside the data)")
        sub.add_argument("--limit", type=int, help="train on a stratified sample of this many images")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--repo-id", default=f"greenlens/{name}-classifier",
                         help="Hub repo id named on the card (default: --push-to-hub's)")
        sub.add_argument("--ood-data", type=Path, help="a folder of other images (e.g. the other task's) to measure "
                         "the out-of-distribution guard on, besides generated ones")
        add_push_options(sub)
        sub.add_argument("--push-to-hub", metavar="ORG/NAME", help="after training, upload the model repo here")
    guard = commands.add_parser("guard", help="fit the out-of-distribution guard of an existing model folder")
    guard.add_argument("task", choices=list(TASKS))
    guard.add_argument("model_dir", type=Path)
    guard.add_argument("--data", nargs="+", type=Path, help="the data the model was trained on (default: under $DATA_DIR)")
    guard.add_argument("--ood-data", type=Path, help="a folder of other images to measure the guard on")
    push = commands.add_parser("push", help="upload an existing model folder to the Hub without retraining")
    push.add_argument("model_dir", type=Path, help="model repo folder, e.g. models/cactus")
    push.add_argument("repo_id", metavar="ORG/NAME")
    add_push_options(push)
    args = parser.parse_args(argv)
    if args.command == "push":
        return publish(args.model_dir, args.repo_id, args.private, args.min_accuracy)
    if args.command == "guard":
        from greenlens.ood import read_other_images
        from greenlens.pipeline import add_guard

        add_guard(args.model_dir, get_task(args.task), args.data or DEFAULT_DATA[args.task], read_other_images(args.ood_data))
        return 0
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
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
    own_backbone = backbone.name == task.backbone
    image_size = args.image_size or (task.image_size if own_backbone else backbone.default_size)
    alpha = args.alpha or (task.alpha if own_backbone else 1.0)
    config = TrainConfig(
        backbone=backbone.name, image_size=image_size, weights=parse_weights(args.weights), alpha=alpha,
        augmentation=task.augmentation, views=args.views, head_epochs=args.head_epochs,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_learning_rate=args.fine_tune_learning_rate,
        fine_tune_after=args.fine_tune_after, batch_size=args.batch_size,
        patience=args.patience, seed=args.seed,
    )
    command = "python train.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    repo_id = args.push_to_hub or args.repo_id
    try:
        from greenlens.ood import read_other_images

        train_task(task, args.data, args.out, config, repo_id, command, args.validation_fraction, args.groups, args.limit,
                   read_other_images(args.ood_data))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        return publish(args.out, args.push_to_hub, args.private, args.min_accuracy)
    return 0


def add_push_options(parser) -> None:
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--min-accuracy", type=float, metavar="X",
                        help="refuse to push a model whose validation accuracy is below X")


def publish(model_dir: Path, repo_id: str, private: bool, min_accuracy: float | None) -> int:
    import json

    from greenlens.repository import PushError, push

    metrics_file = Path(model_dir) / "metrics.json"
    if min_accuracy is not None:
        accuracy = json.loads(metrics_file.read_text())["metrics"]["accuracy"] if metrics_file.is_file() else None
        if accuracy is None or accuracy < min_accuracy:
            print(f"error: not pushed: validation accuracy {accuracy} of {model_dir} is below --min-accuracy {min_accuracy}",
                  file=sys.stderr)
            return 1
    try:
        commit = push(model_dir, repo_id, private=private)
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    name = commit.repo_url.repo_id
    print(f"Pushed {model_dir} to {commit.repo_url} (commit {commit.oid[:12]})")
    print(f'Load it with: keras.saving.load_model("hf://{name}")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
