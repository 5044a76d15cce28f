"""The learned candidate selector: many masks per pair, a small scorer picks one.

:func:`select_mask` makes the pair's evidence and candidate masks
(:mod:`ffmask.targets.hull_candidates`: thresholds relative to the pair's
background noise x shape operators, plus the hand rules and MSCC, and the
hull-shaped ones again trimmed where the codec spills), describes
each by pair-normalised features (:mod:`ffmask.targets.hull_features`:
absolute, relative to the pair's other candidates, and directional: the
residual on each candidate's upstream and downstream rims), predicts each
one's IoU with gradient-boosted trees and fuses the candidates by a
per-pixel vote weighted by their predicted IoU (:func:`fuse`: the best
candidate weighs most, near-ties share the vote), at the crop size.

The scorer ships as plain arrays in ``weights/hull_select.npz`` (read with
``allow_pickle=False``): the trees' split features, thresholds, children,
leaf flags and values, and a JSON header naming the features it was
trained on. It was trained on synth families of the tuning half only
(recipe :mod:`ffmask.targets.hull_select_train`, docs/hull_training.md). numpy only;
the file is read on the first call and cached per process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ffmask.targets import hull_candidates as hc
from ffmask.targets._weights import WeightsCache
from ffmask.targets import hull_features as hf

__all__ = ["WEIGHTS", "TAU", "LEVEL", "load_scorer", "as_model", "score_candidates", "fuse", "select_mask"]

WEIGHTS = Path(__file__).with_name("weights") / "hull_select.npz"

#: soft fusion of the candidates (:func:`fuse`): temperature over the predicted IoU, vote level
TAU = 0.05
LEVEL = 0.45

_KEYS = {"feature": 2, "threshold": 2, "left": 2, "right": 2, "leaf": 2, "value": 2, "baseline": 1}


def load_scorer(path: Optional[Path] = None) -> dict:
    """The scorer's tree arrays (:data:`_KEYS`) from ``path`` (default the shipped file); cached per path and process.

    Raises
    ------
    ValueError
        When the file is missing, not a pickle-free npz of this layout, or
        was trained on other features or another working resolution.
    """
    return _SCORERS.get(path)


def _read_scorer(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as fh:
            arrays = {k: fh[k] for k in fh.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except Exception as exc:  # zip, npz and JSON errors alike
        raise ValueError(f"cannot read hull selector weights {path}: {exc}") from None
    if tuple(meta.get("features", ())) != hf.FEATURES or int(meta.get("res", -1)) != hc.RES:
        raise ValueError(f"{path}: the scorer was trained on other candidate features or resolution")
    ok = set(arrays) == set(_KEYS) and all(arrays[k].ndim == d for k, d in _KEYS.items())
    if ok:
        shape = arrays["feature"].shape
        ok = all(arrays[k].shape == shape for k, d in _KEYS.items() if d == 2) and shape[1] >= 1
        n = shape[1]
        ok = ok and arrays["feature"].min() >= 0 and arrays["feature"].max() < len(hf.FEATURES)
        ok = ok and all(0 <= arrays[k].min() and arrays[k].max() < n for k in ("left", "right"))
    if not ok:
        raise ValueError(f"{path}: not a tree scorer over {len(hf.FEATURES)} features")
    try:
        return as_model(arrays)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def as_model(arrays: dict) -> dict:
    """Tree arrays as :func:`score_candidates` walks them: intp indices, bool leaf flags, float64 values.

    ``arrays`` holds :data:`_KEYS` as stored (``leaf`` uint8, indices int16,
    ``baseline`` of shape (1,)) or already converted. The result also holds
    the walk's relabelled form (``"walk"``, :func:`_walk_arrays`).

    Raises
    ------
    ValueError
        When a tree's children do not form a tree (a node reached twice).
    """
    model = {"feature": np.asarray(arrays["feature"]).astype(np.intp),
             "threshold": np.asarray(arrays["threshold"]).astype(np.float64),
             "left": np.asarray(arrays["left"]).astype(np.intp), "right": np.asarray(arrays["right"]).astype(np.intp),
             "leaf": np.asarray(arrays["leaf"]).astype(bool), "value": np.asarray(arrays["value"]).astype(np.float64),
             "baseline": float(np.asarray(arrays["baseline"]).reshape(-1)[0])}
    model["walk"] = _walk_arrays(model)
    return model


def _walk_arrays(model: dict) -> dict:
    """The trees relabelled for :func:`score_candidates`: every node's two children adjacent, right first.

    Node ids are renumbered breadth-first within each tree so that an
    internal node's right child is ``first`` and its left child ``first + 1``
    (one step of the walk is ``first[node] + (x[feature] <= threshold)``);
    a leaf is its own ``first`` with a NaN threshold (no comparison holds), so
    a finished walk stays put. Flat over all trees (tree ``i``'s nodes at
    ``i * N ...``): ``first`` intp, ``feature`` intp, ``threshold`` float64,
    ``leaf`` bool, ``value`` float64, all (T * N,); ``depth``: the longest path;
    ``code``: ``first << bits | feature`` (intp, (T * N,)), both read by one gather, with ``bits`` the
    feature field's width.
    """
    feature, threshold, left, right, leaf = (model[k] for k in ("feature", "threshold", "left", "right", "leaf"))
    t, n = feature.shape
    new = np.full((t, n), -1, np.intp)  # old id -> new id, per tree
    new[:, 0] = 0
    count = np.ones(t, np.intp)  # ids given so far, per tree
    ft, fn = np.arange(t), np.zeros(t, np.intp)  # the frontier: (tree, old id), tree-major
    depth = 0
    while True:
        inner = ~leaf[ft, fn]
        ft, fn = ft[inner], fn[inner]
        if ft.size == 0:
            break
        depth += 1
        rank = np.arange(ft.size) - np.searchsorted(ft, ft, side="left")  # among the tree's frontier nodes
        ids = count[ft] + 2 * rank
        kids = np.stack([right[ft, fn], left[ft, fn]], 1)
        if depth > n or np.any(new[ft[:, None], kids] >= 0):
            raise ValueError("not a tree scorer: a node is reached twice")
        new[ft[:, None], kids] = np.stack([ids, ids + 1], 1)
        count += 2 * np.bincount(ft, minlength=t)
        ft, fn = np.repeat(ft, 2), kids.reshape(-1)
    unreached = new < 0  # padding nodes: the ids left over, in order
    new[unreached] = (count[:, None] + np.cumsum(unreached, 1) - 1)[unreached]
    old = np.empty_like(new)
    np.put_along_axis(old, new, np.arange(n)[None, :].repeat(t, 0), 1)
    leaf_new = np.take_along_axis(leaf, old, 1)
    first = np.where(leaf_new, np.arange(n)[None, :], np.take_along_axis(new, np.take_along_axis(right, old, 1), 1))
    first = (first + (np.arange(t) * n)[:, None]).reshape(-1)
    feature = np.where(leaf_new, 0, np.take_along_axis(feature, old, 1)).reshape(-1)
    bits = max(1, int(feature.max()).bit_length())
    return {"first": first, "feature": feature,
            "threshold": np.where(leaf_new, np.nan, np.take_along_axis(threshold, old, 1)).reshape(-1),
            "leaf": leaf_new.reshape(-1), "value": np.take_along_axis(model["value"], old, 1).reshape(-1),
            "depth": depth, "code": (first << bits) | feature, "bits": bits}


_SCORERS = WeightsCache("hull selector weights", WEIGHTS, _read_scorer)


def score_candidates(model: dict, x: np.ndarray) -> np.ndarray:
    """Predicted IoU of candidate feature rows ``x`` (K, F): float64 (K,).

    The sum over the trees of the leaf each row reaches (left where
    ``x[feature] <= threshold``), plus the baseline. All (tree, row) pairs
    walk at once, one level per step, on the relabelled trees
    (:func:`_walk_arrays`); pairs that reached their leaf are dropped every
    few levels (a leaf stays put, so a late check changes nothing).
    """
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return np.zeros(0)
    walk = model.get("walk") or _walk_arrays(model)
    t, n = model["feature"].shape
    k, f = x.shape
    code, bits, threshold, leaf = walk["code"], walk["bits"], walk["threshold"], walk["leaf"]
    low = np.intp((1 << bits) - 1)
    xs = x.reshape(-1)
    node = np.repeat(np.arange(t) * n, k)  # (t * k,): tree-major
    row = np.tile(np.arange(k) * f, t)
    end = node.copy()  # where each pair stops (all at the root when every tree is a single leaf)
    pair = np.arange(t * k)
    for level in range(1, walk["depth"] + 1):  # (take and compress: NumPy's fast paths of [] with indices / masks)
        step = code.take(node)  # one gather for both the node's feature and its children
        node = (step >> bits) + (xs.take(row + (step & low)) <= threshold.take(node))
        if level % 4 == 0 or level > 12 or level == walk["depth"]:
            done = leaf.take(node)
            if done.all():
                end.put(pair, node)
                break
            if done.any():
                end.put(pair.compress(done), node.compress(done))
                busy = ~done
                node, row, pair = node.compress(busy), row.compress(busy), pair.compress(busy)
    return model["baseline"] + walk["value"].take(end).reshape(t, k).sum(0)


def select_mask(real: np.ndarray, fake: np.ndarray, landmarks: Optional[np.ndarray] = None,
                weights: Optional[Path] = None, mscc: Optional[np.ndarray] = None) -> np.ndarray:
    """The pair's candidates fused by their predicted IoU (:func:`fuse`), at the crop size.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        Validated RGB crops (:func:`ffmask.targets._validate.check_pair`).
    landmarks : ndarray (N, 2) of float, or None
        Validated, NaN-free landmarks in crop pixels, or None.
    weights : path, optional
        Another scorer file (default the shipped one).
    mscc : ndarray of bool, shape (H, W), optional
        The pair's MSCC mask (:func:`ffmask.targets.mscc.mscc_mask`) when the
        caller has it; computed here when None.

    Returns
    -------
    ndarray of bool, shape (H, W)
        All False for identical images or when no candidate survives.
    """
    from ffmask.targets.mscc import mscc_mask

    model = load_scorer(weights)
    shape = real.shape[:2]
    if np.array_equal(real, fake):
        return np.zeros(shape, dtype=bool)
    if mscc is None and min(shape) >= 7:
        mscc = mscc_mask(real, fake)
    ev = hc.pair_evidence(real, fake, landmarks)
    masks, info = hc.candidate_masks(ev, mscc)
    if len(masks) == 0:
        return np.zeros(shape, dtype=bool)
    return fuse(masks, score_candidates(model, hf.candidate_features(ev, masks, info)), shape)


def fuse(masks: np.ndarray, predicted: np.ndarray, shape: tuple[int, int], tau: float = TAU,
         level: float = LEVEL) -> np.ndarray:
    """Per-pixel vote of the candidates weighted by their predicted IoU, at the crop size.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, h, w)
        The pair's candidates at the working size (K >= 1).
    predicted : ndarray of float, shape (K,)
        Their predicted IoU.
    shape : (H, W)
        The crop's size.
    tau : float
        Temperature: weights ``exp((predicted - max predicted) / tau)``; the
        best candidate weighs 1, one predicted ``tau`` lower weighs 1/e.
        ``tau -> 0`` is the argmax.
    level : float
        A pixel is in the mask where the weighted share of candidates
        covering it, bilinearly upsampled to the crop, exceeds ``level``.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    p = np.asarray(predicted, np.float64)
    w = np.exp((p - p.max()) / tau)
    # (float64 candidates: the product np.tensordot makes of float32 ones, without the float32 copy)
    vote = np.tensordot(w / w.sum(), masks.astype(np.float64), axes=1).astype(np.float32)
    H, W = shape
    if vote.shape != (H, W):
        vote = cv2.resize(vote, (W, H), interpolation=cv2.INTER_LINEAR)
    return vote > level
