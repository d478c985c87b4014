"""ImageNet backbones from keras.applications, and the classifier built around one.

The classifier takes raw RGB pixels (0-255, any size): resizing and the backbone's own input
scaling are layers of the saved model, so a model pulled from the Hub needs no preprocessing code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import keras


@dataclass(frozen=True)
class Backbone:
    name: str
    display_name: str
    constructor: str  # attribute of keras.applications
    default_size: int
    # Output of the last block that stays frozen in fine-tuning; everything after it is
    # trained in stage 2. Whole blocks: half-unfrozen blocks fine-tune badly.
    fine_tune_after: str
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
    # The top two inception blocks (mixed9, mixed10), as in the Keras fine-tuning guide.
    "inception_v3": Backbone("inception_v3", "InceptionV3", "InceptionV3", 299, fine_tune_after="mixed8", cam_layer="mixed7",
                             guard_layers=("mixed2", "mixed7")),
    # The last stride-32 stage (blocks 13-16) and the 1x1 head convolution.
    "mobilenet_v2": Backbone("mobilenet_v2", "MobileNetV2", "MobileNetV2", 224, fine_tune_after="block_12_add", cam_layer="block_12_add",
                             guard_layers=("block_5_add", "block_12_add")),
}


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

    Returns the model and its head layers, which stage 1 trains on cached features.
    """
    head = [
        keras.layers.Dropout(dropout, name="head_dropout"),
        keras.layers.Dense(num_classes, activation="softmax", name="probabilities"),
    ]
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", antialias=True, name="resize")(inputs)
    x = keras.layers.Rescaling(spec.scale, offset=spec.offset, name="backbone_scaling")(x)
    x = backbone(x)
    for layer in head:
        x = layer(x)
    return keras.Model(inputs, x, name="classifier"), head
