"""Test-time views: a model's probabilities averaged over flips and 90-degree rotations of each image (the
dihedral group; a nadir tile and a leaf photo mean the same in any of them, and both tasks train on them),
against the image alone. Errors, accuracy and ROC AUC on the repo's validation and test splits. k views cost k
forward passes. Whatever views a model answers on (`Recipe.answer_views`), it is measured here from one view up.

This measurement chose the cactus recipe's 8 views: on validation they made 8 errors where one view made 11 (the
test split's 15 -> 8 was seen too, so that split is no longer untouched for this choice: README).

    python benchmarks/dihedral_views.py [--models models/cactus models/leaf]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from common import DATA_DIR, ROOT, report

from greenlens.core.backbones import answering_on_views
from greenlens.core.batches import predict_images
from greenlens.core.images import decode_image
from greenlens.core.tasks import get_task

# In this order, the first k of them: k = 2 adds a mirror, 4 the other mirror and the half turn, 8 the transposes.
VIEWS = {
    "identity": lambda x: x,
    "mirror left-right": lambda x: x[:, ::-1],
    "mirror top-bottom": lambda x: x[::-1],
    "half turn": lambda x: x[::-1, ::-1],
    "transpose": lambda x: x.transpose(1, 0, 2),
    "quarter turn": lambda x: x.transpose(1, 0, 2)[::-1],
    "three-quarter turn": lambda x: x.transpose(1, 0, 2)[:, ::-1],
    "anti-transpose": lambda x: x.transpose(1, 0, 2)[::-1, ::-1],
}


def split_rows(folder: Path, split: str, positive: str, root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The split's images as the repo's CSV names them (from `root`), and whether each is of the `positive` class."""
    rows = list(csv.DictReader((folder / f"{split}.csv").read_text().splitlines()))
    return [decode_image(root / row["file"]) for row in rows], np.array([row["label"] == positive for row in rows])


def main() -> None:
    import keras
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["models/cactus", "models/leaf"])
    args = parser.parse_args()
    rows = []
    for name in args.models:
        folder = ROOT / name
        model = answering_on_views(keras.saving.load_model(str(folder), compile=False), 1)
        task = json.loads((folder / "task.json").read_text())
        positive, root = task["positive_label"], get_task(task["name"]).data_root(DATA_DIR)
        index = json.loads((folder / "labels.json").read_text()).index(positive)
        for split in ("validation", "test"):
            images, truth = split_rows(folder, split, positive, root)
            probabilities = [predict_images(model, [np.ascontiguousarray(view(image)) for image in images])[:, index]
                             for view in VIEWS.values()]
            for k in (1, 2, 4, 8):
                mean = np.mean(probabilities[:k], axis=0)
                right = (mean >= 0.5) == truth
                rows.append({"model": name, "split": split, "views": k, "images": len(images),
                             "errors": int((~right).sum()), "accuracy": round(float(right.mean()), 4),
                             "roc_auc": round(float(roc_auc_score(truth, mean)), 5)})
    report("dihedral_views", rows, {"views_in_order": list(VIEWS),
                                    "command": "python benchmarks/dihedral_views.py"})


if __name__ == "__main__":
    main()
