"""What each classifier classifies: the task specs that the rest of the code reads.

A task is data, not code: data loading, training, the model card and the app all take a
`Task` and never branch on which one it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    summary: str
    # How the data folder is laid out: "class_folders" (<dir>/<Class>/*.jpg) or
    # "csv" (<dir>/train.csv with id,label columns + <dir>/train/<id>).
    layout: str
    # Raw class name as it appears in the data (folder name or CSV value) -> display label.
    # The order here is the order of the model's outputs and of labels.json.
    classes: dict[str, str]
    # The label whose probability is the score of ROC AUC and of the Kaggle submission.
    positive_label: str
    # Shown instead of a label when the input lies outside the training distribution.
    out_of_distribution_label: str
    backbone: str
    image_size: int
    # Each task's default backbone, input size and MobileNetV2 width are the ones its bundled model
    # was measured best with (see the README's results); InceptionV3 ignores the width.
    # Which label-preserving transforms the images allow ("flips" for photos taken upright,
    # "dihedral" for nadir aerial tiles that have no up).
    augmentation: str
    dataset_tags: tuple[str, ...]
    source_url: str
    csv_id_column: str = "id"
    csv_label_column: str = ""
    group_csv: str = ""
    alpha: float = 1.0

    @property
    def labels(self) -> list[str]:
        return list(self.classes.values())

    @property
    def positive_index(self) -> int:
        return self.labels.index(self.positive_label)


LEAF = Task(
    name="leaf",
    title="Leaf health",
    summary="Strawberry leaf photo: healthy or leaf scorch (PlantVillage).",
    layout="class_folders",
    classes={"Strawberry___healthy": "healthy", "Strawberry___Leaf_scorch": "leaf scorch"},
    positive_label="leaf scorch",
    out_of_distribution_label="not a strawberry leaf",
    backbone="inception_v3",
    image_size=299,
    augmentation="flips",
    dataset_tags=("plantvillage",),
    source_url="https://www.kaggle.com/datasets/abdallahalidev/plantvillage-dataset",
    group_csv="leaf_groups.csv",
)

CACTUS = Task(
    name="cactus",
    title="Aerial cactus",
    summary="32x32 aerial tile: does it contain a columnar cactus? (Kaggle Aerial Cactus Identification)",
    layout="csv",
    classes={"1": "cactus", "0": "no cactus"},
    positive_label="cactus",
    out_of_distribution_label="not an aerial tile",
    backbone="mobilenet_v2",
    # A half-width MobileNetV2 at 128x128 beat the full width at 96x96 in accuracy (0.9950 vs
    # 0.9923 with the same recipe) and takes a third less time per tile, which surveys of large images need.
    image_size=128,
    alpha=0.5,
    augmentation="dihedral",
    dataset_tags=("aerial-cactus-identification",),
    source_url="https://www.kaggle.com/competitions/aerial-cactus-identification",
    csv_label_column="has_cactus",
)

TASKS = {task.name: task for task in (LEAF, CACTUS)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
