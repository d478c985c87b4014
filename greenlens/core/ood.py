"""The out-of-distribution guard: "this does not look like a strawberry leaf / an aerial tile".

The training distribution is described in the backbone's pooled feature space by class means and
one shared covariance (Ledoit-Wolf shrunk: 1,280 dimensions from a few thousand images); an
input's Mahalanobis distance to the nearest class mean (Lee et al. 2018) above a threshold set
on validation images flags it. Fitted on augmented views too (blur, noise, light, framing), that
distribution is wide enough for a worse photo of a leaf, and so also for some things that are not
leaves; a linear boundary between the training views and made-up images that are not the subject
(Outlier Exposure, Hendrycks et al. 2019) tells those apart. Stored in the model repo as `ood.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

FILENAME = "ood.npz"
# Shares the thresholds let through: of real validation images all but 0.5%; of augmented views of them
# all but 2% (the strongest changes training makes go beyond most real photos, and a guard wide enough for
# every one of them would let through much that is not the subject).
VALIDATION_QUANTILE = 0.995
VIEW_QUANTILE = 0.98


@dataclass
class Gaussian:
    """One group of features: class means and a shared covariance, after standardisation."""

    center: np.ndarray
    scale: np.ndarray
    means: np.ndarray
    precision: np.ndarray
    threshold: float = np.inf

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> Gaussian:
        from sklearn.covariance import LedoitWolf  # fitting only: serving and surveys need no scikit-learn

        center, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        z = (features - center) / scale
        classes = np.unique(labels)
        means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        precision = LedoitWolf(assume_centered=True).fit(z - means[np.searchsorted(classes, labels)]).precision_
        return cls(center, scale, means, precision)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance to the nearest class mean. One matrix product for all classes, in float32
        (a survey scores every tile; float64 and one product per class took a sixth of its time):
        with c = z - means[0], (c - d) P (c - d) = cPc - 2 (cP) d + dPd for each d = mean - means[0]."""
        center, scale, origin, precision, offsets, constant = self._terms
        centred = (np.asarray(features, np.float32) - center) / scale - origin
        projected = centred @ precision
        base = (projected * centred).sum(axis=1)
        squared = base[:, None] - 2 * projected @ offsets.T + constant
        return np.sqrt(np.maximum(squared.min(axis=1), 0))

    @cached_property
    def _terms(self) -> tuple[np.ndarray, ...]:
        """What `distances` needs that no image changes, in float32, worked out once: dPd alone reads the whole
        1,280 x 1,280 precision matrix, which for one photo cost as much as the distance itself."""
        center, scale, means, precision = (np.asarray(a, np.float32) for a in
                                           (self.center, self.scale, self.means, self.precision))
        offsets = means - means[0]
        return center, scale, means[0], precision, offsets, ((offsets @ precision) * offsets).sum(axis=1)


@dataclass
class OutlierBoundary:
    """Logistic regression on standardised features: the probability that an image is one of the
    made-up outliers rather than a training image or view; above `threshold` it is flagged."""

    center: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 1.0

    @classmethod
    def fit(cls, inliers: np.ndarray, outliers: np.ndarray) -> OutlierBoundary:
        from sklearn.linear_model import LogisticRegression

        features = np.concatenate([inliers, outliers])
        center, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        # Classes weighted equally: the outliers are far fewer; C=0.1 keeps the boundary smooth.
        model = LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced")
        model.fit((features - center) / scale, np.r_[np.zeros(len(inliers)), np.ones(len(outliers))])
        return cls(center, scale, model.coef_[0], float(model.intercept_[0]))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = ((features - self.center) / self.scale) @ self.weights + self.bias
        return 1 / (1 + np.exp(-np.clip(logits, -50, 50)))


