"""Honest numbers for a trained classifier, and the plots people would rather look at."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from greenlens.core.tasks import Task


def evaluate(task: Task, probabilities: np.ndarray, labels: np.ndarray, sources: list[str]) -> dict:
    """Accuracy, ROC AUC (score: the positive label's probability), confusion matrix,
    per-class precision/recall, and accuracy per data source (e.g. color vs segmented)."""
    predicted = probabilities.argmax(axis=1)
    positive = task.positive_index
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(len(task.labels)), zero_division=0
    )
    source_of = np.asarray(sources)
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "roc_auc": _roc_auc(labels == positive, probabilities[:, positive]),
        "errors": int((predicted != labels).sum()),
        "count": len(labels),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(len(task.labels))).tolist(),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(task.labels, precision, recall, f1, support)
        },
        "per_source": {
            source: {
                "accuracy": float(accuracy_score(labels[source_of == source], predicted[source_of == source])),
                "count": int((source_of == source).sum()),
            }
            for source in sorted(set(source_of.tolist()))
        },
    }
    return metrics


def _roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float | None:
    if is_positive.all() or not is_positive.any():
        return None  # undefined with one class present
    return float(roc_auc_score(is_positive, score))


def plot_training_curves(history: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Accuracy and loss per epoch, both stages on one axis with the switch marked."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("accuracy", "loss")):
        start = 1
        for stage, curves in history.items():
            if not curves:
                continue
            epochs = np.arange(start, start + len(curves[metric]))
            name = stage.replace("_", " ")
            axis.plot(epochs, curves[metric], marker="o", markersize=3, label=f"train, {name}")
            axis.plot(epochs, curves[f"val_{metric}"], marker="s", markersize=3, linestyle="--", label=f"validation, {name}")
            if start > 1:
                axis.axvline(start - 0.5, color="grey", linewidth=0.8)
            start += len(curves[metric])
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_title("Accuracy (stage 1: head only; stage 2: top blocks)")
    axes[1].set_title("Loss")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_confusion_matrix(task: Task, metrics: dict, path: Path, split: str) -> None:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay(np.array(metrics["confusion_matrix"]), display_labels=task.labels).plot(
        ax=axis, cmap="Greens", colorbar=False, values_format="d"
    )
    axis.set_title(f"{split.capitalize()}: {metrics['errors']} errors of {metrics['count']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_roc_curve(task: Task, probabilities: np.ndarray, labels: np.ndarray, path: Path, split: str) -> None:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    positive = task.positive_index
    RocCurveDisplay.from_predictions(
        labels == positive, probabilities[:, positive], name=f"{task.positive_label} vs rest", ax=axis
    )
    axis.set_title(f"ROC curve ({split})")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
