"""The out-of-distribution guard: "this does not look like a strawberry leaf / an aerial tile".

The training distribution is described in the backbone's pooled feature space by class means and
one shared covariance (Ledoit-Wolf shrunk: 1,280 dimensions from a few thousand images); an
input's Mahalanobis distance to the nearest class mean (Lee et al. 2018) above a threshold set
on validation images flags it. Stored in the model repo as `ood.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

FILENAME = "ood.npz"
# Share of real validation images the threshold lets through: at most 1% of real inputs flagged.
VALIDATION_QUANTILE = 0.995


@dataclass
class Gaussian:
    """One group of features: class means and a shared covariance, after standardisation."""

    center: np.ndarray
    scale: np.ndarray
    means: np.ndarray
    precision: np.ndarray
    threshold: float = np.inf

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> "Gaussian":
        center, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        z = (features - center) / scale
        classes = np.unique(labels)
        means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        precision = LedoitWolf(assume_centered=True).fit(z - means[np.searchsorted(classes, labels)]).precision_
        return cls(center, scale, means, precision)

    def distances(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.center) / self.scale
        best = np.full(len(z), np.inf)
        for mean in self.means:
            centred = z - mean
            # A matrix product, not einsum("ij,jk,ik->i"): einsum evaluates that without BLAS, ~30x slower.
            best = np.minimum(best, ((centred @ self.precision) * centred).sum(axis=1))
        return np.sqrt(np.maximum(best, 0))


@dataclass
class DistributionGuard:
    """One Gaussian per feature group (input colour statistics, the channel means of each of
    `layers`, the pooled backbone output); an input is flagged when any group finds it too far.

    A single distance over all ~1,400 features lets the bulk of the deep features drown a flat
    blue square whose colour alone is many deviations from anything seen; per-group thresholds
    do not. Each threshold is a validation quantile chosen so that together at most 0.5% of
    real validation images are flagged."""

    layers: list[str]
    sizes: list[int]
    groups: list[Gaussian]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Per image, the largest group distance divided by its threshold: above 1 is flagged."""
        features = np.asarray(features, dtype=np.float64)
        parts = np.split(features, np.cumsum(self.sizes)[:-1], axis=1)
        return np.max([g.distances(part) / g.threshold for g, part in zip(self.groups, parts)], axis=0)

    def flags(self, features: np.ndarray) -> np.ndarray:
        return self.scores(features) > 1.0

    def save(self, folder: Path) -> None:
        arrays = {"layers": np.array(self.layers), "sizes": np.array(self.sizes)}
        for index, group in enumerate(self.groups):
            for key in ("center", "scale", "means", "precision"):
                arrays[f"{index}_{key}"] = getattr(group, key).astype(np.float32)
            arrays[f"{index}_threshold"] = group.threshold
        np.savez_compressed(Path(folder) / FILENAME, **arrays)

    @classmethod
    def load(cls, folder: Path) -> "DistributionGuard | None":
        path = Path(folder) / FILENAME
        if not path.is_file():
            return None
        with np.load(path) as stored:
            sizes = [int(size) for size in stored["sizes"]]
            groups = [
                Gaussian(*(stored[f"{i}_{key}"].astype(np.float64) for key in ("center", "scale", "means", "precision")),
                         threshold=float(stored[f"{i}_threshold"]))
                for i in range(len(sizes))
            ]
            return cls([str(name) for name in stored["layers"]], sizes, groups)


def fit(layers: list[str], sizes: list[int], train_features, train_labels, validation_features) -> DistributionGuard:
    split = np.cumsum(sizes)[:-1]
    train_parts = np.split(np.asarray(train_features, np.float64), split, axis=1)
    validation_parts = np.split(np.asarray(validation_features, np.float64), split, axis=1)
    groups = [Gaussian.fit(part, np.asarray(train_labels)) for part in train_parts]
    quantile = 1 - (1 - VALIDATION_QUANTILE) / len(groups)  # union bound over the groups
    for group, part in zip(groups, validation_parts):
        group.threshold = float(np.quantile(group.distances(part), quantile))
    return DistributionGuard(list(layers), list(sizes), groups)
