"""End-to-end `ffmask annotate ff++` throughput on synth videos.

Setup of the issue: synth FF++ at 640x480, c23, 20 frames sampled per video,
--jobs 2, dlib, 224 crops, every comparison method. Prints faces written per
second (real and fake together) and the share of worker time per stage.

    python benchmarks/bench_annotate.py [--identities 6] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ffmask
from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec
from ffmask.synth.tree import build_synth

METHODS = ("mscc", "ssim", "diff", "diff@0.1", "official")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=6)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--detector", default="dlib")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "ffmask-bench-synth-640x480",
                    help="where the synth tree is cached between runs")
    args = ap.parse_args()

    root = args.keep / f"ids{args.identities}"
    if not (root / "ground_truth.json").exists():
        t0 = time.perf_counter()
        build_synth(root, seed=11, identities=args.identities, frames=48, size=(640, 480),
                    compressions=("c23",), overwrite=True)
        print(f"built synth tree ({args.identities} identities, 640x480, 48 frames, c23) "
              f"in {time.perf_counter() - t0:.1f} s")

    spec = JobSpec(methods=tuple(args.methods.split(",")), frames=args.frames, detector=args.detector, size=224)
    with tempfile.TemporaryDirectory() as out:
        # one original with its four fakes per task, so both workers stay busy
        report = annotate("ff++", root, out, spec, videos_per_shard=5, jobs=args.jobs)
        shard_bytes = sum(p.stat().st_size for p in Path(out).glob("*.h5"))

    print(f"ffmask {ffmask.__version__}: annotate ff++ on {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; jobs={args.jobs}, detector={args.detector}, 224 crops, "
          f"{args.frames} frames/video, methods={args.methods}")
    print(f"videos ok {report.videos.get('ok', 0)}, skipped {report.videos.get('skipped', 0)}; "
          f"faces written {report.faces} in {report.wall:.1f} s")
    print(f"throughput: {report.faces_per_second:.1f} faces/s  ({shard_bytes / max(report.faces, 1) / 1024:.0f} KiB/face)")
    total = sum(report.seconds.values())
    print("share of worker time per stage:")
    for stage in ("decode", "detect", "crop", "targets", "write"):
        s = report.seconds.get(stage, 0.0)
        print(f"  {stage:8s} {100 * s / total:5.1f}%   {1000 * s / max(report.faces, 1):6.2f} ms/face")
    tw = report.seconds.get("targets", 0) + report.seconds.get("write", 0)
    print(f"targets + write: {100 * tw / total:.1f}% of the time")


if __name__ == "__main__":
    main()
