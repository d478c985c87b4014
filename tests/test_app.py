"""The real app in a subprocess, called over HTTP with gradio_client as programs call it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio_client import Client, handle_file

from greenlens.examples import example_files

from .apprunner import running_app
from .conftest import ROOT


@pytest.fixture(scope="module")
def app_url():
    with running_app() as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def require_examples(task):
    files = example_files(task)
    if not files:
        pytest.skip("example images not copied in (make examples with the data folder present)")
    return files


@pytest.mark.parametrize("task", ["leaf", "cactus"])
def test_endpoint_classifies_the_examples(client, task):
    for path, expected in require_examples(task):
        result = client.predict(handle_file(str(path)), api_name=f"/classify_{task}")
        assert result["label"] == expected, (path, result)
        confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
        labels = {"leaf": {"healthy", "leaf scorch"}, "cactus": {"cactus", "no cactus"}}[task]
        assert set(confidences) == labels
        assert sum(confidences.values()) == pytest.approx(1, abs=1e-4)
        assert confidences[expected] > 0.5


def test_endpoints_are_named_in_the_api(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify_leaf", "/classify_cactus"} <= set(endpoints)


def test_generated_image_gets_all_labels(client, tmp_path):
    from PIL import Image

    path = tmp_path / "green.png"
    Image.new("RGB", (300, 200), (30, 150, 40)).save(path)
    result = client.predict(handle_file(str(path)), api_name="/classify_leaf")
    assert result["label"] in {"healthy", "leaf scorch"}
    assert len(result["confidences"]) == 2


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.jpg", b"this is a text file, not a photo", "not an image this app can read"),
        ("empty.png", b"", "not an image this app can read"),
    ],
)
def test_bad_file_gets_a_plain_error_and_the_app_keeps_serving(client, tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(bad)), api_name="/classify_cactus")
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)
    good = tmp_path / "tile.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (120, 110, 90)).save(good)
    assert client.predict(handle_file(str(good)), api_name="/classify_cactus")["label"] in {"cactus", "no cactus"}


def test_decompression_bomb_is_refused(client, tmp_path):
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (30_000, 30_000)).save(bomb, optimize=True)
    with pytest.raises(Exception, match="over the limit"):
        client.predict(handle_file(str(bomb)), api_name="/classify_leaf")


def test_bad_model_source_stops_the_app_with_the_variable_named(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "LEAF_MODEL": str(tmp_path / "nowhere" / "model"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "LEAF_MODEL=" in result.stderr and "nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_request_gets_a_plain_error(client):
    with pytest.raises(Exception, match="No image was given"):
        client.predict(None, api_name="/classify_leaf")


def test_upload_over_the_size_limit_is_refused(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2_100_000))
    with running_app(env={"GREENLENS_MAX_FILE_SIZE": "2mb"}) as (url, _):
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="(?i)exceeds|too large|maximum"):
            client.predict(handle_file(str(big)), api_name="/classify_leaf")
