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
crop, and whether landmarks placed the face.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffmask.targets import hull as _hull
from ffmask.targets.hull_candidates import SHAPES, SOURCES, Evidence

__all__ = ["FEATURES", "candidate_features"]

RING = 0.04  # width of the inner / outer rim, fraction of the side

_PER_CANDIDATE = (
    "log_level_over_low", "level_sigmas",
    "u_in_mean", "u_in_gt1", "u_in_gt2", "u_in_gt4", "in_over_level",
    "u_inner_rim", "u_outer_rim", "log_edge_contrast", "u_out_mean", "u_out_gt2",
    "energy_captured", "log_components", "iou_rules", "iou_mscc", "iou_consensus",
)
_PER_PAIR = ("log_med", "log_spread", "log_low", "log_otsu_over_low", "log_peak_over_low", "face_gt1",
             "face_gt2", "face_share", "landmarks")
#: names of the feature columns, in order
FEATURES = (_PER_CANDIDATE + tuple(f"source_{s}" for s in SOURCES) + tuple(f"shape_{s}" for s in SHAPES)
            + _PER_PAIR)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.where(den > 0, num / np.maximum(den, 1e-12), empty)


def candidate_features(ev: Evidence, masks: np.ndarray, info: list[dict]) -> np.ndarray:
    """Feature rows of the pair's candidates.

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
    h, w = ev.d.shape
    side = min(h, w)
    low = max(ev.low, 1e-6)
    u = (ev.d / low).astype(np.float32)
    face = ev.face
    face_px = max(1, int(face.sum()))
    flat = masks.reshape(k, -1).astype(np.float32)
    uf = u.reshape(-1)
    area = flat.sum(1)
    kernel = _hull._disk(max(1, round(RING * side)))
    inner = np.empty_like(flat)
    outer = np.empty_like(flat)
    face8 = face.astype(np.uint8)
    for i, m in enumerate(masks):
        m8 = m.view(np.uint8)
        inner[i] = (m8 & ~cv2.erode(m8, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) & 1).reshape(-1)
        outer[i] = (cv2.dilate(m8, kernel) & ~m8 & face8 & 1).reshape(-1)
    faceflat = face.reshape(-1).astype(np.float32)
    out_face = faceflat[None] * (1 - flat)
    levels = np.array([x["level"] if x["level"] > 0 else ev.low for x in info], np.float32)
    excess = np.maximum(uf - 1.0, 0.0) * faceflat
    n_comp = np.array([cv2.connectedComponents(m.view(np.uint8), connectivity=8)[0] - 1 for m in masks], np.float64)

    inter = flat @ flat.T
    union = area[:, None] + area[None, :] - inter
    iou = _ratio(inter, union)

    def iou_with(source: str) -> np.ndarray:
        idx = [i for i, x in enumerate(info) if x["source"] == source]
        return iou[:, idx[0]] if idx else np.zeros(k)

    consensus = flat.mean(0)
    c_inter = flat @ consensus
    c_union = area + consensus.sum() - c_inter

    cols = [
        np.log(levels / low),
        np.clip((levels - ev.med) / max(ev.spread, 0.05), 0, 200) / 10,
        _ratio(flat @ uf, area), _ratio(flat @ (uf > 1), area), _ratio(flat @ (uf > 2), area),
        _ratio(flat @ (uf > 4), area), _ratio((flat * (u.reshape(1, -1) * low > levels[:, None])).sum(1), area),
        _ratio(inner @ uf, inner.sum(1)), _ratio(outer @ uf, outer.sum(1)),
        np.log(_ratio(inner @ uf, inner.sum(1), 1.0) + 0.1) - np.log(_ratio(outer @ uf, outer.sum(1), 1.0) + 0.1),
        _ratio(out_face @ uf, out_face.sum(1)), _ratio(out_face @ (uf > 2), out_face.sum(1)),
        _ratio(flat @ excess, np.full(k, excess.sum())), np.log1p(n_comp),
        iou_with("rules"), iou_with("mscc"), _ratio(c_inter, c_union),
    ]
    cols += [np.array([x["source"] == s for x in info], np.float64) for s in SOURCES]
    cols += [np.array([x["shape"] == s for x in info], np.float64) for s in SHAPES]
    uface = uf[faceflat > 0]
    pair = [np.log1p(ev.med), np.log1p(ev.spread), np.log(low), np.log(max(ev.otsu, 1e-3) / low),
            np.log(max(ev.peak, 1e-3) / low), float((uface > 1).mean()) if uface.size else 0.0,
            float((uface > 2).mean()) if uface.size else 0.0, face_px / (h * w), float(ev.landmarks)]
    cols += [np.full(k, v, np.float64) for v in pair]
    out = np.stack(cols, 1).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
