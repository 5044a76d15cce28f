"""Features of candidate masks, normalised by each pair's own statistics.

:func:`candidate_features` describes every candidate of
:func:`ffmask.targets.hull_candidates.candidate_masks` by numbers that do
not depend on the generator, the compression strength or where the region
sits: the residual is read in units of the pair's background level
(``u = d / low``, the rules' low level, so ``u = 1`` is what compression
alone reaches in this crop), and nothing encodes the candidate's absolute
position or size (a model that saw positions learned where the training
regions lie; the candidate's area, as a feature, cost 0.005 IoU on the
left-out tuning regions: it too learns the training regions' sizes).

Per candidate: its threshold over
the background level and in robust sigmas; its source and shape
(one-hot); the residual inside (mean, share above 1, 2, 4 background
levels, share above its own threshold), on its inner rim and on a ring
outside it (contrast across the edge), and in the rest of the face (missed
evidence); the share of the face's excess residual it captures; its number
of components; its agreement (IoU) with the rules' mask, with MSCC's and
with the consensus of all candidates (their mean). Per pair, repeated on every row: the noise level
(background median, robust sigma, low level -- compression is a feature,
not a fixed CRF), Otsu's and the face peak's ratio to the low level, the
share of the face above 1 and 2 background levels, the face's share of the
crop, and whether landmarks placed the face. Last, :func:`relative_features`:
13 of the per-candidate columns (:data:`RELATIVE`) read against the pair's
other candidates -- the difference to the pair's largest value and the rank
within the pair -- since choosing is about the order within a pair.
Then the **directional** columns (:data:`DIRECTIONAL`): H.264 predicts each
block from the blocks above and left of it, so an edit's error spills into
the blocks below and right of it and never above or left; a mask that
matches the edit has a clean top / left edge (residual outside it at the
noise floor) and spill beyond its bottom / right edge. Per candidate, the
residual on its upstream (top / left) and downstream (bottom / right) outer
and inner rims and their contrasts, three of them also relative to the
pair (:data:`DIRECTIONAL_RELATIVE`); and whether the candidate is a
downstream-trimmed copy (``trim``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ffmask.targets import bitmasks
from ffmask.targets import hull as _hull
from ffmask.targets.hull_candidates import SHAPES, SOURCES, Evidence

__all__ = ["FEATURES", "RELATIVE", "DIRECTIONAL", "DIRECTIONAL_RELATIVE", "candidate_features",
           "relative_features", "directional_features"]

RING = 0.04  # width of the inner / outer rim, fraction of the side
_SHARES = np.array([1, 2, 4], np.float32)  # the residual's shares above these background levels

_PER_CANDIDATE = (
    "log_level_over_low", "level_sigmas",
    "u_in_mean", "u_in_gt1", "u_in_gt2", "u_in_gt4", "in_over_level",
    "u_inner_rim", "u_outer_rim", "log_edge_contrast", "u_out_mean", "u_out_gt2",
    "energy_captured", "log_components", "iou_rules", "iou_mscc", "iou_consensus",
)
_PER_PAIR = ("log_med", "log_spread", "log_low", "log_otsu_over_low", "log_peak_over_low", "face_gt1",
             "face_gt2", "face_share", "landmarks")
#: per-candidate features also read relative to the pair's other candidates (a selection is an ordering
#: within the pair): the difference to the pair's largest value and the rank among the pair's candidates
RELATIVE = ("log_level_over_low", "u_in_mean", "u_in_gt2", "in_over_level", "u_inner_rim", "u_outer_rim",
            "log_edge_contrast", "u_out_mean", "u_out_gt2", "energy_captured", "iou_consensus", "iou_rules",
            "iou_mscc")
_BASE = (_PER_CANDIDATE + tuple(f"source_{s}" for s in SOURCES) + tuple(f"shape_{s}" for s in SHAPES)
         + _PER_PAIR)
#: per-candidate residual on its upstream (top / left) and downstream (bottom / right) rims
DIRECTIONAL = ("u_up_outer", "u_down_outer", "u_up_inner", "u_down_inner", "log_down_over_up_outer",
               "log_up_edge_contrast", "log_down_edge_contrast")
#: directional columns also read relative to the pair's other candidates
DIRECTIONAL_RELATIVE = ("u_up_outer", "log_up_edge_contrast", "log_down_edge_contrast")
#: names of the feature columns, in order
FEATURES = (_BASE + tuple(f"{f}_minus_best" for f in RELATIVE) + tuple(f"{f}_rank" for f in RELATIVE)
            + DIRECTIONAL + tuple(f"{f}_minus_best" for f in DIRECTIONAL_RELATIVE)
            + tuple(f"{f}_rank" for f in DIRECTIONAL_RELATIVE) + ("trim",))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.where(den > 0, num / np.maximum(den, 1e-12), empty)


_BLAS = None


def _one_blas_thread():
    """A context that runs the BLAS products on one thread (a threadpoolctl controller made once).

    A threaded BLAS splits a product's sums over its threads, so the float32
    sums -- hence the features, and possibly the scorer's choice -- would
    depend on how many threads the caller's process gives BLAS (2 threads on
    a 2-core machine changed 125 of 972 sums of a random candidate-sized
    product).
    One thread gives every caller the bits the scorer was trained on, at a
    few microseconds a call; annotate's workers run on one thread anyway.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def candidate_features(ev: Evidence, masks: np.ndarray, info: list[dict]) -> np.ndarray:
    """Feature rows of the pair's candidates.

    The same bits whatever the caller's BLAS thread count (the products run
    on one thread).

    Parameters
    ----------
    ev : Evidence
        From :func:`ffmask.targets.hull_candidates.pair_evidence`.
    masks : ndarray of bool, shape (K, h, w)
        The candidates at the working size.
    info : list of K dicts
        Their ``source``, ``shape`` and ``level`` (:func:`~ffmask.targets.hull_candidates.candidate_masks`).

    Returns
    -------
    ndarray of float32, shape (K, len(FEATURES))
        Finite values.
    """
    k = len(masks)
    if k == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    with _one_blas_thread():
        return _candidate_features(ev, masks, info)


