"""How a run's process uses memory: settings that keep a bars run of the whole universe inside its budget.

A run moves millions of bars through many short-lived arrays on a few threads (page fetchers, bucket
writers), and both allocators under it keep freed memory unless told otherwise:
- Arrow's default mimalloc pool kept the blocks' arrays, so Arrow allocates from the system allocator;
- glibc gives each thread that meets contention an arena of its own (up to eight per core) and holds each
  arena's freed memory, so the process keeps `MALLOC_ARENA_MAX` arenas (a registered setting, 2 unless set;
  glibc itself reads the variable when a process starts). `python -m benchmarks.ohlc_bars` with two arenas
  against glibc's default, same code: the 1Min universe day 507 -> 463 MB peak RSS, the 1Day universe
  580 -> 541 MB, no slower.
"""

from __future__ import annotations

import ctypes
import sys

import pyarrow as pa

from signal9_pipeline import settings

_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def configure() -> None:
    """Apply both settings to this process (idempotent); on a libc without mallopt, Arrow's alone."""
    pa.set_memory_pool(pa.system_memory_pool())
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): its allocator has no per-thread arenas
        return
    mallopt(_M_ARENA_MAX, settings.get("MALLOC_ARENA_MAX"))
