"""Keep a worker's C heap from growing with its threads: a cap on glibc's malloc arenas.

glibc gives a thread that finds the heap's lock taken an arena of its own,
up to eight per core. An annotate worker's threads (its own, FFmpeg's frame
threads and the read-ahead thread) allocate and free 1080p frames of ~6 MB
each in turn; freed blocks stay in whichever arena held them, and the run's
peak resident memory grows with how the threads happened to meet. Measured
on the six maps at 1920x1080 (``benchmarks/bench_annotate.py --memory``'s
procedure, 200 faces, one process): 918-1,095 MiB with glibc's default,
764-777 MiB with two arenas, 734 MiB with one. Two arenas keep a second
thread from waiting on the first's lock.

The cap is process-wide and stays: a Dask worker, or a Python process that
runs annotate's tasks in-process (``jobs=1``), keeps it after the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

#: Arenas a worker's threads share (see the module docstring).
WORKER_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h
_capped: Optional[int] = None


def cap_malloc_arenas(arenas: int = WORKER_ARENAS) -> bool:
    """Cap glibc's malloc arenas of this process at ``arenas`` (>= 1), once; True when glibc took it.

    Arenas already made stay; new threads share up to ``arenas``. A no-op
    returning False where the C library is not glibc (macOS, musl, Windows).
    """
    global _capped
    if arenas < 1:
        raise ValueError(f"arenas must be >= 1, got {arenas}")
    if _capped == arenas:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(_M_ARENA_MAX, arenas) != 1:  # mallopt returns 1 on success
        return False
    _capped = arenas
    return True
