"""Issue #10 diagnostic (session 15): does an estimate of the edit's extent per pair help hull's scorer choose?

Session 14 found that at c40 the vote of hull's candidates is too large on a
quarter of the pairs (median 1.69x the true area): the scorer takes
low-threshold masks that swallow the compression noise around the edit. This
script estimates the edit's extent per pair -- ``log(true area / face area)``
-- from the pair's own evidence, measured against the noise floor of its
background, and gives each candidate its area's distance to that estimate as
extra features of the shipped tree recipe.

1. **Pair-level evidence** (:func:`extent_features`, from
   :func:`ffmask.targets.hull_candidates.pair_evidence`): the residual in
   robust sigmas of the background, ``z = (d - med) / spread``; for each of
   the candidates' sigma levels (:data:`ffmask.targets.hull_candidates.KS`)
   the share of face pixels above it (the candidates' area-versus-threshold
   curve) and of background pixels above it (the noise floor's tail), and the
   *noise-floor excess* ``e(k) = (p_face(k) - p_bg(k)) / (1 - p_bg(k))``: if
   unedited face pixels exceed level k as often as background pixels do and an
   edited pixel at most always, at least the share ``e(k)`` of the face was
   edited. Their maximum over k (:func:`floor_estimate`) is an estimate that
   fits nothing; the shares of the face above the background's 99 / 99.9 %
   quantiles and maximum, and the pair's compression statistics (median,
   spread, low level, Otsu and peak over the low level), complete the vector.
2. **Extent regressor** (:func:`fit_extent`): small boosted trees from those
   features to ``log(true area / face area)``, fitted on training rows only;
   the training rows get out-of-fold estimates (folds by pair, so a pair's
   landmark variants and CRFs stay together), so the scorer does not learn to
   trust an in-sample estimate.
3. **Extent-aware scorer**: the shipped recipe
   (:func:`ffmask.targets.hull_select_train.fit`) on the 64 shipped features
   plus, per candidate (:func:`candidate_extent_features`), ``c - e`` (its
   log area over the face's minus the estimate), ``|c - e|`` and the rank of
   ``|c - e|`` within the pair (on float32-rounded values, so near-ties do not
   flip between machines); scored by the shipped vote next to the same recipe
   without them, fitted on the same rows.

The split is session 14's (``scripts/hull_cnn_diag.py``): on session 13's
cached folders, held out the odd pairs of each generator's first folder,
trained on the rest.

    python scripts/hull_extent_diag.py --estimate-only   # the estimate's accuracy on training rows (CV)
    python scripts/hull_extent_diag.py --out /tmp/masks13/gate.json   # the gate: both scorers' held-out votes
    python scripts/hull_extent_diag.py --analyse --out /tmp/masks13/analyse.json   # estimate or its use?
    python scripts/hull_extent_diag.py --correlation --out /tmp/masks13/correlation.json   # wrong together?
    python scripts/hull_extent_diag.py --logo --unseen foreign2105 --out /tmp/masks13/logo.json
    python scripts/hull_extent_diag.py --smoke            # a few fresh synth pairs, end to end

docs/hull_training.md, "An estimate of the edit's extent (session 15)".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ffmask.synth.pairs import read_pairs
from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_select_train as hst

#: names of :func:`extent_features`' columns
EXTENT_FEATURES = (tuple(f"log_face_gt{k:g}" for k in hc.KS) + tuple(f"log_bg_gt{k:g}" for k in hc.KS)
                   + tuple(f"excess_gt{k:g}" for k in hc.KS)
                   + tuple(f"coarse_log_face_gt{k:g}" for k in hc.KS) + tuple(f"coarse_excess_gt{k:g}" for k in hc.KS)
                   + ("coarse_log_floor_estimate", "log_largest_above_clean", "log_face_above_clean",
                      "log_floor_estimate", "log_face_gt_bg_q99", "log_face_gt_bg_q999", "log_face_gt_bg_max",
                      "log_med", "log_spread", "log_low_over_spread", "log_otsu_over_low", "log_peak_over_low",
                      "log_face_share", "landmarks"))
#: names of :func:`candidate_extent_features`' columns
CANDIDATE_EXTENT = ("extent_diff", "extent_absdiff", "extent_absdiff_rank")
FLOOR = 1e-3  # shares are floored at this before their log (a 96 px face has ~5000 pixels)
EXTENT_RANGE = (np.log(FLOOR), np.log(4.0))  # the target's clip range (truth can reach beyond the face region)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def generator_of(name: str) -> str:
    """``synth105`` -> ``synth``: the folder name without its seed."""
    return re.sub(r"\d+$", "", name)


def _log_share(v) -> np.ndarray:
    return np.log(np.maximum(np.asarray(v, np.float64), FLOOR))


COARSE = 0.03  # further Gaussian smoothing of the coarse-scale residual, fraction of the side
CLEAN = 0.005  # a level is "clean" where at most this share of the background crosses it


def excess_curve(ev: hc.Evidence, d: Optional[np.ndarray] = None,
                 noise: Optional[tuple] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shares of face and background pixels above each level of :data:`~ffmask.targets.hull_candidates.KS`
    robust sigmas of the background, and the noise-floor excess ``(p_face - p_bg) / (1 - p_bg)`` (clipped to
    [0, 1]): the least share of the face that must be edited if unedited face pixels cross a level as often as
    background pixels do. Each float64 (len(KS),); zeros for an empty face or background. ``d`` (default
    ``ev.d``) and its background ``noise`` (median, robust sigma; default ``ev``'s) give another scale."""
    ks = np.asarray(hc.KS)
    d = ev.d if d is None else d
    med, spread = (ev.med, ev.spread) if noise is None else noise
    spread = max(float(spread), 1e-6)
    z = (d.astype(np.float64) - med) / spread
    zf, zb = np.sort(z[ev.face]), np.sort(z[ev.outside])
    pf = 1.0 - np.searchsorted(zf, ks, side="right") / len(zf) if zf.size else np.zeros(len(ks))
    pb = 1.0 - np.searchsorted(zb, ks, side="right") / len(zb) if zb.size else np.zeros(len(ks))
    ex = np.clip((pf - pb) / np.maximum(1.0 - pb, 1e-6), 0.0, 1.0)
    return pf, pb, ex


