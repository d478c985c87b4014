"""Running a classifier on images: batching by shape through a compiled predict path."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm


def predict_images(model, images: list[np.ndarray], batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """Applies `model` to images of possibly different sizes, stacking equal shapes into batches.

    `predict_on_batch` runs Keras' compiled function; calling the model eagerly is several
    times slower on CPU.
    """
    by_shape = defaultdict(list)
    for index, image in enumerate(images):
        by_shape[image.shape].append(index)
    batches = [indices[i : i + batch_size] for indices in by_shape.values() for i in range(0, len(indices), batch_size)]
    outputs = [None] * len(images)
    with tqdm(total=len(images), desc=desc, unit="img", disable=desc is None) as bar:
        for batch in batches:
            result = np.asarray(model.predict_on_batch(np.stack([images[i] for i in batch]).astype(np.float32)))
            for index, row in zip(batch, result):
                outputs[index] = row
            bar.update(len(batch))
    return np.stack(outputs)


class Classifier:
    """A loaded model repo ready to answer: labels in output order, a compiled predict path,
    and the facts people want to see next to a prediction."""

    def __init__(self, repo, batch_size: int = 32):
        self.repo = repo
        self.model = repo.model
        self.labels = list(repo.labels)
        self.batch_size = batch_size

    @classmethod
    def load(cls, source: str) -> "Classifier":
        from .repository import load

        return cls(load(source))

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        return predict_images(self.model, images, self.batch_size)

    def classify(self, images: list[np.ndarray]) -> list[dict[str, float]]:
        """One {label: probability} per image, in the model's label order."""
        return [dict(zip(self.labels, map(float, row))) for row in self.predict(images)]

    def explain(self, image: np.ndarray) -> np.ndarray:
        """The image with a Grad-CAM heat map of where the model looked."""
        from .backbones import get_backbone
        from .explain import GradCam, overlay_heatmap

        if not hasattr(self, "_grad_cam"):
            backbone = self.repo.task.get("backbone")
            self._grad_cam = GradCam(self.model, get_backbone(backbone).cam_layer if backbone else None)
        heat, _ = self._grad_cam.heatmap(image)
        return overlay_heatmap(image, heat)

    def warm_up(self) -> None:
        """Traces the predict function once so the first real request is not slow."""
        size = int(self.repo.task.get("image_size", 224))
        self.predict([np.zeros((size, size, 3), np.uint8)])

    @property
    def facts(self) -> dict[str, str]:
        task, metrics = self.repo.task, self.repo.metrics.get("metrics", {})
        auc = metrics.get("roc_auc")
        return {
            "Backbone": task.get("backbone_display", "unknown"),
            "Input size": f"{task.get('image_size', '?')} x {task.get('image_size', '?')} (resized inside the model)",
            "Validation accuracy": f"{metrics['accuracy']:.4f} ({metrics['count']} images)" if metrics else "not recorded",
            "Validation ROC AUC": f"{auc:.5f}" if auc is not None else "not recorded",
            "Weights": self.repo.source,
        }
