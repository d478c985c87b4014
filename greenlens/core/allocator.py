"""glibc's malloc, set for the kind of process: a long-running server kept flat, a survey worker kept fast.

A server (limit_heap_growth):

By default glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so after the first
requests every image-sized buffer (decoded photos, batches, Keras' tensors) comes from the heap instead of its own
mapping, and the freed holes of many sizes stay resident; each thread may also get arenas of its own (up to 8 per
core). The app grew by 62 MB over 2,000 requests of the load test that way, still climbing, though its Python objects
grew by half a megabyte. With the threshold held at glibc's starting 128 KiB and two arenas it grew by 7 MB over the
same requests and started 180 MB smaller (`python benchmarks/load_test.py --rounds 5`; README, Speed).

A survey worker of a Dask cluster (reuse_freed_memory) needs the opposite: it allocates the same few-megabyte arrays
for every batch and chunk, and Dask's nanny starts it with MALLOC_TRIM_THRESHOLD_=65536, which turns glibc's moving
threshold off, so that each of them is a fresh mapping, zero-filled page by page as it is first written.
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameters (glibc's malloc.h) and the environment variables that set them before a process starts:
# a value a person set there wins.
SETTINGS = {"mmap_threshold": (-3, "MALLOC_MMAP_THRESHOLD_", 128 * 1024), "arena_max": (-8, "MALLOC_ARENA_MAX", 2)}


# Where glibc's moving mmap threshold stops rising on 64-bit systems; it trims the heap at twice its threshold.
MMAP_THRESHOLD_MAX = 32 * 2**20
REUSE = {"mmap_threshold": (-3, MMAP_THRESHOLD_MAX), "trim_threshold": (-1, 2 * MMAP_THRESHOLD_MAX)}


def _mallopt():
    """glibc's mallopt, or None elsewhere (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def limit_heap_growth() -> dict[str, int]:
    """Sets glibc's mmap threshold and arena count (SETTINGS) unless the environment sets them; returns what was set.
    Elsewhere than glibc (macOS, musl) it sets nothing. Call it at the start of a server process, before threads and
    large buffers exist."""
    mallopt = _mallopt()
    if mallopt is None:
        return {}
    applied = {}
    for name, (parameter, variable, value) in SETTINGS.items():
        if variable not in os.environ and mallopt(parameter, value) == 1:
            applied[name] = value
    return applied


def reuse_freed_memory() -> dict[str, int]:
    """Sets glibc's mmap and trim thresholds where its moving threshold would have taken them (REUSE), whatever the
    environment set; returns what was set (nothing elsewhere than glibc). A survey worker then takes its arrays from
    memory it freed: on 2026-12-06's 2-core AMD EPYC, the two workers of a `local:2` survey of the 20,000 x 20,000
    benchmark raster with the distilled candidate spent 11.4 s in the kernel under Dask's setting and 1.0 s with
    this, and the survey took 53.4 s against 46.5 s (benchmarks/survey_worker_memory.py). A worker keeps at most
    64 MB of freed memory more than it would under Dask's setting."""
    mallopt = _mallopt()
    if mallopt is None:
        return {}
    return {name: value for name, (parameter, value) in REUSE.items() if mallopt(parameter, value) == 1}
