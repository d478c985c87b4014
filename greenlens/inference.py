"""Running a classifier on images: batching by shape through a compiled predict path."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

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
    outputs = None
    with tqdm(total=len(images), desc=desc, unit="img", disable=desc is None) as bar:
        for batch in batches:
            result = model.predict_on_batch(np.stack([images[i] for i in batch]).astype(np.float32))
            parts = [np.asarray(part) for part in (result if isinstance(result, (list, tuple)) else [result])]
            if outputs is None:
                outputs = [np.empty((len(images), *part.shape[1:]), part.dtype) for part in parts]
            for output, part in zip(outputs, parts):
                output[batch] = part
            bar.update(len(batch))
    if outputs is None:
        raise ValueError("no images to predict")
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


@dataclass
class Prediction:
    """What the model says of one image: every class's probability, and whether the image lies
    outside the training distribution (then `label` says so instead of naming a class)."""

    label: str
    probabilities: dict[str, float]
    out_of_distribution: bool = False
    # The guard's score: the largest feature-group distance over its threshold (above 1: flagged).
    ood_score: float | None = None

    def as_label_data(self) -> dict:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return {"label": self.label, "confidences": [{"label": l, "confidence": p} for l, p in ranked]}


class Classifier:
    """A loaded model repo ready to answer: labels in output order, a compiled predict path,
    and the facts people want to see next to a prediction."""

    def __init__(self, repo, batch_size: int = 32):
        from .ood import DistributionGuard, feature_model

        self.repo = repo
        self.model = repo.model
        self.labels = list(repo.labels)
        self.batch_size = batch_size
        self.guard = DistributionGuard.load(repo.path)
        self.out_of_distribution_label = repo.task.get("out_of_distribution_label", "out of distribution")
        # One forward pass gives both the probabilities and the features the guard reads.
        self._predict_model = feature_model(self.model, self.guard.layers)[0] if self.guard else self.model

    @classmethod
    def load(cls, source: str) -> "Classifier":
        from .repository import load

        return cls(load(source))

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        return predict_images(self.model, images, self.batch_size)

    def classify(self, images: list[np.ndarray]) -> list[Prediction]:
        if not self.guard:
            return [self._prediction(row) for row in self.predict(images)]
        features, probabilities = predict_images(self._predict_model, images, self.batch_size)
        scores = self.guard.scores(features)
        return [self._prediction(row, score) for row, score in zip(probabilities, scores)]

    def _prediction(self, row: np.ndarray, score: float | None = None) -> Prediction:
        flagged = score is not None and score > 1.0
        label = self.out_of_distribution_label if flagged else self.labels[int(row.argmax())]
        return Prediction(label, dict(zip(self.labels, map(float, row))), flagged, None if score is None else float(score))

    @property
    def positive_label(self) -> str:
        """The label whose probability scores ROC AUC, surveys and Kaggle submissions."""
        return self.repo.task.get("positive_label", self.labels[0])

    def explain(self, image: np.ndarray) -> np.ndarray:
        """The image with a Grad-CAM heat map of where the model looked."""
        from .explain import overlay_heatmap

        heat, _ = self._grad_cam.heatmap(image)
        return overlay_heatmap(image, heat)

    @cached_property
    def _grad_cam(self):
        """Built on the first explanation: most visitors never ask for one."""
        from .backbones import get_backbone
        from .explain import GradCam

        backbone = self.repo.task.get("backbone")
        return GradCam(self.model, get_backbone(backbone).cam_layer if backbone else None)

    def warm_up(self) -> None:
        """Traces the predict function once so the first real request is not slow."""
        size = int(self.repo.task.get("image_size", 224))
        self.classify([np.zeros((size, size, 3), np.uint8)])

    @property
    def facts(self) -> dict[str, str]:
        task, metrics = self.repo.task, self.repo.metrics.get("metrics", {})
        auc = metrics.get("roc_auc")
        return {
            "Backbone": task.get("backbone_display", "unknown") + (f" (alpha {task['alpha']})" if task.get("alpha", 1.0) != 1.0 else ""),
            "Input size": f"{task.get('image_size', '?')} x {task.get('image_size', '?')} (resized inside the model)",
            "Validation accuracy": f"{metrics['accuracy']:.4f} ({metrics['count']} images)" if metrics else "not recorded",
            "Validation ROC AUC": f"{auc:.5f}" if auc is not None else "not recorded",
            "Weights": self.repo.source,
        }
