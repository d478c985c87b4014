"""Train a classifier and write its model repo, or publish a model repo to the Hugging Face Hub.

    python train.py leaf   --data DATA/strawberry-leaf/color DATA/strawberry-leaf/segmented --out models/leaf
    python train.py cactus --data DATA/aerial-cactus --out models/cactus
    python train.py leaf --recipe inception_v3          # the original project's backbone
    python train.py cactus --push-to-hub ORG/NAME --min-accuracy 0.99
    python train.py push models/cactus ORG/NAME
    python train.py export models/cactus                # (re)write the tile model, LiteRT and ONNX files of a folder
    python train.py distill models/cactus               # (re)distil the survey's small tile model of a folder
    python train.py guard models/leaf                   # fit a folder's guard and quality check again (same weights)
    python train.py views models/cactus                 # make a folder's classifier answer on its recipe's views
    python train.py adapt --from models/cactus flight.tif --points cacti.gpkg --areas annotated.gpkg --tile-size 48 \
        --out models/cactus-flight                      # adapt to your own flight (`python train.py adapt --help`)

Each task's recipes live in greenlens/core/tasks.py; the first is the default, the bundled model's recipe
(its training views were drawn by the code before 9204ebc, so today's run makes another model).
Flags below override single values of the recipe. Data folders default to $DATA_DIR/<the task's Kaggle folders>.
Pushing needs a token with write access: HF_TOKEN, or `hf auth login`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")

# Only the task specs are imported up front: `--help` and `push` never load TensorFlow.
from greenlens.core.tasks import TASKS, Recipe, Task, get_task

DATA_DIR = Path(os.environ.get("DATA_DIR", "data"))
RECIPE_HELP = {
    "image_size": "input side the model resizes images to",
    "alpha": "MobileNetV2 width (1.0 and 0.5 have ImageNet weights)",
    "fine_tune_after": "last frozen layer; the blocks after it are fine-tuned",
    "views": "augmented views cached per training image",
    "plain_share": "share of the realistic views left as the image but for a flip or rotation",
    "head_epochs": "stage 1 epochs (early stopping)",
    "head_learning_rate": "stage 1 learning rate",
    "fine_tune_epochs": "stage 2 epochs (early stopping)",
    "fine_tune_learning_rate": "stage 2 peak learning rate (Adam, warm-up then cosine decay)",
    "batch_size": "training batch size",
    "patience": "epochs without a better validation loss before a stage stops",
    "dropout": "dropout before the dense head",
    "answer_views": "flips and quarter turns of each image the trained model averages its answer over (1, 2, 4 or 8)",
}


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["adapt"]:  # its own parser: the options are not a training run's
        from greenlens.cli.adapt import main as adapt

        return adapt(words[1:], prog=f"{prog or 'train.py'} adapt")
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for task in TASKS.values():
        add_train_command(commands, task)
    push = commands.add_parser("push", help="upload an existing model folder to the Hub without retraining")
    push.add_argument("model_dir", type=Path, help="model repo folder, e.g. models/cactus")
    push.add_argument("repo_id", metavar="ORG/NAME")
    add_push_options(push)
    export = commands.add_parser("export", help="write the files for other runtimes into an existing model folder "
                                 "(LiteRT, ONNX, the survey's tile model) and measure them on its test split")
    export.add_argument("model_dir", type=Path, help="model repo folder, e.g. models/cactus")
    distill = commands.add_parser("distill", help="distil the survey's small tile model from an existing model folder's "
                                  "classifier, on its own splits, and add it to the folder if it passes the rule")
    guard = commands.add_parser("guard", help="fit an existing model folder's out-of-distribution guard and quality "
                                "check again, as training now does, on its own splits (the weights stay as they are)")
    views = commands.add_parser("views", help="make an existing model folder's classifier answer on flips and quarter "
                                "turns of each image (the weights stay as they are): evaluated again on its own splits, "
                                "its quality check and guard fitted again, its runtime files and card written again")
    views.add_argument("--views", type=int, choices=[1, 2, 4, 8],
                       help="how many (default: the task's default recipe's answer_views)")
    for other in (distill, guard):
        other.set_defaults(views=None)  # only `views` takes a count; `refit` reads args.views for all three
    for again in (distill, guard, views):
        again.add_argument("model_dir", type=Path, help="model repo folder, e.g. models/cactus")
        again.add_argument("--data", nargs="+", type=Path, help="its data folder(s) (default: $DATA_DIR/<the task's folders>)")
        again.add_argument("--ood-data", type=Path, help="other images to measure the guards on, as for training")
    export.add_argument("--data-root", type=Path, help="the folder holding the data folders the repo's test.csv names "
                        "(default: $DATA_DIR/strawberry-leaf for leaf models, $DATA_DIR for cactus models)")
    args = parser.parse_args(argv)
    if args.command == "push":
        return publish(args.model_dir, args.repo_id, private=args.private, min_accuracy=args.min_accuracy,
                       examples_from=args.examples_from)
    if args.command == "export":
        return export_runtimes(args.model_dir, args.data_root or _data_root(args.model_dir))
    if args.command in ("distill", "guard", "views"):
        return refit(args.command, args.model_dir, args.data, args.ood_data,
                     command=portable_command(sys.argv[1:] if argv is None else argv), views=args.views)
    try:
        return train(args, sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("Interrupted: nothing was written; any existing model folder is untouched.", file=sys.stderr)
        return 130


def add_train_command(commands, task: Task) -> None:
    default = task.recipe()
    sub = commands.add_parser(
        task.name, help=task.summary,
        description=f"{task.summary} Recipes: " + "; ".join(
            f"{name} ({recipe.backbone}, {recipe.image_size}px{'' if recipe.alpha == 1.0 else f', alpha {recipe.alpha}'})"
            for name, recipe in task.recipes.items()) + f". Defaults below are the {task.default_recipe} recipe's.",
    )
    sub.add_argument("--recipe", choices=list(task.recipes), default=task.default_recipe,
                     help=f"named recipe of the task (default: {task.default_recipe})")
    data_default = [DATA_DIR / folder for folder in task.data_folders]
    sub.add_argument("--data", nargs="+", type=Path, default=data_default,
                     help=f"data folder(s) in the Kaggle layout (default: {' '.join(map(str, data_default))}; "
                     "$DATA_DIR sets the root)")
    sub.add_argument("--out", type=Path, default=Path("models") / task.name,
                     help=f"model repo folder to write (default: models/{task.name})")
    for recipe_field in fields(Recipe):
        if recipe_field.name in RECIPE_HELP:
            value = getattr(default, recipe_field.name)
            sub.add_argument(f"--{recipe_field.name.replace('_', '-')}", type=type(value), default=argparse.SUPPRESS,
                             help=f"{RECIPE_HELP[recipe_field.name]} (recipe: {value})")
    sub.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a weights file")
    sub.add_argument("--validation-fraction", type=float, default=0.15,
                     help="share for early stopping and the guard's thresholds (default: 0.15)")
    sub.add_argument("--test-fraction", type=float, default=0.15,
                     help="share held out for the published numbers (default: 0.15)")
    sub.add_argument("--groups", type=Path, help="leaf_groups.csv (default: found beside the data)")
    sub.add_argument("--limit", type=int, help="train on a stratified sample of this many images")
    sub.add_argument("--seed", type=int, default=0, help="of the split, the augmentation and the initialisation (default: 0)")
    sub.add_argument("--repo-id", default=f"greenlens/{task.name}-classifier", help="Hub repo id named on the card")
    sub.add_argument("--ood-data", type=Path, help="a folder of other images (e.g. the other task's) to measure "
                     "the out-of-distribution guard on, besides generated ones")
    sub.add_argument("--exports", choices=["all", "float", "none"], default="all",
                     help="files for other runtimes: LiteRT and ONNX with an int8 attempt (all, default), without "
                     "the int8 attempt (float), or none (the survey's tile model is always written)")
    add_push_options(sub)
    sub.add_argument("--push-to-hub", metavar="ORG/NAME", help="after training, upload the model repo here")


def train(args, argv: list[str]) -> int:
    from greenlens.core.backbones import parse_weights
    from greenlens.training.data import DataError
    from greenlens.training.finetune import TrainConfig, interrupt
    from greenlens.training.guard import read_other_images
    from greenlens.training.pipeline import RunSettings, train_task

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    task = get_task(args.command)
    overrides = {f.name: getattr(args, f.name) for f in fields(Recipe) if hasattr(args, f.name)}
    recipe = replace(task.recipe(args.recipe), **overrides)
    config = TrainConfig(recipe, augmentation=task.augmentation, weights=parse_weights(args.weights), seed=args.seed)
    repo_id = args.push_to_hub or args.repo_id
    try:
        run = RunSettings(repo_id, portable_command(argv), recipe_name=args.recipe,
                          validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
                          group_csv=args.groups, limit=args.limit, exports=args.exports)
        train_task(task, args.data, args.out, config, run=run, other_images=read_other_images(args.ood_data))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        return publish(args.out, args.push_to_hub, private=args.private, min_accuracy=args.min_accuracy,
                       examples_from=args.examples_from)
    return 0


def portable_command(argv: list[str]) -> str:
    """The command as it can be run again elsewhere: paths under $DATA_DIR are written from
    `$DATA_DIR`, paths under the working folder relative to it, other absolute paths by name."""
    data_root, here = DATA_DIR.resolve(), Path.cwd().resolve()

    def portable(word: str) -> str:
        if word.startswith("-") or ("/" not in word and not Path(word).exists()):
            return word
        path = Path(word).resolve()
        for root, prefix in ((data_root, "$DATA_DIR/"), (here, "")):
            if path.is_relative_to(root):
                return prefix + path.relative_to(root).as_posix()
        return f"<{path.name}>" if Path(word).is_absolute() else word

    words = [portable(word) for word in argv]
    return "python train.py " + " ".join(w if w.startswith("$DATA_DIR/") else shlex.quote(w) for w in words)


def _data_root(model_dir: Path) -> Path | None:
    """Where a model folder's test.csv paths start, under $DATA_DIR: the parent of its task's data folders."""
    import json

    task_file = Path(model_dir) / "task.json"
    name = json.loads(task_file.read_text()).get("name") if task_file.is_file() else None
    return TASKS[name].data_root(DATA_DIR) if name in TASKS else None


def add_push_options(parser) -> None:
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--min-accuracy", type=float, metavar="X",
                        help="refuse to push a model whose test accuracy is below X")
    parser.add_argument("--examples-from", type=Path, default=DATA_DIR, metavar="DIR",
                        help="the data folder whose held-out test images go into the repo's examples/ and the card's "
                        "widget (default: $DATA_DIR; skipped when absent)")


def publish(model_dir: Path, repo_id: str, *, private: bool, min_accuracy: float | None, examples_from: Path | None) -> int:
    import json

    from greenlens.publish.hub import PushError
    from greenlens.publish.models import push

    metrics_file = Path(model_dir) / "metrics.json"
    if min_accuracy is not None:
        accuracy = json.loads(metrics_file.read_text())["metrics"]["accuracy"] if metrics_file.is_file() else None
        if accuracy is None or accuracy < min_accuracy:
            print(f"error: not pushed: test accuracy {accuracy} of {model_dir} is below --min-accuracy {min_accuracy}",
                  file=sys.stderr)
            return 1
    try:
        data_dir = examples_from if examples_from and Path(examples_from).is_dir() else None
        commit = push(model_dir, repo_id, private=private, data_dir=data_dir)
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    name = commit.repo_url.repo_id
    print(f"Pushed {model_dir} to {commit.repo_url} (commit {commit.oid[:12]})")
    print(f'Load it with: keras.saving.load_model("hf://{name}")')
    return 0


def refit(what: str, model_dir: Path, data_dirs: list[Path] | None, ood_data: Path | None, *, command: str,
          views: int | None = None) -> int:
    """`distill`, `guard` or `views`: a part of an existing model repo made again from its classifier and its splits."""
    import json
    from functools import partial

    from greenlens.training.guard import read_other_images
    from greenlens.training.pipeline import answer_on_views_into, distill_into, refit_guard_into

    task = get_task(json.loads((Path(model_dir) / "task.json").read_text())["name"])
    folders = data_dirs or [DATA_DIR / folder for folder in task.data_folders]
    steps: dict[str, Callable[..., dict]] = {
        "distill": distill_into, "guard": refit_guard_into,
        "views": partial(answer_on_views_into, views=views or task.recipe().answer_views)}
    step = steps[what]
    step(model_dir, folders, command=command, other_images=read_other_images(ood_data))
    return 0


def export_runtimes(model_dir: Path, data_root: Path | None) -> int:
    from greenlens.core.repository import ModelSourceError
    from greenlens.core.runtimes import export
    from greenlens.training.card import render_card

    try:
        record = export(model_dir, data_root)
        render_card(record).save(Path(model_dir) / "README.md")
    except ModelSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
