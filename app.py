"""Gradio app: one tab per classifier, named API endpoints /classify_leaf and /classify_cactus.

Models come from LEAF_MODEL / CACTUS_MODEL (a model folder, or a Hub repo id `org/name`,
`hf://org/name`, `org/name@revision`); unset, the models bundled in models/ are served.
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# NumPy's matrix products on one thread, set before NumPy loads OpenBLAS: the guard's are small (one photo's features
# against a 1,280 x 1,280 matrix), and OpenBLAS split each over both cores and kept its threads spinning afterwards,
# taking the cores from TensorFlow's next forward pass (a leaf photo's pass 24 -> 38 ms on a 2-core AMD EPYC,
# 2026-12-07). Surveys hold it so too (greenlens.survey.grid.classify_chunks).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from greenlens.core.allocator import limit_heap_growth

# Before Gradio, TensorFlow and their threads exist: otherwise the app's memory climbs request after request.
limit_heap_growth()

import gradio as gr
import pandas as pd
from gradio import processing_utils
from gradio.components.label import LabelConfidence, LabelData
from gradio.utils import NamedString
from gradio_client.utils import is_valid_file
from PIL import Image

from greenlens import survey as surveying
from greenlens.core.examples import example_files
from greenlens.core.folder_csv import classify_to_csv
from greenlens.core.images import SERVING_SIDE, ImageError, decode_image
from greenlens.core.inference import Classifier, RequestBatcher
from greenlens.core.quality import PROBLEMS
from greenlens.core.repository import ModelSourceError
from greenlens.core.tasks import TASKS
from greenlens.survey.tile_model import TileClassifier

HERE = Path(__file__).resolve().parent
MODEL_VARIABLES = {name: task.model_variable for name, task in TASKS.items()}
# Concurrent /classify_* requests share one forward pass, up to this many; 1 turns batching off.
MAX_BATCH_SIZE = int(os.environ.get("GREENLENS_MAX_BATCH_SIZE", "16"))
MAX_FILE_SIZE = os.environ.get("GREENLENS_MAX_FILE_SIZE", "20mb")
# Uploads and results are removed this long after they were written (and all of them at shutdown).
RESULT_MAX_AGE_S = int(os.environ.get("GREENLENS_RESULT_MAX_AGE_S", "3600"))
# Survey uploads are untrusted: opened only as what they claim to be and held to these limits
# (GREENLENS_SURVEY_MAX_PIXELS, _MAX_WINDOWS, _TIME_LIMIT_S). One survey runs at a time, on this many
# threads, so the other requests keep a core.
SURVEY_LIMITS = surveying.Limits.from_environment()
SURVEY_THREADS = int(os.environ.get("GREENLENS_SURVEY_THREADS", "1"))
# The heavy events (surveys, batches, Grad-CAM) share one concurrency group of this many slots: on a
# 2-vCPU Space one heavy job at a time leaves a core to the quick /classify_* requests.
HEAVY = dict(concurrency_id="heavy", concurrency_limit=int(os.environ.get("GREENLENS_HEAVY_JOBS", "1")))
# Requests waiting in the queue, all events together; one more is refused at once (HTTP 503, "Queue is
# full... try again"; gradio_client raises QueueError) instead of waiting without end.
QUEUE_MAX_SIZE = int(os.environ.get("GREENLENS_QUEUE_MAX_SIZE", "32"))
# Results are written inside Gradio's cache folder: Gradio then serves them without making a copy, and
# its delete_cache removes them with the uploads. What a failed request wrote is never handed to Gradio,
# so this process's folder is also swept by age, and removed at exit.
Path(gr.utils.get_upload_folder()).mkdir(parents=True, exist_ok=True)
OUTPUTS = Path(tempfile.mkdtemp(prefix="greenlens-results-", dir=gr.utils.get_upload_folder()))
atexit.register(shutil.rmtree, OUTPUTS, ignore_errors=True)


class CheckedImage(gr.Image):
    """gr.Image that hands the endpoint the upload's path unopened, for `read_upload` to decode with the
    app's decoders only (images.FORMATS). Gradio's own preprocessing opens every upload with any of Pillow's
    forty-odd decoders (EPS runs Ghostscript), and re-encodes a data: URL as a lossy WebP before we see it."""

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return processing_utils.save_base64_to_cache(payload.url, self.GRADIO_CACHE)  # its bytes, as sent
        if payload.path is None:
            raise gr.Error("No image was given.")
        return str(payload.path)


class FileUpload(gr.File):
    """gr.File for uploads, without the empty temporary file Gradio 6.31's File opens in its cache for
    every uploaded file and never closes, tracks or removes: one file left per upload, forever."""

    is_template = True  # rendered by the frontend as a plain File

    def _process_single_file(self, f):
        if self.file_types and not is_valid_file(f.path, self.file_types):
            raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: {self.file_types}")
        return NamedString(f.path)


class GuardedLabel(gr.Label):
    """gr.Label that also takes {"label": ..., "confidences": [...]}, so the top line can say
    "not a strawberry leaf" while every class's probability is still listed."""

    is_template = True  # rendered by the frontend as a plain Label

    def postprocess(self, value):
        if isinstance(value, dict) and isinstance(value.get("confidences"), list):
            return LabelData(label=value["label"], confidences=[LabelConfidence(**c) for c in value["confidences"]])
        return super().postprocess(value)


