"""The malloc arena cap of an annotate worker (ffmask.allocator), counted by glibc itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ffmask import allocator

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt / malloc_info")

# 8 threads allocating at once, then glibc's own account of its heaps (malloc_info: one <heap> per arena)
ARENAS = textwrap.dedent("""
    import ctypes, ctypes.util, sys, threading
    import numpy as np
    cap = int(sys.argv[1])
    if cap:
        from ffmask.allocator import cap_malloc_arenas
        assert cap_malloc_arenas(cap)
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()
        for _ in range(200):
            blocks = [np.empty(4096 + i, np.uint8) for i in range(50)]
            del blocks
    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    fp = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
""")


def _arenas(tmp_path, cap: int) -> int:
    out = tmp_path / f"info{cap}.xml"
    subprocess.run([sys.executable, "-c", ARENAS, str(cap), str(out)], check=True, timeout=120)
    return out.read_text().count("<heap nr=")


@glibc
def test_the_cap_bounds_the_arenas_threads_make(tmp_path):
    free = _arenas(tmp_path, 0)
    capped = _arenas(tmp_path, 2)
    assert capped <= 2
    assert free > capped  # without the cap, threads meeting at the lock made more (the check can see it)


def test_a_cap_below_one_is_refused():
    with pytest.raises(ValueError, match="arenas must be >= 1"):
        allocator.cap_malloc_arenas(0)


def test_an_annotate_task_caps_its_process_before_decoding(tmp_path, monkeypatch):
    from pathlib import Path

    from ffmask.annotate import annotate
    from ffmask.pipeline import JobSpec

    calls = []
    monkeypatch.setattr(allocator, "cap_malloc_arenas", lambda *a: calls.append(a) or True)
    root = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
    report = annotate("ff++", root, tmp_path / "out", JobSpec(methods=("mscc",), frames=1, size=64),
                      jobs=1, videos_per_shard=30, limit=2)
    assert report.faces > 0 and calls  # the task ran in this process and set the cap
