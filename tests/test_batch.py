"""Batches from folders and zips: entries are read one at a time, and a zip that would expand past
its caps (a zip bomb, a zip of countless files) is refused with a message that names the cap."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image

from greenlens.core.folder_csv import ZipLimits, iter_inputs
from greenlens.core.images import ImageError


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_zip_entries_are_read_in_turn_and_non_images_skipped(tmp_path):
    members = {"a/1.jpg": jpeg(1), "a/notes.txt": b"hello", "a/.hidden.jpg": jpeg(2), "a/2.jpg": jpeg(3)}
    archive = write_zip(tmp_path / "a.zip", members)
    items = iter_inputs([archive])
    assert not isinstance(items, list)  # a generator: nothing is read before it is asked for
    assert [(name, data) for name, data in items] == [("a/1.jpg", jpeg(1)), ("a/2.jpg", jpeg(3))]


def test_zip_bomb_entry_is_refused_without_being_inflated(tmp_path):
    bomb = write_zip(tmp_path / "bomb.zip", {"zeros.jpg": bytes(64 * 2**20), "ok.jpg": jpeg(1)})
    assert bomb.stat().st_size < 200_000  # 64 MB of zeros deflate to a few dozen kilobytes
    items = list(iter_inputs([bomb], ZipLimits(entry_bytes=2**20)))
    assert isinstance(items[0][1], ImageError)
    assert "zeros.jpg expands to more than 1 MB" in str(items[0][1])
    assert items[1] == ("ok.jpg", jpeg(1))


def test_zip_total_and_entry_count_caps_stop_reading(tmp_path):
    many = write_zip(tmp_path / "many.zip", {f"{i}.jpg": jpeg(i) for i in range(12)})
    items = list(iter_inputs([many], ZipLimits(entries=5)))
    assert [name for name, _ in items[:5]] == [f"{i}.jpg" for i in range(5)]
    assert len(items) == 6
    assert "holds more than 5 images" in str(items[5][1])
    size = len(jpeg(0))
    items = list(iter_inputs([many], ZipLimits(total_bytes=3 * size + size // 2)))
    assert len(items) == 4
    assert "many.zip expands to more than" in str(items[3][1])