def floor_estimate(ev: hc.Evidence) -> float:
    """The edit's share of the face from the noise floor alone (nothing fitted): the largest noise-floor excess
    over the candidates' sigma levels (:func:`excess_curve`), in [0, 1]."""
    return float(excess_curve(ev)[2].max())


def extent_features(ev: hc.Evidence) -> np.ndarray:
    """Pair-level evidence of the edit's extent, float64 (len(EXTENT_FEATURES),); see the module docstring."""
    import cv2

    from ffmask.targets import hull as _hull

    pf, pb, ex = excess_curve(ev)
    side = min(ev.d.shape)
    coarse = cv2.GaussianBlur(ev.d, (0, 0), COARSE * side, borderType=cv2.BORDER_REFLECT)
    cnoise = _hull.background_noise(coarse, ev.outside) if ev.outside.any() else (0.0, 1.0)
    cpf, cpb, cex = excess_curve(ev, coarse, cnoise)
    # the first level that the background's noise (almost) never crosses, and what of the face crosses it
    clean = np.flatnonzero(pb <= CLEAN)
    k = hc.KS[clean[0]] if clean.size else hc.KS[-1]
    above = ev.face & ((ev.d - ev.med) / max(float(ev.spread), 1e-6) > k)
    n_face = max(int(ev.face.sum()), 1)
    largest = 0
    if above.any():
        _, lab, st, _ = cv2.connectedComponentsWithStats(above.astype(np.uint8), connectivity=8)
        largest = int(st[1:, cv2.CC_STAT_AREA].max())
    spatial = _log_share([largest / n_face, above.sum() / n_face])
    d = ev.d.astype(np.float64)
    face, bg = d[ev.face], d[ev.outside]
    if bg.size and face.size:
        q99, q999, mx = np.quantile(bg, [0.99, 0.999, 1.0])
        above_q = [(face > q).mean() for q in (q99, q999, mx)]
    else:
        above_q = [0.0, 0.0, 0.0]
    low = max(float(ev.low), 1e-6)
    spread = max(float(ev.spread), 1e-6)
    stats = [np.log(max(float(ev.med), 1e-3)), np.log(spread), np.log(low / spread),
             np.log(max(float(ev.otsu), 1e-6) / low), np.log(max(float(ev.peak), 1e-6) / low),
             np.log(max(float(ev.face.mean()), FLOOR)), float(ev.landmarks)]
    return np.concatenate([_log_share(pf), _log_share(pb), ex, _log_share(cpf), cex, _log_share([cex.max()]),
                           spatial, _log_share([ex.max()]), _log_share(above_q), stats]).astype(np.float64)


