"""Session 13 (rel11), H2: two attempts at one shard at once.

A Dask worker the scheduler believes dead (a lost heartbeat) while it still runs has its
task retried elsewhere: two processes then write the same shard. At c2a93bc both wrote
``shard-N.h5.tmp``; the second's ``h5py.File(tmp, "w")`` met the first's file (HDF5's lock:
an error in the second, or, without file locking, a file truncated under the first). Now
each attempt writes a tmp name of its own (``shard-N.<pid>-<hex>.h5.tmp``), the first to
finish takes the name atomically, the second finds it there and deletes its own file.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import h5py
import numpy as np
import pytest

from ffmask.annotate import Task, prepare_out_dir, run_task
from ffmask.datasets.registry import get_dataset
from ffmask.pipeline import JobSpec, plan_groups
from ffmask.resume import next_shard_number
from ffmask.shards import ShardDataset
from ffmask.shards.writer import ShardWriter, attempt_tmp_path
from ffmask.video import write_video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("attempts") / "clips"
    root.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        write_video(root / f"{name}.mp4", list(rng.integers(0, 255, (6, 48, 64, 3), dtype=np.uint8)), lossless=True)
    return root


def _attempt(task, spec, out, barrier, results):
    """One attempt at ``task`` whose every append waits for the other attempt's (both write at once)."""
    import ffmask.shards.writer as w

    append = w.ShardWriter.append

    def paired_append(self, record):
        barrier.wait(timeout=60)
        append(self, record)

    w.ShardWriter.append = paired_append
    try:
        res = run_task(task, spec, out, {"dataset": "folder"})
        results.put(("ok", res.shard, res.faces))
    except BaseException as exc:  # reported to the test, which says what went wrong
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


def test_two_attempts_writing_one_shard_at_once_leave_one_complete_shard(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    items = get_dataset("folder", folder).items
    spec = JobSpec(methods=("noise",), size=32, detector="none", frames=3)
    task = Task(0, tuple(plan_groups(items, paired=False)), 0)
    ctx = multiprocessing.get_context("spawn")  # a forked child of a busy test process (torch threads) can hang
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_attempt, args=(task, spec, str(out), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    # c2a93bc: the second attempt fails ("unable to lock file") writing the first's shard-00000.h5.tmp
    assert [g[0] for g in got] == ["ok", "ok"], got
    assert {g[1] for g in got} == {"shard-00000.h5"}
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000.h5"]  # no tmp of either attempt left
    data = ShardDataset(out, maps=["noise"])
    assert len(data) == got[0][2] == 6
    with h5py.File(out / "shard-00000.h5", "r") as f:
        assert sorted({v.decode() if isinstance(v, bytes) else v for v in f["video_id"][:]}) == ["a", "b"]


def test_a_later_attempt_keeps_the_shard_a_first_one_finished(tmp_path):
    final = tmp_path / "shard-00003.h5"
    rng = np.random.default_rng(0)

    def record(label):
        from ffmask.shards.writer import FaceRecord

        return FaceRecord(image=rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), maps={}, label=label,
                          video_id=f"v{label}", original_id="", manipulation="", compression="", split="",
                          frame_index=0, box=np.array([0, 0, 16, 16]))

    first = ShardWriter(final, size=16, maps={}, config={}, tmp_path=attempt_tmp_path(final), replace=False)
    second = ShardWriter(final, size=16, maps={}, config={}, tmp_path=attempt_tmp_path(final), replace=False)
    assert first.tmp_path != second.tmp_path and first.tmp_path.name.endswith(".h5.tmp")
    first.append(record(1))
    second.append(record(0))
    assert first.close() == second.close() == final
    with h5py.File(final, "r") as f:
        assert f["label"][:].tolist() == [1]  # the first complete shard stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00003.h5"]


def test_cleanup_and_numbering_know_every_attempts_tmp_name(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    prepare_out_dir(out, {"dataset": "folder"}, overwrite=False)
    stale = attempt_tmp_path(out / "shard-00007.h5")
    stale.write_bytes(b"half a shard")
    assert next_shard_number(out, []) == 8  # a stale attempt's number is never reused
    removed = prepare_out_dir(out, {"dataset": "folder"}, overwrite=False)
    assert not stale.exists() and len(removed) == 1 and stale.name in removed[0]
    assert json.loads((out / "run.json").read_text()) == {"dataset": "folder"}
