"""kill -9 at random moments of real ffmask commands, then rerun: nothing lost, nothing twice.

For each command (``annotate``, ``shards convert``, ``export deepfakebench``,
``train evaluator``) a reference run is made once; then, per trial, the same
command is started on a fresh copy of the inputs, killed with SIGKILL after a
random delay (its main process only, or its whole process group: both
happen), and the command is run again to the end. Checked after the kill:
nothing a reader takes holds half-written data (``ffmask info`` lists no
schema or read problem; a missing or unlisted shard, or an unfinished
``.tmp``, is allowed: the rerun redoes it). Checked after the rerun: the
output equals the reference (the same faces, byte for byte, each once; the
same exported files; the same final training step), and the rerun's own
output has no traceback.

    PYTHONPATH=$PWD python benchmarks/kill_points.py [--trials 6] [--seed 0] [--only annotate,convert,export,train]

Small inputs (a 4-identity synth tree, 4 frames, 64 px): seconds per trial.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable
ENV = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")


def cli(*args, timeout=600):
    p = subprocess.run([PY, "-m", "ffmask", *map(str, args)], env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def start(*args):
    return subprocess.Popen([PY, "-m", "ffmask", *map(str, args)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill(proc, group: bool) -> None:
    if proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def faces(out: Path) -> dict:
    """(video_id, frame_index) -> digest of the face's image and maps; asserts each face is there once."""
    from ffmask.shards import ShardIndex
    from ffmask.shards.summary import common_maps

    index = ShardIndex(out, list(common_maps(out)))
    got = {}
    for i in range(len(index)):
        face = index.read(i)
        key = (face["video_id"], face["frame_index"])
        assert key not in got, f"face {key} twice"
        h = hashlib.sha256(face["image"].tobytes())
        for name in sorted(face["maps"]):
            h.update(np.ascontiguousarray(face["maps"][name]).tobytes())
        got[key] = h.hexdigest()
    index.close()
    return got


def tree_digest(folder: Path) -> dict:
    """relative path -> digest of every file; the folder's own path inside files (the JSON) reads "OUT"."""
    own = str(folder.resolve()).encode()
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes().replace(own, b"OUT")).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def info_ok_after_kill(out: Path) -> str:
    """'' when what a reader takes is sound; else what is wrong."""
    if not any(out.glob("shard-*.h5")):
        return ""
    rc, text = cli("info", out, "--json")
    if "Traceback" in text:
        return "info: traceback\n" + text[-2000:]
    try:
        summary = json.loads(text[text.index("{"):])
    except ValueError:
        return "info: no JSON: " + text[-500:]
    bad = {p: why for p, why in summary["problems"].items()
           if not any("not on disk" in w for w in why)}  # a missing shard: the rerun redoes it
    return f"problems after the kill: {bad}" if bad else ""


def trial_annotate(work: Path, root: Path, reference: dict, rng, duration: float, group: bool):
    out = work / "out"
    args = ("annotate", "ff++", root, "--out", out, "-m", "mscc,noise", "--frames", "2", "--size", "64",
            "--jobs", "2", "--videos-per-shard", "1")
    delay = rng.uniform(0.5, duration)
    proc = start(*args)
    time.sleep(delay)
    kill(proc, group)
    problem = info_ok_after_kill(out)
    # a second kill during the resume, half the time
    if rng.random() < 0.5:
        proc = start(*args)
        time.sleep(rng.uniform(0.5, duration))
        kill(proc, group)
        problem = problem or info_ok_after_kill(out)
    rc, text = cli(*args)
    if rc != 0 or "Traceback" in text:
        return delay, f"rerun failed: {text[-1500:]}"
    got = faces(out)
    if got != reference:
        missing, extra = set(reference) - set(got), set(got) - set(reference)
        changed = [k for k in set(got) & set(reference) if got[k] != reference[k]]
        return delay, f"faces differ: missing {sorted(missing)[:4]}, extra {sorted(extra)[:4]}, changed {changed[:4]}"
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x.strip()]
    last = {e["video_id"]: e for e in manifest}
    if any(e["status"] == "ok" and not (out / e["shard"]).is_file() for e in last.values()):
        return delay, "an ok manifest line names a shard that is not there"
    if list(out.glob("*.tmp")):
        return delay, f"tmp files left: {list(out.glob('*.tmp'))}"
    rc, text = cli("info", out)
    if rc != 0:
        return delay, f"info after the rerun exits {rc}: {text[-800:]}"
    return delay, problem


def trial_convert(work: Path, shards: Path, reference: dict, rng, duration: float, group: bool):
    out = work / "shards"
    shutil.copytree(shards, out)
    args = ("shards", "convert", out, "--image-codec", "png")
    delay = rng.uniform(0.2, duration)
    proc = start(*args)
    time.sleep(delay)
    kill(proc, group)
    problem = info_ok_after_kill(out)
    rc, text = cli(*args)
    if rc != 0 or "Traceback" in text:
        return delay, f"rerun failed: {text[-1500:]}"
    if faces(out) != reference:
        return delay, "faces differ after convert + rerun"
    if list(out.glob("*.tmp")) or (out / "run.lock").exists() and not (shards / "run.lock").exists():
        return delay, "tmp or run.lock left"
    return delay, problem