def build_table(folder: Path, extract: dict, out: Path) -> dict:
    """:func:`extent_features`, the face's share of the working image and the true log extent of every sample of
    one extracted folder, in :func:`hull_select_train.extract`'s order (pairs in :func:`read_pairs` order, each
    with then without landmarks), saved to ``out``. Raises RuntimeError when a sample does not match the extract
    (compression, landmarks or working size)."""
    n = len(extract["region"])
    feats = np.zeros((n, len(EXTENT_FEATURES)))
    face_share = np.zeros(n)
    g = 0
    t0 = time.perf_counter()
    for s in read_pairs(folder):
        for lms in (s.landmarks, None):
            if (g >= n or extract["compression"][g] != s.compression
                    or bool(extract["landmarks"][g]) != (lms is not None)):
                raise RuntimeError(f"{folder}: sample {g} does not match its extract")
            ev = hc.pair_evidence(s.real, s.fake, lms)
            if tuple(extract["small"][g]) != ev.d.shape:
                raise RuntimeError(f"{folder}: sample {g}'s working size differs from the extract's")
            feats[g] = extent_features(ev)
            face_share[g] = float(ev.face.mean())
            g += 1
    if g != n:
        raise RuntimeError(f"{folder}: {g} samples read, the extract has {n}")
    table = {"feats": feats, "face_share": face_share, "target": true_extent(extract, face_share)}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **table)
    log(f"{folder.name}: extent evidence of {n} samples in {time.perf_counter() - t0:.0f} s")
    return table


def true_extent(data: dict, face_share: np.ndarray) -> np.ndarray:
    """``log(true area / face area)`` per sample (areas as shares of the crop / working image), clipped to
    :data:`EXTENT_RANGE`."""
    share = popcount(data["truth"]) / data["crop"].prod(1)
    return np.clip(np.log(np.maximum(share, 1e-9) / np.maximum(face_share, 1e-9)), *EXTENT_RANGE)


