"""Shared fixtures: where the real data lives (skip when absent) and generated images."""

from __future__ import annotations

import csv
import io
import json
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
LEAF_DIR = DATA_DIR / "strawberry-leaf"
CACTUS_DIR = DATA_DIR / "aerial-cactus"
KERAS_HOME = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
MOBILENET_WEIGHTS = KERAS_HOME / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


# Modules whose every test starts a process (the app, a browser, `train.py`, a venv) or serves the app.
SLOW_MODULES = {"test_app", "test_browser", "test_commands", "test_hostile", "test_hub", "test_load", "test_mcp",
                "test_packaging", "test_robust_answers", "test_space"}
# Fixtures that serve the app or train a model on real data with ImageNet weights.
SLOW_FIXTURES = {"app", "app_url", "client", "leaf_run"}


def pytest_collection_modifyitems(items):
    """Marks `slow` what `make test-fast` leaves out: the modules above, any test that uses the fixtures above,
    and the tests marked by hand."""
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def app():
    """One `python app.py` on the bundled models, shared by every test that talks to it over HTTP:
    (url, process)."""
    from .apprunner import running_app

    with running_app() as running:
        yield running


@pytest.fixture(scope="session")
def app_url(app):
    return app[0]


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A Hub-compatible server on 127.0.0.1 (tests/hubserver.py) that accepts TOKEN, one per test module."""
    from .hubserver import TOKEN, LocalHub

    with LocalHub(tmp_path_factory.mktemp("hub"), tokens={TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def hf_env(hub, tmp_path_factory):
    """The environment that points huggingface_hub at `hub`, with its own cache and the token."""
    from .hubserver import TOKEN

    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path_factory.mktemp("hf_home")), "HF_TOKEN": TOKEN,
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}


@pytest.fixture(scope="session")
def leaf_dir() -> Path:
    if not (LEAF_DIR / "color").is_dir():
        pytest.skip(f"real leaf data not found at {LEAF_DIR} (set DATA_DIR)")
    return LEAF_DIR


@pytest.fixture(scope="session")
def cactus_dir() -> Path:
    if not (CACTUS_DIR / "train.csv").is_file():
        pytest.skip(f"real cactus data not found at {CACTUS_DIR} (set DATA_DIR)")
    return CACTUS_DIR


@pytest.fixture(scope="session")
def imagenet_weights() -> str:
    """`imagenet` when the Keras cache holds the MobileNetV2 weights (make fills it offline)."""
    if not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"MobileNetV2 ImageNet weights not in the Keras cache ({MOBILENET_WEIGHTS}); run `make keras-cache`")
    return "imagenet"


@cache
def decompression_bomb() -> bytes:
    """A 30,000 x 30,000 PNG of a few kilobytes, encoded once for every test that sends it."""
    buffer = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def make_image(path: Path, color, size=(32, 32), noise_seed: int = 0) -> Path:
    """A small textured image of a dominant colour: classes told apart by colour are learnable."""
    rng = np.random.default_rng(noise_seed)
    pixels = np.clip(np.array(color)[None, None, :] + rng.normal(0, 20, (*size[::-1], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def generated_leaf_dir(tmp_path) -> Path:
    """A Kaggle plantvillage-layout folder: 2 classes x 3 leaves x 3 photos, with leaf_groups.csv."""
    root = tmp_path / "strawberry-leaf"
    rows = ["class,leaf_id,color_file,segmented_file"]
    classes = (("Strawberry___healthy", (40, 160, 40), "hl"), ("Strawberry___Leaf_scorch", (150, 80, 40), "ls"))
    for class_name, color, prefix in classes:
        for leaf in range(3):
            for photo in range(3):
                name = f"{prefix}{leaf}_{photo}.jpg"
                make_image(root / "color" / class_name / name, color, noise_seed=leaf * 10 + photo)
                rows.append(f"{class_name},{prefix}-{leaf},{name},")
    (root / "leaf_groups.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def generated_cactus_dir(tmp_path) -> Path:
    """A Kaggle aerial-cactus-layout folder: train.csv + train/<id>, 40 tiles."""
    root = tmp_path / "aerial-cactus"
    rows = ["id,has_cactus"]
    for index in range(40):
        has_cactus = index % 2
        name = f"tile{index:03d}.jpg"
        make_image(root / "train" / name, (60, 140, 60) if has_cactus else (170, 140, 110), noise_seed=index)
        rows.append(f"{name},{has_cactus}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def validation_leaves(leaf_dir, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` of the bundled leaf model's validation photos (both classes), with their class indices."""
    from greenlens.core.images import decode_image

    leaf = ROOT / "models" / "leaf"
    labels = json.loads((leaf / "labels.json").read_text())
    with open(leaf / "validation.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [rows[i] for i in np.linspace(0, len(rows) - 1, count).astype(int)]
    return [decode_image(leaf_dir / row["file"]) for row in rows], np.array([labels.index(row["label"]) for row in rows])
