"""The training views: each realistic change drawn on its own, and the same views from the same seed."""

from __future__ import annotations

import numpy as np

from greenlens.core.tasks import CACTUS, LEAF
from greenlens.training.augment import view
from greenlens.training.finetune import augment


def _tile(side: int = 32) -> np.ndarray:
    """A textured made-up tile: a gradient with a brighter blob, so every change of it shows in its pixels."""
    y, x = np.mgrid[:side, :side]
    image = np.stack([40 + 3 * x, 60 + 2 * y, 90 + x + y], axis=-1).astype(np.float64)
    image += 80 * np.exp(-((x - side / 3) ** 2 + (y - side / 2) ** 2) / (side / 4) ** 2)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _dihedral(image: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(flipped, k) for flipped in (image, image[:, ::-1]) for k in range(4)]


def test_the_changes_of_a_view_are_drawn_independently():
    """With 7 changes each applied to 30-60% of views, about 1% are left untouched but for a flip or rotation. When
    every transform drew the same number (albumentations' `set_random_seed` seeds each alike) 40% were, and noise
    came only with blur, JPEG and a colour cast."""
    image = _tile()
    plain = _dihedral(image)
    rng = np.random.default_rng(0)
    views = [view(image, CACTUS.augmentation, rng) for _ in range(400)]
    untouched = sum(any(np.array_equal(v, p) for p in plain) for v in views)
    assert untouched / len(views) < 0.05
    assert len({v.tobytes() for v in views}) >= 0.95 * len(views)  # only untouched ones can coincide


def test_the_same_seed_gives_the_same_views():
    image = _tile(64)
    for augmentation in (CACTUS.augmentation, LEAF.augmentation):
        first = [view(image, augmentation, np.random.default_rng(7)) for _ in range(3)]
        again = [view(image, augmentation, np.random.default_rng(7)) for _ in range(3)]
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
        other = view(image, augmentation, np.random.default_rng(8))
        assert not np.array_equal(first[0], other)


def test_a_plain_share_of_the_realistic_views_stays_a_flip_or_rotation():
    """`Recipe.plain_share`: that share of the training's realistic views keeps the image's pixels; the first two
    views stay the image and a flip or rotation of it whatever the share."""
    image = _tile()
    plain = _dihedral(image)

    def untouched_share(share: float, view_index: int) -> float:
        rng = np.random.default_rng(1)
        views = [augment(image, CACTUS.augmentation, rng, view_index, plain_share=share) for _ in range(300)]
        return sum(any(np.array_equal(v, p) for p in plain) for v in views) / len(views)

    assert untouched_share(0.0, 2) < 0.05
    assert 0.3 < untouched_share(0.4, 2) < 0.5
    assert untouched_share(0.0, 1) == untouched_share(0.0, 0) == 1.0
