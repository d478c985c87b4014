"""Keeping a long-running server's resident memory flat under glibc's malloc.

By default glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so after the first
requests every image-sized buffer (decoded photos, batches, Keras' tensors) comes from the heap instead of its own
mapping, and the freed holes of many sizes stay resident; each thread may also get arenas of its own (up to 8 per
core). The app grew by 62 MB over 2,000 requests of the load test that way, still climbing, though its Python objects
grew by half a megabyte. With the threshold held at glibc's starting 128 KiB and two arenas it grew by 7 MB over the
same requests and started 180 MB smaller (`python benchmarks/load_test.py --rounds 5`; README, Speed).
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameters (glibc's malloc.h) and the environment variables that set them before a process starts:
# a value a person set there wins.
SETTINGS = {"mmap_threshold": (-3, "MALLOC_MMAP_THRESHOLD_", 128 * 1024), "arena_max": (-8, "MALLOC_ARENA_MAX", 2)}


def limit_heap_growth() -> dict[str, int]:
    """Sets glibc's mmap threshold and arena count (SETTINGS) unless the environment sets them; returns what was set.
    Elsewhere than glibc (macOS, musl) it sets nothing. Call it at the start of a server process, before threads and
    large buffers exist."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return {}
    applied = {}
    for name, (parameter, variable, value) in SETTINGS.items():
        if variable not in os.environ and mallopt(parameter, value) == 1:
            applied[name] = value
    return applied
