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

from tests._cli import held_run_lock

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


def cli(*args):
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "ffmask", *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_a_second_evaluate_into_the_same_out_is_refused_before_it_loads_anything(tmp_path):
    # fb14211: two evaluations into one --out both ran, their report files interleaved (no lock)
    out = tmp_path / "report"
    out.mkdir()
    with held_run_lock(out) as holder:
        # the checkpoint is not even read: the lock comes first (fb14211 said "no checkpoint ...")
        rc, text = cli("evaluate", tmp_path / "no-such-run", "--shards", tmp_path, "--out", out)
        assert rc != 0 and "Traceback" not in text and len(text.strip().splitlines()) == 1, text
        assert f"is in use by another ffmask run (pid {holder.pid})" in text, text
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # the holder's file stays


def test_a_failed_evaluate_leaves_no_lock_and_no_out_it_created(tmp_path):
    from ffmask.errors import CheckpointError
    from ffmask.evaluate import evaluate_to

    with pytest.raises(CheckpointError):
        evaluate_to(tmp_path / "no-such-run", [tmp_path], tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(CheckpointError):
        evaluate_to(tmp_path / "no-such-run", [tmp_path], tmp_path / "old")
    assert list((tmp_path / "old").iterdir()) == []  # no run.lock left behind


def test_a_training_failing_between_resume_and_session_releases_its_lock(tmp_path, monkeypatch):
    # fb14211: the lock stayed with the TrainingRun until it was collected; a retry in the same
    # process (a notebook keeps the traceback) met its own pid in an "in use" line
    import ffmask.train.evaluator as ev_mod
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    from _evaluator_shards import write_shards

    (tmp_path / "s").mkdir()
    shards = write_shards(tmp_path / "s", ("astronaut", "coffee"), frames=2, size=32, noise=False)
    config = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}
    args = EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0, device="cpu")

    def broken_loader(*a, **k):
        raise RuntimeError("the DataLoader could not start")

    monkeypatch.setattr(ev_mod, "batch_loader", broken_loader)  # the training's DataLoader
    with pytest.raises(RuntimeError) as kept:  # the traceback (and so the TrainingRun) stays alive
        train_evaluator(shards, tmp_path / "run", config=config, args=args)
    monkeypatch.undo()
    from ffmask.outdir import lock_holder

    assert lock_holder(tmp_path / "run") is None, "the failed run still holds run.lock"
    result = train_evaluator(shards, tmp_path / "run", config=config, args=args)  # the retry
    assert result.step == 1
    assert kept.value is not None


def test_training_evaluate_and_export_word_shards_still_being_written_alike(tmp_path, caplog, capsys, monkeypatch):
    # fb14211 worded it four ways ("... not in this training's data", "... not in this export; export again
    # when it is done", evaluate's "was being written ... finished later are not scored" and a metrics.md
    # sentence counting folders): one helper now, one wording
    import logging

    from _evaluator_shards import write_shards
    from ffmask.cli._report import print_export_summary
    from ffmask.evaluate import evaluate_to
    from ffmask.export.deepfakebench import ExportReport
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    monkeypatch.setenv("COLUMNS", "500")  # rich folds a long path at 80 columns
    shards_dir = tmp_path / "s"
    shards_dir.mkdir()
    shards = write_shards(shards_dir, ("astronaut", "coffee"), frames=2, size=32, noise=False)
    config = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}
    args = EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0, workers=0, device="cpu")
    with held_run_lock(shards_dir) as holder:
        line = (f"{shards_dir} is being written by another ffmask run (pid {holder.pid}): shards it finishes "
                "from now on are not in this {}; run it again once that run is done")
        with caplog.at_level(logging.WARNING):
            train_evaluator(shards, tmp_path / "run", config=config, args=args)
            ev, paths = evaluate_to(tmp_path / "run", shards, tmp_path / "report", device="cpu", workers=0,
                                    keep_images=0)
        said = [r.getMessage() for r in caplog.records]
        assert line.format("training") in said and line.format("evaluation") in said, said
        assert f"**{line.format('evaluation')}.**" in paths["markdown"].read_text()
        assert ev.metrics["shards_being_written"] == {str(shards_dir): str(holder.pid)}
        print_export_summary(ExportReport(out=tmp_path / "x", dataset="ff++", mask_map=None,
                                          being_written={shards_dir: str(holder.pid)}))
        assert line.format("export") in " ".join(capsys.readouterr().out.split())