def load_models(task: str) -> tuple[Classifier, TileClassifier | None]:
    """The task's classifier, and for a survey task its tile classifier; a model that cannot be
    used stops the app with a message naming the variable and the file."""
    variable = MODEL_VARIABLES[task]
    source = os.environ.get(variable)
    try:
        classifier = Classifier.load(source or str(HERE / "models" / task))
        tiles = TileClassifier(classifier.repo.path, threads=SURVEY_THREADS) if TASKS[task].survey_tile else None
    except ModelSourceError as error:
        where = f"{variable}={source!r}" if source else f"the bundled models/{task} ({variable} is unset)"
        sys.exit(f"Cannot start: {where}: {error}")
    if not source:
        classifier.repo.source = f"bundled with the app (models/{task}; set {variable} to change)"
    classifier.warm_up()
    return classifier, tiles


def output_file(name: str) -> Path:
    """A fresh path for a downloadable result, in a folder of its own so the file keeps its name;
    folders older than RESULT_MAX_AGE_S go, so a long-running Space does not fill its disk."""
    for old in OUTPUTS.iterdir():
        if old.stat().st_mtime < time.time() - RESULT_MAX_AGE_S:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=OUTPUTS)) / name


def read_upload(path: str | None):
    """The uploaded image as RGB; what cannot be used becomes a message for the person or program."""
    try:
        return decode_image(path, max_side=SERVING_SIDE)
    except ImageError as error:
        raise gr.Error(str(error)) from None


def as_tool(function, name: str, doc: str):
    """Names an endpoint function after its API name and documents it: MCP clients list it as a tool
    by that name, with the docstring's Args as the description of each input."""
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


def description(function) -> str:
    """An endpoint's API and MCP tool description: its docstring without the Args (each input's schema
    carries its own), so what it returns reaches MCP clients whole."""
    doc = inspect.cleandoc(function.__doc__ or "")
    summary, _, rest = doc.partition("Args:")
    returns = rest.partition("Returns:")[2]
    text = f"{summary.strip()} Returns: {returns.strip()}" if returns.strip() else summary.strip()
    return " ".join(text.split())


def classify_fn(classifier: Classifier, task_name: str):
    """The endpoint function: an uploaded file path -> the label, with every class's probability;
    the top label names the out-of-distribution case when the guard flags it.

    Up to MAX_BATCH_SIZE requests run at once (the event's concurrency limit); each decodes its own
    upload, so a bad file fails only its own request with its own message, and the decoded images of
    concurrent requests share one forward pass (RequestBatcher). MAX_BATCH_SIZE=1: one at a time."""
    if MAX_BATCH_SIZE > 1:
        run = RequestBatcher(classifier.classify, MAX_BATCH_SIZE)
    else:
        def run(image):
            return classifier.classify([image])[0]

    def classify(path: str | None) -> dict:
        prediction = run(read_upload(path))
        return prediction.as_label_data()

    task = TASKS[task_name]
    labels = " or ".join(f'"{label}"' for label in task.labels)
    return as_tool(classify, f"classify_{task_name}", f"""{task.summary} {task.scope}

    Args:
        path: the image: an http(s) URL, a data: URL (data:image/jpeg;base64,...) or an uploaded file; JPEG, PNG, WebP,
            GIF, BMP or TIFF.

    Returns:
        {{"label": the answer, one of three kinds: exactly {labels}; "{task.out_of_distribution_label}" when the image does
        not look like the training images; or, when it is the right kind of image but too poor to judge, the reason and
        what to do, one of {" / ".join(f'"{text}"' for text in PROBLEMS.values())};
        "confidences": [{{"label": class, "confidence": probability}} for every class, highest first]}}.
    """)


