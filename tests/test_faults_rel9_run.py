"""Session 11 (rel9), part A: what session 10 saw and left alone.

A worker killed with its run while it creates a shard file; two evaluate runs into one
``--out``; a TrainingRun failing between resume() and session(); the one wording of
"annotate is still writing these shards".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# A "run" process forks one worker and dies (SIGKILL of the main process only) while the
# worker is inside ShardWriter(...): after the .tmp exists, before the worker could mark it.
WORKER_DIES_WITH_ITS_RUN = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    import ffmask.shards.writer as w
    from ffmask.annotate import Task, run_task
    from ffmask.pipeline import JobSpec
    made = w.ShardWriter.__init__
    def slow_init(self, *a, **k):
        made(self, *a, **k)
        (out / "created").write_text(str(os.getpid()))
        time.sleep(3)  # the run dies now: the file exists, the creation has not returned
    w.ShardWriter.__init__ = slow_init
    owner = os.getpid()
    if os.fork() == 0:
        spec = JobSpec(methods=("noise",), size=32, detector="none")
        run_task(Task(0, (), owner), spec, str(out), {})
        os._exit(0)
    while not (out / "created").exists():
        time.sleep(0.01)
    os.kill(owner, 9)
''')


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_worker_killed_with_its_run_while_creating_its_shard_leaves_no_tmp(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "run.py"
    script.write_text(WORKER_DIES_WITH_ITS_RUN)
    subprocess.run([sys.executable, str(script), str(out)], env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    worker = int((out / "created").read_text())
    end = time.monotonic() + 30
    while alive(worker) and time.monotonic() < end:
        time.sleep(0.1)
    assert not alive(worker), "the orphaned worker still runs"
    assert sorted(p.name for p in out.iterdir()) == ["created"]  # no shard-00000.h5.tmp
