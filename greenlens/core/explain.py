"""Grad-CAM: where in the image the classifier looked for its answer.

The heat map is the backbone's last convolutional feature map weighted by the gradient of the
predicted class's logit (Selvaraju et al. 2017), upsampled to the input image.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from PIL import Image

from greenlens.core.backbones import parts


class GradCam:
    """Built once per model; `heatmap(image)` runs one compiled forward and backward pass."""

    def __init__(self, model: keras.Model, layer: str | None = None):
        p = parts(model)
        # Default: the feature map that global pooling summarises, the last one with spatial layout.
        feature_map = p.backbone.get_layer(layer).output if layer else p.backbone.layers[-1].input
        features = keras.Model(p.backbone.input, [feature_map, p.backbone.output])
        dense = p.dense

        @tf.function(reduce_retracing=True)
        def heatmap(image):
            x = p.preprocess(image[None])
            with tf.GradientTape() as tape:
                feature_map, pooled = features(x, training=False)
                tape.watch(feature_map)
                logits = tf.matmul(pooled, dense.kernel) + dense.bias
                predicted = tf.argmax(logits[0])
                score = logits[0, predicted]
            gradients = tape.gradient(score, feature_map)[0]
            weights = tf.reduce_mean(gradients, axis=(0, 1))
            cam = tf.nn.relu(tf.reduce_sum(feature_map[0] * weights, axis=-1))
            return cam / (tf.reduce_max(cam) + 1e-8), predicted

        self._heatmap = heatmap

    def heatmap(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """(heat in [0, 1] at the image's size, index of the predicted class)."""
        cam, predicted = self._heatmap(tf.convert_to_tensor(image, tf.float32))
        heat = Image.fromarray(np.asarray(cam, dtype=np.float32)).resize(image.shape[1::-1], Image.Resampling.BILINEAR)
        return np.clip(np.asarray(heat), 0, 1), int(predicted)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    colours = colormaps["inferno"](heat)[..., :3] * 255
    return np.clip(image * (1 - opacity) + colours * opacity, 0, 255).astype(np.uint8)