def _candidate_features(ev: Evidence, masks: np.ndarray, info: list[dict]) -> np.ndarray:
    k = len(masks)
    h, w = ev.d.shape
    side = min(h, w)
    low = max(ev.low, 1e-6)
    u = (ev.d / low).astype(np.float32, copy=False)
    face = ev.face
    face_px = max(1, int(face.sum()))
    flat = masks.reshape(k, -1).astype(np.float32)
    uf = u.reshape(-1)
    area = np.array([cv2.countNonZero(m) for m in masks.view(np.uint8)], np.float32)  # = flat.sum(1), exactly
    r = max(1, round(RING * side))
    rims, n_comp = _rims_and_components(masks, face, _hull._disk(r))
    faceflat = face.reshape(-1).astype(np.float32)
    levels = np.array([x["level"] if x["level"] > 0 else ev.low for x in info], np.float32)
    excess = np.maximum(uf - 1.0, 0.0) * faceflat
    # every sum over a candidate's pixels in one product: the residual and its shares above 1, 2, 4, the excess,
    # the face, and above each distinct candidate level
    uniq, which = np.unique(levels, return_inverse=True)
    face_u, face_g2 = faceflat * uf, faceflat * (uf > 2)
    # the columns as rows (contiguous writes), then transposed: per_pixel C order, as np.stack(columns, 1) makes it
    rows = np.empty((8 + len(uniq), uf.size), np.float32)
    rows[0] = uf
    rows[1:4] = uf[None, :] > _SHARES[:, None]
    rows[4], rows[5], rows[6], rows[7] = excess, faceflat, face_u, face_g2
    rows[8:] = (uf * low)[None, :] > uniq[:, None]
    per_pixel = cv2.transpose(rows)
    sums = (flat @ per_pixel).astype(np.float64)
    s_u, s_g1, s_g2, s_g4, s_excess, s_face, s_face_u, s_face_g2 = sums[:, :8].T
    s_over = sums[np.arange(k), 8 + which.reshape(-1)]
    rim_sums = (rims @ np.stack([uf, np.ones_like(uf)], 1)).astype(np.float64)
    in_u, in_n = rim_sums[:k].T
    out_u, out_n = rim_sums[k:].T
    # the rest of the face: the face's sums minus the candidate's
    rest_u = float(face_u.sum(dtype=np.float64)) - s_face_u
    rest_n = float(faceflat.sum(dtype=np.float64)) - s_face
    rest_g2 = float(face_g2.sum(dtype=np.float64)) - s_face_g2

    def iou_with(source: str) -> np.ndarray:
        # pixel counts: exact in float32 (< 2**24) whatever the order of the sum
        idx = [i for i, x in enumerate(info) if x["source"] == source]
        if not idx:
            return np.zeros(k)
        inter = flat @ flat[idx[0]]
        return _ratio(inter, area + area[idx[0]] - inter)

    # flat.mean(0) to the bit: exact integer counts, divided as np.mean divides (by an intp, into float32)
    counts = masks.view(np.uint8).sum(0, dtype=np.uint8 if k < 256 else np.uint16)
    consensus = counts.reshape(-1).astype(np.float32)
    np.true_divide(consensus, np.intp(k), out=consensus, casting="unsafe")
    c_inter = flat @ consensus
    c_union = area + consensus.sum() - c_inter

    cols = [
        np.log(levels / low),
        np.clip((levels - ev.med) / max(ev.spread, 0.05), 0, 200) / 10,
        _ratio(s_u, area), _ratio(s_g1, area), _ratio(s_g2, area), _ratio(s_g4, area), _ratio(s_over, area),
        _ratio(in_u, in_n), _ratio(out_u, out_n),
        np.log(_ratio(in_u, in_n, 1.0) + 0.1) - np.log(_ratio(out_u, out_n, 1.0) + 0.1),
        _ratio(rest_u, rest_n), _ratio(rest_g2, rest_n),
        _ratio(s_excess, np.full(k, excess.sum(dtype=np.float64))), np.log1p(n_comp),
        iou_with("rules"), iou_with("mscc"), _ratio(c_inter, c_union),
    ]
    source = np.array([SOURCES.index(x["source"]) for x in info])
    shape = np.array([SHAPES.index(x["shape"]) if x["shape"] in SHAPES else -1 for x in info])
    cols += list((source[None, :] == np.arange(len(SOURCES))[:, None]).astype(np.float64))
    cols += list((shape[None, :] == np.arange(len(SHAPES))[:, None]).astype(np.float64))
    uface = uf[faceflat > 0]
    pair = [np.log1p(ev.med), np.log1p(ev.spread), np.log(low), np.log(max(ev.otsu, 1e-3) / low),
            np.log(max(ev.peak, 1e-3) / low), float((uface > 1).mean()) if uface.size else 0.0,
            float((uface > 2).mean()) if uface.size else 0.0, face_px / (h * w), float(ev.landmarks)]
    cols += [np.full(k, v, np.float64) for v in pair]
    out = np.nan_to_num(np.stack(cols, 1).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    directional = directional_features(u, face, masks, r)
    trim = np.array([[x.get("trim", 0.0)] for x in info], np.float32)
    return np.concatenate([out, relative_features(out), directional,
                           _relative(directional[:, [DIRECTIONAL.index(f) for f in DIRECTIONAL_RELATIVE]]), trim], 1)


def directional_features(u: np.ndarray, face: np.ndarray, masks: np.ndarray, r: int) -> np.ndarray:
    """The :data:`DIRECTIONAL` columns of every candidate.

    Parameters
    ----------
    u : ndarray of float32, shape (h, w)
        The residual in units of the pair's background low level.
    face : ndarray of bool, shape (h, w)
    masks : ndarray of bool, shape (K, h, w)
    r : int
        Rim width, pixels (>= 1).

    Returns
    -------
    ndarray of float32, shape (K, len(DIRECTIONAL))
        Mean ``u`` on the upstream / downstream outer rim (outside the mask,
        within ``r`` above / left of it or below / right of it, in the face)
        and inner rim (the mask's top / left and bottom / right band), 0 for
        an empty rim; then ``log`` contrasts (0.1 added to each mean): down
        over up outside, the upstream edge (inner over outer) and the
        downstream edge.
    """
    k, h, w = masks.shape
    words = bitmasks.pack(masks)
    face_words = bitmasks.pack(face[None])
    bands = np.empty((4, k, h, words.shape[2]), np.uint64)
    for i, (dilate, downstream) in enumerate(((True, False), (True, True), (False, False), (False, True))):
        bitmasks.directional(words, w, r, dilate=dilate, downstream=downstream, out=bands[i])
    bands[:2] &= ~words  # outer rims: grown, minus the mask, in the face
    bands[:2] &= face_words
    np.bitwise_xor(bands[2:], words, out=bands[2:])  # inner bands: the mask minus its eroded self
    flat = np.empty((4 * k, h * w), np.float32)
    bitmasks.unpack_float32(bands.reshape(4 * k, h, -1), w, out=flat)
    sums = (flat @ np.stack([u.reshape(-1), np.ones(h * w, np.float32)], 1)).astype(np.float64).reshape(4, k, 2)
    up_out, down_out, up_in, down_in = (_ratio(sums[i, :, 0], sums[i, :, 1]) for i in range(4))
    cols = [up_out, down_out, up_in, down_in, np.log((down_out + 0.1) / (up_out + 0.1)),
            np.log((up_in + 0.1) / (up_out + 0.1)), np.log((down_in + 0.1) / (down_out + 0.1))]
    return np.nan_to_num(np.stack(cols, 1).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _rims_and_components(masks: np.ndarray, face: np.ndarray, kernel: np.ndarray):
    """Each candidate's inner rim (inside it, within the kernel of its edge) and outer rim (outside it, within
    the kernel, inside the face) as float32 0/1 rows (2K, h*w), and its number of 8-connected components (K,).

    The rims are ``mask - erode(mask)`` (``BORDER_CONSTANT`` 0) and ``(dilate(mask) - mask) & face`` of every
    candidate at once on bit-packed rows (:mod:`ffmask.targets.bitmasks`: OpenCV's results, bit for bit);
    the components are counted in each candidate's bounding box, read off the packed rows.
    """
    k, h, w = masks.shape
    words = bitmasks.pack(masks)
    inner = bitmasks.erode(words, w, kernel)
    np.bitwise_xor(inner, words, out=inner)  # erode(m) is inside m: m - erode(m)
    outer = bitmasks.dilate(words, w, kernel)
    outer ^= words  # m is inside dilate(m)
    outer &= bitmasks.pack(face[None])
    rims = np.empty((2 * k, h * w), np.float32)
    bitmasks.unpack_float32(inner, w, out=rims[:k])
    bitmasks.unpack_float32(outer, w, out=rims[k:])
    # every candidate's bounding box from its packed rows: the rows with a pixel, the columns of the rows' OR
    rows = words.any(2)
    cols = np.unpackbits(np.bitwise_or.reduce(words, axis=1).view(np.uint8), axis=1, count=w, bitorder="little")
    filled = rows.any(1)
    y0, y1 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    n_comp = np.zeros(k, np.float64)
    for i in np.flatnonzero(filled):  # labelled in the box: small label images stay in the cache
        n_comp[i] = cv2.connectedComponents(masks[i, y0[i]:y1[i], x0[i]:x1[i]].view(np.uint8), connectivity=8)[0] - 1
    return rims, n_comp


def relative_features(x: np.ndarray) -> np.ndarray:
    """The :data:`RELATIVE` columns of one pair's feature rows read against the pair's other candidates.

    Parameters
    ----------
    x : ndarray of float32, shape (K, len(_BASE))
        One pair's absolute feature rows (K >= 1), columns as in :data:`FEATURES`' first part.

    Returns
    -------
    ndarray of float32, shape (K, 2 * len(RELATIVE))
        First each column minus its largest value in the pair (<= 0), then
        its rank in the pair scaled to [0, 1] (0 the smallest; ties keep the
        candidates' order; 0 for a single candidate).
    """
    return _relative(x[:, [_BASE.index(f) for f in RELATIVE]])


def _relative(columns: np.ndarray) -> np.ndarray:
    """Each column minus its largest value, then its rank scaled to [0, 1] (ties keep the rows' order)."""
    v = columns.astype(np.float64)
    k = len(v)
    diff = v - v.max(0, keepdims=True)
    rank = np.empty_like(v)
    rank[np.argsort(v, axis=0, kind="stable"), np.arange(v.shape[1])] = np.arange(k)[:, None]
    return np.concatenate([diff, rank / max(k - 1, 1)], 1).astype(np.float32)
