"""Do the FAMs of the experiment's detectors point at the forgery? (docs/evaluators.md, "fam" section)

    python scripts/experiment_fam.py WORK [RUNS_GLOB ...]

For every trained evaluator under ``WORK/runs*/main-*`` (or the run
directories the globs name), the Forgery Attention Map (``--method fam``:
:func:`ffmask.models.fam_method.fam_batch`, each face normalised to [0, 1])
of every *fake* face of the held-out test originals (c23, the experiment's
``TEST``) is scored against the true mask (``official``) by pixel ROC AUC at
the shard size. Two references: a uniform map (AUC 0.5 by definition) and
the *mean true mask of the training fakes* (a position prior that knows
where forgeries usually are, nothing about the face). Results:
``WORK/fam.json`` and a markdown table on stdout (mean ± std over the runs of
one model and supervision).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiment_maps import TEST, TRAIN, shards  # noqa: E402


def _faces(paths):
    from ffmask.shards import ShardIndex

    index = ShardIndex(paths, ["official"])
    faces = [index.read(i) for i in range(len(index))]
    index.close()
    return faces


def _gray(m) -> np.ndarray:
    """uint8 (S, S, 3) of a map in [0, 1] (or bool)."""
    g = (np.clip(np.asarray(m, np.float32), 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    from ffmask.metrics import roc_auc
    from ffmask.models.fam_method import fam_batch, load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("runs", nargs="*", help="run directories (globs under WORK); default runs*/main-*")
    ap.add_argument("--figure", type=Path, default=None,
                    help="PNG: 4 held-out fakes, their true masks and the FAM (shown as its square root) of "
                         "the first run of each group")
    a = ap.parse_args()
    patterns = a.runs or ["runs*/main-*"]
    runs = sorted({p for pat in patterns for p in a.work.glob(pat) if (p / "last.json").is_file()})
    test = [f for f in _faces(shards(a.work, "c23", TEST)) if f["label"] == 1]
    truth = np.concatenate([f["maps"]["official"].ravel() > 0.5 for f in test])
    images = np.stack([f["image"] for f in test])
    train_fakes = [f["maps"]["official"].astype(np.float32) for f in _faces(shards(a.work, "c23", TRAIN))
                   if f["label"] == 1]
    prior = np.mean(train_fakes, axis=0)
    pick = np.linspace(0, len(test) - 1, 4).round().astype(int)
    columns = {"face": [images[i] for i in pick],
               "true mask": [_gray(test[i]["maps"]["official"] > 0.5) for i in pick]}
    results = {"n_faces": len(test), "uniform": 0.5,
               "mean_training_mask": roc_auc(truth, np.tile(prior.ravel(), len(test))), "runs": {}}
    from ffmask.errors import CheckpointError

    for run in runs:
        try:
            model = load_model(str(run / "last.json"), "cpu")
        except (CheckpointError, ValueError) as exc:  # e.g. a model this checkout does not register
            print(f"{run.relative_to(a.work)}: skipped ({exc})", flush=True)
            continue
        maps, extras = fam_batch(model, images, np.ones(len(test), np.int64))
        doc = json.loads((run / "last.json").read_text())
        key = f"{doc['model']} / {doc['train'].get('map') or 'none'}"
        if key not in columns:
            columns[key] = [_gray(np.sqrt(maps[i])) for i in pick]  # √FAM: the spiky maps are visible
        results["runs"][str(run.relative_to(a.work))] = {
            "group": key, "pixel_auc": roc_auc(truth, maps.reshape(-1)),
            "mean_fam_prob": float(np.mean(extras["fam_prob"]))}
        print(f"{run.relative_to(a.work)}: {results['runs'][str(run.relative_to(a.work))]}", flush=True)
    if a.figure is not None:
        import cv2

        sheet = np.concatenate([np.concatenate(col, 0) for col in columns.values()], 1)
        cv2.imwrite(str(a.figure), sheet[..., ::-1])
        print(f"figure: {a.figure}; columns: {', '.join(columns)}")
    (a.work / "fam.json").write_text(json.dumps(results, indent=1) + "\n")
    groups = defaultdict(list)
    for r in results["runs"].values():
        groups[r["group"]].append(r["pixel_auc"])
    print(f"\n{len(test)} held-out fake faces (c23); reference: uniform 0.500, mean training mask "
          f"{results['mean_training_mask']:.3f}\n")
    print("| model / supervision | runs | FAM pixel AUC vs true masks |\n| --- | --- | --- |")
    for g, v in sorted(groups.items()):
        v = np.array(v)
        print(f"| {g} | {v.size} | {v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f} |" if v.size > 1 else " |"))


if __name__ == "__main__":
    main()