def trial_export(work: Path, shards: Path, reference: dict, rng, duration: float, group: bool):
    out = work / "export"
    args = ("export", "deepfakebench", shards, "--out", out)
    delay = rng.uniform(0.2, duration)
    proc = start(*args)
    time.sleep(delay)
    kill(proc, group)
    rc, text = cli(*args)
    note = ""
    if rc != 0 and "is not empty; pick a new directory or pass --overwrite" in text and "Traceback" not in text:
        note = " (rerun refused: --out not empty; rerun with --overwrite)"
        rc, text = cli(*args, "--overwrite")
    if rc != 0 or "Traceback" in text:
        return delay, f"rerun failed: {text[-1500:]}"
    got = tree_digest(out)
    if got != reference:
        missing, extra = set(reference) - set(got), set(got) - set(reference)
        changed = [k for k in set(got) & set(reference) if got[k] != reference[k]]
        return delay, f"export differs: missing {sorted(missing)[:4]}, extra {sorted(extra)[:4]}, changed {changed[:4]}"
    return delay, note and "NOTE" + note


TRAIN = ("--backbone", "tf_efficientnet_lite0", "--img-size", "32", "--iters", "6", "--batch-size", "2",
         "--val-every", "2", "--workers", "0", "--device", "cpu")


def trial_train(work: Path, shards: Path, reference: dict, rng, duration: float, group: bool):
    out = work / "ckpt"
    args = ("train", "evaluator", "--train", shards, "--map", "mscc", "--out", out, *TRAIN)
    delay = rng.uniform(1.0, duration)
    proc = start(*args)
    time.sleep(delay)
    kill(proc, group)
    rc, text = cli(*args)
    if rc != 0 or "Traceback" in text:
        return delay, f"rerun failed: {text[-1500:]}"
    last = json.loads((out / "last.json").read_text())
    if last.get("step") != reference["step"]:
        return delay, f"last.json step {last.get('step')} != {reference['step']}"
    if list(out.glob("*.tmp")):
        return delay, f"tmp files left: {list(out.glob('*.tmp'))}"
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()] \
        if (out / "log.jsonl").is_file() else []
    steps = [r.get("step") for r in log if r.get("kind", "train") == "train" and "step" in r]
    if len(steps) != len(set(steps)):
        return delay, f"log has a step twice: {steps}"
    return delay, ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="annotate,convert,export,train")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = Path(tempfile.mkdtemp(prefix="ffmask-kill-"))
    root = base / "ff++"
    rc, text = cli("synth", root, "--seed", "7", "-n", "4", "--frames", "4", "-c", "c23", "-m", "Deepfakes")
    assert rc == 0, text
    t = time.perf_counter()
    ref_out = base / "ref"
    rc, text = cli("annotate", "ff++", root, "--out", ref_out, "-m", "mscc,noise", "--frames", "2", "--size", "64",
                   "--jobs", "2", "--videos-per-shard", "1")
    assert rc == 0, text
    annotate_s = time.perf_counter() - t
    reference = faces(ref_out)
    print(f"reference annotate: {len(reference)} faces in {annotate_s:.1f} s")
    failures = 0
    todo = a.only.split(",")
    refs = {}
    if "convert" in todo:
        refs["convert"] = reference
    if "export" in todo:
        t = time.perf_counter()
        rc, text = cli("export", "deepfakebench", ref_out, "--out", base / "ref_export")
        assert rc == 0, text
        refs["export"] = tree_digest(base / "ref_export")
        export_s = time.perf_counter() - t
    if "train" in todo:
        t = time.perf_counter()
        rc, text = cli("train", "evaluator", "--train", ref_out, "--map", "mscc", "--out", base / "ref_ckpt", *TRAIN)
        assert rc == 0, text
        refs["train"] = json.loads((base / "ref_ckpt" / "last.json").read_text())
        train_s = time.perf_counter() - t
    for name in todo:
        duration = {"annotate": annotate_s, "convert": annotate_s / 2, "export": locals().get("export_s", 3),
                    "train": locals().get("train_s", 10)}[name]
        for k in range(a.trials):
            work = base / f"{name}{k}"
            work.mkdir()
            group = k % 2 == 1
            if name == "annotate":
                delay, problem = trial_annotate(work, root, reference, rng, duration, group)
            elif name == "convert":
                delay, problem = trial_convert(work, ref_out, refs["convert"], rng, duration, group)
            elif name == "export":
                delay, problem = trial_export(work, ref_out, refs["export"], rng, duration, group)
            else:
                delay, problem = trial_train(work, ref_out, refs["train"], rng, duration, group)
            failed = bool(problem) and not problem.startswith("NOTE")
            failures += failed
            print(f"{name} trial {k}: kill -9 {'group' if group else 'main'} after {delay:.2f} s: "
                  f"{'FAIL ' + problem if failed else 'ok' + problem[4:]}", flush=True)
            if not failed:
                shutil.rmtree(work, ignore_errors=True)
    if not a.keep and not failures:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print("work folder:", base)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
