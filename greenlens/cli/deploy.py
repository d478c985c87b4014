"""Deploy the demo to a Hugging Face Space: `greenlens deploy ORG/NAME` (or `make deploy SPACE=ORG/NAME`).

    greenlens deploy ORG/NAME                          # the app with the bundled models and the examples
    greenlens deploy ORG/NAME --models hub             # the Space pulls ORG/leaf-classifier, ORG/cactus-classifier
    greenlens deploy ORG/NAME --models hub --leaf-model ORG/leaf-classifier@v2 --private

The example images are copied from the data folder ($DATA_DIR) at deploy time; they are never committed
here. Needs a token with write access: HF_TOKEN, or `hf auth login`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from greenlens.core.tasks import TASKS


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space", metavar="ORG/NAME", help="the Space to create or update")
    parser.add_argument("--models", choices=("bundled", "hub"), default="bundled",
                        help="upload models/ with the app (default), or set Space variables naming Hub model repos")
    for task in TASKS.values():
        parser.add_argument(f"--{task.name}-model", metavar="ORG/NAME[@REV]",
                            help=f"with --models hub: the {task.title.lower()} model repo (default ORG/{task.name}-classifier)")
    parser.add_argument("--examples-from", type=Path, default=Path(os.environ.get("DATA_DIR", "data")), metavar="DIR",
                        help="the data folder the example images are copied from (default: $DATA_DIR)")
    parser.add_argument("--private", action="store_true", help="create the Space as private (or make it private)")
    args = parser.parse_args(argv)

    from greenlens.publish.hub import PushError
    from greenlens.publish.space import deploy

    organization = args.space.split("/")[0]
    hub_models = {task: getattr(args, f"{task}_model") or f"{organization}/{task}-classifier" for task in TASKS} \
        if args.models == "hub" else None
    data_dir = args.examples_from if args.examples_from.is_dir() else None
    if data_dir is None:
        print(f"{args.examples_from} not found: only example images already in examples/ are sent", file=sys.stderr)
    try:
        url, examples = deploy(args.space, data_dir=data_dir, hub_models=hub_models, private=args.private)
    except PushError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Deployed to {url} ({examples} example images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
