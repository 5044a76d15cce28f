"""Reproduce hull's refinement weights from scratch (docs/hull_training.md, ffmask.targets.hull_train).

    python scripts/train_hull_refine.py                      # -> ffmask/targets/weights/hull_refine.safetensors
    python scripts/train_hull_refine.py --validate           # also the leave-regions-out check first
    python scripts/train_hull_refine.py --smoke --out /tmp/w.safetensors   # seconds: a few pairs and steps

Builds the tuning-half training pairs under ``--work`` (reused when
present), extracts the evidence maps, trains on one CPU thread with a
fixed seed and writes the safetensors file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import ffmask  # noqa: F401  (installs the torchvision shim first)
from ffmask.synth.pairs import PAIRS_FILE, build_pairs
from ffmask.targets import hull_net, hull_train

TUNE_FOLDER = dict(seed=11, compressions=("c23", "c40"))  # the benchmark's tuning folder (bench_masks.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffmask_hull_refine"))
    ap.add_argument("--out", type=Path, default=hull_net.WEIGHTS)
    ap.add_argument("--n", type=int, default=400, help="pairs per training seed")
    ap.add_argument("--tune-n", type=int, default=300, help="pairs of the seed-11 tuning folder")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--fold-steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validate", action="store_true", help="run the leave-regions-out check first")
    ap.add_argument("--smoke", action="store_true", help="tiny run (2 + 2 pairs, 5 steps) to test the recipe")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sets = hull_train.TRAIN_SETS
    if args.smoke:
        sets, args.n, args.tune_n, args.steps, args.fold_steps = sets[:1], 2, 2, 5, 5
    folders = hull_train.build_training_pairs(args.work, n=args.n, sets=sets)
    tune = args.work / "tune11"
    if not (tune / PAIRS_FILE).is_file():
        build_pairs(tune, n=args.tune_n, overwrite=True, **TUNE_FOLDER, **hull_train.TUNING)
    data = hull_train.extract([*folders, tune], nolm=0.3, seed=args.seed)
    print(f"{len(data['x'])} samples in {time.perf_counter() - t0:.0f} s", flush=True)
    results = []
    if args.validate:
        # as documented: the folds train on seeds 101, 102 and the seed-11 folder, 400 steps each
        keep = np.array([k.split("/")[0] in ("pairs101", "pairs102", "tune11") for k in data["key"]])
        part = {k: (v[keep] if isinstance(v, np.ndarray) else [x for x, m in zip(v, keep) if m])
                for k, v in data.items()}
        results = hull_train.leave_regions_out(part, tune, steps=args.fold_steps, seed=args.seed,
                                               thresholds=(0.3, 0.5, 0.7), landmarks=(True,), mix=True)
    net = hull_train.train(data["x"], data["y"], steps=args.steps, seed=args.seed)
    info = {"recipe": "scripts/train_hull_refine.py", "seed": args.seed, "steps": args.steps,
            "samples": int(len(data["x"])), "train_sets": [[s, list(c)] for s, c in sets],
            "tuning": {k: list(v) for k, v in hull_train.TUNING.items()}}
    path = hull_train.save_weights(net, args.out, info)
    print(json.dumps({"weights": str(path), "bytes": path.stat().st_size, "validate": results,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
