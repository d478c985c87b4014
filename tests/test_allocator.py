"""The allocator settings (greenlens.core.allocator): under glibc an image-sized buffer allocated after others
were freed gets a mapping of its own (returned to the system when freed) instead of a hole in the heap in the app,
and a setting made in the environment is left alone; a survey worker reuses the heap even where Dask's setting
said otherwise. Each case runs in a fresh interpreter: the settings are per process."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

try:
    ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 (glibc >= 2.33: the mapped bytes are readable)
    GLIBC = True
except (OSError, AttributeError):
    GLIBC = False

pytestmark = pytest.mark.skipif(not GLIBC, reason="glibc's malloc only: elsewhere limit_heap_growth sets nothing")

# Frees three 1 MiB buffers (glibc then raises its mmap threshold above 1 MiB), allocates a fourth, and prints what
# limit_heap_growth set and how many bytes the fourth added to the mapped blocks.
PROBE = """
import ctypes, json, sys
import numpy as np
from greenlens.core.allocator import limit_heap_growth, reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = {"limit": limit_heap_growth, "reuse": reuse_freed_memory}.get(sys.argv[1], dict)()
for _ in range(3):
    buffer = np.ones(1 << 20, np.uint8)
    del buffer
before = libc.mallinfo2().hblkhd
buffer = np.ones(1 << 20, np.uint8)
print(json.dumps({"applied": applied, "mapped": libc.mallinfo2().hblkhd - before}))
"""


def probe(mode: str, **environment) -> dict:
    import json

    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", PROBE, mode], env={**env, **environment}, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def test_a_freed_image_buffer_is_not_reused_from_the_heap_once_limited():
    default, limited = probe("default"), probe("limit")
    assert default["mapped"] == 0  # glibc's moving threshold: the buffer came from the heap
    assert limited["applied"] == {"mmap_threshold": 128 * 1024, "arena_max": 2}
    assert limited["mapped"] >= 1 << 20  # a mapping of its own, unmapped when freed


def test_settings_made_in_the_environment_win():
    result = probe("limit", MALLOC_ARENA_MAX="4")
    assert result["applied"] == {"mmap_threshold": 128 * 1024}


def test_a_survey_worker_reuses_freed_buffers_despite_dasks_setting():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns glibc's moving threshold off."""
    dask, reused = probe("default", MALLOC_TRIM_THRESHOLD_="65536"), probe("reuse", MALLOC_TRIM_THRESHOLD_="65536")
    assert dask["mapped"] >= 1 << 20  # Dask's setting: a fresh mapping for every large buffer
    assert reused["applied"] == {"mmap_threshold": 32 * 2**20, "trim_threshold": 64 * 2**20}
    assert reused["mapped"] == 0  # from the heap, where the freed buffers were
