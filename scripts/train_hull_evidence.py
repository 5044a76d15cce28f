"""Train the learned local evidence map of :mod:`ffmask.targets.experiments.hull_evidence` (docs/hull_training.md).

    python scripts/train_hull_evidence.py cache FOLDER... --out cache.npz [--stride 2]
    python scripts/train_hull_evidence.py train cache.npz... --out hull_evidence.npz [--minutes 12] [--seed 0]

``cache``: for every ``--stride``-th pair of each folder (written by
``ffmask synth --pairs``, ``benchmarks/foreign_pairs.py`` or
``scripts/segment_pairs.py``; TUNING data only -- never a report seed) at
every compression, the net's input maps (:func:`ffmask.targets.experiments.hull_evidence.evidence_inputs`,
float16) and the target: the true mask area-resized to the working size
(the share of each working pixel that was changed).

``train``: a 3 x 3 fully convolutional net (:data:`~ffmask.targets.experiments.hull_evidence.DILATIONS`,
:data:`~ffmask.targets.experiments.hull_evidence.WIDTH` channels, ReLU, a 1 x 1 output;
edge-replicated borders) fitted by per-pixel binary cross-entropy against
the soft target, Adam with a cosine decay of the rate over the time budget
(updated every 500 steps), on random 64 x 64 windows with random flips and
transposes, one thread, for ``--minutes``; samples whose index is a
multiple of ``--val-every`` are held out for the printed validation loss.
Exports the layers as plain arrays (``allow_pickle=False``) for the NumPy
inference of :func:`ffmask.targets.experiments.hull_evidence.forward`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffmask.errors import FFMaskError  # noqa: E402
from ffmask.synth.pairs import read_pairs  # noqa: E402
from ffmask.targets.experiments import hull_evidence as he  # noqa: E402

#: refused: the report seeds spent and to come (synth 21-39, foreign 2000-2099), as scripts/segment_pairs.py does
REPORT_SEEDS = set(range(21, 40)) | set(range(2000, 2100))


def build_cache(folders: list[Path], out: Path, stride: int) -> None:
    xs, ys, names = [], [], []
    for folder in folders:
        seed = json.loads((folder / "pairs.json").read_text("utf-8")).get("seed")
        if seed is not None and int(seed) in REPORT_SEEDS:
            sys.exit(f"error: {folder} is report seed {seed}; train on tuning data only")
        count: dict = {}
        t0 = time.perf_counter()
        for s in read_pairs(folder):
            k = count[s.compression] = count.get(s.compression, -1) + 1
            if k % stride:
                continue
            x = he.evidence_inputs(s.real, s.fake)
            h, w = x.shape[1:]
            y = cv2.resize(s.truth.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
            xs.append(x.astype(np.float16))
            ys.append(y.astype(np.float16))
            names.append(f"{folder.name}/{s.compression}/{s.id}")
        print(f"{folder}: {sum(1 for n in names if n.startswith(folder.name + '/'))} samples, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    np.savez(out, x=np.stack(xs), y=np.stack(ys), names=np.array(names))


def make_net(channels: int):
    import torch.nn as nn

    layers, c = [], channels
    for d in he.DILATIONS:
        layers += [nn.Conv2d(c, he.WIDTH, 3, padding=d, dilation=d, padding_mode="replicate"), nn.ReLU()]
        c = he.WIDTH
    layers.append(nn.Conv2d(c, 1, 1))
    return nn.Sequential(*layers)


def export(net, path: Path) -> None:
    convs = [m for m in net if hasattr(m, "weight")]
    arrays = {"n_layers": np.array(len(convs))}
    for i, m in enumerate(convs):
        w = m.weight.detach().numpy().astype(np.float32)  # (out, in, k, k)
        arrays[f"w{i}"] = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1) if w.shape[2] == 3 else w[:, :, 0, 0]
        arrays[f"b{i}"] = m.bias.detach().numpy().astype(np.float32)
        arrays[f"d{i}"] = np.array(m.dilation[0] if w.shape[2] == 3 else 0)
    arrays["channels"] = np.array(json.dumps(he.CHANNELS))
    np.savez(path, **arrays)


def train(caches: list[Path], out: Path, minutes: float, seed: int, val_every: int, window: int = 64,
          batch: int = 32, lr: float = 3e-3) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in caches:
        with np.load(c, allow_pickle=False) as z:
            xs.append(z["x"])
            ys.append(z["y"])
    x, y = np.concatenate(xs), np.concatenate(ys)
    n = len(x)
    val = np.arange(0, n, val_every)
    tr = np.setdiff1d(np.arange(n), val)
    print(f"{n} samples ({len(tr)} train, {len(val)} val), {x.shape[1:]}, positive share {float(y.mean()):.3f}",
          flush=True)
    net = make_net(x.shape[1])
    print(f"{sum(p.numel() for p in net.parameters())} parameters", flush=True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xv = torch.from_numpy(x[val].astype(np.float32))
    yv = torch.from_numpy(y[val].astype(np.float32))

    def val_loss() -> float:
        with torch.no_grad():
            return float(sum(F.binary_cross_entropy_with_logits(net(xv[i:i + 64])[:, 0], yv[i:i + 64],
                                                               reduction="sum") for i in range(0, len(val), 64))
                         / yv.numel())

    t0, step, h, w = time.perf_counter(), 0, x.shape[2], x.shape[3]
    window = min(window, h, w)  # crops smaller than the window: whole maps
    end = t0 + 60 * minutes
    while time.perf_counter() < end:
        idx = rng.choice(tr, batch)
        oy = rng.integers(0, h - window + 1, batch)
        ox = rng.integers(0, w - window + 1, batch)
        xb = np.stack([x[i, :, a:a + window, b:b + window] for i, a, b in zip(idx, oy, ox)]).astype(np.float32)
        yb = np.stack([y[i, a:a + window, b:b + window] for i, a, b in zip(idx, oy, ox)]).astype(np.float32)
        if rng.random() < 0.5:
            xb, yb = xb[..., ::-1], yb[..., ::-1]
        if rng.random() < 0.5:
            xb, yb = xb[..., ::-1, :], yb[..., ::-1, :]
        if rng.random() < 0.5:
            xb, yb = xb.swapaxes(-1, -2), yb.swapaxes(-1, -2)
        xb, yb = torch.from_numpy(xb.copy()), torch.from_numpy(yb.copy())
        loss = F.binary_cross_entropy_with_logits(net(xb)[:, 0], yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            frac = (time.perf_counter() - t0) / (60 * minutes)
            for g in opt.param_groups:  # cosine decay over the time budget
                g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * min(1.0, frac)))
            print(f"step {step} {time.perf_counter() - t0:.0f} s train {loss.item():.4f} val {val_loss():.4f}",
                  flush=True)
    print(f"done: {step} steps, val {val_loss():.4f}", flush=True)
    export(net, out)
    torch.save(net.state_dict(), out.with_suffix(".pt"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("folders", type=Path, nargs="+")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--stride", type=int, default=2)
    t = sub.add_parser("train")
    t.add_argument("caches", type=Path, nargs="+")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--minutes", type=float, default=12.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-every", type=int, default=10)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "cache":
            build_cache(args.folders, args.out, args.stride)
        else:
            train(args.caches, args.out, args.minutes, args.seed, args.val_every)
    except (FFMaskError, OSError, KeyError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