def explain_fn(classifier: Classifier, task_name: str):
    def explain(path: str | None) -> str:
        # A file of its own, not the array: Gradio saves an array under a name made from its content's hash and
        # rewrites that file in place for every request with the same answer, so two people explaining the same
        # photo (an example, say) could cut each other's download short (2 to 3 of 48 identical requests here).
        heat = output_file("heat.webp")
        Image.fromarray(classifier.explain(read_upload(path))).save(heat, quality=90)
        return str(heat)

    title = TASKS[task_name].title.lower()
    return as_tool(explain, f"explain_{task_name}", f"""Where the {title} model looked for its answer: Grad-CAM.

    Args:
        path: the image: an http(s) URL, a data: URL or an uploaded file.

    Returns:
        The image (at most {SERVING_SIDE} pixels on its long side) with a heat map of where the model looked.
    """)


def facts_markdown(classifier: Classifier) -> str:
    facts = "\n".join(f"- {name}: **{value}**" for name, value in classifier.facts.items())
    return f"### About this model\n{facts}"


def build_tab(task_name: str, classifier: Classifier) -> None:
    task = TASKS[task_name]
    classify = classify_fn(classifier, task_name)
    gr.Markdown(f"*{task.scope}*")
    with gr.Row():
        with gr.Column():
            image = CheckedImage(
                type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"],
                label=f"{task.title} image", height=320,
            )
            button = gr.Button("Classify", variant="primary")
            show_heat = gr.Checkbox(label="Show where the model looks (Grad-CAM)", value=False)
        with gr.Column():
            label = GuardedLabel(num_top_classes=len(classifier.labels), label="Prediction")
            heat = gr.Image(label="Where the model looked", visible=False, interactive=False, elem_id=f"heat-{task_name}")
            gr.Markdown(facts_markdown(classifier))
    button.click(
        classify, image, label, api_name=f"classify_{task_name}", concurrency_limit=MAX_BATCH_SIZE,
        api_description=description(classify),
    )
    explain = explain_fn(classifier, task_name)
    gr.on(
        [button.click, show_heat.change],
        lambda path, show: gr.Image(value=explain(path) if show and path else None, visible=show),
        # always_last: a tick of the box while the click's run is still queued is answered, not dropped.
        [image, show_heat], heat, api_visibility="private", trigger_mode="always_last", **HEAVY,
    )
    # The named endpoint takes just the image; the button itself is never shown.
    gr.Button(visible=False).click(
        explain, image, heat, api_name=f"explain_{task_name}", **HEAVY, api_description=description(explain),
    )
    # The checkout's (copied in by `make` or a deploy), else the model repo's own (a Hub model carries some).
    examples = example_files(task_name) or example_files(task_name, classifier.repo.path / "examples")
    if examples:
        # Thumbnails with the expected label under each: click one to classify it.
        gallery = gr.Gallery([(str(path), f"expected: {expected}") for path, expected in examples],
                             label="Examples: click one", columns=len(examples), height=190, allow_preview=False,
                             object_fit="contain", elem_id=f"examples-{task_name}")

        def pick(selected: gr.SelectData) -> str:
            return str(examples[selected.index][0])

        gallery.select(pick, None, image, api_visibility="private").then(classify, image, label, api_visibility="private")
    else:
        gr.Markdown("*Example images are not installed: run `make examples` with the data folder present.*")


def batch_fn(classifier: Classifier, task_name: str):
    def classify_files(files: list[str] | None):
        if not files:
            raise gr.Error("Upload image files or a zip of images first.")
        path = output_file(f"{task_name}_predictions.csv")
        result = classify_to_csv(classifier, [Path(f) for f in files], path, progress=False)
        if not result.names:
            # The last failure is the one that stopped the reading where a cap was reached.
            raise gr.Error(f"None of the {len(result.failures):,} file(s) is an image this app can read; the last: "
                           f"{result.failures[-1][1]}")
        if result.failures:
            gr.Warning(f"Skipped {len(result.failures)} unreadable file(s): {', '.join(n for n, _ in result.failures[:5])}")
        table = pd.DataFrame(result.rows(), columns=result.columns)
        return table, str(path), [{"file": name, "error": why} for name, why in result.failures]

    title = TASKS[task_name].title.lower()
    return as_tool(classify_files, f"batch_{task_name}", f"""Classifies many images at once with the {title} model.

    Args:
        files: image files and zips of images (URLs, data: URLs or uploaded files).

    Returns:
        A table with one row per readable image (file, label, each class's probability, out_of_distribution,
        too_poor_to_judge: the label is then the out-of-distribution label or why the image is too poor to judge), the
        same as a CSV file, and the files skipped with why.
    """)


