"""The model card: Hub YAML metadata plus the run's real numbers, rendered from `model_card.md`."""

from __future__ import annotations

import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from greenlens.core.runtimes import INT8_TOLERANCE

# In a checkout, the template at the top of the repository; installed with pip, its copy in share/greenlens.
TEMPLATE = next((path for path in (Path(__file__).resolve().parents[2] / "model_card.md",
                                   Path(sys.prefix) / "share" / "greenlens" / "model_card.md") if path.is_file()),
                Path("model_card.md"))

def render_card(info: dict, template: Path = TEMPLATE, *, widget: list[dict] | None = None) -> ModelCard:
    """`info` is the run's record (metrics.json); everything on the card comes from it, and `widget`
    (examples in the repo with the model's answers, added when pushing) goes into its metadata."""
    task, metrics, validation = info["task"], info["metrics"], info["validation_metrics"]
    dataset = task["dataset"]
    card_data = ModelCardData(
        library_name="keras",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=["image-classification", "keras", "transfer-learning", task["backbone"].replace("_", "-")],
        # No `datasets:` and no `base_model:`: neither dataset is a Hub dataset repo, and keras.applications'
        # ImageNet weights are not a Hub model repo; the card links both in its text instead.
        metrics=["accuracy", "roc_auc"],
        model_name=info["repo_id"],
        widget=widget,
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=dataset["url"] or "custom",
                dataset_name=dataset["name"],
                dataset_split="test",
                metric_type=metric,
                metric_value=round(value, 6),
            )
            for metric, value in (("accuracy", metrics["accuracy"]), ("roc_auc", metrics["roc_auc"]))
            if value is not None
        ],
    )
    counts = info["counts"]
    recipe = info["recipe"]
    history = info["history"]
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        title=task["title"],
        summary=task["summary"],
        dataset_name=dataset["name"],
        dataset_citation=dataset["citation"],
        dataset_url=dataset["url"],
        backbone_paper=task["backbone_paper"],
        limitations=dataset["limitations"],
        backbone_display=task["backbone_display"],
        backbone_note=info.get("backbone_note", ""),
        alpha=recipe["alpha"],
        weights_description=info["weights_description"],
        image_size=task["image_size"],
        labels_inline=", ".join(f'"{label}"' for label in task["labels"]),
        labels_list=repr(task["labels"]),
        positive_label=task["positive_label"],
        metrics=metrics,
        validation=validation,
        roc_auc_text=_auc(metrics),
        validation_roc_auc_text=_auc(validation),
        training_minutes=f"{info['timings']['total'] / 60:.1f}",
        machine=info["machine"],
        repo_id=info["repo_id"],
        counts=counts,
        balance_text=", ".join(f"{k} {v}" for k, v in counts["balance"].items()),
        split_description=info["split_description"],
        recipe=recipe,
        recipe_name=info["recipe_name"],
        run=info["run"],
        epochs={stage: len(curves.get("loss", [])) for stage, curves in history.items()},
        fine_tune_after=task["fine_tune_after"],
        augmentation_description=info["augmentation_description"],
        timings_text=", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in info["timings"].items()),
        versions_text=", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        command=info["command"],
        views_command=info.get("views_command"),
        ood=info.get("ood"),
        robustness=info.get("robustness"),
        adaptation=info.get("adaptation"),
        tile_student=info.get("tile_student"),
        runtimes=info.get("runtimes"),
        int8_tolerance=INT8_TOLERANCE,  # how far below float32 an int8 model may be and still ship
        out_of_distribution_label=task.get("out_of_distribution_label", "out of distribution"),
    )


def _auc(metrics: dict) -> str:
    return "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.5f}"
