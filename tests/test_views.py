"""A classifier that answers on several flips and quarter turns of each image (test-time augmentation) holds them
as standard Keras layers and operations, with one backbone call for all views: its probabilities are the mean of
the one-view model's over exactly those views, it reloads in safe mode, and the guard's features stay the image's
own view's."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from greenlens.core.backbones import (
    TILE_CNN,
    VIEW_AVERAGE,
    answering_on_views,
    build_classifier,
    dihedral_views,
    feature_model,
    fixed_size_model,
    parts,
    tile_cnn,
)
from greenlens.core.repository import save_model

# The eight views as NumPy writes them (rows, then columns): the order does not matter to a mean.
NUMPY_VIEWS = [
    lambda x: x, lambda x: x[:, ::-1], lambda x: x[::-1], lambda x: x[::-1, ::-1],
    lambda x: x.transpose(1, 0, 2), lambda x: x.transpose(1, 0, 2)[::-1], lambda x: x.transpose(1, 0, 2)[:, ::-1],
    lambda x: x.transpose(1, 0, 2)[::-1, ::-1],
]
LAYERS = list(TILE_CNN.guard_layers)


@pytest.fixture(scope="module")
def one_view():
    """A small classifier with random weights (our tile CNN as its backbone): what is tested is the plumbing, which
    is the same for any backbone and weights."""
    keras.utils.set_random_seed(0)
    model, _ = build_classifier(tile_cnn((8, 16, 32)), TILE_CNN, 48, 2)
    return model


@pytest.fixture(scope="module")
def images():
    """Asymmetric images (a gradient and a corner block on noise), so that each view differs from the others."""
    rng = np.random.default_rng(1)
    out = rng.integers(0, 256, (6, 40, 40, 3)).astype(np.float32)
    out[:, :12, :20] = 250
    out *= np.linspace(0.4, 1.0, 40)[None, :, None, None]
    return out


def mean_over_views(model, images: np.ndarray, count: int) -> np.ndarray:
    return np.mean([model.predict_on_batch(np.stack([view(image) for image in images]))
                    for view in NUMPY_VIEWS[:count]], axis=0)


@pytest.mark.parametrize("count", [2, 4, 8])
def test_a_model_on_views_gives_the_mean_over_those_views(one_view, images, count):
    model = answering_on_views(one_view, count)
    assert parts(model).views == count
    np.testing.assert_allclose(model.predict_on_batch(images), mean_over_views(one_view, images, count), atol=2e-6)
    # Each view really differs here: the mean is not the image's own answer.
    assert np.abs(model.predict_on_batch(images) - one_view.predict_on_batch(images)).max() > 1e-4


def test_it_reloads_in_safe_mode_from_standard_layers(one_view, images, tmp_path):
    model = answering_on_views(one_view, 8)
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    modules = set()

    def walk(node):
        if isinstance(node, dict):
            if "module" in node and "class_name" in node:
                modules.add(node["module"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    # Nothing of ours: a model pulled from the Hub loads with Keras alone.
    assert modules
    assert all(module.split(".")[0] == "keras" for module in modules), modules
    # The views pass the backbone as one batch: one call of it in the graph, so tracing and conversion cost one.
    backbone = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Functional")
    assert len(backbone["inbound_nodes"]) == 1
    reloaded = keras.saving.load_model(str(tmp_path), compile=False, safe_mode=True)
    assert parts(reloaded).views == 8
    np.testing.assert_allclose(reloaded.predict_on_batch(images), mean_over_views(one_view, images, 8), atol=2e-6)


def test_the_guard_reads_the_images_own_view_and_runtimes_the_same_views(one_view, images):
    model = answering_on_views(one_view, 8)
    features, probabilities = feature_model(model, LAYERS)[0].predict_on_batch(images)
    own_features, own_probabilities = feature_model(one_view, LAYERS)[0].predict_on_batch(images)
    np.testing.assert_allclose(features, own_features, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(probabilities, model.predict_on_batch(images), atol=1e-6)
    # One view on request (the survey's tile model): the one-view model's numbers.
    _, single = feature_model(model, LAYERS, 40, views=1)[0].predict_on_batch(images)
    np.testing.assert_allclose(single, own_probabilities, atol=1e-6)
    # The files for other runtimes take the model's input size and answer on the same views.
    side = parts(model).resize.height
    resized = np.asarray(parts(model).resize(images))
    np.testing.assert_allclose(fixed_size_model(model, side).predict_on_batch(resized),
                               model.predict_on_batch(images), atol=1e-5)


def test_a_model_saved_with_one_backbone_call_per_view_still_counts_its_views(one_view, images):
    """Models saved before the views were one batch average one call per view in an Average layer; they load and
    answer as before."""
    p = parts(one_view)
    inputs = keras.Input((None, None, 3))
    calls = [p.head(p.backbone(view)) for view in dihedral_views(p.preprocess(inputs), 8)]
    earlier = keras.Model(inputs, keras.layers.Average(name=VIEW_AVERAGE)(calls))
    assert parts(earlier).views == 8
    np.testing.assert_allclose(earlier.predict_on_batch(images), answering_on_views(one_view, 8).predict_on_batch(images),
                               atol=1e-6)


def test_only_whole_subgroups_of_the_views_are_accepted(one_view):
    assert answering_on_views(one_view, 1) is one_view
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        answering_on_views(one_view, 3)


def test_a_model_trained_further_trains_on_each_images_own_view(one_view, images):
    """Adapting starts from a model answering on 8 views; it is trained on one view (8 times cheaper, and what the
    recipe's training means), and the same layers, so the weights it learns are the 8-view model's too."""
    from greenlens.training.finetune import reuse_model

    model, head, backbone = reuse_model(answering_on_views(one_view, 8))
    assert parts(model).views == 1
    assert backbone is parts(one_view).backbone
    assert head[-1] is parts(one_view).dense
    np.testing.assert_allclose(model.predict_on_batch(images), one_view.predict_on_batch(images), atol=1e-6)
