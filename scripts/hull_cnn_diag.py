"""Issue #10 diagnostic: does a candidate scorer that SEES the candidates beat the tree scorer within generators?

Reads the extracts of ``hull_select_train.extract(..., keep_masks=True)``
(one ``NAME.npz`` per tuning folder, next to the folder ``NAME/`` of pairs
it was extracted from; e.g. session 13's leave-one-generator-out cache),
adds per pair the context planes of :func:`ffmask.targets.experiments.hull_cnn.pair_context`
and per candidate its plane (:func:`~ffmask.targets.experiments.hull_cnn.candidate_planes`),
checking on the first ``--check`` pairs of each folder that the committed
candidate code regenerates the stored candidates (count, order, pixels).
Then, on a split by pair (``--test`` folders: odd pairs held out, even pairs
trained on; ``--train`` folders: trained on whole), fits the shipped tree recipe
(:func:`ffmask.targets.hull_select_train.fit`) and the CNN scorer
(:func:`ffmask.targets.experiments.hull_cnn.build_net`) on the same rows and scores the
vote of each (and of their mean) per generator x CRF x landmarks, next to the
candidate oracle and the oracle over each scorer's top-k candidates.

    python scripts/hull_cnn_diag.py --work /tmp/masks11/work --cache /tmp/masks12/cache \\
        --test synth105 foreign2101 third3101 --train synth106 foreign2102 third3102 --out /tmp/masks12/diag.json
    python scripts/hull_cnn_diag.py --smoke       # a few pairs of a fresh synth folder, end to end

docs/hull_training.md, "Session 14: a scorer that sees the candidates".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ffmask.synth.pairs import read_pairs
from ffmask.targets import hull_candidates as hc
from ffmask.targets.experiments import hull_cnn
from ffmask.targets import hull_select_train as hst
from ffmask.targets.mscc import mscc_mask

TOPK = (1, 3, 5)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def generator_of(name: str) -> str:
    """``synth105`` -> ``synth``: the folder name without its seed."""
    return re.sub(r"\d+$", "", name)


def build_cache(folder: Path, extract: Path, out: Path, *, check: int = 5) -> Path:
    """Context planes per sample and candidate planes per candidate of one extracted folder, saved to ``out``.

    The samples are re-read in :func:`hull_select_train.extract`'s order (pairs
    in :func:`read_pairs` order, each with then without landmarks). Raises
    RuntimeError when the folder's samples do not match the extract, or the
    first ``check`` pairs' regenerated candidates differ from the stored ones.
    """
    with np.load(extract) as fh:
        data = {k: fh[k] for k in fh.files}
    n = len(data["region"])
    group = data["group"]
    starts = np.searchsorted(group, np.arange(n), side="left")
    ends = np.searchsorted(group, np.arange(n), side="right")
    ctx = np.zeros((n, len(hull_cnn.CONTEXT), hull_cnn.SIZE, hull_cnn.SIZE), np.float16)
    g = 0
    t0 = time.perf_counter()
    for i, s in enumerate(read_pairs(folder)):
        mscc = mscc_mask(s.real, s.fake) if i < check else None
        for lms in (s.landmarks, None):
            if g >= n or data["compression"][g] != s.compression or bool(data["landmarks"][g]) != (lms is not None):
                raise RuntimeError(f"{folder}: sample {g} does not match {extract}")
            ev = hc.pair_evidence(s.real, s.fake, lms)
            if tuple(data["small"][g]) != ev.d.shape:
                raise RuntimeError(f"{folder}: sample {g}'s working size differs from the extract's")
            ctx[g] = hull_cnn.pair_context(ev, s.fake)
            if mscc is not None:
                masks, _ = hc.candidate_masks(ev, mscc)
                stored = data["masks"][starts[g]:ends[g]]
                mine = np.packbits(masks.reshape(len(masks), -1), axis=1)
                if mine.shape != stored.shape or not np.array_equal(mine, stored):
                    raise RuntimeError(f"{folder}: sample {g}: regenerated candidates differ from the extract's "
                                       f"({len(mine)} vs {len(stored)})")
            g += 1
    if g != n:
        raise RuntimeError(f"{folder}: {g} samples read, the extract has {n}")
    log(f"{folder.name}: context of {n} samples in {time.perf_counter() - t0:.0f} s "
        f"(first {check} pairs' candidates regenerated identically)")
    planes = np.zeros((len(group), hull_cnn.SIZE, hull_cnn.SIZE), np.uint8)
    for a in range(0, len(group), 4096):
        b = min(a + 4096, len(group))
        h, w = (int(v) for v in data["small"][group[a]])
        if not np.all((data["small"][group[a:b]] == (h, w)).all(1)):  # mixed working sizes: one by one
            for k in range(a, b):
                hh, ww = data["small"][group[k]]
                m = np.unpackbits(data["masks"][k])[:hh * ww].reshape(1, hh, ww)
                planes[k] = np.round(hull_cnn.candidate_planes(m)[0] * 255)
            continue
        m = np.unpackbits(data["masks"][a:b], axis=1)[:, :h * w].reshape(b - a, h, w)
        planes[a:b] = np.round(hull_cnn.candidate_planes(m) * 255)
    keep = {k: data[k] for k in ("x", "y", "group", "region", "operation", "compression", "landmarks", "mscc",
                                 "masks", "truth", "small", "crop")}
    np.savez(out, ctx=ctx, planes=planes, **keep)
    log(f"{folder.name}: cache {out} ({time.perf_counter() - t0:.0f} s)")
    return out


def load(cache: Path, names, pick_pairs=None) -> dict:
    """The cached folders joined (:func:`hull_select_train.concat`) with ``ctx``, ``planes``, ``generator`` and
    ``pair`` (the pair's index within its folder); ``pick_pairs(name, pair index) -> bool`` selects samples."""
    parts = []
    for name in names:
        with np.load(cache / f"{name}.npz") as fh:
            d = {k: fh[k] for k in fh.files}
        n = len(d["region"])
        comps = list(dict.fromkeys(d["compression"]))
        per = n // (2 * len(comps))  # pairs per compression
        pair = (np.arange(n) // 2) % per
        d["pair"] = pair
        d["generator"] = np.full(n, generator_of(name))
        d["name"] = np.full(n, name)
        if pick_pairs is not None:
            d = hst.subset(d, pick_pairs(name, pair))
        parts.append(d)
    out = hst.concat(parts)
    return out


def train_cnn(data: dict, *, epochs: int, seed: int = 0, batch_groups: int = 32, lr: float = 2e-3,
              threads: int = 2, log=log) -> tuple:
    """Fit :func:`hull_cnn.build_net` on every candidate of ``data`` (MSE on the true IoU); returns (net, mu, sd)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    xf = hull_cnn.feature_transform(data["x"])
    mu, sd = xf.mean(0), xf.std(0) + 1e-6
    xf = np.clip((xf - mu) / sd, -6, 6).astype(np.float32)
    net = hull_cnn.build_net(xf.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n = len(data["region"])
    group = data["group"]
    starts = np.searchsorted(group, np.arange(n), side="left")
    ends = np.searchsorted(group, np.arange(n), side="right")
    steps = epochs * int(np.ceil(n / batch_groups))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    ctx, planes, y = data["ctx"], data["planes"], data["y"]
    net.train()
    for ep in range(epochs):
        t0, tot, cnt = time.perf_counter(), 0.0, 0
        for b in np.array_split(rng.permutation(n), int(np.ceil(n / batch_groups))):
            rows = np.concatenate([np.arange(starts[g], ends[g]) for g in b])
            if rows.size == 0:
                continue
            pred = net(*_inputs(ctx, planes, group, rows), torch.from_numpy(xf[rows]))
            loss = torch.mean((pred - torch.from_numpy(y[rows])) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(rows)
            cnt += len(rows)
        log(f"epoch {ep + 1}/{epochs}: train MSE {tot / max(cnt, 1):.5f}, {time.perf_counter() - t0:.0f} s")
    net.eval()
    return net, mu, sd


def _inputs(ctx, planes, group, rows) -> tuple:
    """(context of the pairs of ``rows``, the candidates' planes, each one's context row) as tensors."""
    import torch

    pairs, local = np.unique(group[rows], return_inverse=True)
    return (torch.from_numpy(ctx[pairs].astype(np.float32)),
            torch.from_numpy(planes[rows][:, None].astype(np.float32) * np.float32(1 / 255)),
            torch.from_numpy(local.astype(np.int64)))


def predict_cnn(model: tuple, data: dict, chunk: int = 4096) -> np.ndarray:
    """Predicted IoU of every candidate of ``data`` (float64 (M,))."""
    import torch

    net, mu, sd = model
    xf = np.clip((hull_cnn.feature_transform(data["x"]) - mu) / sd, -6, 6).astype(np.float32)
    out = np.zeros(len(data["y"]))
    with torch.no_grad():
        for a in range(0, len(out), chunk):
            rows = np.arange(a, min(a + chunk, len(out)))
            out[rows] = net(*_inputs(data["ctx"], data["planes"], data["group"], rows),
                            torch.from_numpy(xf[rows])).double().numpy()
    return out


def topk_oracle(pred: np.ndarray, data: dict, k: int) -> np.ndarray:
    """Per sample, the best true IoU among its ``k`` highest-predicted candidates."""
    group, y = data["group"], data["y"]
    order = np.lexsort((-pred, group))
    g = group[order]
    rank = np.arange(len(order)) - np.searchsorted(g, g, side="left")
    out = np.zeros(len(data["region"]))
    top = order[rank < k]
    np.maximum.at(out, group[top], y[top])
    return out


def score(preds: dict, data: dict, compressions=("c23", "c40")) -> dict:
    """Per generator x compression x landmarks: n, each scorer's vote and top-k oracles, the candidate oracle."""
    orc = hst.oracle_scores(data)
    tops = {(name, k): topk_oracle(p, data, k) for name, p in preds.items() for k in TOPK}
    out = {}
    for key, pick in hst.generator_cells(data, compressions):
        cell = {"n": int(pick.sum()), "oracle": round(float(orc[pick].mean()), 4),
                "mscc": round(float(data["mscc"][pick].mean()), 4)}
        for name, p in preds.items():
            cell[name] = round(float(hst.fused_scores(p, data, pick).mean()), 4)
            for k in TOPK:
                cell[f"{name}@top{k}"] = round(float(tops[(name, k)][pick].mean()), 4)
        out[key] = cell
    return out


def per_family(preds: dict, data: dict, key: str = "region") -> dict:
    """Mean vote IoU per (compression, family value of ``key``) over the held-out samples, and the oracle."""
    orc = hst.oracle_scores(data)
    out = {}
    fused = {name: None for name in preds}
    for name, p in preds.items():
        fused[name] = np.full(len(data["region"]), np.nan)
        allp = np.ones(len(data["region"]), bool)
        fused[name][allp] = hst.fused_scores(p, data, allp)
    for comp in sorted(set(data["compression"])):
        for fam in sorted(set(data[key])):
            pick = (data["compression"] == comp) & (data[key] == fam)
            out[f"{comp}/{fam}"] = {"n": int(pick.sum()), "oracle": round(float(orc[pick].mean()), 4),
                                    **{name: round(float(f[pick].mean()), 4) for name, f in fused.items()}}
    return out


def summary(cells: dict, names) -> dict:
    """Mean over generators and landmarks per compression of each scorer's vote, its top-k oracles and the oracle."""
    out = {}
    for comp in sorted({c.split("/")[1] for c in cells}):
        rows = [v for c, v in cells.items() if c.split("/")[1] == comp]
        keys = ["oracle"] + [k for nm in names for k in [nm] + [f"{nm}@top{t}" for t in TOPK]]
        out[comp] = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
    return out


def run(work: Path, cache: Path, test: list, train: list, *, epochs: int, check: int, out: Path,
        max_iter: int = hst.MAX_ITER, min_samples_leaf: int = hst.MIN_SAMPLES_LEAF) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    for name in test + train:
        if not (cache / f"{name}.npz").is_file():
            build_cache(work / name, work / f"{name}.npz", cache / f"{name}.npz", check=check)
    is_test = set(test)
    tr = load(cache, test + train, lambda name, pair: (pair % 2 == 0) | (name not in is_test))
    va = load(cache, test, lambda name, pair: pair % 2 == 1)
    va = hst.subset(va, np.isin(va["compression"], ("c23", "c40")))
    log(f"training: {len(tr['region'])} samples, {len(tr['y'])} candidates; held out: {len(va['region'])} samples")
    t0 = time.perf_counter()
    trees = hst.fit(tr["x"], tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
    log(f"trees fitted in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    cnn = train_cnn(tr, epochs=epochs)
    log(f"CNN trained in {time.perf_counter() - t0:.0f} s")
    preds = {"trees": hst.predict(trees, va["x"]), "cnn": predict_cnn(cnn, va)}
    preds["mean"] = (preds["trees"] + preds["cnn"]) / 2
    cells = score(preds, va)
    res = {"cells": cells, "summary": summary(cells, list(preds)), "families": per_family(preds, va),
           "epochs": epochs, "train_samples": int(len(tr["region"])), "test_samples": int(len(va["region"]))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    import torch

    torch.save(cnn[0].state_dict(), out.with_suffix(".pt"))
    np.savez(out.with_suffix(".norm.npz"), mu=cnn[1], sd=cnn[2])
    return res


def run_logo(work: Path, cache: Path, names: list, unseen: str, *, epochs: int, check: int, out: Path) -> dict:
    """Leave one generator out with the CNN scorer (session 13's check, :func:`hull_select_train.generator_folds`):
    trained on two generators' folders, its vote scored on the third's CRF 23 / 40 pairs; then trained on all
    three, scored on ``unseen`` (the foreign generator's operations no scorer trains on), named ``unseen``."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in names + ([unseen] if unseen else []):
        if not (cache / f"{name}.npz").is_file():
            build_cache(work / name, work / f"{name}.npz", cache / f"{name}.npz", check=check)
    data = load(cache, names + ([unseen] if unseen else []))
    if unseen:
        data["generator"][data["name"] == unseen] = "unseen"
    gens = list(dict.fromkeys(generator_of(n) for n in names))
    folds = hst.generator_folds(gens, extra=("unseen",) if unseen else ())
    res = []
    for train_set, val_set in folds:
        tr = hst.subset(data, np.isin(data["generator"], train_set))
        va = hst.subset(data, np.isin(data["generator"], val_set) & np.isin(data["compression"], ("c23", "c40")))
        log(f"fold {train_set} -> {val_set}: {len(tr['y'])} training candidates")
        cnn = train_cnn(tr, epochs=epochs)
        cells = score({"cnn": predict_cnn(cnn, va)}, va)
        res.append({"train": list(train_set), "val": list(val_set), "cells": cells})
        log(json.dumps(res[-1]))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    held = {c: v for r in res if r["val"] != ["unseen"] for c, v in r["cells"].items()}
    return {"folds": res, "summary": summary(held, ["cnn"])}


def errors(preds: dict, data: dict, pick: np.ndarray) -> dict:
    """Where each scorer's vote loses to the oracle on the samples ``pick``: mean precision and recall of the vote
    and of the oracle's candidate against the truth, the vote's area over the truth's (median), and the share of
    samples the vote loses over 0.1 IoU to the oracle (of them: share with the vote's area over 1.5x the truth's,
    the "too large" failures, and under 0.67x, the "too small" ones)."""
    from ffmask.targets.hull_select import fuse

    group, y = data["group"], data["y"]
    starts = np.searchsorted(group, np.arange(len(pick)), side="left")
    ends = np.searchsorted(group, np.arange(len(pick)), side="right")
    rows = {name: [] for name in list(preds) + ["oracle"]}
    for g in np.flatnonzero(pick):
        a, b = starts[g], ends[g]
        (h, w), (H, W) = data["small"][g], data["crop"][g]
        truth = np.unpackbits(data["truth"][g])[:H * W].reshape(H, W).astype(bool)
        masks = np.unpackbits(data["masks"][a:b], axis=1)[:, :h * w].reshape(b - a, h, w).astype(bool)
        best = float(y[a:b].max())
        for name in rows:
            m = (hc.to_crop(masks[int(np.argmax(y[a:b]))], (H, W)) if name == "oracle"
                 else fuse(masks, preds[name][a:b], (H, W)))
            inter = float((m & truth).sum())
            iou = inter / max(float((m | truth).sum()), 1.0)
            rows[name].append((inter / max(m.sum(), 1), inter / max(truth.sum(), 1), m.sum() / max(truth.sum(), 1),
                               best - iou))
    out = {}
    for name, r in rows.items():
        r = np.array(r)
        lost = r[:, 3] > 0.1
        out[name] = {"precision": round(float(r[:, 0].mean()), 4), "recall": round(float(r[:, 1].mean()), 4),
                     "area_over_truth": round(float(np.median(r[:, 2])), 3), "lost_0.1": round(float(lost.mean()), 3),
                     "lost_too_large": round(float((lost & (r[:, 2] > 1.5)).mean()), 3),
                     "lost_too_small": round(float((lost & (r[:, 2] < 1 / 1.5)).mean()), 3)}
    return out


def area_known(pred: np.ndarray, data: dict, ratio: float = 1.5) -> np.ndarray:
    """``pred`` with every candidate whose area is off the true area by more than ``ratio`` (either way) pushed 1
    below the rest: the vote of a scorer told the edit's extent (a pair without such a candidate keeps its order)."""
    crop = data["crop"]
    truth_share = np.array([np.unpackbits(t)[:h * w].mean() for t, (h, w) in zip(data["truth"], crop)])
    share = data["planes"].reshape(len(data["planes"]), -1).mean(1) / 255.0
    off = np.abs(np.log(np.maximum(share, 1e-6) / np.maximum(truth_share[data["group"]], 1e-6))) > np.log(ratio)
    return pred - off


def analyse(cache: Path, test: list, train: list, saved: Path, out: Path) -> dict:
    """After :func:`run`: the trees refitted (same rows, same seed), the saved CNN reloaded; both scorers' votes on
    their own training pairs (the first folders' even pairs at CRF 23 / 40: how far the inputs let a scorer fit
    the choice at all), :func:`errors` on the held-out pairs and their votes told the true area (:func:`area_known`)."""
    import torch

    is_test = set(test)
    tr = load(cache, test + train, lambda name, pair: (pair % 2 == 0) | (name not in is_test))
    trees = hst.fit(tr["x"], tr["y"])
    net = hull_cnn.build_net(tr["x"].shape[1])
    net.load_state_dict(torch.load(saved.with_suffix(".pt")))
    net.eval()
    with np.load(saved.with_suffix(".norm.npz")) as fh:
        cnn = (net, fh["mu"], fh["sd"])
    res = {}
    for part, keep in (("training pairs", lambda name, pair: pair % 2 == 0),
                       ("held-out pairs", lambda name, pair: pair % 2 == 1)):
        d = load(cache, test, keep)
        d = hst.subset(d, np.isin(d["compression"], ("c23", "c40")))
        preds = {"trees": hst.predict(trees, d["x"]), "cnn": predict_cnn(cnn, d)}
        cells = score(preds, d)
        res[part] = {"summary": summary(cells, list(preds))}
        if part == "held-out pairs":
            res[part]["errors"] = {comp: errors(preds, d, d["compression"] == comp) for comp in ("c23", "c40")}
            told = {f"{name}, area known to 1.5x": area_known(p, d) for name, p in preds.items()}
            res[part]["area_known"] = summary(score(told, d), list(told))
        log(json.dumps({part: res[part]}))
    out.write_text(json.dumps(res, indent=1))
    return res


def smoke(logo: bool = False) -> dict:
    """End to end on 4 fresh synth pairs (2 CRFs) split in two: builds, extracts, caches, trains 1 epoch, scores;
    with ``logo`` the two folders stand for two generators (``synth7``, ``other8``) held out in turn."""
    from ffmask.synth.pairs import build_pairs
    from ffmask.targets import hull_train

    tmp = Path(tempfile.mkdtemp(prefix="hull_cnn_diag_"))
    names = ("synth7", "other8")
    for name, seed in zip(names, (7, 8)):
        build_pairs(tmp / name, seed=seed, n=4, compressions=("c23", "c40"), overwrite=True, **hull_train.TUNING)
        np.savez(tmp / f"{name}.npz", **hst.extract([tmp / name], keep_masks=True, log=lambda s: None))
    if logo:
        return run_logo(tmp, tmp / "cache", list(names), "", epochs=1, check=4, out=tmp / "logo.json")
    return run(tmp, tmp / "cache", ["synth7"], ["other8"], epochs=1, check=4, out=tmp / "diag.json", max_iter=5,
               min_samples_leaf=5)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/masks11/work"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/masks12/cache"))
    p.add_argument("--test", nargs="+", default=["synth105", "foreign2101", "third3101"])
    p.add_argument("--train", nargs="+", default=["synth106", "foreign2102", "third3102"])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--check", type=int, default=5, help="pairs per folder whose candidates are regenerated")
    p.add_argument("--out", type=Path, default=Path("/tmp/masks12/diag.json"))
    p.add_argument("--logo", action="store_true", help="leave one generator out (the --test and --train folders) "
                   "and the --unseen folder, CNN only")
    p.add_argument("--unseen", default="foreign2105")
    p.add_argument("--analyse", action="store_true", help="after a run (--out): in-sample votes and error types")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    np.seterr(all="ignore")
    if a.smoke:
        res = smoke(logo=a.logo)
    elif a.analyse:
        res = analyse(a.cache, a.test, a.train, a.out, a.out.with_suffix(".analyse.json"))
        res = {"summary": {k: v["summary"] for k, v in res.items()}}
    elif a.logo:
        res = run_logo(a.work, a.cache, a.test + a.train, a.unseen, epochs=a.epochs, check=a.check, out=a.out)
    else:
        res = run(a.work, a.cache, a.test, a.train, epochs=a.epochs, check=a.check, out=a.out)
    shown = {"summary": res["summary"]}
    if "folds" in res:
        shown["held_out"] = [r["val"] for r in res["folds"]]
    print(json.dumps(shown, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
