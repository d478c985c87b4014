"""The example images: listed in examples/examples.json by their path inside the data folder,
copied in by `make` (never committed), and found by the app when present. A model repo pushed to the Hub
carries its own examples/ in the same layout (greenlens.publish.models), which the app falls back to.

    python -m greenlens.core.examples --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
LISTING = EXAMPLES_DIR / "examples.json"


def listing(examples_dir: Path = EXAMPLES_DIR) -> dict[str, list[dict]]:
    """{task: [{"source": path inside the data folder, "name": file name here, "label": ...}]}; empty where
    `examples_dir` has no listing (a model repo pushed without examples)."""
    path = Path(examples_dir) / "examples.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def example_files(task: str, examples_dir: Path = EXAMPLES_DIR) -> list[tuple[Path, str]]:
    """(path, expected label) of the examples of `task` that have been copied in."""
    entries = listing(examples_dir).get(task, [])
    return [(examples_dir / task / e["name"], e["label"]) for e in entries if (examples_dir / task / e["name"]).is_file()]


def copy_examples(data_dir: Path, examples_dir: Path = EXAMPLES_DIR) -> int:
    copied = 0
    for task, entries in listing(examples_dir).items():
        for entry in entries:
            source, target = Path(data_dir) / entry["source"], examples_dir / task / entry["name"]
            if source.is_file() and not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied += 1
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description="Copy the listed example images from the data folder.")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        print(f"{args.data_dir} not found: no example images copied (the app shows a note instead)")
        return
    total = sum(len(entries) for entries in listing().values())
    copied = copy_examples(args.data_dir)
    present = sum(len(example_files(task)) for task in listing())
    print(f"Example images: {present} of {total} present ({copied} copied from {args.data_dir})")


if __name__ == "__main__":
    main()
