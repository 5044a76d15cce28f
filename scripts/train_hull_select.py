"""Reproduce hull's candidate scorer from scratch (docs/hull_training.md, ffmask.targets.hull_select_train).

    python scripts/train_hull_select.py                      # -> ffmask/targets/weights/hull_select.npz
    python scripts/train_hull_select.py --validate           # also the leave-families-out check first
    python scripts/train_hull_select.py --smoke --out /tmp/s.npz   # seconds: a few pairs
    python scripts/train_hull_select.py --logo               # only the leave-one-generator-out check
    python scripts/train_hull_select.py --logo --smoke       # the same, a few pairs

Builds the tuning-half pairs under ``--work`` (reused when present: the
same folders as scripts/train_hull_refine.py) and the second generator's
training pairs (``benchmarks/foreign_pairs.py --people tuning``, seeds and
operations of ``hull_select_train.FOREIGN_SETS`` / ``FOREIGN_OPERATIONS``,
under ``WORK/foreign<seed>``) and the third generator's
(``scripts/segment_pairs.py``, seeds of ``hull_select_train.THIRD_SETS``,
under ``WORK/segment<seed>``), extracts every pair's candidates, features
and true IoUs, fits the gradient-boosted trees with a fixed seed on the
synth seeds, the seed-11 folder, the foreign seeds and the third
generator's seeds (in that order) and writes them as a pickle-free npz.

``--logo`` runs only the transfer check instead
(``hull_select_train.leave_generator_out``): a reduced set of tuning folders
per generator (``hull_select_train.LOGO_SETS``, under ``WORK/logo``), the
scorer trained on two generators and its vote scored on the third's CRF 23
/ 40 pairs, each generator held out once, plus (``--unseen``) the foreign
generator's operations no scorer trains on, held out from all three
(``LOGO_UNSEEN``); prints one JSON line per fold and their mean.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

import ffmask  # noqa: F401  (installs the torchvision shim first)
from ffmask.synth.pairs import PAIRS_FILE, build_pairs
from ffmask.targets import hull_select, hull_select_train, hull_train

TUNE_FOLDER = dict(seed=11, compressions=("c23", "c40"))  # the benchmark's tuning folder (bench_masks.py)
FOREIGN_PAIRS = Path(__file__).resolve().parents[1] / "benchmarks" / "foreign_pairs.py"
SEGMENT_PAIRS = Path(__file__).resolve().parent / "segment_pairs.py"


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def foreign_training_pairs(work: Path, n: int, sets) -> list[Path]:
    """Build (or reuse) the second generator's training folders (tuning people, the training operations only)."""
    fp = _module("foreign_pairs", FOREIGN_PAIRS)
    folders = []
    for seed, comps in sets:
        folder = work / f"foreign{seed}"
        if not (folder / PAIRS_FILE).is_file():
            fp.build(folder, seed=int(seed), n=int(n), size=256, compressions=comps, people="tuning",
                     operations=hull_select_train.FOREIGN_OPERATIONS)
        folders.append(folder)
    return folders


def third_training_pairs(work: Path, n: int, sets) -> list[Path]:
    """Build (or reuse) the third generator's training folders (scripts/segment_pairs.py, tuning people only)."""
    sp = _module("segment_pairs", SEGMENT_PAIRS) if sets else None
    folders = []
    for seed, comps in sets:
        folder = work / f"segment{seed}"
        if not (folder / PAIRS_FILE).is_file():
            sp.build(folder, seed=int(seed), n=int(n), size=256, compressions=comps)
        folders.append(folder)
    return folders


def logo_pairs(work: Path, n: int, sets, unseen_n: int) -> list[tuple[str, Path]]:
    """Build (or reuse) the leave-one-generator-out folders ``(generator, seed, compressions)`` under ``work``:
    ``n`` pairs each, ``unseen_n`` for the unseen operations' folder."""
    out = []
    for gen, seed, comps in sets:
        folder = work / f"{gen}{seed}"
        count = unseen_n if gen == "unseen" else n
        if gen == "synth":
            hull_train.build_training_pairs(work / "synth", n=count, sets=((seed, comps),))
            folder = work / "synth" / f"pairs{seed}"
        elif not (folder / PAIRS_FILE).is_file():
            if gen == "third":
                _module("segment_pairs", SEGMENT_PAIRS).build(folder, seed=int(seed), n=int(count), size=256,
                                                              compressions=comps)
            else:
                ops = hull_select_train.LOGO_UNSEEN_OPERATIONS if gen == "unseen" else hull_select_train.FOREIGN_OPERATIONS
                _module("foreign_pairs", FOREIGN_PAIRS).build(folder, seed=int(seed), n=int(count), size=256,
                                                              compressions=comps, people="tuning", operations=ops)
        out.append((gen, folder))
    return out


