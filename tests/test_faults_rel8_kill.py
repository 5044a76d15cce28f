"""Session 10 (rel8), part B: kill -9 at pinned moments of real `python -m ffmask` runs, then rerun.

``benchmarks/kill_points.py`` kills at random moments in a loop; these tests pin three
moments, each reached by watching the output folder: annotate right after its first
shard is renamed into place (the main process only: its workers must go by
themselves), annotate once the manifest holds lines and again during the resume (the
whole process group), and ``shards convert`` after its first shard is rewritten. After
the rerun every face is there once, byte for byte as in an uninterrupted run; no ok
manifest line names a shard that is not there; nothing unfinished is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ffmask.shards import ShardIndex
from ffmask.synth.tree import build_synth
from tests._cli import live_processes_of_group

ARGS = ("-m", "mscc,noise", "--frames", "2", "--size", "64", "--videos-per-shard", "1")
ENV = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=7, identities=4, frames=4, compressions=("c23",), manipulations=("Deepfakes",))
    return root


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], env=ENV, capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout + p.stderr


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "ffmask", *map(str, args)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc, ready, *, group: bool, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` (or its process group) once ``ready()``; False if it ended first."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > end:
            proc.wait()
            return False
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL) if group else os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie awaiting its reaper does not count)."""
    return bool(live_processes_of_group(pgid))


def faces(out: Path) -> dict:
    """(video_id, frame_index) -> digest of image and maps; each face must be there once."""
    index = ShardIndex(out, ["mscc", "noise"])
    got = {}
    for i in range(len(index)):
        face = index.read(i)
        key = (face["video_id"], face["frame_index"])
        assert key not in got, f"{key} twice"
        h = hashlib.sha256(face["image"].tobytes())
        for name in ("mscc", "noise"):
            h.update(np.ascontiguousarray(face["maps"][name]).tobytes())
        got[key] = h.hexdigest()
    index.close()
    return got


@pytest.fixture(scope="module")
def reference(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    rc, text = cli("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "1")
    assert rc == 0, text
    return faces(out)


def manifest_lines(out: Path) -> int:
    try:
        return (out / "manifest.jsonl").read_text().count("\n")
    except OSError:
        return 0


def assert_finished_like(out: Path, reference: dict) -> None:
    assert faces(out) == reference
    last = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        last[entry["video_id"]] = entry
    assert all(e["status"] == "ok" and (out / e["shard"]).is_file() for e in last.values())
    assert not list(out.glob("*.tmp"))
    rc, text = cli("info", out, "--json")
    assert rc == 0 and json.loads(text[text.index("{"):])["problems"] == {}, text


def test_annotate_killed_after_its_first_shard_resumes_to_the_same_faces(root, reference, tmp_path):
    out = tmp_path / "out"
    proc = start("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "2")
    assert kill_when(proc, lambda: (out / "shard-00000.h5").is_file(), group=False), "the run ended first"
    # its workers (same process group) notice their parent is gone and exit, deleting what they were
    # writing: within 0.5 s on an idle machine, later when their watcher waits for a busy core
    end = time.monotonic() + 60
    while group_alive(proc.pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert not group_alive(proc.pid), "the orphaned workers did not exit"
    # (an unfinished shard-*.h5.tmp may stay: a worker that loky stops before its watcher runs leaves
    # it; readers never take one, and the rerun deletes it: checked below)
    rc, text = cli("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "2")
    assert rc == 0 and "Traceback" not in text, text  # (the shard may have had no manifest line yet: redone)
    assert_finished_like(out, reference)


def test_annotate_killed_twice_mid_run_and_mid_resume_keeps_every_face_once(root, reference, tmp_path):
    out = tmp_path / "out"
    proc = start("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "2")
    assert kill_when(proc, lambda: manifest_lines(out) >= 2, group=True), "the run ended first"
    done = manifest_lines(out)
    proc = start("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "1")
    assert kill_when(proc, lambda: manifest_lines(out) > done, group=True), "the resume ended first"
    rc, text = cli("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "1")
    assert rc == 0 and "Traceback" not in text, text
    assert_finished_like(out, reference)


def test_convert_killed_after_its_first_shard_leaves_every_shard_readable(root, reference, tmp_path):
    out = tmp_path / "out"
    rc, text = cli("annotate", "ff++", root, "--out", out, *ARGS, "--jobs", "1")
    assert rc == 0, text
    (out / "run.lock").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.h5")}
    assert len(before) == 4
    proc = start("shards", "convert", out, "--image-codec", "png")
    changed = lambda: any(p.stat().st_mtime_ns != before[p.name] for p in out.glob("shard-*.h5"))  # noqa: E731
    assert kill_when(proc, changed, group=False), "the conversion ended first"
    assert faces(out) == reference  # each shard is either the old file or the converted one
    rc, text = cli("shards", "convert", out, "--image-codec", "png")
    assert rc == 0 and "Traceback" not in text, text
    assert faces(out) == reference
    assert not list(out.glob("*.tmp"))  # (a run.lock the killed convert made stays: harmless, unlocked)
