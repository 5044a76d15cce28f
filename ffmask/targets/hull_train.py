"""Training recipe of ``hull``'s refinement net (:mod:`ffmask.targets.hull_net`).

Reproduces ``ffmask/targets/weights/hull_refine.safetensors`` from scratch
(``python scripts/train_hull_refine.py``; docs/hull_training.md):

1. **Data**: single-frame synth family pairs (:func:`ffmask.synth.pairs.build_pairs`)
   of the *tuning* half only -- regions hull, nose, cheek, forehead;
   operations resample, blur, color, noise, expression; Biden and Collins
   (mirrored too) -- seeds :data:`TRAIN_SETS` (never the report seeds 21-29),
   each pair compressed at three x264 CRFs between 18 and 45 so
   the net does not learn two compression levels, plus the tuning
   benchmark folder (seed 11, CRF 23 and 40).
2. **Inputs**: :func:`ffmask.targets.hull_net.evidence` of every pair,
   with the landmarks for a share ``1 - nolm`` of the samples and without
   (the central-ellipse prior) for the rest, drawn per sample from the seed;
   **target**: the share of each working-resolution pixel the true mask covers.
3. **Net**: the U-Net of :func:`~ffmask.targets.hull_net.build_net`, Adam,
   one-cycle learning rate, 800 steps of 16 whole maps, random horizontal
   flips, loss binary cross-entropy + (1 - soft IoU per image), one CPU thread.
4. **Model selection** (:func:`leave_regions_out`): trained on two of the
   four tuning regions, scored on the other two in the seed-11 folder
   (IoU after the shape step), both ways round, against the hand rules.

Every random draw comes from ``seed``: on one thread and the same torch build,
the same data give the same weights (tests/test_hull_refine.py checks a few steps).
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ffmask.targets import hull_net

__all__ = ["TUNING", "TRAIN_SETS", "build_training_pairs", "extract", "train", "save_weights",
           "leave_regions_out", "score_masks"]

#: The tuning half of benchmarks/bench_masks.py: the only families and people the net sees.
TUNING = dict(regions=("hull", "nose", "cheek", "forehead"),
              operations=("resample", "blur", "color", "noise", "expression"),
              identities=("biden", "biden-mirrored", "astronaut", "astronaut-mirrored"))
#: (seed, compressions) of the training folders; 400 pairs each by default.
TRAIN_SETS = ((101, ("c18", "c30", "c42")), (102, ("c23", "c35", "c45")),
              (103, ("c20", "c27", "c40")), (104, ("c25", "c33", "c38")))
#: Region folds of the leave-regions-out check: train on the first, score on the second.
FOLDS = ((("hull", "nose"), ("cheek", "forehead")), (("cheek", "forehead"), ("hull", "nose")))
#: held-out report seeds of bench_masks.py (never trained or tuned on); 30 is the next fresh one, reserved
REPORT_SEEDS = (21, 22, 23, 24, 25, 26, 27, 28, 29, 30)

Log = Callable[[str], None]


def build_training_pairs(work: Path, n: int = 400, sets=TRAIN_SETS, log: Log = print) -> list[Path]:
    """Build (or reuse) the training pair folders under ``work``; returns them."""
    from ffmask.synth.pairs import PAIRS_FILE, build_pairs

    folders = []
    for seed, comps in sets:
        if int(seed) in REPORT_SEEDS:
            raise ValueError(f"seed {seed} is a held-out report seed of the masks benchmark")
        folder = Path(work) / f"pairs{seed}"
        if not (folder / PAIRS_FILE).is_file():
            t0 = time.perf_counter()
            build_pairs(folder, seed=int(seed), n=int(n), compressions=comps, overwrite=True, **TUNING)
            log(f"built {folder} ({n} pairs x {len(comps)} compressions) in {time.perf_counter() - t0:.0f} s")
        folders.append(folder)
    return folders


def _target(truth: np.ndarray, res: int) -> np.ndarray:
    import cv2

    return cv2.resize(truth.astype(np.float32), (res, res), interpolation=cv2.INTER_AREA)


def extract(folders: Sequence[Path], *, nolm: float = 0.3, seed: int = 0, both: bool = False,
            limit: Optional[int] = None, log: Log = print) -> dict:
    """Evidence maps and targets of every pair in ``folders``.

    Returns a dict: ``x`` float16 (N, C, R, R), ``y`` float16 (N, 1, R, R),
    ``landmarks`` bool (N,) (whether the sample's maps used them), and
    ``region``, ``operation``, ``compression``, ``key`` lists. With
    ``both``, every pair gives two samples, with and without landmarks.
    """
    from ffmask.synth.pairs import read_pairs

    xs, ys, used, region, operation, comp, keys = [], [], [], [], [], [], []
    t0 = time.perf_counter()
    for folder in folders:
        for k, s in enumerate(read_pairs(folder)):
            if limit is not None and k >= limit:
                break
            key = f"{Path(folder).name}/{s.compression}/{s.id}"
            rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
            variants = (True, False) if both else (bool(rng.random() >= nolm),)
            target = _target(s.truth, hull_net.RES)
            for with_lm in variants:
                maps, _, _ = hull_net.evidence(s.real, s.fake, s.landmarks if with_lm else None)
                xs.append(maps.astype(np.float16))
                ys.append(target[None].astype(np.float16))
                used.append(with_lm)
                region.append(s.record["params"]["region"])
                operation.append(s.record["params"]["operation"])
                comp.append(s.compression)
                keys.append(key)
        log(f"features of {folder}: {len(xs)} samples so far, {time.perf_counter() - t0:.0f} s")
    return {"x": np.stack(xs), "y": np.stack(ys), "landmarks": np.array(used), "region": region,
            "operation": operation, "compression": comp, "key": keys}


def train(x: np.ndarray, y: np.ndarray, *, steps: int = 800, batch: int = 16, crop: int = 64, lr: float = 3e-3,
          seed: int = 0, inputs: Sequence[str] = hull_net.INPUTS, widths: Sequence[int] = hull_net.WIDTHS,
          log: Log = print, log_every: int = 100):
    """Train a fresh refinement net on ``x`` (N, C, R, R) and soft targets ``y`` (N, 1, R, R); eval mode.

    Each step takes ``batch`` random samples, one random ``crop`` x ``crop``
    window of each (default the whole map; the net is fully convolutional,
    but windows of 40 px generalised worse across regions at c40 in the
    leave-regions-out check) and flips half of them left-right.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    idx_in = [hull_net.CHANNELS.index(c) for c in inputs]
    net = hull_net.build_net(len(idx_in), tuple(widths))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    net.train()
    t0, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        idx = rng.integers(0, len(x), size=batch)
        res = x.shape[-1]
        c = min(int(crop), res) // 8 * 8
        oy, ox = rng.integers(0, res - c + 1, size=(2, batch))
        xb = torch.stack([xt[i, idx_in, a:a + c, b:b + c] for i, a, b in zip(idx, oy, ox)]).float()
        yb = torch.stack([yt[i, :, a:a + c, b:b + c] for i, a, b in zip(idx, oy, ox)]).float()
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        xb[flip], yb[flip] = xb[flip].flip(-1), yb[flip].flip(-1)
        logits = net(xb)
        prob = torch.sigmoid(logits)
        inter = (prob * yb).sum((1, 2, 3))
        union = (prob + yb - prob * yb).sum((1, 2, 3))
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yb)
                + (1 - (inter + 1) / (union + 1)).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if step % log_every == 0 or step == steps:
            log(f"step {step}/{steps} loss {running / ((step - 1) % log_every + 1):.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
            running = 0.0
    net.eval()
    net.inputs, net.input_names, net.widths = idx_in, tuple(inputs), tuple(widths)
    return net


def save_weights(net, path: Path, info: Optional[dict] = None) -> Path:
    """Write the net's state dict as safetensors, the architecture and ``info`` in its metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"res": hull_net.RES, "channels": list(hull_net.CHANNELS), "widths": list(net.widths),
              "inputs": list(net.input_names)}
    meta = {"config": json.dumps(config), "info": json.dumps(info or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return path


def score_masks(net, folder: Path, regions: Sequence[str], *, shapes=("component", "largest", "none"),
                thresholds=(0.5,), landmarks: bool = True, mix: bool = False) -> dict:
    """Mean IoU per (shape, threshold, compression) of the net's masks on ``folder``'s pairs of ``regions``,
    next to the hand rules (``("rules", 0, compression)``); with ``mix``, also of the mean of the net's
    probability and the rules' mask (``shape + "+rules"``)."""
    from ffmask.metrics import pixel_iou as iou
    from ffmask.synth.pairs import read_pairs
    from ffmask.targets import hull as _hull

    scores: dict = {}
    for s in read_pairs(folder):
        if s.record["params"]["region"] not in regions:
            continue
        lms = s.landmarks if landmarks else None
        maps, face, rules = hull_net.evidence(s.real, s.fake, lms)
        prob = hull_net.refine_probability(maps, s.truth.shape, net)
        mixed = 0.5 * (prob + rules)
        for shape in shapes:
            for t in thresholds:
                mask = _hull._shape_step(prob, face, t, shape, _hull.MIN_AREA)
                scores.setdefault((shape, t, s.compression), []).append(iou(mask, s.truth))
                if mix:
                    mask = _hull._shape_step(mixed, face, t, shape, _hull.MIN_AREA)
                    scores.setdefault((shape + "+rules", t, s.compression), []).append(iou(mask, s.truth))
        scores.setdefault(("rules", 0, s.compression), []).append(iou(rules, s.truth))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def leave_regions_out(data: dict, val_folder: Path, *, steps: int, seed: int = 0, folds=FOLDS,
                      thresholds=(0.5,), landmarks=(True, False), mix: bool = False, save_dir=None, log: Log = print,
                      **train_options) -> list[dict]:
    """Train on two tuning regions, score on the other two of ``val_folder``, per fold."""
    results = []
    for train_regions, val_regions in folds:
        pick = np.isin(np.array(data["region"]), train_regions)
        net = train(data["x"][pick], data["y"][pick], steps=steps, seed=seed, log=log, **train_options)
        if save_dir is not None:
            save_weights(net, Path(save_dir) / f"fold_{'-'.join(train_regions)}.safetensors")
        for lm in landmarks:
            res = score_masks(net, val_folder, val_regions, landmarks=lm, thresholds=thresholds, mix=mix)
            results.append({"train": list(train_regions), "val": list(val_regions), "landmarks": lm,
                            "scores": {f"{k[0]}@{k[1]}/{k[2]}": round(v, 4) for k, v in sorted(res.items())}})
            log(json.dumps(results[-1]))
    return results