def build_batch(task_name: str, classifier: Classifier) -> None:
    with gr.Accordion("Batch: many images or a zip", open=False):
        files = FileUpload(file_count="multiple", file_types=["image", ".zip"], label="Images or zip files")
        button = gr.Button("Classify all")
        table = gr.Dataframe(label="Predictions", wrap=True)
        csv_file = gr.File(label="CSV")
        skipped = gr.JSON(label="Skipped files (not images this app can read)")
        classify_files = batch_fn(classifier, task_name)
        button.click(classify_files, files, [table, csv_file, skipped], api_name=f"batch_{task_name}", **HEAVY,
                     api_description=description(classify_files))


def survey_fn(tiles: TileClassifier):
    """The survey functions: an uploaded GeoTIFF, PNG or JPEG (and optional areas of interest) -> overlay,
    summary, tiles CSV, every output file, and the per-area table for the tab; `survey_files`, the endpoint's,
    returns the first four."""

    def run_survey(path: str | None, stride: float = tiles.tile, threshold: float = surveying.THRESHOLD,
                   tile_size: float = tiles.tile, areas: str | None = None, progress=gr.Progress()):
        if path is None:
            raise gr.Error("No image was given.")
        out_dir = output_file("survey")
        try:
            result = surveying.survey_raster(
                path, tiles, out_dir, stride=int(stride), threshold=float(threshold), tile_size=int(tile_size),
                areas=areas or None, untrusted=True, limits=SURVEY_LIMITS,
                progress=lambda done, total: progress(done / total, desc=f"{done:,} of {total:,} tiles"),
            )
        except surveying.SurveyError as error:
            raise gr.Error(str(error)) from None
        if result.summary["warning"]:
            gr.Warning(result.summary["warning"])
        files = [str(f) for f in result.files.values()]
        table = pd.DataFrame(result.area_rows) if result.area_rows else None
        return str(result.files["overlay"]), result.summary, str(result.files["tiles"]), files, table

    def survey_files(path: str | None, stride: float = tiles.tile, threshold: float = surveying.THRESHOLD,
                     tile_size: float = tiles.tile, areas: str | None = None, progress=gr.Progress()):
        return run_survey(path, stride, threshold, tile_size, areas, progress)[:4]

    every_file = ("Also every output file: GeoPackage, GeoJSON, probability GeoTIFF (with a CRS), summary.json, and "
                  "with areas areas.csv.")
    return run_survey, as_tool(survey_files, "survey_files", f"{SURVEY_DOC}\n        {every_file}\n    ")


SURVEY_DOC = f"""Surveys an aerial image or drone orthomosaic for cacti: the image is cut into tiles at the training scale,
    every tile classified, and the positive tiles counted and mapped.

    Args:
        path: a GeoTIFF (any CRS; nodata or alpha outside the flown area), PNG or JPEG: URL, data: URL or uploaded file;
            at most {SURVEY_LIMITS.max_pixels:,} pixels declared, data in at most {SURVEY_LIMITS.max_windows} windows of
            {surveying.CHUNK:,} x {surveying.CHUNK:,} pixels, stopped after {SURVEY_LIMITS.time_limit_s:g} s.
        stride: source pixels between tiles (default: the tile size).
        threshold: probability from which a tile counts as positive (default {surveying.THRESHOLD:g}).
        tile_size: source pixels per training tile (32 at the training ground resolution).
        areas: optional polygons to survey inside, reported one by one (GeoPackage, GeoJSON or zipped Shapefile, any
            CRS; at most 1,000 polygons): URL, data: URL or uploaded file.

    Returns:
        A preview image with the positive tiles highlighted; the summary (tiles, cactus_tiles, cactus_fraction,
        nodata_tiles, ood_tiles, tile_size and where it came from, crs, surveyed_ha, cactus_tiles_per_ha, patches,
        warning); the tiles CSV.
    """


