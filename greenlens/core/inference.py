"""A loaded model repo answering for images: labels, probabilities, the out-of-distribution guard."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from greenlens.core.backbones import feature_model, get_backbone, images_per_batch
from greenlens.core.batches import predict_images
from greenlens.core.quality import PROBLEMS, QualityCheck
from greenlens.core.repository import load_guard


@dataclass
class Prediction:
    """What the model says of one image, one of three kinds of answer: a class; "not a strawberry
    leaf" when the image lies outside the training distribution (`out_of_distribution`); or, when it
    is too poor to judge, why and what to do (`problem`, e.g. "too blurred to judge: retake it in
    focus"). `label` is the answer; every class's probability is given whatever the answer."""

    label: str
    probabilities: dict[str, float]
    out_of_distribution: bool = False
    # The guard's score: the largest feature-group distance over its threshold (above 1: flagged).
    ood_score: float | None = None
    problem: str | None = None

    @property
    def refused(self) -> bool:
        """No class was named: out of distribution, or too poor to judge."""
        return self.out_of_distribution or self.problem is not None

    def as_label_data(self) -> dict:
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return {"label": self.label, "confidences": [{"label": name, "confidence": p} for name, p in ranked]}


class Classifier:
    """A loaded model repo ready to answer: labels in output order, a compiled predict path,
    and the facts people want to see next to a prediction."""

    def __init__(self, repo, batch_size: int = 32):
        """`batch_size`: backbone passes per batch; a model answering on several views takes fewer images."""
        self.repo = repo
        self.model = repo.model
        self.labels = list(repo.labels)
        self.batch_size = images_per_batch(self.model, batch_size)
        self.guard = load_guard(repo.path, repo.source)
        self.quality = QualityCheck.load(repo.path)  # None in repos trained before it existed
        self.out_of_distribution_label = repo.task.get("out_of_distribution_label", "out of distribution")
        # One forward pass gives both the probabilities and the features the guard reads.
        self._predict_model = feature_model(self.model, self.guard.layers)[0] if self.guard else self.model

    @classmethod
    def load(cls, source: str) -> Classifier:
        from greenlens.core.repository import load

        return cls(load(source))

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        return predict_images(self.model, images, self.batch_size)

    def classify(self, images: list[np.ndarray]) -> list[Prediction]:
        """One Prediction per image. Too poor to judge comes first (a blurred leaf is still a leaf:
        the guard would only call it "not a leaf"), then the guard, then the class where the model is
        sure enough of one (else too unclear to judge)."""
        problems = self.quality.problems(images) if self.quality else [None] * len(images)
        if not self.guard:
            return [self._prediction(row, problem=problem) for row, problem in zip(self.predict(images), problems)]
        features, probabilities = predict_images(self._predict_model, images, self.batch_size)
        scores = self.guard.scores(features)
        return [self._prediction(row, score, problem) for row, score, problem in zip(probabilities, scores, problems)]

    def _prediction(self, row: np.ndarray, score: float | None = None, problem: str | None = None) -> Prediction:
        flagged = problem is None and score is not None and score > 1.0
        if problem is None and not flagged and self.quality and self.quality.unclear(row[None])[0]:
            problem = PROBLEMS["unclear"]  # the right kind of image, but no class the model is sure enough of
        label = problem or (self.out_of_distribution_label if flagged else self.labels[int(row.argmax())])
        return Prediction(label, dict(zip(self.labels, map(float, row))), flagged, None if score is None else float(score),
                          problem)

    @property
    def positive_label(self) -> str:
        """The label whose probability scores ROC AUC, surveys and Kaggle submissions."""
        return self.repo.task.get("positive_label", self.labels[0])

    def explain(self, image: np.ndarray) -> np.ndarray:
        """The image with a Grad-CAM heat map of where the model looked."""
        from greenlens.core.explain import overlay_heatmap

        heat, _ = self._grad_cam.heatmap(image)
        return overlay_heatmap(image, heat)

    @cached_property
    def _grad_cam(self):
        """Built on the first explanation: most visitors never ask for one."""
        from greenlens.core.explain import GradCam

        backbone = self.repo.task.get("backbone")
        return GradCam(self.model, get_backbone(backbone).cam_layer if backbone else None)

    def warm_up(self) -> None:
        """Traces the predict function once so the first real request is not slow."""
        size = int(self.repo.task.get("image_size", 224))
        self.classify([np.zeros((size, size, 3), np.uint8)])

    @property
    def facts(self) -> dict[str, str]:
        """What the model card says first: backbone, input, and the held-out test numbers."""
        task, metrics = self.repo.task, self.repo.metrics.get("metrics", {})
        auc = metrics.get("roc_auc")
        return {
            "Backbone": task.get("backbone_display", "unknown")
            + (f" (alpha {task['alpha']})" if task.get("alpha", 1.0) != 1.0 else ""),
            "Input size": f"{task.get('image_size', '?')} x {task.get('image_size', '?')} (resized inside the model)",
            "Test accuracy": f"{metrics['accuracy']:.4f} ({metrics['count']} held-out images)" if metrics else "not recorded",
            "Test ROC AUC": f"{auc:.5f}" if auc is not None else "not recorded",
            "Weights": self.repo.source,
        }


class RequestBatcher:
    """Concurrent requests share one forward pass. Each request decodes its own image first, in its
    own thread, so an unreadable file fails only its own request; decoded images then wait here
    while a worker thread classifies whatever is waiting, up to `max_batch` at a time."""

    def __init__(self, classify, max_batch: int):
        self.classify, self.max_batch = classify, max_batch
        self.waiting: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, daemon=True, name="request-batcher").start()

    def __call__(self, image: np.ndarray):
        answer: Future = Future()
        self.waiting.put((image, answer))
        return answer.result()

    def _serve(self) -> None:
        while True:
            batch = [self.waiting.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.waiting.get_nowait())
                except queue.Empty:
                    break
            try:
                for (_, answer), result in zip(batch, self.classify([image for image, _ in batch])):
                    answer.set_result(result)
            except Exception as error:
                for _, answer in batch:
                    answer.set_exception(error)
