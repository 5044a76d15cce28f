"""Running the real CLI in a subprocess, a held run lock, the processes a killed run leaves, and private copies of finished runs, for the fault tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def ffmask_cli(*args, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m ffmask ARGS`` in a child process: (exit code, stdout, stderr), 300 columns wide."""
    env = dict(os.environ, COLUMNS="300")
    p = subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def private_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run folder ``run`` under ``tmp_path``, to damage, without its lock file."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "run.lock").unlink(missing_ok=True)
    return copy


def live_processes_of_group(pgid: int) -> list:
    """PIDs of the processes of group ``pgid`` still running (a zombie awaiting its reaper does not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
            live.append(int(stat.parent.name))
    return live


# A process holding a folder's run lock until its stdin is closed.
_RUN_LOCK_HOLDER = """
import sys
from ffmask.outdir import RunLock
lock = RunLock(sys.argv[1], kind=sys.argv[2]).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_run_lock(folder: Path, kind: str = "") -> Iterator[subprocess.Popen]:
    """Another process holding ``folder``'s run lock for the block (as a lock of ``kind``, e.g. "export");
    yields that process (its ``pid``)."""
    holder = subprocess.Popen([sys.executable, "-c", _RUN_LOCK_HOLDER, str(folder), kind], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