def build_survey_tab(classifier: Classifier, tiles: TileClassifier) -> None:
    tile = tiles.tile
    positive = classifier.positive_label
    gr.Markdown(
        f"Upload an aerial image or a drone orthomosaic: a GeoTIFF (any CRS, nodata or alpha outside the flown "
        f"area, 8 or 16 bits), a PNG or a JPEG, up to {MAX_FILE_SIZE} and "
        f"{SURVEY_LIMITS.max_windows * surveying.CHUNK ** 2 / 1e6:,.0f} "
        f"million pixels of data (a survey here stops after {SURVEY_LIMITS.time_limit_s:g} s; `greenlens survey` on your "
        "own machine has no limit). It is cut into tiles that are resampled to "
        f"the {tile} x {tile} pixels the model was trained on; set the tile size to the number of your pixels that "
        f"cover the ground of one training tile. Every tile is classified and the {positive} tiles are mapped: "
        "with a CRS you get a GeoPackage, a GeoJSON and a probability GeoTIFF for QGIS or a web map."
    )
    with gr.Row():
        with gr.Column():
            upload = FileUpload(label="Aerial image or orthomosaic (GeoTIFF, PNG, JPEG)",
                                file_types=[".tif", ".tiff", ".png", ".jpg", ".jpeg"])
            tile_size = gr.Slider(8, 256, value=tile, step=8, label="Tile size (source pixels per training tile)")
            stride = gr.Slider(8, 256, value=tile, step=8, label="Stride (source pixels between tiles)")
            threshold = gr.Slider(0.05, 0.95, value=surveying.THRESHOLD, step=0.05,
                                  label=f"{positive.capitalize()} probability threshold")
            areas = FileUpload(label="Areas of interest, optional (polygons: GeoPackage, GeoJSON or zipped Shapefile)",
                               file_types=[".gpkg", ".geojson", ".json", ".zip"])
            button = gr.Button("Survey", variant="primary")
        with gr.Column():
            overlay = gr.Image(label=f"{positive.capitalize()} tiles (preview)", type="filepath", elem_id="survey-overlay")
            summary = gr.JSON(label="Summary")
            tiles_csv = gr.File(label="Tiles (x, y, probability)")
            downloads = gr.File(label="All outputs", file_count="multiple", elem_id="survey-downloads")
            per_area = gr.Dataframe(label="Per area of interest", wrap=True, elem_id="survey-areas")
    run, survey_files = survey_fn(tiles)
    inputs = [upload, stride, threshold, tile_size, areas]
    # Every survey event is heavy: a second survey (or a batch) waits in the queue. The button's event adds
    # the per-area table; the endpoints keep the outputs their callers unpack.
    button.click(run, inputs, [overlay, summary, tiles_csv, downloads, per_area], api_visibility="private", **HEAVY)
    gr.Button(visible=False).click(survey_files, inputs, [overlay, summary, tiles_csv, downloads], api_name="survey_files",
                                   **HEAVY, api_description=description(survey_files))

    def survey(path: str | None, stride: float = tile, threshold: float = surveying.THRESHOLD, tile_size: float = tile,
               areas: str | None = None, progress=gr.Progress()):
        return run(path, stride, threshold, tile_size, areas, progress)[:3]

    as_tool(survey, "survey", SURVEY_DOC)

    # /survey keeps its three outputs for existing callers; its button is never shown.
    gr.Button(visible=False).click(
        survey, inputs, [overlay, summary, tiles_csv], api_name="survey", **HEAVY, api_description=description(survey),
    )


def build_demo(models: dict[str, tuple[Classifier, TileClassifier | None]]) -> gr.Blocks:
    # delete_cache: uploads and results older than RESULT_MAX_AGE_S are removed, checked six times as often.
    delete_cache = (max(1, RESULT_MAX_AGE_S // 6), RESULT_MAX_AGE_S)
    with gr.Blocks(title="Leaf health and aerial cactus classifiers", delete_cache=delete_cache) as demo:
        gr.Markdown(
            "# Leaf health and aerial cactus classifiers\n"
            "Two transfer-learning image classifiers. *Leaf health*: is a strawberry leaf healthy or "
            "scorched? *Aerial cactus*: does a 32x32 aerial tile contain a columnar cactus? Upload, "
            "paste or photograph an image, or click an example."
        )
        for task_name, (classifier, _) in models.items():
            with gr.Tab(TASKS[task_name].title):
                build_tab(task_name, classifier)
                build_batch(task_name, classifier)
        for classifier, tiles in models.values():
            if tiles is not None:
                with gr.Tab("Aerial survey"):
                    build_survey_tab(classifier, tiles)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    return demo


def stop(signum, frame):
    """SIGTERM (how Spaces, Docker and process managers stop the app) ends it like Ctrl-C: Gradio
    closes its server, which deletes the files in its cache, and the atexit handlers remove ours.
    SIGINT is set too because a shell starting the app in the background (`python app.py &`) ignores it."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    models = {task: load_models(task) for task in MODEL_VARIABLES}
    demo = build_demo(models)
    # The endpoints are also Model Context Protocol tools for assistants (/gradio_api/mcp/), unless
    # GRADIO_MCP_SERVER is false.
    mcp = os.environ.get("GRADIO_MCP_SERVER", "true").lower() not in ("0", "false", "no")
    model_examples = [str(classifier.repo.path / "examples") for classifier, _ in models.values()]
    demo.launch(max_file_size=MAX_FILE_SIZE, allowed_paths=[str(HERE / "examples"), *model_examples], mcp_server=mcp)
