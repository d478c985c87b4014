"""Grad-CAM: the heat lies on the leaf, and it explains the class the model predicts."""

from __future__ import annotations

import numpy as np
import pytest

from greenlens.core import repository
from greenlens.core.backbones import get_backbone
from greenlens.core.explain import GradCam, overlay_heatmap
from greenlens.core.images import decode_image

from .conftest import ROOT


@pytest.fixture(scope="module")
def leaf_model():
    return repository.load(str(ROOT / "models" / "leaf"))


@pytest.mark.slow
def test_heat_lies_on_the_leaf_in_segmented_images(leaf_model, leaf_dir):
    """On the segmented images of the validation split, the split that chose the recipe (the test
    split stays for the published numbers), for both classes."""
    cam = GradCam(leaf_model.model, get_backbone("mobilenet_v2").cam_layer)
    rows = [row.split(",") for row in (leaf_model.path / "validation.csv").read_text().splitlines()[1:]]
    files = [leaf_dir / file for file, _, _ in rows if file.startswith("segmented/")]
    assert len(files) > 100
    assert {label for _, label, _ in rows} == {"healthy", "leaf scorch"}
    shares = []
    for path in files:
        image = decode_image(path)
        heat, _ = cam.heatmap(image)
        on_leaf = image.max(axis=2) > 25  # the background of segmented PlantVillage images is black
        shares.append(heat[on_leaf].sum() / heat.sum())
    assert np.mean(shares) >= 0.8, np.mean(shares)


def test_heatmap_matches_the_image_and_the_prediction(leaf_model):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    heat, predicted = GradCam(leaf_model.model).heatmap(image)
    assert heat.shape == (120, 90)
    assert heat.min() >= 0
    assert heat.max() <= 1
    assert predicted == int(leaf_model.model.predict_on_batch(image[None].astype(np.float32)).argmax())
    shown = overlay_heatmap(image, heat)
    assert shown.shape == image.shape
    assert shown.dtype == np.uint8