def run_logo(args, max_iter: int) -> None:
    """The leave-one-generator-out check: one JSON line per fold, then the mean over the three generator folds."""
    sets = hull_select_train.LOGO_SETS + ((hull_select_train.LOGO_UNSEEN,) if args.unseen else ())
    n, unseen_n = args.logo_n, hull_select_train.LOGO_UNSEEN_N
    if args.smoke:
        sets = tuple(s for s in sets if s[1] in (105, 2101, 3101, hull_select_train.LOGO_UNSEEN[1]))
        n = unseen_n = 3
    folders = logo_pairs(args.work / "logo", n, sets, unseen_n)
    parts = [hull_select_train.extract([f], keep_masks=True) for _, f in folders]
    gen = np.concatenate([np.full(len(p["region"]), g) for (g, _), p in zip(folders, parts)])
    data = hull_select_train.concat(parts)
    folds = hull_select_train.generator_folds([g for g, _, _ in hull_select_train.LOGO_SETS],
                                              extra=("unseen",) if args.unseen else ())
    kw = dict(max_iter=max_iter, min_samples_leaf=2) if args.smoke else {}
    results = hull_select_train.leave_generator_out(data, gen, folds=folds, seed=args.seed, **kw)
    mean = hull_select_train.logo_summary([r for r in results if r["val"] != ["unseen"]])
    print(json.dumps({"logo": results, "mean": mean}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffmask_hull_refine"))
    ap.add_argument("--tune", type=Path, help="the seed-11 tuning folder (default WORK/tune11, built if absent)")
    ap.add_argument("--out", type=Path, default=hull_select.WEIGHTS)
    ap.add_argument("--n", type=int, default=400, help="pairs per training seed")
    ap.add_argument("--tune-n", type=int, default=300, help="pairs of the seed-11 tuning folder")
    ap.add_argument("--foreign-n", type=int, default=hull_select_train.FOREIGN_N,
                    help="pairs per second-generator training seed (0: none, the session 7 recipe)")
    ap.add_argument("--third-n", type=int, default=hull_select_train.THIRD_N,
                    help="pairs per third-generator training seed (0: none, the session 9 recipe)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validate", action="store_true", help="run the leave-families-out check first")
    ap.add_argument("--logo", action="store_true", help="only the leave-one-generator-out check (no weights written)")
    ap.add_argument("--logo-n", type=int, default=hull_select_train.LOGO_N, help="pairs per --logo folder")
    ap.add_argument("--unseen", action="store_true",
                    help="--logo: also hold out the foreign generator's operations no scorer trains on")
    ap.add_argument("--smoke", action="store_true", help="tiny run (2 + 2 pairs, few iterations) to test the recipe")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sets = hull_select_train.TRAIN_SETS
    foreign_sets = hull_select_train.FOREIGN_SETS if args.foreign_n > 0 else ()
    third_sets = hull_select_train.THIRD_SETS if args.third_n > 0 else ()
    max_iter = hull_select_train.MAX_ITER
    if args.smoke:
        sets, foreign_sets, third_sets = sets[:1], foreign_sets[:1], third_sets[:1]
        args.n, args.tune_n, args.foreign_n, args.third_n, max_iter = 2, 2, 2, 2, 5
    if args.logo:
        return run_logo(args, max_iter)
    folders = hull_train.build_training_pairs(args.work, n=args.n, sets=sets)
    foreign = foreign_training_pairs(args.work, args.foreign_n, foreign_sets)
    third = third_training_pairs(args.work, args.third_n, third_sets)
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
    both = hull_select_train.concat([data, val] + ([hull_select_train.extract(foreign)] if foreign else [])
                                    + ([hull_select_train.extract(third)] if third else []))
    model = hull_select_train.fit(both["x"], both["y"], seed=args.seed, max_iter=max_iter)
    info = {"recipe": "scripts/train_hull_select.py", "seed": args.seed, "candidates": int(len(both["y"])),
            "samples": int(len(both["region"])), "train_sets": [[s, list(c)] for s, c in sets],
            "foreign_sets": [[s, list(c)] for s, c in foreign_sets],
            "foreign": {"people": "tuning", "operations": list(hull_select_train.FOREIGN_OPERATIONS),
                        "n": args.foreign_n} if foreign_sets else {},
            "third_sets": [[s, list(c)] for s, c in third_sets],
            "third": {"generator": "scripts/segment_pairs.py", "n": args.third_n} if third_sets else {},
            "tuning": {k: list(v) for k, v in hull_train.TUNING.items()},
            "fit": {"max_iter": max_iter, "max_leaf_nodes": hull_select_train.MAX_LEAF_NODES,
                    "min_samples_leaf": hull_select_train.MIN_SAMPLES_LEAF, "learning_rate": 0.1}}
    path = hull_select_train.export(model, args.out, info)
    print(json.dumps({"weights": str(path), "bytes": path.stat().st_size, "validate": results,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