def load(work: Path, cache: Path, names, pick_pairs=None) -> dict:
    """Extracts of ``names`` (``work/NAME.npz``) joined with their extent tables (built into ``cache`` when
    missing) as ``extent_feats``, ``face_share``, ``extent``; plus ``generator``, ``name`` and ``pair`` (the
    pair's index in its folder); ``pick_pairs(name, pair index) -> bool`` selects samples."""
    parts = []
    for name in names:
        with np.load(work / f"{name}.npz") as fh:
            d = {k: fh[k] for k in fh.files if k not in ("folder", "rules")}
        path = cache / f"{name}.npz"
        if path.is_file():
            with np.load(path) as fh:
                table = {k: fh[k] for k in fh.files}
        else:
            table = build_table(work / name, d, path)
        d["extent_feats"], d["face_share"], d["extent"] = table["feats"], table["face_share"], table["target"]
        n = len(d["region"])
        comps = list(dict.fromkeys(d["compression"]))
        d["pair"] = (np.arange(n) // 2) % (n // (2 * len(comps)))
        d["generator"] = np.full(n, generator_of(name))
        d["name"] = np.full(n, name)
        if pick_pairs is not None:
            d = hst.subset(d, pick_pairs(name, d["pair"]))
        parts.append(d)
    return hst.concat(parts)


def fit_extent(feats: np.ndarray, target: np.ndarray, *, seed: int = 0, max_iter: int = 300):
    """The extent regressor: boosted trees from :func:`extent_features` to the true log extent (settings fixed
    before any figure; small, so ~5 k pairs do not overfit it)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=max_iter, learning_rate=0.05, max_leaf_nodes=15,
                                         min_samples_leaf=40, l2_regularization=1.0,
                                         random_state=seed).fit(feats, target)


def out_of_fold(feats: np.ndarray, target: np.ndarray, unit: np.ndarray, *, folds: int = 5, seed: int = 0,
                max_iter: int = 300) -> np.ndarray:
    """Estimates of every row from a regressor that never saw its ``unit`` (e.g. its pair): ``folds`` folds over
    the units in a fixed random order."""
    units, inv = np.unique(unit, return_inverse=True)
    fold_of = np.random.default_rng(seed).permutation(len(units)) % folds
    out = np.zeros(len(target))
    for f in range(folds):
        held = fold_of[inv] == f
        if held.any() and (~held).any():
            out[held] = fit_extent(feats[~held], target[~held], seed=seed, max_iter=max_iter).predict(feats[held])
    return out


def candidate_extent_features(data: dict, estimate: np.ndarray) -> np.ndarray:
    """Per candidate (float32 (M, 3), :data:`CANDIDATE_EXTENT`): its log area over the face's minus its sample's
    ``estimate``, the absolute value, and the latter's rank within the sample (0 the closest, 1 the farthest;
    on values rounded to 1e-4 so that float32 near-ties rank alike everywhere; ties keep the candidates' order)."""
    group = data["group"]
    share = popcount(data["masks"]) / data["small"][group].prod(1)  # packbits pads with zeros
    c = np.log(np.maximum(share, FLOOR) / np.maximum(data["face_share"][group], 1e-9))
    diff = c - estimate[group]
    ad = np.round(np.abs(diff).astype(np.float32), 4)
    rank = np.zeros(len(group))
    order = np.lexsort((np.arange(len(group)), ad, group))
    g = group[order]
    start = np.searchsorted(g, g, side="left")
    count = np.searchsorted(g, g, side="right") - start
    rank[order] = (np.arange(len(order)) - start) / np.maximum(count - 1, 1)
    return np.stack([diff, np.abs(diff), rank], 1).astype(np.float32)


_POP = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def popcount(bits: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Set bits per row of a packed uint8 (M, B) array, int64 (M,)."""
    out = np.zeros(len(bits), np.int64)
    for a in range(0, len(bits), chunk):
        out[a:a + chunk] = _POP[bits[a:a + chunk]].sum(1, dtype=np.int64)
    return out


def accuracy(estimate: np.ndarray, target: np.ndarray) -> dict:
    """How well ``estimate`` predicts the true log extent: median |error| (log), share within 1.5x and 2x,
    correlation, mean error (bias)."""
    err = estimate - target
    return {"n": int(len(err)), "median_abs_log_err": round(float(np.median(np.abs(err))), 3),
            "within_1.5x": round(float(np.mean(np.abs(err) <= np.log(1.5))), 3),
            "within_2x": round(float(np.mean(np.abs(err) <= np.log(2.0))), 3),
            "corr": round(float(np.corrcoef(estimate, target)[0, 1]), 3) if len(err) > 2 else float("nan"),
            "bias": round(float(err.mean()), 3)}


def accuracy_table(estimate: np.ndarray, data: dict) -> dict:
    """:func:`accuracy` overall and per generator x compression (CRF 23 / 40 where present)."""
    out = {"all": accuracy(estimate, data["extent"])}
    for gen in dict.fromkeys(data["generator"]):
        for comp in ("c23", "c40"):
            pick = (data["generator"] == gen) & (data["compression"] == comp)
            if pick.sum() > 2:
                out[f"{gen}/{comp}"] = accuracy(estimate[pick], data["extent"][pick])
    return out


def estimate_report(tr: dict, *, max_iter: int = 300) -> dict:
    """On training rows only: the floor estimate (nothing fitted) and the regressor out of fold by pair, and
    leave one generator out within the training rows (transfer), each against the true extent."""
    unit = np.char.add(tr["name"].astype(str), tr["pair"].astype(str))
    floor = tr["extent_feats"][:, EXTENT_FEATURES.index("log_floor_estimate")]
    res = {"floor estimate (not fitted)": accuracy_table(floor, tr),
           "regressor, out of fold by pair": accuracy_table(out_of_fold(tr["extent_feats"], tr["extent"], unit,
                                                                          max_iter=max_iter), tr)}
    logo = np.zeros(len(tr["extent"]))
    for gen in dict.fromkeys(tr["generator"]):
        held = tr["generator"] == gen
        if (~held).any():
            logo[held] = fit_extent(tr["extent_feats"][~held], tr["extent"][~held],
                                    max_iter=max_iter).predict(tr["extent_feats"][held])
    res["regressor, other generators only"] = accuracy_table(logo, tr)
    res["constant (training mean)"] = accuracy_table(np.full(len(logo), tr["extent"].mean()), tr)
    return res


def with_extent(tr: dict, va: dict, *, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training x, held-out x) with :data:`CANDIDATE_EXTENT` appended, and the held-out estimates: training rows
    use out-of-fold estimates (by pair), held-out rows the regressor fitted on every training row."""
    unit = np.char.add(tr["name"].astype(str), tr["pair"].astype(str))
    est_tr = out_of_fold(tr["extent_feats"], tr["extent"], unit, max_iter=max_iter)
    est_va = fit_extent(tr["extent_feats"], tr["extent"], max_iter=max_iter).predict(va["extent_feats"])
    xtr = np.concatenate([tr["x"], candidate_extent_features(tr, est_tr)], 1)
    xva = np.concatenate([va["x"], candidate_extent_features(va, est_va)], 1)
    return xtr, xva, est_va


def score(preds: dict, data: dict, compressions=("c23", "c40")) -> dict:
    """Per generator x compression x landmarks: n, each scorer's vote IoU and the candidate oracle."""
    orc = hst.oracle_scores(data)
    out = {}
    for key, pick in hst.generator_cells(data, compressions):
        cell = {"n": int(pick.sum()), "oracle": round(float(orc[pick].mean()), 4)}
        for name, p in preds.items():
            cell[name] = round(float(hst.fused_scores(p, data, pick).mean()), 4)
        out[key] = cell
    return out


def summary(cells: dict, names) -> dict:
    """Mean over generators and landmarks per compression of each scorer's vote and of the oracle."""
    out = {}
    for comp in sorted({c.split("/")[1] for c in cells}):
        rows = [v for c, v in cells.items() if c.split("/")[1] == comp]
        out[comp] = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ["oracle", *names]}
    return out


def split(work: Path, cache: Path, test: list, train: list) -> tuple[dict, dict]:
    """Session 14's split: held out the odd pairs of the ``test`` folders at CRF 23 / 40; training the even
    pairs of those and every pair of the ``train`` folders."""
    is_test = set(test)
    tr = load(work, cache, test + train, lambda name, pair: (pair % 2 == 0) | (name not in is_test))
    va = load(work, cache, test, lambda name, pair: pair % 2 == 1)
    return tr, hst.subset(va, np.isin(va["compression"], ("c23", "c40")))


def run_gate(work: Path, cache: Path, test: list, train: list, out: Path, *, max_iter: int = hst.MAX_ITER,
             min_samples_leaf: int = hst.MIN_SAMPLES_LEAF, extent_iter: int = 300) -> dict:
    """The gate: the shipped recipe with and without the extent features, fitted on the same training rows,
    their votes on the held-out pairs; plus the estimate's accuracy on the held-out pairs (after the votes)."""
    tr, va = split(work, cache, test, train)
    log(f"training: {len(tr['region'])} samples, {len(tr['y'])} candidates; held out: {len(va['region'])} samples")
    xtr, xva, est_va = with_extent(tr, va, max_iter=extent_iter)
    t0 = time.perf_counter()
    base = hst.fit(tr["x"], tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
    ext = hst.fit(xtr, tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
    log(f"both scorers fitted in {time.perf_counter() - t0:.0f} s")
    preds = {"trees": hst.predict(base, va["x"]), "extent": hst.predict(ext, xva)}
    cells = score(preds, va)
    res = {"cells": cells, "summary": summary(cells, list(preds)),
           "estimate_held_out": accuracy_table(est_va, va),
           "train_samples": int(len(tr["region"])), "test_samples": int(len(va["region"]))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def run_logo(work: Path, cache: Path, names: list, unseen: str, out: Path, *, max_iter: int = hst.MAX_ITER,
             min_samples_leaf: int = hst.MIN_SAMPLES_LEAF, extent_iter: int = 300) -> dict:
    """Session 13's leave-one-generator-out check with and without the extent features (the regressor refitted
    inside each fold on its training rows only); ``unseen`` (if given) held out from a scorer trained on all."""
    data = load(work, cache, names + ([unseen] if unseen else []))
    if unseen:
        data["generator"][data["name"] == unseen] = "unseen"
    gens = list(dict.fromkeys(generator_of(n) for n in names))
    res = []
    for train_set, val_set in hst.generator_folds(gens, extra=("unseen",) if unseen else ()):
        tr = hst.subset(data, np.isin(data["generator"], train_set))
        va = hst.subset(data, np.isin(data["generator"], val_set) & np.isin(data["compression"], ("c23", "c40")))
        xtr, xva, _ = with_extent(tr, va, max_iter=extent_iter)
        base = hst.fit(tr["x"], tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
        ext = hst.fit(xtr, tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
        cells = score({"trees": hst.predict(base, va["x"]), "extent": hst.predict(ext, xva)}, va)
        res.append({"train": list(train_set), "val": list(val_set), "cells": cells})
        log(json.dumps(res[-1]))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    held = {c: v for r in res if r["val"] != ["unseen"] for c, v in r["cells"].items()}
    return {"folds": res, "summary": summary(held, ["trees", "extent"])}


def pushed_off(pred: np.ndarray, data: dict, estimate: np.ndarray, ratio: float = 1.5) -> np.ndarray:
    """``pred`` with every candidate whose area is off ``estimate`` (log area over the face's) by more than
    ``ratio`` either way pushed 1 below the rest (a hard prior on the vote; a sample without a candidate within
    ``ratio`` keeps its order). With the true extent this is session 14's "told the true area"."""
    off = np.abs(candidate_extent_features(data, estimate)[:, 0]) > np.log(ratio)
    return pred - off


def too_large(pred: np.ndarray, data: dict, pick: np.ndarray, ratio: float = 1.5) -> float:
    """Share of the samples ``pick`` whose vote loses over 0.1 IoU to the best candidate with an area over
    ``ratio`` times the truth's (session 14's main failure at c40)."""
    best = np.full(len(pick), -np.inf)
    np.maximum.at(best, data["group"], data["y"])  # each sample's best candidate IoU
    bad = []
    for g, vote in hst.sample_votes(pred, data, pick):
        if vote is None:  # no candidate: no vote to be too large
            bad.append(False)
            continue
        truth = hst.truth_mask(data, g)
        iou = (vote & truth).sum() / max((vote | truth).sum(), 1)
        bad.append(float(best[g]) - iou > 0.1 and vote.sum() > ratio * truth.sum())
    return round(float(np.mean(bad)), 3)


def analyse(work: Path, cache: Path, test: list, train: list, out: Path, *, noise=(0.2, 0.4),
            max_iter: int = hst.MAX_ITER, min_samples_leaf: int = hst.MIN_SAMPLES_LEAF, extent_iter: int = 300,
            seed: int = 0) -> dict:
    """After the gate (diagnostic, not a candidate): did the estimate or its use fail? On the same split, the
    extent features built from (a) the true extent, (b) the true extent plus Gaussian noise of each ``noise``
    (log units, an estimate of known quality, drawn per sample for training and held-out rows alike), (c) the
    regressor's estimate (the gated configuration); each fed to the same tree recipe; and the baseline trees'
    predictions with a hard prior (:func:`pushed_off`) from the true extent and from the estimate. Per variant the
    held-out summary and the share of "too large" losses at c40."""
    tr, va = split(work, cache, test, train)
    rng = np.random.default_rng(seed)
    base = hst.fit(tr["x"], tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
    p_base = hst.predict(base, va["x"])
    _, _, est_va = with_extent(tr, va, max_iter=extent_iter)
    preds = {"trees": p_base,
             "trees, prior from the true extent (1.5x)": pushed_off(p_base, va, va["extent"]),
             "trees, prior from the estimate (1.5x)": pushed_off(p_base, va, est_va)}
    sources = {"true extent": (tr["extent"], va["extent"])}
    for s in noise:
        sources[f"true extent + noise {s:g}"] = (tr["extent"] + rng.normal(0, s, len(tr["extent"])),
                                                 va["extent"] + rng.normal(0, s, len(va["extent"])))
    for name, (e_tr, e_va) in sources.items():
        xtr = np.concatenate([tr["x"], candidate_extent_features(tr, e_tr)], 1)
        xva = np.concatenate([va["x"], candidate_extent_features(va, e_va)], 1)
        preds[f"features from the {name}"] = hst.predict(
            hst.fit(xtr, tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf), xva)
        log(f"fitted with the {name}")
    cells = score(preds, va)
    c40 = va["compression"] == "c40"
    res = {"summary": summary(cells, list(preds)), "cells": cells,
           "too_large_c40": {name: too_large(p, va, c40) for name, p in preds.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def vote_log_area(pred: np.ndarray, data: dict, pick: np.ndarray) -> np.ndarray:
    """Per sample of ``pick``: log(area of the vote / true area) (areas floored at one pixel)."""
    return np.array([np.log(max(0 if vote is None else vote.sum(), 1) / max(popcount(data["truth"][g:g + 1])[0], 1))
                     for g, vote in hst.sample_votes(pred, data, pick)])


def error_correlation(work: Path, cache: Path, test: list, train: list, out: Path, *,
                      max_iter: int = hst.MAX_ITER, min_samples_leaf: int = hst.MIN_SAMPLES_LEAF,
                      extent_iter: int = 300) -> dict:
    """After the gate (diagnostic): on the held-out pairs, per compression, the correlation between the
    estimate's log error and the shipped recipe's vote's log area error (log vote area / true area): whether the
    estimate is wrong where the scorer already is. Also both errors' medians and the correlation on the pairs
    whose vote is over 1.5x too large."""
    tr, va = split(work, cache, test, train)
    base = hst.fit(tr["x"], tr["y"], max_iter=max_iter, min_samples_leaf=min_samples_leaf)
    p_base = hst.predict(base, va["x"])
    _, _, est_va = with_extent(tr, va, max_iter=extent_iter)
    res = {}
    for comp in ("c23", "c40"):
        pick = va["compression"] == comp
        vote = vote_log_area(p_base, va, pick)
        err = (est_va - va["extent"])[pick]
        big = vote > np.log(1.5)
        res[comp] = {"n": int(pick.sum()), "corr": round(float(np.corrcoef(vote, err)[0, 1]), 3),
                     "median_vote_log_area_error": round(float(np.median(vote)), 3),
                     "median_estimate_log_error": round(float(np.median(err)), 3),
                     "vote_over_1.5x": round(float(big.mean()), 3),
                     "estimate_over_1.5x_where_vote_is": round(float(np.mean(err[big] > np.log(1.5))), 3)
                     if big.any() else None,
                     "estimate_within_1.5x_where_vote_is_over": round(float(np.mean(np.abs(err[big]) <= np.log(1.5))), 3)
                     if big.any() else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return {"summary": res}


def smoke(logo: bool = False, diagnose: bool = False) -> dict:
    """End to end on 4 fresh synth pairs per folder (2 CRFs): builds, extracts, tables, fits tiny models, scores;
    with ``logo`` the two folders stand for two generators held out in turn; with ``diagnose`` :func:`analyse`."""
    from ffmask.synth.pairs import build_pairs
    from ffmask.targets import hull_train

    tmp = Path(tempfile.mkdtemp(prefix="hull_extent_diag_"))
    names = ["synth7", "other8"]
    for name, seed in zip(names, (7, 8)):
        build_pairs(tmp / name, seed=seed, n=4, compressions=("c23", "c40"), overwrite=True, **hull_train.TUNING)
        np.savez(tmp / f"{name}.npz", **hst.extract([tmp / name], keep_masks=True, log=lambda s: None))
    kw = {"max_iter": 5, "min_samples_leaf": 5, "extent_iter": 5}
    if logo:
        return run_logo(tmp, tmp / "cache", names, "", tmp / "logo.json", **kw)
    if diagnose:
        return analyse(tmp, tmp / "cache", names[:1], names[1:], tmp / "analyse.json", **kw)
    res = run_gate(tmp, tmp / "cache", names[:1], names[1:], tmp / "gate.json", **kw)
    tr, _ = split(tmp, tmp / "cache", names[:1], names[1:])
    res["estimate_training"] = estimate_report(tr, max_iter=5)
    return res


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/masks11/work"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/masks13/cache"))
    p.add_argument("--test", nargs="+", default=["synth105", "foreign2101", "third3101"])
    p.add_argument("--train", nargs="+", default=["synth106", "foreign2102", "third3102"])
    p.add_argument("--out", type=Path, default=Path("/tmp/masks13/gate.json"))
    p.add_argument("--estimate-only", action="store_true",
                   help="the estimate's accuracy on the training rows only (no held-out figure)")
    p.add_argument("--logo", action="store_true", help="leave one generator out (the --test and --train folders)")
    p.add_argument("--unseen", default="foreign2105")
    p.add_argument("--analyse", action="store_true", help="after the gate: the extent features from the truth, "
                   "from the truth plus noise and from the estimate, and a hard prior on the vote (diagnostic)")
    p.add_argument("--correlation", action="store_true", help="after the gate: is the estimate wrong where the "
                   "shipped recipe's vote is? (diagnostic)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.4],
                   help="--analyse: log-unit noise levels added to the true extent")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    np.seterr(all="ignore")
    if a.smoke:
        res = smoke(logo=a.logo, diagnose=a.analyse)
    elif a.estimate_only:
        tr, _ = split(a.work, a.cache, a.test, a.train)
        res = {"summary": estimate_report(tr)}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
    elif a.correlation:
        res = error_correlation(a.work, a.cache, a.test, a.train, a.out)
    elif a.analyse:
        res = analyse(a.work, a.cache, a.test, a.train, a.out, noise=tuple(a.noise))
    elif a.logo:
        res = run_logo(a.work, a.cache, a.test + a.train, a.unseen, a.out)
    else:
        res = run_gate(a.work, a.cache, a.test, a.train, a.out)
    print(json.dumps({"summary": res["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
