"""The bad-input corpus, sent through gradio_client to the running app as any program could send it.

Each input gets a correct answer or a plain message, and the app answers a normal request after it.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from greenlens.core.examples import example_files
from greenlens.core.quality import PROBLEMS
from greenlens.core.tasks import TASKS

from .conftest import decompression_bomb

NOT_AN_IMAGE = "not an image this app can read"


@pytest.fixture(params=["leaf", "cactus"])
def task(request):
    if not example_files(request.param):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    return request.param


def example(task: str) -> tuple[Image.Image, str]:
    path, expected = example_files(task)[0]
    return Image.open(path).convert("RGB"), expected


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def truncated_jpeg(image):
    jpeg = encoded(image, "JPEG", quality=95)
    return jpeg[: len(jpeg) // 2]


def animated_gif(image):
    buffer = io.BytesIO()
    image.save(buffer, format="GIF", save_all=True, append_images=[Image.eval(image, lambda v: 255 - v)], duration=100)
    return buffer.getvalue()


def sixteen_bit_gray(image):
    return encoded(Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257), "PNG")


# name -> (file name, bytes from the example image, expectation)
# Expectations: "expected" (the example's label), "answer" (any label the endpoint may give: a class, the
# out-of-distribution label or why the image is too poor to judge),
# or an error-message pattern.
CORPUS = {
    "zero-byte file": ("empty.jpg", lambda image: b"", r"empty.jpg is empty \(0 bytes\)"),
    "text file named .jpg": ("notes.jpg", lambda image: b"shopping list: strawberries\n", NOT_AN_IMAGE),
    "truncated JPEG": ("truncated.jpg", truncated_jpeg, "damaged or truncated"),
    "1x1 image": ("dot.png", lambda image: encoded(image.resize((1, 1)), "PNG"), "answer"),
    "decompression bomb": ("bomb.png", lambda image: decompression_bomb(), "over the limit of 67,108,864 pixels"),
    "CMYK JPEG": ("cmyk.jpg", lambda image: encoded(image.convert("CMYK"), "JPEG", quality=95), "expected"),
    "16-bit PNG": ("deep.png", sixteen_bit_gray, "answer"),
    "RGBA PNG": ("rgba.png", lambda image: encoded(image.convert("RGBA"), "PNG"), "expected"),
    "palette GIF": ("palette.gif", lambda image: encoded(image.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"), "expected"),
    "animated GIF": ("animated.gif", animated_gif, "expected"),
    "grayscale": ("gray.png", lambda image: encoded(image.convert("L"), "PNG"), "answer"),
    # Formats Pillow reads but the app does not name: no decoder beyond the named ones is tried (EPS would
    # run Ghostscript), whatever the file's name says.
    "EPS named .jpg": ("leaf.jpg", lambda image: encoded(image, "EPS"), NOT_AN_IMAGE),
    "Targa image": ("leaf.tga", lambda image: encoded(image, "TGA"), NOT_AN_IMAGE),
    "over the upload limit": ("huge.png", lambda image: b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20),
                              "(?i)exceeds|too large|maximum"),
}


def classify(client, task, path):
    return client.predict(handle_file(str(path)) if path else None, api_name=f"/classify_{task}")


def assert_still_serving(client, task):
    path, expected = example_files(task)[0]
    assert classify(client, task, path)["label"] == expected


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_input_gets_an_answer_or_a_plain_message(client, task, case, tmp_path):
    name, make, expectation = CORPUS[case]
    image, expected = example(task)
    path = tmp_path / name
    path.write_bytes(make(image))
    if expectation in ("expected", "answer"):
        result = classify(client, task, path)
        labels = [c["label"] for c in result["confidences"]]
        assert set(labels) == set(TASKS[task].labels)
        refusals = {TASKS[task].out_of_distribution_label, *PROBLEMS.values()}
        allowed = {expected} if expectation == "expected" else {*labels, *refusals}
        assert result["label"] in allowed, result
    else:
        with pytest.raises(Exception, match=expectation) as caught:
            classify(client, task, path)
        assert "Traceback" not in str(caught.value)
    assert_still_serving(client, task)


def test_empty_request_gets_a_plain_message(client, task):
    with pytest.raises(Exception, match="No image was given"):
        classify(client, task, None)
    assert_still_serving(client, task)


def test_sixteen_bit_png_is_read_like_its_eight_bit_twin(client, task, tmp_path):
    image, _ = example(task)
    deep, shallow = tmp_path / "deep.png", tmp_path / "shallow.png"
    deep.write_bytes(sixteen_bit_gray(image))
    shallow.write_bytes(encoded(image.convert("L"), "PNG"))
    answers = [classify(client, task, path) for path in (deep, shallow)]
    assert answers[0]["label"] == answers[1]["label"]
    confidences = [{c["label"]: c["confidence"] for c in answer["confidences"]} for answer in answers]
    assert all(abs(confidences[0][label] - confidences[1][label]) < 0.02 for label in confidences[0])


def test_exif_rotation_is_applied(client, task, tmp_path):
    """A photo stored sideways with an EXIF orientation tag is seen upright: the explanation
    overlay, which keeps the input's size, comes back in the upright shape."""
    image, _expected = example(task)
    upright = image.crop((0, 0, image.width, image.height * 3 // 4))  # not square, so orientation shows
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways = tmp_path / "sideways.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, format="JPEG", quality=95, exif=exif.tobytes())
    overlay = Image.open(client.predict(handle_file(str(sideways)), api_name=f"/explain_{task}"))
    assert overlay.size == upright.size
    assert_still_serving(client, task)


def test_a_corrupt_file_fails_only_its_own_request_among_concurrent_ones(app_url, task, tmp_path):
    """Eight requests at once, five times, one of them a truncated JPEG: the seven others are answered
    (they share forward passes with each other), the bad one alone gets its own message."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    image, expected = example(task)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(truncated_jpeg(image))
    good = example_files(task)[0][0]
    clients = [Client(app_url, verbose=False) for _ in range(8)]

    def send(index):
        path = bad if index == 3 else good
        try:
            return clients[index].predict(handle_file(str(path)), api_name=f"/classify_{task}")["label"]
        except Exception as error:
            return f"error: {error}"

    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            answers = list(pool.map(send, range(8)))
            assert "damaged or truncated" in answers[3]
            assert answers[:3] + answers[4:] == [expected] * 7, answers
