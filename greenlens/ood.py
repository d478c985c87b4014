"""The out-of-distribution guard: "this does not look like a strawberry leaf / an aerial tile".

The training distribution is described in the backbone's pooled feature space by class means and
one shared covariance (Ledoit-Wolf shrunk: 1,280 dimensions from a few thousand images); an
input's Mahalanobis distance to the nearest class mean (Lee et al. 2018) above a threshold set
on validation images flags it. Stored in the model repo as `ood.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
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


def feature_model(model: keras.Model, layers: list[str]) -> tuple[keras.Model, list[int]]:
    """The classifier with a first output added, the guard's features: colour statistics of the
    model's input (channel means and mean squares), channel means of `layers`, and the pooled
    backbone features the head reads. One forward pass gives both. Returns the group sizes too."""
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    inner = keras.Model(backbone.input, [*(backbone.get_layer(name).output for name in layers), backbone.output])
    x = model.get_layer("backbone_scaling")(model.get_layer("resize")(model.input))
    *maps, pooled = inner(x)
    colour = keras.layers.Concatenate()([
        keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([x, x]))
    ])
    groups = [colour, *(keras.layers.GlobalAveragePooling2D()(feature_map) for feature_map in maps), pooled]
    probabilities = model.get_layer("probabilities")(model.get_layer("head_dropout")(pooled))
    sizes = [int(group.shape[-1]) for group in groups]
    return keras.Model(model.input, [keras.layers.Concatenate()(groups), probabilities]), sizes


def synthetic_images(count: int, size: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Inputs no leaf or cactus model should take for its subject, by kind: noise, solid colours,
    gradients, and simple made-up scenes (shapes on backgrounds, stripes, checkerboards)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    kinds: dict[str, list[np.ndarray]] = {"noise": [], "solid": [], "gradient": [], "scene": []}
    for index in range(count):
        if index % 2:
            kinds["noise"].append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        else:
            kinds["noise"].append(np.clip(rng.normal(128, 60, (size, size, 3)), 0, 255).astype(np.uint8))
        kinds["solid"].append(np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (size, size, 3)).copy())
        a, b = rng.integers(0, 256, (2, 3))
        ramp = [x, y, np.hypot(x - 0.5, y - 0.5) * 1.4, (x + y) / 2][index % 4][..., None]
        kinds["gradient"].append((a * (1 - ramp) + b * ramp).astype(np.uint8))
        kinds["scene"].append(_scene(rng, size, x, y, index))
    return kinds


def _scene(rng, size, x, y, index) -> np.ndarray:
    image = np.empty((size, size, 3), np.float64)
    image[:] = rng.integers(0, 256, 3)
    if index % 3 == 0:  # checkerboard
        cells = rng.integers(2, 9)
        mask = ((x * cells).astype(int) + (y * cells).astype(int)) % 2 == 1
        image[mask] = rng.integers(0, 256, 3)
    elif index % 3 == 1:  # stripes at an angle
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.05, 0.3)
        mask = np.sin((x * np.cos(angle) + y * np.sin(angle)) / period * 2 * np.pi) > 0
        image[mask] = rng.integers(0, 256, 3)
    else:  # random discs and boxes
        for _ in range(rng.integers(3, 9)):
            cx, cy, r = rng.uniform(0, 1, 3) * (1, 1, 0.3)
            shape = np.hypot(x - cx, y - cy) < r if rng.random() < 0.5 else (abs(x - cx) < r) & (abs(y - cy) < r)
            image[shape] = rng.integers(0, 256, 3)
    return image.astype(np.uint8)


def flagged_shares(guard: DistributionGuard, features_model: keras.Model, sets: dict[str, list[np.ndarray]]) -> dict[str, float]:
    from .inference import predict_images

    return {name: float(guard.flags(predict_images(features_model, images)[0]).mean()) for name, images in sets.items() if images}


def fit_and_measure(model: keras.Model, layers: list[str], train_images, train_labels, validation_images,
                    other_images: dict[str, list[np.ndarray]], image_size: int) -> tuple[DistributionGuard, dict, np.ndarray]:
    """Fits the guard on the training images, sets its threshold on the validation images, and
    measures how often it flags real validation images and out-of-distribution images.

    Also returns the model's probabilities on the validation images: the guard's feature pass
    computes them anyway, so evaluating the model needs no pass of its own."""
    from .inference import predict_images

    features_model, sizes = feature_model(model, layers)
    train_features = predict_images(features_model, train_images, desc="Guard features, training images")[0]
    validation_features, validation_probabilities = predict_images(
        features_model, validation_images, desc="Evaluating on validation images (and guard features)"
    )
    guard = fit(layers, sizes, train_features, train_labels, validation_features)
    out_sets = {f"synthetic {kind}": images for kind, images in synthetic_images(40, image_size).items()}
    out_sets.update(other_images)
    shares = flagged_shares(guard, features_model, out_sets)
    counts = {name: len(images) for name, images in out_sets.items() if images}
    report = {
        "method": "Mahalanobis distance to the nearest class mean (standardised features, shared Ledoit-Wolf "
        f"covariance) in each of {len(sizes)} feature groups: input colour statistics, channel means of "
        f"{', '.join(layers)}, pooled backbone output; flagged when any group's distance exceeds its threshold, "
        "set on validation images so that at most 0.5% of them are flagged",
        "thresholds": [group.threshold for group in guard.groups],
        "validation_flagged": float(guard.flags(validation_features).mean()),
        "train_flagged": float(guard.flags(train_features).mean()),
        "out_of_distribution_flagged": shares,
        "out_of_distribution_counts": counts,
        "out_of_distribution_flagged_overall": sum(shares[n] * counts[n] for n in shares) / sum(counts.values()),
    }
    return guard, report, validation_probabilities


def read_other_images(folder: Path | None, limit: int = 200, name: str | None = None) -> dict[str, list[np.ndarray]]:
    """Up to `limit` images of a folder (e.g. the other task's data), for measuring the guard."""
    if folder is None:
        return {}
    from .data import IMAGE_SUFFIXES
    from .images import ImageError, decode_image

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    step = max(1, len(files) // limit)
    images = []
    for path in files[::step][:limit]:
        try:
            images.append(decode_image(path))
        except ImageError:
            continue
    folder = Path(folder)
    return {name or f"other images ({folder.parent.name}/{folder.name})": images}