@dataclass
class DistributionGuard:
    """One Gaussian per feature group (input colour statistics, the channel means of each of
    `layers`, the pooled backbone output); an input is flagged when any group finds it too far.

    A single distance over all ~1,400 features lets the bulk of the deep features drown a flat
    blue square whose colour alone is many deviations from anything seen; per-group thresholds
    do not. The thresholds are quantiles chosen so that together at most 0.5% of real validation
    images and 2% of augmented views of them are flagged (`fit`)."""

    layers: list[str]
    sizes: list[int]
    groups: list[Gaussian]
    outliers: OutlierBoundary | None = None  # absent in repos fitted before it existed

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Per image, the largest group distance divided by its threshold (and the outlier probability
        divided by its threshold): above 1 is flagged."""
        features = np.asarray(features, dtype=np.float32)
        parts = np.split(features, np.cumsum(self.sizes)[:-1], axis=1)
        ratios = [g.distances(part) / g.threshold for g, part in zip(self.groups, parts)]
        if self.outliers is not None:
            ratios.append(self.outliers.probabilities(features) / self.outliers.threshold)
        return np.max(ratios, axis=0)

    def flags(self, features: np.ndarray) -> np.ndarray:
        return self.scores(features) > 1.0

    def save(self, folder: Path, name: str = FILENAME) -> None:
        arrays: dict[str, np.ndarray] = {"layers": np.array(self.layers), "sizes": np.array(self.sizes)}
        for index, group in enumerate(self.groups):
            for key in ("center", "scale", "means", "precision"):
                arrays[f"{index}_{key}"] = getattr(group, key).astype(np.float32)
            arrays[f"{index}_threshold"] = np.asarray(group.threshold)
        if self.outliers is not None:
            for key in ("center", "scale", "weights"):
                arrays[f"outliers_{key}"] = getattr(self.outliers, key).astype(np.float32)
            arrays["outliers_bias"] = np.asarray(self.outliers.bias)
            arrays["outliers_threshold"] = np.asarray(self.outliers.threshold)
        np.savez_compressed(Path(folder) / name, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle

    @classmethod
    def load(cls, folder: Path, name: str = FILENAME) -> DistributionGuard | None:
        path = Path(folder) / name
        if not path.is_file():
            return None
        with np.load(path) as stored:
            sizes = [int(size) for size in stored["sizes"]]
            def array(key: str) -> np.ndarray:
                return stored[key].astype(np.float64)

            # The groups keep the stored float32: their distances are worked out in float32 anyway (`_terms` uses
            # these very arrays then; float64 ones meant a float32 copy beside them, 20 MB a 1,280-feature group
            # instead of 6.5).
            groups = [
                Gaussian(stored[f"{i}_center"], stored[f"{i}_scale"], stored[f"{i}_means"], stored[f"{i}_precision"],
                         threshold=float(stored[f"{i}_threshold"]))
                for i in range(len(sizes))
            ]
            outliers = None
            if "outliers_weights" in stored:
                outliers = OutlierBoundary(array("outliers_center"), array("outliers_scale"), array("outliers_weights"),
                                           bias=float(stored["outliers_bias"]), threshold=float(stored["outliers_threshold"]))
            return cls([str(name) for name in stored["layers"]], sizes, groups, outliers)


def fit(layers: list[str], sizes: list[int], train_features, train_labels, validation_features, *,
        view_features=None, outlier_features=None) -> DistributionGuard:
    """Each part's threshold lets through all but 1 - VALIDATION_QUANTILE of the validation images and all
    but 1 - VIEW_QUANTILE of their augmented views (`view_features`), split over the parts (a union
    bound); with `outlier_features` (made-up images that are not the subject) the outlier boundary is
    fitted too."""
    train_features = np.asarray(train_features, np.float64)
    sets = [(np.asarray(validation_features, np.float64), VALIDATION_QUANTILE)]
    if view_features is not None and len(view_features):
        sets.append((np.asarray(view_features, np.float64), VIEW_QUANTILE))
    split = np.cumsum(sizes)[:-1]
    groups = [Gaussian.fit(part, np.asarray(train_labels)) for part in np.split(train_features, split, axis=1)]
    outliers = None
    if outlier_features is not None:
        outliers = OutlierBoundary.fit(train_features, np.asarray(outlier_features, np.float64))
    parts = len(groups) + (outliers is not None)

    def threshold(score) -> float:
        return max(float(np.quantile(score(features), 1 - (1 - quantile) / parts)) for features, quantile in sets)

    for index, group in enumerate(groups):
        group.threshold = threshold(lambda features, i=index, g=group: g.distances(np.split(features, split, axis=1)[i]))
    if outliers is not None:
        outliers.threshold = threshold(outliers.probabilities)
    return DistributionGuard(list(layers), list(sizes), groups, outliers)
