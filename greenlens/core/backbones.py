"""ImageNet backbones from keras.applications, the classifier built around one, and the models
derived from a classifier (its parts, its guard features, its tile model).

The classifier takes raw RGB pixels (0-255, any size): resizing and the backbone's own input
scaling are layers of the saved model, so a model pulled from the Hub needs no preprocessing code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np


@dataclass(frozen=True)
class Backbone:
    name: str
    display_name: str
    constructor: str  # attribute of keras.applications
    paper: str  # the architecture's paper, linked from model cards
    # Feature map for Grad-CAM: the last one at stride 16, fine enough to outline a leaf
    # (the final stride-32 map is 5x5 at 160 pixels) and still fed by the fine-tuned gradient.
    cam_layer: str
    # Earlier feature maps whose channel means join the pooled features of the out-of-distribution
    # guard: colour and texture statistics that tell a flat or noisy image from ground or leaf.
    guard_layers: tuple[str, ...] = ()
    # Input scaling of keras.applications' preprocess_input for this family ("tf" mode: [-1, 1]).
    scale: float = 1 / 127.5
    offset: float = -1.0


BACKBONES = {
    "inception_v3": Backbone("inception_v3", "InceptionV3", "InceptionV3", "https://arxiv.org/abs/1512.00567",
                             cam_layer="mixed7", guard_layers=("mixed2", "mixed7")),
    "mobilenet_v2": Backbone("mobilenet_v2", "MobileNetV2", "MobileNetV2", "https://arxiv.org/abs/1801.04381",
                             cam_layer="block_12_add", guard_layers=("block_5_add", "block_12_add")),
}


# The survey's distilled tile model (greenlens.training.distill): our own small CNN at the tiles' native
# resolution, not an ImageNet backbone; the guard reads the outputs of its middle blocks.
TILE_CNN = Backbone("tile_cnn", "a small CNN at the tiles' native resolution", "", "https://arxiv.org/abs/1503.02531",
                    cam_layer="block_2_out", guard_layers=("block_1_out", "block_2_out"))


def tile_cnn(widths: tuple[int, ...], mimic: int = 0, depths: tuple[int, ...] | None = None) -> keras.Model:
    """Blocks of 3x3 convolutions, each with BatchNorm and ReLU (the block's last named block_<i>_out), each block
    after the first at half the side of the one before (max pooling), then global average pooling: about 4 MMACs
    for a 32 x 32 tile with widths (16, 32, 64, 128) and one convolution a block, against about 30 for the
    classifier's MobileNetV2 on the tile upsampled to 128. `depths`: convolutions per block (one each if None);
    more in the small late blocks add capacity where it costs least.

    With `mimic`, a small head on the pooling (its output the layer MIMIC) predicts that many components of the
    teacher's guard features, and the model's output is the pooling and that prediction side by side: the
    classifier's head, its guard and its tile model read both, with no code of their own for it."""
    depths = depths or (1,) * len(widths)
    if len(depths) != len(widths) or min(depths) < 1:
        raise ValueError(f"depths {depths} must give at least one convolution to each of the {len(widths)} blocks")
    inputs = keras.Input((None, None, 3), name="pixels")
    x = inputs
    for index, (width, depth) in enumerate(zip(widths, depths)):
        if index:
            x = keras.layers.MaxPooling2D(name=f"block_{index}_pool")(x)
        for layer in range(depth):
            # The first convolution of a block keeps the names models were saved with before blocks had more.
            suffix = f"_{layer}" if layer else ""
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block_{index}_conv{suffix}")(x)
            x = keras.layers.BatchNormalization(name=f"block_{index}_bn{suffix}")(x)
            x = keras.layers.ReLU(name=f"block_{index}_out" if layer == depth - 1 else f"block_{index}_relu{suffix}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if mimic:
        hidden = keras.layers.Dense(widths[-1], activation="relu", name="mimic_hidden")(outputs)
        outputs = keras.layers.Concatenate(name="pool_and_mimic")(
            [outputs, keras.layers.Dense(mimic, name=MIMIC)(hidden)])
    return keras.Model(inputs, outputs, name="tile_cnn")


MIMIC = "mimic"


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def parse_weights(value: str | None) -> str | None:
    """`imagenet` (the Keras cache, downloaded on first use), `none` (random), or a weights file."""
    if value is None or value.lower() == "none":
        return None
    if value == "imagenet":
        return value
    if not Path(value).is_file():
        raise FileNotFoundError(f"weights file {value} does not exist")
    return str(value)


def build_backbone(spec: Backbone, weights: str | None = "imagenet", alpha: float = 1.0) -> keras.Model:
    """The headless backbone with global average pooling.

    Built for any input size: Keras then loads the 224 ImageNet weights for MobileNetV2
    whatever size we feed it, and the classifier's resizing layer sets the real size.
    """
    kwargs = {"alpha": alpha} if spec.name == "mobilenet_v2" else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input_shape.*")
        constructor = getattr(keras.applications, spec.constructor)
        return constructor(
            input_shape=(None, None, 3), include_top=False, weights=weights, pooling="avg", **kwargs
        )


def build_classifier(
    backbone: keras.Model, spec: Backbone, image_size: int, num_classes: int, dropout: float = 0.2
) -> tuple[keras.Model, list[keras.layers.Layer]]:
    """Raw RGB image of any size -> one softmax probability per class.

    Returns the model and its head layers, which stage 1 trains on cached features. It answers on the
    image's own view; `answering_on_views` makes it average several (after training)."""
    head = [
        keras.layers.Dropout(dropout, name=DROPOUT),
        keras.layers.Dense(num_classes, activation="softmax", name=PROBABILITIES),
    ]
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", antialias=True, name=RESIZE)(inputs)
    x = keras.layers.Rescaling(spec.scale, offset=spec.offset, name=SCALING)(x)
    x = backbone(x)
    for layer in head:
        x = layer(x)
    return keras.Model(inputs, x, name="classifier"), head


def answering_on_views(model: keras.Model, views: int) -> keras.Model:
    """`model` (the same layers and weights) answering with its probabilities averaged over `views` dihedral views
    of each image (`dihedral_views`): test-time augmentation, inside the saved model, so that a model loaded from the
    Hub answers as the app does. `model` itself where it already answers on that many."""
    p = parts(model)
    if p.views == views:
        return model
    inputs = keras.Input(shape=(None, None, 3), name="image")
    return keras.Model(inputs, _answer(p, p.preprocess(inputs), views), name="classifier")


def dihedral_views(x, count: int) -> list:
    """The first `count` (1, 2, 4 or 8) of the eight flips and quarter turns of a batch of square images: the image,
    its mirror image, then the upside-down pair, then the transposes of those four. A nadir tile has no up, and leaves
    are trained at any rotation, so each view means the same as the image.

    Built from standard layers only (as `stack_views` and `average_views` use standard operations), so
    `keras.saving.load_model` reads the model in safe mode without our package: a transpose is a Permute, and a mirror
    a Dense layer whose fixed kernel is the reversed identity, applied to each row's pixels (exact in float32: each
    output is one input times 1, plus zeros)."""
    if count not in (1, 2, 4, 8):
        raise ValueError(f"views must be 1, 2, 4 or 8 of the dihedral group, not {count}")
    side = int(x.shape[2])
    pixels_last = keras.layers.Permute((1, 3, 2), name="view_pixels_last")  # its own inverse
    reverse = keras.layers.Dense(side, use_bias=False, trainable=False, name="view_mirror")
    transpose = keras.layers.Permute((2, 1, 3), name="view_transpose")

    def mirror(images):
        return pixels_last(reverse(pixels_last(images)))

    views = [x]
    if count > 1:
        views.append(mirror(x))
        reverse.set_weights([np.eye(side, dtype="float32")[::-1]])
    if count > 2:
        upside_down = transpose(mirror(transpose(x)))
        views += [upside_down, mirror(upside_down)]
    if count > 4:
        views += [transpose(view) for view in views]
    return views


def _answer(p: ClassifierParts, x, views: int):
    """The head's probabilities for preprocessed images `x`, averaged over `views` dihedral views.

    The views go through the backbone as one batch, view after view (`stack_views`): the graph holds one backbone
    call whatever their number, so Keras traces it, and LiteRT and ONNX convert it, as fast as for one view."""
    return _probabilities(p, p.backbone(stack_views(x, views)), views)


def _probabilities(p: ClassifierParts, pooled, views: int):
    """The head's probabilities for the backbone's output on a batch made by `stack_views`, averaged per image."""
    return p.head(pooled) if views == 1 else average_views(p.head(pooled), views)


def stack_views(x, views: int):
    """The `views` dihedral views of the batch `x` as one batch of views x n images: all n of the first view, then
    all n of the next (`first_view` and `average_views` undo it). `x` itself for one view."""
    return x if views == 1 else keras.ops.concatenate(dihedral_views(x, views), axis=0)


def first_view(stacked, views: int):
    """The rows of the image's own view in a batch made by `stack_views` (any per-image values, e.g. features)."""
    return stacked if views == 1 else keras.ops.reshape(stacked, (views, -1, *stacked.shape[1:]))[0]


def average_views(stacked, views: int):
    """Per-image means of the `views` rows of each image in a batch made by `stack_views`: (n, classes)."""
    per_image = keras.ops.transpose(keras.ops.reshape(stacked, (views, -1, stacked.shape[-1])), (1, 0, 2))
    return keras.layers.GlobalAveragePooling1D(name=VIEW_AVERAGE)(per_image)


def images_per_batch(model: keras.Model, passes: int = 64) -> int:
    """Images per batch for `model` such that a batch is about `passes` backbone passes: a model answering on 8
    views passes 8 images through its backbone for each, in one batch, and memory grows with that batch."""
    return max(1, passes // parts(model).views)


# The classifier's layer names: saved models are found again by them.
RESIZE, SCALING, DROPOUT, PROBABILITIES = "resize", "backbone_scaling", "head_dropout", "probabilities"
VIEW_AVERAGE = "view_average"


@dataclass(frozen=True)
class ClassifierParts:
    """The layers of a classifier built by `build_classifier` (or loaded from a model repo)."""

    resize: keras.layers.Resizing
    scaling: keras.layers.Rescaling
    backbone: keras.Model
    dropout: keras.layers.Dropout
    dense: keras.layers.Dense
    views: int = 1  # dihedral views of each image whose probabilities the model averages

    def preprocess(self, x):
        """Raw pixels -> what the backbone takes: resized and scaled as inside the model."""
        return self.scaling(self.resize(x))

    def head(self, pooled):
        return self.dense(self.dropout(pooled))


def parts(model: keras.Model) -> ClassifierParts:
    average = next((layer for layer in model.layers if layer.name == VIEW_AVERAGE), None)
    return ClassifierParts(
        resize=model.get_layer(RESIZE),
        scaling=model.get_layer(SCALING),
        backbone=next(layer for layer in model.layers if isinstance(layer, keras.Model)),
        dropout=model.get_layer(DROPOUT),
        dense=model.get_layer(PROBABILITIES),
        views=_views_averaged(average),
    )


def _views_averaged(average) -> int:
    """How many views the layer VIEW_AVERAGE averages: the stacked views' axis of its input (`average_views`), or
    its inputs where it is an Average layer of one input per view (models saved before the views were stacked)."""
    if average is None:
        return 1
    return len(average.input) if isinstance(average.input, (list, tuple)) else int(average.input.shape[1])


def feature_model(model: keras.Model, layers: list[str], tile: int | None = None, *,
                  views: int | None = None) -> tuple[keras.Model, list[int]]:
    """The classifier with a first output added, the out-of-distribution guard's features: colour
    statistics of the model's input (channel means and mean squares), channel means of `layers`,
    and the pooled backbone features the head reads. One forward pass gives both outputs.
    With `tile`, for tile x tile inputs only, as surveys run it. Returns the group sizes too.

    The features are always the image's own view's; the probabilities are averaged over `views`
    (default: as many as the model averages). The guard therefore reads the same features whatever
    number of views answers, and one guard serves the classifier and its one-view survey tile model."""
    p = parts(model)
    inputs, x = _tile_input(p, tile) if tile else (model.input, p.preprocess(model.input))
    inner = keras.Model(p.backbone.input, [*(p.backbone.get_layer(name).output for name in layers), p.backbone.output])
    views = p.views if views is None else views
    # With several views, the backbone sees them all as one batch (`stack_views`); the guard keeps the first view's.
    *maps, pooled = inner(stack_views(x, views))
    colour = keras.layers.Concatenate()([
        keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([x, x]))
    ])
    probabilities = _probabilities(p, pooled, views)
    pooled_maps = [first_view(keras.layers.GlobalAveragePooling2D()(feature_map), views) for feature_map in maps]
    pooled = first_view(pooled, views)
    groups = [colour, *pooled_maps, pooled]
    sizes = [int(group.shape[-1]) for group in groups]
    return keras.Model(inputs, [keras.layers.Concatenate()(groups), probabilities]), sizes


def fixed_size_model(model: keras.Model, side: int) -> keras.Model:
    """`model` for side x side inputs only (any batch): the same layers and weights, probabilities
    only, averaged over the same views. At the model's own input size the resize is a no-op: what
    LiteRT and ONNX runtimes take."""
    p = parts(model)
    inputs, x = _tile_input(p, side)
    return keras.Model(inputs, _answer(p, x, p.views), name="fixed_size_classifier")


def _tile_input(p: ClassifierParts, tile: int):
    """A fixed tile x tile input, resized and scaled as inside the model. Upscaling ignores
    antialiasing, so the resize drops it where it upscales: the antialiased kernel has no LiteRT
    equivalent."""
    inputs = keras.Input((tile, tile, 3), name="tiles")
    resize = keras.layers.Resizing(p.resize.height, p.resize.width, interpolation=p.resize.interpolation,
                                   antialias=p.resize.antialias and min(p.resize.height, p.resize.width) < tile)
    return inputs, p.scaling(resize(inputs))
