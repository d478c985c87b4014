"""Gradio app: one tab per classifier, named API endpoints /classify_leaf and /classify_cactus.

Models come from LEAF_MODEL / CACTUS_MODEL (a model folder, or a Hub repo id `org/name`,
`hf://org/name`, `org/name@revision`); unset, the models bundled in models/ are served.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gradio as gr  # noqa: E402
from PIL import UnidentifiedImageError  # noqa: E402

from greenlens.examples import example_files  # noqa: E402
from greenlens.images import ImageError, decode_image  # noqa: E402
from greenlens.inference import Classifier  # noqa: E402
from greenlens.repository import ModelSourceError  # noqa: E402
from greenlens.tasks import TASKS  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL_VARIABLES = {"leaf": "LEAF_MODEL", "cactus": "CACTUS_MODEL"}
MAX_BATCH_SIZE = 16
MAX_FILE_SIZE = os.environ.get("GREENLENS_MAX_FILE_SIZE", "20mb")


class CheckedImage(gr.Image):
    """gr.Image whose unreadable uploads reach people and API callers as a plain message
    instead of Gradio's generic error."""

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise gr.Error("That file is not an image this app can read (JPEG, PNG, GIF, WebP, BMP, TIFF).") from None


def load_classifier(task: str) -> Classifier:
    variable = MODEL_VARIABLES[task]
    source = os.environ.get(variable)
    try:
        classifier = Classifier.load(source or str(HERE / "models" / task))
    except ModelSourceError as error:
        where = f"{variable}={source!r}" if source else f"the bundled models/{task} ({variable} is unset)"
        sys.exit(f"Cannot start: {where}: {error}")
    if not source:
        classifier.repo.source = f"bundled with the app (models/{task}; set {variable} to change)"
    classifier.warm_up()
    return classifier


def classify_batch(classifier: Classifier):
    """The endpoint function: a batch of uploaded file paths -> one {label: probability} each.

    Gradio's queue collects concurrent requests into one call (batch=True), so they share a
    forward pass. A bad file fails the batch it arrived in with a message that names the problem.
    """

    def classify(paths: list[str | None]) -> list[list[dict[str, float]]]:
        try:
            images = [decode_image(path) for path in paths]
        except ImageError as error:
            raise gr.Error(str(error)) from None
        return [classifier.classify(images)]

    return classify


def facts_markdown(classifier: Classifier) -> str:
    facts = "\n".join(f"- {name}: **{value}**" for name, value in classifier.facts.items())
    return f"### About this model\n{facts}"


def build_tab(task_name: str, classifier: Classifier) -> None:
    task = TASKS[task_name]
    classify = classify_batch(classifier)
    with gr.Row():
        with gr.Column():
            image = CheckedImage(
                type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"],
                label=f"{task.title} image", height=320,
            )
            button = gr.Button("Classify", variant="primary")
        with gr.Column():
            label = gr.Label(num_top_classes=len(classifier.labels), label="Prediction")
            gr.Markdown(facts_markdown(classifier))
    button.click(
        classify, image, label, api_name=f"classify_{task_name}", batch=True, max_batch_size=MAX_BATCH_SIZE,
        api_description=f"{task.summary} Image file in; label and probability of every class out.",
    )
    examples = example_files(task_name)
    if examples:
        gr.Examples(
            examples=[[str(path)] for path, _ in examples], inputs=image, outputs=label, fn=classify,
            run_on_click=True, batch=True, example_labels=[expected for _, expected in examples],
            api_visibility="private",
        )
    else:
        gr.Markdown("*Example images are not installed: run `make examples` with the data folder present.*")


def build_demo(classifiers: dict[str, Classifier]) -> gr.Blocks:
    with gr.Blocks(title="Leaf health and aerial cactus classifiers") as demo:
        gr.Markdown(
            "# Leaf health and aerial cactus classifiers\n"
            "Two transfer-learning image classifiers. *Leaf health*: is a strawberry leaf healthy or "
            "scorched? *Aerial cactus*: does a 32x32 aerial tile contain a columnar cactus? Upload, "
            "paste or photograph an image, or click an example."
        )
        for task_name, classifier in classifiers.items():
            with gr.Tab(TASKS[task_name].title):
                build_tab(task_name, classifier)
    demo.queue(default_concurrency_limit=1)
    return demo


if __name__ == "__main__":
    demo = build_demo({task: load_classifier(task) for task in MODEL_VARIABLES})
    demo.launch(max_file_size=MAX_FILE_SIZE, allowed_paths=[str(HERE / "examples")])
