"""Session 10 (rel8), part B: a training run killed while it saves a checkpoint resumes.

A checkpoint is three files (``last.optim.safetensors``, ``last.safetensors``,
``last.json``) written one after the other. A run killed between two of them
left files of two steps, and every rerun stopped at "last.optim.safetensors is
from step 4, the weights from step 2": the training could not be resumed at all.
The run here dies (``os._exit``, as kill -9 leaves it) at a pinned point inside the
checkpoint of step 4; the rerun must finish all steps. Fails at 589437d.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec
from ffmask.train.loop import COMPLETE, finish_interrupted_saves
from tests._cli import held_run_lock

DIE = r"""
import os, sys
mode = sys.argv[1]
import ffmask.models.checkpoint as ck
import ffmask.train.state as st
real_save, real_replace = ck.save_tensors, os.replace
seen = {"step4": False}

def save_tensors(path, tensors, metadata=None):
    out = real_save(path, tensors, metadata)
    name, step = os.path.basename(str(path)), (metadata or {}).get("step")
    if step == "4" and name == "last.safetensors":
        seen["step4"] = True
        if mode == "after-weights":  # the weights of step 4 written, its last.json not
            os._exit(137)
    return out

def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    if mode == "mid-rename" and seen["step4"] and os.path.basename(str(dst)) == "last.safetensors" \
            and ".saving" not in str(dst) and ".saving" in str(src):
        os._exit(137)  # step 4's optimizer state and weights in place, its last.json not

ck.save_tensors = st.save_tensors = save_tensors
os.replace = replace
from ffmask.cli import app
sys.argv = ["ffmask", *sys.argv[2:]]
app()
"""

TRAIN = ["--backbone", "tf_efficientnet_lite0", "--img-size", "32", "--iters", "6", "--batch-size", "2",
         "--val-every", "2", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def shards(small_ff_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "shards"
    annotate("ff++", small_ff_root, out, JobSpec(methods=("mscc",), frames=2, size=64), jobs=1)
    return out


def run(*args, script=None):
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "ffmask", *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("mode, resumed_at", [("after-weights", 2), ("mid-rename", 4)])
def test_training_killed_while_saving_a_checkpoint_resumes(shards, tmp_path, mode, resumed_at):
    out = tmp_path / "ckpt"
    args = ["train", "evaluator", "--train", str(shards), "--map", "mscc", "--out", str(out), *TRAIN]
    rc, text = run(mode, *args, script=DIE)
    assert rc == 137, text
    rc, text = run(*args)
    assert rc == 0 and "Traceback" not in text, text  # 589437d: "... is from step 4, ... from step 2"
    assert f"(resumed at {resumed_at})" in text, text
    last = json.loads((out / "last.json").read_text())
    assert last["step"] == 6 and last["training_state"]["step"] == 6
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_finish_interrupted_saves_rolls_a_complete_save_forward_and_drops_an_incomplete_one(tmp_path):
    (tmp_path / "last.json").write_text("old")
    (tmp_path / "best.json").write_text("old")
    done = tmp_path / ".last.saving"  # written whole, renames cut short after the first file
    done.mkdir()
    (done / "last.json").write_text("new")
    (done / COMPLETE).write_text(json.dumps(["last.optim.safetensors", "last.safetensors", "last.json"]))
    cut = tmp_path / ".best.saving"  # cut short while being written: no COMPLETE
    cut.mkdir()
    (cut / "best.safetensors").write_text("half")
    lines = finish_interrupted_saves(tmp_path)
    assert len(lines) == 2
    assert (tmp_path / "last.json").read_text() == "new" and (tmp_path / "best.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "last.json"]


def test_a_second_training_into_the_same_out_is_refused(shards, tmp_path):
    # 589437d trained both at once: two runs overwriting each other's last.* and log
    out = tmp_path / "ckpt"
    out.mkdir()
    with held_run_lock(out) as holder:
        rc, text = run("train", "evaluator", "--train", str(shards), "--map", "mscc", "--out", str(out), *TRAIN)
        assert rc != 0 and "Traceback" not in text and len(text.strip().splitlines()) == 1, text
        assert f"is in use by another ffmask run (pid {holder.pid})" in text, text
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]
