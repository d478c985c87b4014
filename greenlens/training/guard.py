"""Fitting the out-of-distribution guard to a trained classifier, and measuring it: how often it
flags real held-out images, and how often images no model of ours should take for its subject."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from greenlens.core import ood
from greenlens.core.backbones import feature_model, images_per_batch
from greenlens.core.batches import predict_images
from greenlens.core.images import IMAGE_SUFFIXES, ImageError, decode_image
from greenlens.core.quality import UNCLEAR_RISK, QualityCheck, fit_min_confidence


def fit_and_measure(model, layers: list[str], train_images, train_labels, validation_images, test_images,
                    other_images: dict[str, list[np.ndarray]], image_size: int, *, threshold_images=(),
                    threshold_labels=None, outlier_images=(), quality: QualityCheck | None = None,
                    ) -> tuple[ood.DistributionGuard, QualityCheck | None, dict, dict]:
    """Fits the guard on the training images (augmented views among them) and sets its thresholds on
    the validation images and `threshold_images` (their augmented views); with `threshold_labels` (the
    views' classes), the views the guard and `quality` (a QualityCheck) pass also set the quality check's
    `min_confidence`. Measures both on the test images (which set nothing) and on out-of-distribution
    images, where an image counts as refused when the guard flags it or the quality check finds it too
    poor or too unclear to judge, as greenlens.core.inference.Classifier answers.

    Returns the guard, the quality check with its `min_confidence`, the report, and the model's
    probabilities on the validation and test images: the guard's feature pass computes them anyway,
    so evaluating the model needs no pass of its own."""
    features_model, sizes = feature_model(model, layers)
    batch = images_per_batch(model)
    # The guard's features are the image's own view's whatever the model averages: where only they are wanted, one
    # view computes them (a model answering on 8 views would spend 8 passes on probabilities nobody reads).
    one_view = feature_model(model, layers, views=1)[0]
    train_features = predict_images(one_view, train_images, desc="Guard features, training images and views")[0]
    held_out = {
        split: predict_images(features_model, images, batch, desc=f"Evaluating on {split} images (and guard features)")
        for split, images in (("validation", validation_images), ("test", test_images))
    }
    views = outlier_features = None  # views: the threshold images' (features, probabilities)
    if len(threshold_images):
        views = predict_images(features_model, list(threshold_images), batch, desc="Guard features, validation views")
    if len(outlier_images):
        outlier_features = predict_images(one_view, list(outlier_images), desc="Guard features, made-up outliers")[0]
    guard = ood.fit(layers, sizes, train_features, train_labels, held_out["validation"][0],
                    view_features=views[0] if views else None, outlier_features=outlier_features)
    if quality is not None and threshold_labels is not None and views is not None:
        answered = ~guard.flags(views[0]) & ~quality.too_poor(list(threshold_images))
        quality = replace(quality, min_confidence=fit_min_confidence(views[1], threshold_labels, answered))

    def refused(images) -> np.ndarray:
        features, probabilities = predict_images(features_model, images, batch)
        flagged = guard.flags(features)
        if quality is not None:
            flagged |= quality.too_poor(images) | quality.unclear(probabilities)
        return flagged

    out_sets = {f"synthetic {kind}": images for kind, images in synthetic_images(40, image_size).items()}
    out_sets.update(other_images)
    shares = {name: float(refused(images).mean()) for name, images in out_sets.items() if images}
    counts = {name: len(images) for name, images in out_sets.items() if images}
    test_features, test_probabilities = held_out["test"]
    test_flagged = guard.flags(test_features)
    test_poor = quality.too_poor(list(test_images)) if quality is not None else None
    report = {
        "method": "Mahalanobis distance to the nearest class mean (standardised features, shared Ledoit-Wolf "
        f"covariance) in each of {len(sizes)} feature groups: input colour statistics, channel means of "
        f"{', '.join(layers)}, pooled backbone output; flagged when any group's distance exceeds its threshold, "
        "set so that at most 0.5% of validation images and 2% of augmented views of them are flagged; fitted on "
        "the training images and augmented views of them, so realistic variation of a photo is in distribution; "
        "and a logistic boundary between those and made-up images that are not the subject (synthetic noise, "
        "colours, gradients and scenes from other seeds than the ones measured here, crops of natural photos "
        "that no measurement uses, and made-up backgrounds where the task composites onto them)",
        "thresholds": [group.threshold for group in guard.groups],
        "test_flagged": float(test_flagged.mean()),
        "test_too_poor": float(test_poor.mean()) if test_poor is not None else None,
        "min_confidence": quality.min_confidence if quality is not None else None,
        "unclear_risk": UNCLEAR_RISK,
        # Of the test images neither the guard nor the image checks refuse: the share no class is sure enough of.
        "test_unclear": float(np.mean(~test_flagged & ~test_poor & quality.unclear(test_probabilities)))
        if quality is not None and test_poor is not None else None,
        "validation_flagged": float(guard.flags(held_out["validation"][0]).mean()),
        "train_flagged": float(guard.flags(train_features).mean()),
        "out_of_distribution_flagged": shares,
        "out_of_distribution_counts": counts,
        "out_of_distribution_flagged_overall": sum(shares[n] * counts[n] for n in shares) / sum(counts.values()),
    }
    return guard, quality, report, {split: probabilities for split, (_, probabilities) in held_out.items()}


# Seeds of the made-up images the guard is fitted against; the ones it is measured on use others.
OUTLIER_SEED = 1_000


# Natural photos bundled with libraries we install anyway, named "library:file". No measured set uses them (the
# benchmarks use scikit-image's photos), so fitting on them leaves the measurements honest.
# scikit-learn's temple and flower, and since 2026-12-07 a portrait, big cats, a figurine and a tower: with those the
# guards refused more of scikit-image's photos (leaf 96% -> 98%, cactus 88% -> 92%; benchmarks/results/
# guard_more_photos.json). The big cats are kin of the cat among scikit-image's photos, which gave about half the
# cactus guard's gain: people upload photos of their pets too.
BUNDLED_PHOTOS = (
    "scikit-learn:china.jpg", "scikit-learn:flower.jpg", "matplotlib:grace_hopper.jpg",
    "gradio:cheetah.jpg", "gradio:cheetah1.jpg", "gradio:lion.jpg", "gradio:groot.jpeg", "gradio:tower.jpg",
)


def outlier_images(augmentation, size: int, count: int = 150, seed: int = OUTLIER_SEED, *,
                   photo_crops: int = 0, photos: tuple[str, ...] = BUNDLED_PHOTOS) -> list[np.ndarray]:
    """Made-up images that are not the subject, for fitting the guard: the synthetic kinds (from other
    seeds than those it is measured on), `photo_crops` crops of the bundled natural `photos` and, where
    the task composites its subject onto made-up backgrounds, those backgrounds alone, plain and augmented:
    a surface is not a leaf."""
    from greenlens.training.augment import background, view

    images = [image for kind in synthetic_images(count, size, seed).values() for image in kind]
    images += sample_photo_crops(photo_crops, size, seed, photos=photos)
    if augmentation.backgrounds:
        rng = np.random.default_rng(seed)
        surfaces = [background((size, size), rng) for _ in range(2 * count)]
        images += surfaces + [view(surface, augmentation, rng) for surface in surfaces]
    return images


def bundled_photo(name: str) -> np.ndarray:
    """One of the photos that scikit-learn, matplotlib or Gradio ship, by its "library:file" name, as RGB."""
    import importlib.util

    from PIL import Image

    library, file = name.split(":")
    if library == "scikit-learn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(file)
    if library == "matplotlib":
        import matplotlib.cbook

        path = Path(matplotlib.cbook.get_sample_data(file, asfileobj=False))
    else:  # Gradio's demo images, found without importing Gradio
        spec = importlib.util.find_spec(library)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"{library} is not installed: it ships the photo {file}")
        path = Path(spec.submodule_search_locations[0]) / "media_assets" / "images" / file
    with Image.open(path) as photo:
        return np.asarray(photo.convert("RGB"))


def sample_photo_crops(count: int, size: int, seed: int = OUTLIER_SEED, *,
                       photos: tuple[str, ...] = BUNDLED_PHOTOS) -> list[np.ndarray]:
    """`count` square crops of bundled natural `photos`, from `size` pixels to the photo's height on a side,
    resized to `size`: natural scenes at every scale, from a patch of texture to the whole photo."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pictures = [bundled_photo(name) for name in photos]
    crops = []
    for _ in range(count):
        photo = pictures[rng.integers(len(pictures))]
        side = int(np.exp(rng.uniform(np.log(size), np.log(min(photo.shape[:2])))))
        top, left = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crops.append(np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)))
    return crops


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


def read_other_images(folder: Path | None, limit: int = 200, name: str | None = None) -> dict[str, list[np.ndarray]]:
    """Up to `limit` images of a folder (e.g. the other task's data), for measuring the guard."""
    if folder is None:
        return {}
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
