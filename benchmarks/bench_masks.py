"""Mask fidelity of every map method against true masks of synthetic trees.

    python benchmarks/bench_masks.py --seeds 21,22,23 --out /tmp/bench_masks

Builds (or reuses) one synthetic FF++ tree per seed under ``--work``,
scores the methods with :func:`ffmask.fidelity.evaluate` on all of them
pooled, writes the report (markdown, JSON, figures) and prints the table.
Pass ``--root`` to score an existing tree instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ffmask  # noqa: F401  (installs the torchvision shim first)
from ffmask import fidelity
from ffmask.synth.tree import build_synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="score this existing tree")
    ap.add_argument("--seeds", default="21,22,23", help="synthetic tree seeds (default 21,22,23: held out from tuning)")
    ap.add_argument("--identities", type=int, default=10)
    ap.add_argument("--video-frames", type=int, default=32, help="frames per synthetic video")
    ap.add_argument("--frames", type=int, default=8, help="sampled frames per video")
    ap.add_argument("--methods", default=",".join(fidelity.DEFAULT_METHODS))
    ap.add_argument("--checkpoint", type=Path, help="FoCus checkpoint when --methods has focus (default: bundled)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffmask_bench_masks"))
    ap.add_argument("--out", type=Path, default=Path("bench_masks_out"))
    args = ap.parse_args()

    roots = [args.root] if args.root else []
    if not roots:
        for seed in (int(s) for s in args.seeds.split(",")):
            root = args.work / f"seed{seed}"
            if not (root / "ground_truth.json").is_file():
                build_synth(root, seed=seed, identities=args.identities, frames=args.video_frames,
                            compressions="c23,c40", overwrite=True)
            roots.append(root)
    t0 = time.perf_counter()
    faces = [f for root in roots for f in fidelity.collect_faces(root, frames=args.frames)]
    t1 = time.perf_counter()
    result = fidelity.evaluate(faces, args.methods.split(","), checkpoint=args.checkpoint)
    paths = fidelity.write_report(result, args.out)
    print(f"{len(faces)} faces from {len(roots)} tree(s); decode+detect {t1 - t0:.1f} s, "
          f"methods {time.perf_counter() - t1:.1f} s")
    print("ms per face: " + ", ".join(f"{k} {v * 1000:.1f}" for k, v in result.seconds.items()))
    print(fidelity.to_markdown(result))
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
