"""Frame-level and pixel-level metrics (numpy in, Python floats out).

- :func:`roc_auc`: area under the ROC curve by the rank (Mann-Whitney U)
  formula, ties counted as one half;
- :func:`accuracy`: frame-level accuracy at a probability threshold;
- :func:`pixel_iou`, :func:`pixel_f1`, :func:`mean_iou`: binary segmentation
  scores of predicted vs. true masks.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def _binary_labels(labels, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {labels.shape}")
    if labels.size and not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"{name} must be integers 0/1 or bool, got dtype {labels.dtype}")
    bad = sorted(set(np.unique(labels).tolist()) - {0, 1})
    if bad:
        raise ValueError(f"{name} must hold only 0 and 1, got {bad}")
    return labels.astype(bool)


def _scores(scores, n: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape ({n},) like the labels, got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    return scores


def roc_auc(labels, scores) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (1 = positive = fake).

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), with R_pos the
    sum of the positives' ranks among all scores (average ranks for ties):
    the probability that a random positive scores above a random negative,
    ties counting one half.

    labels : (N,) 0/1 ints or bools. scores : (N,) finite floats.
    Returns NaN when one class is absent (the AUC is undefined).
    """
    labels = _binary_labels(labels)
    scores = _scores(scores, labels.shape[0])
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks, 1-based
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def accuracy(labels, probs, threshold: float = 0.5) -> float:
    """Fraction of ``labels`` equal to ``probs > threshold``; NaN for no samples."""
    labels = _binary_labels(labels)
    probs = _scores(probs, labels.shape[0])
    if labels.size == 0:
        return math.nan
    return float(np.mean((probs > threshold) == labels))


def _masks(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    if pred.size == 0:
        raise ValueError("empty masks")
    for name, m in (("pred", pred), ("target", target)):
        if m.dtype != bool:
            raise ValueError(f"{name} must be a bool mask (threshold continuous maps first), got dtype {m.dtype}")
    return pred, target


def pixel_iou(pred, target) -> float:
    """Intersection over union of the True pixels of two bool masks of one shape.

    Two empty masks agree perfectly: IoU 1.0.
    """
    pred, target = _masks(pred, target)
    union = np.logical_or(pred, target).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, target).sum() / union)


def pixel_f1(pred, target) -> float:
    """F1 (Dice) of the True pixels: 2 TP / (2 TP + FP + FN); 1.0 for two empty masks."""
    pred, target = _masks(pred, target)
    tp = np.logical_and(pred, target).sum()
    denom = pred.sum() + target.sum()
    if denom == 0:
        return 1.0
    return float(2.0 * tp / denom)


def mean_iou(pred, target) -> float:
    """Mean of the IoU of the manipulated (True) and the pristine (False) pixels."""
    pred, target = _masks(pred, target)
    return 0.5 * (pixel_iou(pred, target) + pixel_iou(~pred, ~target))
