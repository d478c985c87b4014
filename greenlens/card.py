"""The model card: Hub YAML metadata plus the run's real numbers, rendered from `model_card.md`."""

from __future__ import annotations

import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# In a checkout, the template at the top of the repository; installed with pip, its copy in share/greenlens.
TEMPLATE = next((path for path in (Path(__file__).resolve().parent.parent / "model_card.md",
                                   Path(sys.prefix) / "share" / "greenlens" / "model_card.md") if path.is_file()),
                Path("model_card.md"))

DATASETS = {
    "leaf": {
        "name": "PlantVillage strawberry leaves",
        "description": "Hughes & Salathé 2015, Kaggle layout",
        "limitations": "- Trained on PlantVillage's lab photos of single detached leaves on a plain or black "
        "background; field photos of whole plants are outside what it has seen.\n"
        "- Two classes only: other strawberry diseases (e.g. leaf spot) get one of these two labels.",
    },
    "cactus": {
        "name": "Aerial Cactus Identification",
        "description": "López-Jiménez et al. 2019, Kaggle competition data",
        "limitations": "- Trained on 32x32 nadir tiles from one survey area in Mexico (Tehuacán-Cuicatlán); "
        "other resolutions, sensors or vegetation need a check before surveillance use.",
    },
}


def render_card(info: dict, template: Path = TEMPLATE) -> ModelCard:
    """`info` is the run's record (metrics.json); everything on the card comes from it."""
    task, metrics, validation = info["task"], info["metrics"], info["validation_metrics"]
    dataset = DATASETS[task["name"]]
    card_data = ModelCardData(
        library_name="keras",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=["image-classification", "keras", "transfer-learning", task["backbone"].replace("_", "-")],
        datasets=list(task["dataset_tags"]),
        metrics=["accuracy", "roc_auc"],
        model_name=info["repo_id"],
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=task["dataset_tags"][0],
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
        dataset_description=dataset["description"],
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
        ood=info.get("ood"),
        robustness=info.get("robustness"),
        runtimes=info.get("runtimes"),
        out_of_distribution_label=task.get("out_of_distribution_label", "out of distribution"),
    )


def _auc(metrics: dict) -> str:
    return "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.5f}"
