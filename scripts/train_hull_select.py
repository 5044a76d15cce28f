"""Reproduce hull's candidate scorer from scratch (docs/hull_training.md, ffmask.targets.hull_select_train).

    python scripts/train_hull_select.py                      # -> ffmask/targets/weights/hull_select.npz
    python scripts/train_hull_select.py --validate           # also the leave-families-out check first
    python scripts/train_hull_select.py --smoke --out /tmp/s.npz   # seconds: a few pairs

Builds the tuning-half pairs under ``--work`` (reused when present: the
same folders as scripts/train_hull_refine.py), extracts every pair's
candidates, features and true IoUs, fits the gradient-boosted trees with a
fixed seed and writes them as a pickle-free npz.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import ffmask  # noqa: F401  (installs the torchvision shim first)
from ffmask.synth.pairs import PAIRS_FILE, build_pairs
from ffmask.targets import hull_select, hull_select_train, hull_train

TUNE_FOLDER = dict(seed=11, compressions=("c23", "c40"))  # the benchmark's tuning folder (bench_masks.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffmask_hull_refine"))
    ap.add_argument("--tune", type=Path, help="the seed-11 tuning folder (default WORK/tune11, built if absent)")
    ap.add_argument("--out", type=Path, default=hull_select.WEIGHTS)
    ap.add_argument("--n", type=int, default=400, help="pairs per training seed")
    ap.add_argument("--tune-n", type=int, default=300, help="pairs of the seed-11 tuning folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validate", action="store_true", help="run the leave-families-out check first")
    ap.add_argument("--smoke", action="store_true", help="tiny run (2 + 2 pairs, few iterations) to test the recipe")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sets = hull_select_train.TRAIN_SETS
    max_iter = hull_select_train.MAX_ITER
    if args.smoke:
        sets, args.n, args.tune_n, max_iter = sets[:1], 2, 2, 5
    folders = hull_train.build_training_pairs(args.work, n=args.n, sets=sets)
    tune = args.tune or args.work / "tune11"
    if not (tune / PAIRS_FILE).is_file():
        build_pairs(tune, n=args.tune_n, overwrite=True, **TUNE_FOLDER, **hull_train.TUNING)
    data = hull_select_train.extract(folders)
    val = hull_select_train.extract([tune], baselines=args.validate, keep_masks=args.validate)
    print(f"{len(data['y'])} + {len(val['y'])} candidates in {time.perf_counter() - t0:.0f} s", flush=True)
    results = []
    if args.validate:
        for key, folds in (("region", hull_select_train.REGION_FOLDS),
                           ("operation", hull_select_train.OPERATION_FOLDS)):
            results += hull_select_train.leave_out(data, val, key, folds, seed=args.seed, max_iter=max_iter)
    both = hull_select_train.concat([data, val])
    model = hull_select_train.fit(both["x"], both["y"], seed=args.seed, max_iter=max_iter)
    info = {"recipe": "scripts/train_hull_select.py", "seed": args.seed, "candidates": int(len(both["y"])),
            "samples": int(len(both["region"])), "train_sets": [[s, list(c)] for s, c in sets],
            "tuning": {k: list(v) for k, v in hull_train.TUNING.items()},
            "fit": {"max_iter": max_iter, "max_leaf_nodes": hull_select_train.MAX_LEAF_NODES,
                    "min_samples_leaf": hull_select_train.MIN_SAMPLES_LEAF, "learning_rate": 0.1}}
    path = hull_select_train.export(model, args.out, info)
    print(json.dumps({"weights": str(path), "bytes": path.stat().st_size, "validate": results,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
