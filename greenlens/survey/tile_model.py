"""What a survey needs of a model repo, without Keras or TensorFlow: the LiteRT tile model (which
also gives the out-of-distribution guard's features), the guard, and the labels. Survey workers on
a cluster load this once each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from greenlens.core.litert import SMALL_GUARD, SMALL_TILE_MODEL, TILE_MODEL, LiteRTModel
from greenlens.core.ood import FILENAME as GUARD
from greenlens.core.repository import ModelSourceError, damaged, load_guard, read_json


class TileModelMissing(ModelSourceError):
    """The model repo has no tile model; the message says how to write one."""


def tile_files(folder: Path) -> tuple[str, str]:
    """Which tile model and guard a survey runs: the distilled small model and its own guard where the repo has
    both (written only where it kept the classifier's accuracy and guard: greenlens.training.distill), else the
    classifier's tile model and guard (older repos, and those whose small model did not pass)."""
    if (folder / SMALL_TILE_MODEL).is_file() and (folder / SMALL_GUARD).is_file():
        return SMALL_TILE_MODEL, SMALL_GUARD
    return TILE_MODEL, GUARD


class TileClassifier:
    def __init__(self, folder: Path, threads: int | None = None):
        folder = Path(folder)
        self.source = str(folder)  # what cluster workers load
        if not (folder / TILE_MODEL).is_file():
            raise TileModelMissing(f"{folder} has no {TILE_MODEL}, the model surveys run: write it with "
                                   f"`python train.py export {folder}`")
        task = read_json(folder, "task.json")
        self.labels = read_json(folder, "labels.json")
        self.positive_label = task["positive_label"]
        self.positive_index = self.labels.index(self.positive_label)
        # The training tiles' side: a survey's tile size at the training ground resolution; and the ground
        # that side covers, in metres, where it is known (a model adapted to georeferenced flights).
        self.tile = int(task["survey_tile"])
        self.tile_ground_m = float(task["tile_ground_m"]) if task.get("tile_ground_m") else None
        self.model_file, guard_file = tile_files(folder)
        try:
            self.model = LiteRTModel(folder / self.model_file, threads=threads)
        except Exception as error:
            raise damaged(str(folder), self.model_file, error) from None
        self.guard = load_guard(folder, str(folder), guard_file)

    @classmethod
    def load(cls, source: str, threads: int | None = None) -> TileClassifier:
        """A model folder or Hub repo id, as for the app; a Hub repo is downloaded once into the cache."""
        from greenlens.core.repository import fetch

        return cls(fetch(source)[0], threads)

    def __call__(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability of the positive label, flagged by the guard) for each of `tiles` (n, t, t, 3)."""
        features, probabilities = self.model(tiles)
        flagged = self.guard.flags(features) if self.guard else np.zeros(len(tiles), bool)
        return probabilities[:, self.positive_index], flagged
