"""Training recipe of ``hull``'s candidate scorer (:mod:`ffmask.targets.hull_select`).

Reproduces ``ffmask/targets/weights/hull_select.npz`` from scratch
(``python scripts/train_hull_select.py``; docs/hull_training.md):

1. **Data**: single-frame synth family pairs (:func:`ffmask.synth.pairs.build_pairs`)
   of the *tuning* half only (:data:`ffmask.targets.hull_train.TUNING`:
   regions hull, nose, cheek, forehead; operations resample, blur, color,
   noise, expression; Biden and Collins), seeds and CRFs of
   :data:`TRAIN_SETS` (hull-net's four seeds 101-104 and six more,
   105-110; CRF 18-45; never the report seeds 21-29), plus the tuning
   benchmark folder (seed 11, CRF 23 / 40), plus (session 9) pairs of a
   *second generator*, ``benchmarks/foreign_pairs.py --people tuning``:
   the same tuning people, forged by :data:`FOREIGN_OPERATIONS` (inpaint,
   smooth, bulge, relight) in ellipse regions with ramp / multiband / hard
   blends, seeds and CRFs of :data:`FOREIGN_SETS` (never its report seeds
   2000-2002), plus (session 10) pairs of a *third generator*,
   ``scripts/segment_pairs.py`` (the same tuning people; SLIC-superpixel,
   Delaunay-triangle, polygon and brush-stroke regions; denoise, tone,
   histmatch, posterize, median, chroma, pattern, paste and elastic
   operations; hard, noisy-matte and spill blends), seeds and CRFs of
   :data:`THIRD_SETS`, so the scorer does not learn one or two
   generators' notion of a forgery.
2. **Samples** (:func:`extract`): every pair twice, with and without its
   landmarks; per pair every candidate mask
   (:func:`ffmask.targets.hull_candidates.candidate_masks`), its features
   (:func:`ffmask.targets.hull_features.candidate_features`) and its
   label, the candidate's true IoU at the crop size.
3. **Scorer** (:func:`fit`): gradient-boosted trees regressing the IoU
   (:class:`sklearn.ensemble.HistGradientBoostingRegressor`, :data:`MAX_ITER`
   trees of at most :data:`MAX_LEAF_NODES` leaves, fixed seed), exported to plain arrays
   (:func:`trees_to_arrays`, :func:`export`); the mask is the candidates'
   vote weighted by their predicted IoU (:func:`ffmask.targets.hull_select.fuse`).
4. **Model selection** (:func:`leave_out`): trained on two of the four
   tuning regions (or on some tuning operations), scored on the others in
   the seed-11 folder -- the argmax candidate (``select``) and, when the
   validation extract kept its masks, the vote (``fused``,
   :func:`fused_scores`) -- against the hand rules and the candidate set's
   oracle (its best candidate by the truth).
5. **Transfer check** (:func:`leave_generator_out`, session 13): trained on
   two generators' tuning folders (:data:`LOGO_SETS`), the vote scored on
   the third's, each held out once, and on the foreign generator's unseen
   operations (:data:`LOGO_UNSEEN`) held out from all three; the selection
   check for a scorer meant to carry to generators it has not seen.

Reproducible up to floating point only: a few rim features differ by
~1e-7 between runs (float32 BLAS sums), which changes tie-breaks in the
boosting, so a rerun gives trees that predict almost the same (correlation
0.999) but are not bit-identical (docs/hull_training.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ffmask.metrics import pixel_iou
from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_features as hf
from ffmask.targets import hull_train
from ffmask.targets.hull_train import FOLDS

__all__ = ["REGION_FOLDS", "OPERATION_FOLDS", "TRAIN_SETS", "FOREIGN_SETS", "FOREIGN_OPERATIONS", "FOREIGN_N",
           "THIRD_SETS", "THIRD_N", "MAX_ITER", "MAX_LEAF_NODES", "MIN_SAMPLES_LEAF",
           "extract", "concat", "fit", "trees_to_arrays", "predict", "export", "select_scores", "fused_scores",
           "sample_votes", "truth_mask", "subset", "generator_cells", "oracle_scores", "leave_out", "LOGO_SETS", "LOGO_N",
           "LOGO_UNSEEN", "LOGO_UNSEEN_N",
           "LOGO_UNSEEN_OPERATIONS", "generator_folds", "leave_generator_out", "average_models", "logo_summary"]

Log = Callable[[str], None]
#: leave-families-out folds inside the tuning half: train on the first set, score on the second
REGION_FOLDS = FOLDS  # hull-net's leave-regions-out folds
OPERATION_FOLDS = ((("resample", "blur", "color"), ("noise", "expression")),
                   (("noise", "expression"), ("resample", "blur", "color")))
#: (seed, compressions) of the scorer's training folders, 400 pairs each: hull-net's four
#: (:data:`ffmask.targets.hull_train.TRAIN_SETS`) and six more seeds of the same tuning families
TRAIN_SETS = hull_train.TRAIN_SETS + ((105, ("c18", "c32", "c44")), (106, ("c21", "c36", "c41")),
                                      (107, ("c24", "c29", "c43")), (108, ("c22", "c34", "c40")),
                                      (109, ("c19", "c37", "c42")), (110, ("c26", "c31", "c45")))
#: (seed, compressions) of the out-of-generator training folders (benchmarks/foreign_pairs.py, tuning people,
#: :data:`FOREIGN_OPERATIONS` only), :data:`FOREIGN_N` pairs each
FOREIGN_SETS = ((2101, ("c18", "c30", "c42")), (2102, ("c23", "c35", "c45")),
                (2103, ("c20", "c27", "c40")), (2104, ("c25", "c33", "c38")))
#: the foreign generator's operations in the training data (its other four -- swirl, morph, mirror, recolor --
#: stay unseen, for checks)
FOREIGN_OPERATIONS = ("inpaint", "smooth", "bulge", "relight")
FOREIGN_N = 300
#: (seed, compressions) of the third generator's training folders (scripts/segment_pairs.py: tuning people,
#: every region, operation and blend of it), :data:`THIRD_N` pairs each; joined after the foreign folders
THIRD_SETS = ((3101, ("c19", "c31", "c43")), (3102, ("c22", "c34", "c44")),
              (3103, ("c21", "c28", "c39")), (3104, ("c24", "c36", "c45")))
THIRD_N = 300
MAX_ITER = 300  # boosted trees
MAX_LEAF_NODES = 63  # leaves per tree, at most
MIN_SAMPLES_LEAF = 200  # candidates per leaf, at least


def extract(folders: Sequence[Path], *, limit: Optional[int] = None, baselines: bool = False,
            keep_masks: bool = False, log: Log = print) -> dict:
    """Candidates' features and true IoUs of every pair in ``folders``, with and without landmarks.

    Returns a dict of arrays over candidates -- ``x`` float32 (M, F), ``y``
    float32 (M,) the true IoU, ``group`` int (M,) the sample each belongs
    to -- and over samples (G): ``region``, ``operation``, ``compression``,
    ``folder`` (str), ``landmarks`` (bool), and with ``baselines`` the
    IoU of the rules (:func:`ffmask.targets.hull.hull_rules_mask`) and of MSCC.
    With ``keep_masks`` also what :func:`fused_scores` needs: ``masks``
    uint8 (M, B) every candidate's bits (``np.packbits``, working size),
    ``truth`` uint8 (G, B') the true mask's bits, ``small`` and ``crop``
    int (G, 2) the working and crop sizes.
    """
    from ffmask.synth.pairs import read_pairs
    from ffmask.targets.hull import hull_rules_mask
    from ffmask.targets.mscc import mscc_mask

    xs, ys, groups = [], [], []
    meta = {k: [] for k in ("region", "operation", "compression", "folder", "landmarks", "rules", "mscc")}
    kept = {k: [] for k in ("masks", "truth", "small", "crop")}
    t0 = time.perf_counter()
    g = 0
    for folder in folders:
        for i, s in enumerate(read_pairs(folder)):
            if limit is not None and i >= limit:
                break
            mscc = mscc_mask(s.real, s.fake)
            for lms in (s.landmarks, None):
                ev = hc.pair_evidence(s.real, s.fake, lms)
                masks, info = hc.candidate_masks(ev, mscc)
                x = hf.candidate_features(ev, masks, info)
                y = np.array([pixel_iou(hc.to_crop(m, s.truth.shape), s.truth) for m in masks], np.float32)
                xs.append(x)
                ys.append(y)
                groups.append(np.full(len(x), g, np.int32))
                meta["region"].append(s.record["params"]["region"])
                meta["operation"].append(s.record["params"]["operation"])
                meta["compression"].append(s.compression)
                meta["folder"].append(Path(folder).name)
                meta["landmarks"].append(lms is not None)
                meta["rules"].append(pixel_iou(hull_rules_mask(s.real, s.fake, lms), s.truth) if baselines
                                     else np.nan)
                meta["mscc"].append(pixel_iou(mscc, s.truth))
                if keep_masks:
                    kept["masks"].append(np.packbits(masks.reshape(len(masks), ev.d.size), axis=1))
                    kept["truth"].append(np.packbits(s.truth))
                    kept["small"].append(ev.d.shape)
                    kept["crop"].append(s.truth.shape)
                g += 1
        log(f"candidates of {folder}: {g} samples so far, {time.perf_counter() - t0:.0f} s")
    out = {"x": np.concatenate(xs), "y": np.concatenate(ys), "group": np.concatenate(groups)}
    out.update({k: np.array(v) for k, v in meta.items()})
    if keep_masks:
        out["masks"] = np.concatenate(kept["masks"])
        out.update({k: np.array(kept[k]) for k in ("truth", "small", "crop")})
    return out


def concat(parts: Sequence[dict]) -> dict:
    """Join :func:`extract` outputs (sample indices of ``group`` renumbered; keys all parts have)."""
    out, groups, offset = {}, [], 0
    for part in parts:
        groups.append(part["group"] + offset)
        offset += len(part["region"])
    out["group"] = np.concatenate(groups)
    for k in parts[0]:
        if k != "group" and all(k in p for p in parts):
            out[k] = np.concatenate([p[k] for p in parts])
    return out


def fit(x: np.ndarray, y: np.ndarray, *, seed: int = 0, max_iter: int = MAX_ITER, learning_rate: float = 0.1,
        max_leaf_nodes: int = MAX_LEAF_NODES, min_samples_leaf: int = MIN_SAMPLES_LEAF, l2_regularization: float = 0.0,
        sample_weight: Optional[np.ndarray] = None, monotonic: Optional[dict] = None,
        max_features: float = 1.0) -> dict:
    """Fit the gradient-boosted scorer (squared-error regression of ``y``); returns its trees as arrays
    (:func:`trees_to_arrays`).

    ``x`` (M, F), ``y`` (M,) and ``sample_weight`` (M,) or None, over candidates. ``monotonic`` maps
    feature names (:data:`ffmask.targets.hull_features.FEATURES`) to +1 / -1: the predicted IoU may only
    rise / fall with them. ``max_features`` is the share of the features each split may choose from
    (drawn at random per split; 1.0: all).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(max_iter=int(max_iter), learning_rate=learning_rate,
                                          max_leaf_nodes=max_leaf_nodes, min_samples_leaf=min_samples_leaf,
                                          l2_regularization=l2_regularization, early_stopping=False,
                                          random_state=seed, monotonic_cst=_monotonic(monotonic, x.shape[1]),
                                          max_features=max_features)
    model.fit(np.asarray(x, np.float64), np.asarray(y, np.float64),
              sample_weight=None if sample_weight is None else np.asarray(sample_weight, np.float64))
    return trees_to_arrays(model)


def _monotonic(signs: Optional[dict], n_features: int) -> Optional[np.ndarray]:
    if not signs:
        return None
    bad = [f for f, s in signs.items() if f not in hf.FEATURES or s not in (-1, 1)]
    if bad or n_features != len(hf.FEATURES):
        raise ValueError(f"monotonic constraints need the {len(hf.FEATURES)} named features and signs +-1: {bad}")
    cst = np.zeros(n_features, np.int8)
    for f, s in signs.items():
        cst[hf.FEATURES.index(f)] = s
    return cst


def trees_to_arrays(model) -> dict:
    """A fitted :class:`~sklearn.ensemble.HistGradientBoostingRegressor` as plain arrays.

    Returns ``feature`` int16 (T, N), ``threshold`` float64 (T, N) (go left
    when ``x <= threshold``), ``left``, ``right`` int16 (T, N), ``leaf``
    uint8 (T, N), ``value`` float64 (T, N) and ``baseline`` float64 (1,):
    T trees padded to N nodes (padding nodes are leaves of value 0).
    Categorical splits are not supported (the features are all numeric).
    Reads the fitted model's per-tree node arrays (``_predictors``,
    ``_baseline_prediction``: scikit-learn's private layout, as of 1.9); the test suite
    checks the exported trees predict as the model does.
    """
    trees = [p[0].nodes for p in model._predictors]
    if any(t["is_categorical"].any() for t in trees):
        raise ValueError("categorical splits cannot be exported")
    n = max(len(t) for t in trees)
    out = {"feature": np.zeros((len(trees), n), np.int16), "threshold": np.zeros((len(trees), n), np.float64),
           "left": np.zeros((len(trees), n), np.int16), "right": np.zeros((len(trees), n), np.int16),
           "leaf": np.ones((len(trees), n), np.uint8), "value": np.zeros((len(trees), n), np.float64)}
    for i, t in enumerate(trees):
        k = len(t)
        out["feature"][i, :k] = t["feature_idx"]
        out["threshold"][i, :k] = t["num_threshold"]
        out["left"][i, :k] = t["left"]
        out["right"][i, :k] = t["right"]
        out["leaf"][i, :k] = t["is_leaf"]
        out["value"][i, :k] = t["value"]
    out["baseline"] = np.asarray(model._baseline_prediction, np.float64).reshape(1)
    return out


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    """Predicted IoU of feature rows ``x`` (K, F) (:func:`ffmask.targets.hull_select.score_candidates`)."""
    from ffmask.targets.hull_select import as_model, score_candidates

    return score_candidates(as_model(model), x)


def export(model: dict, path: Path, info: Optional[dict] = None) -> Path:
    """Write the scorer's arrays as a pickle-free ``.npz``, the feature names and ``info`` as a JSON header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"features": list(hf.FEATURES), "res": hc.RES, "info": info or {}}
    np.savez_compressed(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                        **{k: np.asarray(v) for k, v in model.items()})
    return path


def select_scores(pred: np.ndarray, data: dict, pick: np.ndarray) -> np.ndarray:
    """True IoU of the highest-predicted candidate of each sample where ``pick`` (over samples) is True.

    A sample without candidates scores 0 (an empty mask; every pair in the
    data has a non-empty truth).
    """
    group, y = data["group"], data["y"]
    out = np.zeros(len(pick))
    order = np.lexsort((-pred, group))
    first = np.ones(len(order), bool)
    first[1:] = group[order][1:] != group[order][:-1]
    best = order[first]
    out[group[best]] = y[best]
    return out[pick]


def fused_scores(pred: np.ndarray, data: dict, pick: np.ndarray, *, tau: Optional[float] = None,
                 level: Optional[float] = None) -> np.ndarray:
    """True IoU of the fused mask (:func:`ffmask.targets.hull_select.fuse`) of each sample where ``pick`` is True.

    Needs the masks of :func:`extract` with ``keep_masks``; a sample
    without candidates scores 0. ``tau`` and ``level`` default to the
    shipped :data:`~ffmask.targets.hull_select.TAU` and
    :data:`~ffmask.targets.hull_select.LEVEL`.
    """
    return np.array([0.0 if vote is None else pixel_iou(vote, truth_mask(data, g))
                     for g, vote in sample_votes(pred, data, pick, tau=tau, level=level)])


def sample_votes(pred: np.ndarray, data: dict, pick: np.ndarray, *, tau: Optional[float] = None,
                 level: Optional[float] = None):
    """``(sample, vote)`` for each sample where ``pick`` is True, in order: the fused mask
    (:func:`ffmask.targets.hull_select.fuse` of its candidates weighted by ``pred``), bool (H, W) at the crop
    size, or None for a sample without candidates. Needs :func:`extract`'s ``keep_masks`` data; ``tau`` and
    ``level`` default to the shipped ones."""
    from ffmask.targets.hull_select import LEVEL, TAU, fuse

    tau = TAU if tau is None else tau
    level = LEVEL if level is None else level
    group = data["group"]
    starts = np.searchsorted(group, np.arange(len(pick)), side="left")
    ends = np.searchsorted(group, np.arange(len(pick)), side="right")
    for g in np.flatnonzero(pick):
        a, b = starts[g], ends[g]
        if a == b:
            yield g, None
            continue
        (h, w), (H, W) = data["small"][g], data["crop"][g]
        masks = np.unpackbits(data["masks"][a:b], axis=1)[:, :h * w].reshape(b - a, h, w).astype(bool)
        yield g, fuse(masks, pred[a:b], (H, W), tau=tau, level=level)


def truth_mask(data: dict, g: int) -> np.ndarray:
    """Sample ``g``'s true mask, bool (H, W) at the crop size, from :func:`extract`'s packed ``truth``."""
    H, W = data["crop"][g]
    return np.unpackbits(data["truth"][g])[:H * W].reshape(H, W).astype(bool)


def generator_cells(data: dict, compressions: Sequence[str] = ("c23", "c40")):
    """``(name, pick)`` for each non-empty cell of joined extracts: ``"GENERATOR/COMPRESSION/lm"`` (or
    ``nolm``) and the bool (samples,) selecting it; generators in order of appearance. ``data`` needs
    ``generator``, ``compression`` and ``landmarks`` per sample."""
    for gen in dict.fromkeys(data["generator"]):
        for comp in compressions:
            for lm in (True, False):
                pick = (data["generator"] == gen) & (data["compression"] == comp) & (data["landmarks"] == lm)
                if pick.any():
                    yield f"{gen}/{comp}/{'lm' if lm else 'nolm'}", pick


#: Keys of :func:`extract`-like data with a row per candidate (the rest have one per sample).
CANDIDATE_KEYS = ("x", "y", "masks", "planes")


def subset(data: dict, keep: np.ndarray) -> dict:
    """The samples of :func:`extract`-like ``data`` where ``keep`` (bool, one per sample) is True, their
    candidate rows (:data:`CANDIDATE_KEYS`) following and ``group`` renumbered."""
    rows = keep[data["group"]]
    new = np.cumsum(keep) - 1
    out = {}
    for k, v in data.items():
        if k == "group":
            out[k] = new[v[rows]].astype(np.int32)
        elif k in CANDIDATE_KEYS:
            out[k] = v[rows]
        else:
            out[k] = v[keep]
    return out


def oracle_scores(data: dict) -> np.ndarray:
    """Best candidate's true IoU per sample (0 without candidates)."""
    out = np.zeros(len(data["region"]))
    np.maximum.at(out, data["group"], data["y"])
    return out


def leave_out(data: dict, val: dict, key: str, folds, *, y: Optional[np.ndarray] = None,
              sample_weight: Optional[np.ndarray] = None, votes: Sequence[tuple[float, float]] = (),
              log: Log = print, **fit_options) -> list[dict]:
    """Train on samples of ``data`` whose ``key`` (region / operation) is in a fold's first set, score
    ``val``'s samples of its second set: mean IoU per compression and landmarks, next to the rules,
    MSCC and the candidate oracle.

    ``y`` and ``sample_weight`` (over ``data``'s candidates) replace the
    target (default the true IoU) and weigh the candidates (default
    equally); ``votes`` lists further ``(tau, level)`` settings of the
    vote to score (key ``fused@tau/level``) next to the shipped one
    (``fused``), which needs ``val``'s masks. Cells without samples are left out.
    """
    target = data["y"] if y is None else np.asarray(y)
    weight = None if sample_weight is None else np.asarray(sample_weight)
    by_candidate = data[key][data["group"]]

    def fold_model(train_set):
        rows = np.isin(by_candidate, train_set)
        return fit(data["x"][rows], target[rows], sample_weight=None if weight is None else weight[rows],
                   **fit_options)

    return _fold_results(fold_model, val, val[key], folds, sorted(set(val["compression"])), votes=votes,
                         vote="masks" in val, rules=True, log=log)


def _fold_results(fold_model: Callable[[tuple], dict], val: dict, held_by: np.ndarray, folds,
                  compressions: Sequence[str], *, votes: Sequence[tuple[float, float]], vote: bool, rules: bool,
                  log: Log) -> list[dict]:
    """What :func:`leave_out` and :func:`leave_generator_out` share: per fold ``(train set, held-out set)``
    the model ``fold_model(train set)``, its predictions on ``val``'s held-out samples (those whose
    ``held_by`` label, over samples, is in the held-out set) and their cells (:func:`_cells`)."""
    orc = oracle_scores(val)
    held_candidates = held_by[val["group"]]
    results = []
    for train_set, val_set in folds:
        model = fold_model(train_set)
        held = np.isin(held_candidates, val_set)
        pred = np.zeros(len(val["x"]))
        pred[held] = predict(model, val["x"][held])
        res = {"train": list(train_set), "val": list(val_set)}
        res.update(_cells(pred, val, np.isin(held_by, val_set), compressions, orc, votes=votes, vote=vote,
                          rules=rules))
        log(json.dumps(res))
        results.append(res)
    return results


def _cells(pred: np.ndarray, val: dict, held: np.ndarray, compressions: Sequence[str], orc: np.ndarray, *,
           votes: Sequence[tuple[float, float]], vote: bool, rules: bool) -> dict:
    """``{"c23/lm": cell, ...}`` over the ``held`` samples of ``val`` per compression and landmarks (empty cells
    left out): ``n``, the vote (with ``vote``, which needs ``val``'s masks: ``fused`` and each of ``votes``), the argmax
    candidate (``select``), the rules (with ``rules``; None when not computed), MSCC and the candidate oracle."""
    out = {}
    for comp in compressions:
        for lm in (True, False):
            pick = held & (val["compression"] == comp) & (val["landmarks"] == lm)
            if not pick.any():
                continue
            cell = {"n": int(pick.sum())}
            if vote:
                cell["fused"] = round(float(fused_scores(pred, val, pick).mean()), 4)
            cell["select"] = round(float(select_scores(pred, val, pick).mean()), 4)
            if rules:
                cell["rules"] = (round(float(np.nanmean(val["rules"][pick])), 4)
                                 if np.isfinite(val["rules"][pick]).any() else None)
            cell["mscc"] = round(float(val["mscc"][pick].mean()), 4)
            cell["oracle"] = round(float(orc[pick].mean()), 4)
            if vote:
                cell.update(_other_votes(pred, val, pick, votes))
            out[f"{comp}/{'lm' if lm else 'nolm'}"] = cell
    return out


#: leave-one-generator-out check (:func:`leave_generator_out`): a reduced set of tuning folders per generator,
#: (generator, seed, compressions), :data:`LOGO_N` pairs each; the first of each generator holds the report CRFs
#: 23 and 40 (the cells scored), the second spans the CRF range (training rows only). Tuning people and families
#: only; the foreign generator's training operations only (:data:`FOREIGN_OPERATIONS`).
LOGO_SETS = (("synth", 105, ("c23", "c32", "c40")), ("foreign", 2101, ("c23", "c32", "c40")),
             ("third", 3101, ("c23", "c32", "c40")), ("synth", 106, ("c18", "c28", "c45")),
             ("foreign", 2102, ("c18", "c28", "c45")), ("third", 3102, ("c18", "c28", "c45")))
LOGO_N = 200
#: the optional fourth fold: the foreign generator's operations no scorer is trained on, tuning people and a
#: tuning-range seed (never a report seed), held out while the scorer trains on all three generators
LOGO_UNSEEN = ("unseen", 2105, ("c23", "c40"))
LOGO_UNSEEN_N = 150  # pairs of the unseen-operations folder
LOGO_UNSEEN_OPERATIONS = ("swirl", "morph", "mirror", "recolor")


def generator_folds(generators: Sequence[str], extra: Sequence[str] = ()) -> tuple:
    """Leave-one-generator-out folds: ``(train generators, (held-out generator,))`` for each of ``generators``,
    then for each of ``extra`` (a held-out set no scorer trains on) ``(generators, (extra,))``."""
    gens = tuple(dict.fromkeys(generators))
    if len(gens) < 2:
        raise ValueError(f"leaving one generator out needs at least two, got {gens}")
    folds = tuple((tuple(g for g in gens if g != held), (held,)) for held in gens)
    return folds + tuple((gens, (e,)) for e in extra)


def leave_generator_out(data: dict, generator: np.ndarray, *, folds=None, compressions: Sequence[str] = ("c23", "c40"),
                        drop: Sequence[str] = (), balance: bool = False, per_generator: bool = False,
                        y: Optional[np.ndarray] = None, votes: Sequence[tuple[float, float]] = (),
                        log: Log = print, **fit_options) -> list[dict]:
    """Train on some generators' samples, score the vote on a held-out generator's: the transfer check.

    Parameters
    ----------
    data : dict
        :func:`extract` output (with ``keep_masks``), every generator's folders joined (:func:`concat`).
    generator : ndarray of str, shape (G,)
        Each sample's generator (e.g. ``"synth"``, ``"foreign"``, ``"third"``).
    folds : sequence of (train generators, held-out generators), optional
        Default :func:`generator_folds` of the generators present (each held out once).
    compressions : sequence of str
        The held-out samples' compressions scored (one cell each, with and without landmarks).
    drop : sequence of str
        Feature names (:data:`ffmask.targets.hull_features.FEATURES`) the scorer must not use: their
        columns are set to 0 for the fit, so no tree splits on them and the exported file keeps its layout.
    balance : bool
        Weigh the candidates so each training generator weighs the same in total.
    per_generator : bool
        Fit one scorer per training generator and average them (:func:`average_models`).
    y : ndarray of float, shape (M,), optional
        The target over candidates (default the true IoU ``data["y"]``).
    votes : sequence of (tau, level)
        Further vote settings scored next to the shipped one (key ``fused@tau/level``).
    **fit_options
        Passed to :func:`fit` (``max_iter``, ``max_leaf_nodes``, ``min_samples_leaf``, ``l2_regularization``, ...).

    Returns
    -------
    list of dict
        Per fold: the training and held-out generators, and per cell ``"c23/lm"`` ... the number of
        samples ``n``, the mean IoU of the vote (``fused``, and each of ``votes``), of the argmax
        candidate (``select``), of MSCC, and of the candidate oracle (the best candidate by the truth).
    """
    generator = np.asarray(generator).astype(str)
    if len(generator) != len(data["region"]):
        raise ValueError(f"{len(generator)} generator labels for {len(data['region'])} samples")
    unknown = [f for f in drop if f not in hf.FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) to drop: {', '.join(unknown)}")
    folds = generator_folds(generator) if folds is None else folds
    x = data["x"]
    if drop:
        x = x.copy()
        x[:, [hf.FEATURES.index(f) for f in drop]] = 0.0
    cand_gen = generator[data["group"]]
    target = data["y"] if y is None else np.asarray(y)

    def fold_model(train_set):
        if per_generator:
            return average_models([fit(x[cand_gen == g], target[cand_gen == g], **fit_options) for g in train_set])
        rows = np.isin(cand_gen, train_set)
        weight = None
        if balance:  # each generator's candidates sum to the same total weight
            names, which, counts = np.unique(cand_gen[rows], return_inverse=True, return_counts=True)
            weight = (rows.sum() / (len(names) * counts))[which]
        return fit(x[rows], target[rows], sample_weight=weight, **fit_options)

    return _fold_results(fold_model, {**data, "x": x}, generator, folds, compressions, votes=votes, vote=True,
                         rules=False, log=log)


def _other_votes(pred, data, pick, votes) -> dict:
    """``{"fused@TAU/LEVEL": mean IoU}`` of the vote with each other ``(tau, level)`` of ``votes`` on ``pick``."""
    return {f"fused@{tau:g}/{level:g}": round(float(fused_scores(pred, data, pick, tau=tau, level=level).mean()), 4)
            for tau, level in votes}


def average_models(models: Sequence[dict]) -> dict:
    """One tree scorer predicting the mean of ``models``' predictions (:func:`trees_to_arrays` layout).

    A scorer predicts its baseline plus the sum of its trees' leaves, so the
    mean of k scorers is every tree of all of them, leaf values divided by
    k, and the mean baseline; trees are padded to the largest node count
    with leaves of value 0.
    """
    k = len(models)
    n = max(m["feature"].shape[1] for m in models)

    def pad(a, fill):
        out = np.full((a.shape[0], n), fill, a.dtype)
        out[:, :a.shape[1]] = a
        return out

    fills = {"feature": 0, "threshold": 0.0, "left": 0, "right": 0, "leaf": 1, "value": 0.0}
    out = {key: np.concatenate([pad(np.asarray(m[key]), fill) for m in models]) for key, fill in fills.items()}
    out["value"] = out["value"] / k
    out["baseline"] = np.array([np.mean([float(np.asarray(m["baseline"]).reshape(-1)[0]) for m in models])])
    return out


def logo_summary(results: Sequence[dict], key: str = "fused") -> dict:
    """Mean of ``key`` (and of the oracle) over the folds of :func:`leave_generator_out`, per cell."""
    cells = sorted({c for r in results for c in r if "/" in c})
    out = {}
    for c in cells:
        rows = [r[c] for r in results if c in r]
        out[c] = {key: round(float(np.mean([r[key] for r in rows])), 4),
                  "oracle": round(float(np.mean([r["oracle"] for r in rows])), 4), "folds": len(rows)}
    return out
