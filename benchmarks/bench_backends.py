"""CPU cost of `ffmask annotate` per video, and what each backend adds on top.

Builds a synth FF++ tree (640x480, c23, four manipulations; cached), then runs
the same CLI command three times in fresh processes: serial (--jobs 1), loky
--jobs J and a Dask LocalCluster --jobs J. For each it prints wall time and
CPU seconds (this process's children: the CLI and every worker it started)
per video; the serial CPU time is the cost a cluster pays per video, the
difference to the parallel runs is the backend's overhead.

    python benchmarks/bench_backends.py [--identities 3] [--video-frames 96] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ffmask.synth.tree import build_synth


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(root: Path, out: Path, args, jobs: int, backend: str) -> dict:
    cmd = [sys.executable, "-m", "ffmask", "annotate", "ff++", str(root), "--out", str(out), "--method",
           args.method, "--frames", str(args.frames), "--size", "224", "--videos-per-shard", "5",
           "--jobs", str(jobs), "--backend", backend, "--overwrite"]
    cpu0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if x.strip()]
    videos = sum(1 for e in lines if e["status"] == "ok")
    shares = dict(re.findall(r"time share: (\w+)\s*\S\s*(\d+)%", proc.stdout))
    return {"backend": backend, "jobs": jobs, "videos": videos, "wall": wall, "cpu": cpu, "shares": shares}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=3)
    ap.add_argument("--video-frames", type=int, default=96, help="frames per synth video")
    ap.add_argument("--frames", type=int, default=20, help="frames sampled per video (--frames)")
    ap.add_argument("--method", default="mscc")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "ffmask-bench-backends")
    args = ap.parse_args()

    root = args.keep / f"ids{args.identities}-f{args.video_frames}"
    if not (root / "ground_truth.json").exists():
        t0 = time.perf_counter()
        build_synth(root, seed=31, identities=args.identities, frames=args.video_frames, size=(640, 480),
                    compressions=("c23",), overwrite=True)
        print(f"built synth tree in {time.perf_counter() - t0:.0f} s")
    print(f"annotate ff++ on synth 640x480, {args.video_frames} frames/video, --frames {args.frames}, "
          f"--method {args.method}, 224 crops, dlib; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'backend':8} {'jobs':>4} {'videos':>6} {'wall s':>7} {'CPU s':>7} {'CPU s/video':>11} {'wall s/video':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for jobs, backend in [(1, "loky"), (args.jobs, "loky"), (args.jobs, "dask")]:
            r = run(root, Path(tmp) / f"{backend}{jobs}", args, jobs, backend)
            label = "serial" if jobs == 1 else backend
            print(f"{label:8} {r['jobs']:>4} {r['videos']:>6} {r['wall']:>7.1f} {r['cpu']:>7.1f} "
                  f"{r['cpu'] / r['videos']:>11.2f} {r['wall'] / r['videos']:>12.2f}", flush=True)
            if jobs == 1:
                serial_shares = r["shares"]
    print("serial run, share of task time per stage: "
          + ", ".join(f"{k} {v}%" for k, v in serial_shares.items()))


if __name__ == "__main__":
    main()
