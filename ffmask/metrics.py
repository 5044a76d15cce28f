"""Frame, video and pixel metrics shared by ``ffmask evaluate``, ``bench masks`` and training.

numpy in, Python floats out; scikit-learn computes the curves underneath
(``roc_auc_score``, ``roc_curve``, ``average_precision_score``). Label 1 is
the positive class everywhere: *fake* for frames and videos, *manipulated*
for pixels.

Frame level (labels ``(N,)`` 0/1, scores ``(N,)`` finite floats, the fake
probability):

- :func:`accuracy` at a threshold (0.5; a frame is called fake when its
  score is ``> threshold``);
- :func:`roc_auc`, :func:`average_precision`, :func:`equal_error_rate`
  (at the ROC point where |FNR - FPR| is smallest);
- :func:`frame_metrics`: all of them in one dict.

Video level: :func:`video_scores` (mean frame score per video id) and
:func:`video_auc`.

Pixel level (bool masks ``(H, W)`` or stacks ``(N, H, W)``):

- :func:`mask_scores`: IoU, F1, precision, recall of one predicted mask;
- :func:`pixel_iou`, :func:`pixel_f1`, :func:`mean_iou` (mean of the
  manipulated and the pristine IoU);
- :func:`pixel_auc`: threshold-free AUC of continuous maps, pixels pooled;
- :func:`pixel_metrics`: per-face means of the above over a stack of faces,
  plus the pooled pixel AUC.

Undefined values are NaN, never an exception: AUC, AP and EER with one
class absent, accuracy of no samples. Malformed input (wrong shapes, labels
other than 0/1, NaN scores, non-bool masks) is a ValueError.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "accuracy",
    "average_precision",
    "equal_error_rate",
    "frame_metrics",
    "mask_scores",
    "mean_iou",
    "pixel_auc",
    "pixel_f1",
    "pixel_iou",
    "pixel_metrics",
    "roc_auc",
    "video_auc",
    "video_scores",
]

# Pooled pixel AUC subsamples beyond this many pixels (a fixed stride, so it is deterministic).
PIXEL_AUC_MAX_PIXELS = 4_000_000


# ---------------------------------------------------------------- validation


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


def _scores(scores, n: int, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores)
    if scores.dtype == bool:
        scores = scores.astype(np.float64)
    if scores.size and not np.issubdtype(scores.dtype, np.number):
        raise ValueError(f"{name} must be numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if scores.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like the labels, got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return scores


def _frame_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = _binary_labels(labels)
    return labels, _scores(scores, labels.shape[0])


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any()) and not bool(labels.all())


# ---------------------------------------------------------------- frame level


def accuracy(labels, scores, threshold: float = 0.5) -> float:
    """Fraction of frames whose call ``scores > threshold`` equals the label.

    labels : (N,) 0/1 ints or bools (1 = fake). scores : (N,) finite floats.
    Returns NaN for no samples.
    """
    labels, scores = _frame_inputs(labels, scores)
    if labels.size == 0:
        return math.nan
    return float(np.mean((scores > threshold) == labels))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (ties count one half); NaN when a class is absent."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _frame_inputs(labels, scores)
    if not _both_classes(labels):
        return math.nan
    return float(roc_auc_score(labels, scores))


def average_precision(labels, scores) -> float:
    """Average precision (area under the precision-recall steps); NaN without positives or negatives."""
    from sklearn.metrics import average_precision_score

    labels, scores = _frame_inputs(labels, scores)
    if not _both_classes(labels):
        return math.nan
    return float(average_precision_score(labels, scores))


def equal_error_rate(labels, scores) -> float:
    """Equal error rate: where the false-negative and false-positive rates meet.

    On scikit-learn's ROC points (``roc_curve``, every distinct threshold,
    ``drop_intermediate=False``) take the first point minimising |FNR - FPR|
    and return (FPR + FNR) / 2 there. Where the two rates cross at a ROC
    point this is the FPR there (DeepfakeBench's ``fpr[argmin |fnr - fpr|]``);
    when they jump past each other between two points the midpoint avoids
    an arbitrary side, e.g. scores that are all tied give 0.5, not 0.
    NaN when a class is absent.
    """
    from sklearn.metrics import roc_curve

    labels, scores = _frame_inputs(labels, scores)
    if not _both_classes(labels):
        return math.nan
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float(0.5 * (fpr[i] + fnr[i]))


def frame_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """``{"acc", "auc", "eer", "ap", "n", "n_real", "n_fake"}`` of frame scores (see the functions)."""
    labels, scores = _frame_inputs(labels, scores)
    return {
        "acc": accuracy(labels, scores, threshold),
        "auc": roc_auc(labels, scores),
        "eer": equal_error_rate(labels, scores),
        "ap": average_precision(labels, scores),
        "n": int(labels.size),
        "n_real": int((~labels).sum()),
        "n_fake": int(labels.sum()),
    }


# ---------------------------------------------------------------- video level


def video_scores(labels, scores, video_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean frame score of each video.

    labels : (N,) 0/1 per frame; scores : (N,) finite; video_ids : N strings.
    Returns ``(video_labels bool (V,), video_scores float64 (V,), ids)`` with
    the videos sorted by id. A video whose frames disagree on the label is a
    ValueError.
    """
    labels, scores = _frame_inputs(labels, scores)
    ids = np.asarray([str(v) for v in video_ids], dtype=object)
    if ids.shape != labels.shape:
        raise ValueError(f"need one video id per frame, got {ids.shape[0]} ids for {labels.shape[0]} frames")
    unique, inverse = np.unique(ids, return_inverse=True) if ids.size else (np.array([], dtype=object), np.array([], dtype=np.int64))
    counts = np.bincount(inverse, minlength=unique.size)
    means = np.bincount(inverse, weights=scores, minlength=unique.size) / np.maximum(counts, 1)
    fakes = np.bincount(inverse, weights=labels.astype(np.float64), minlength=unique.size)
    mixed = np.flatnonzero((fakes > 0) & (fakes < counts))
    if mixed.size:
        raise ValueError(f"video {unique[mixed[0]]!r} has both real and fake frames; video ids must name one video")
    return fakes > 0, means, [str(u) for u in unique]


def video_auc(labels, scores, video_ids: Sequence[str]) -> float:
    """ROC AUC of the per-video mean frame scores (:func:`video_scores`); NaN when a class is absent."""
    video_labels, means, _ = video_scores(labels, scores, video_ids)
    return roc_auc(video_labels, means)


# ---------------------------------------------------------------- pixel level


def _check_masks(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 2 or pred.size == 0:
        raise ValueError(f"pred and truth must be non-empty 2-D arrays of one shape (shapes differ or are empty: "
                         f"{pred.shape} and {truth.shape})")
    if pred.dtype != bool or truth.dtype != bool:
        raise ValueError(f"pred and truth must be bool masks (threshold continuous maps first), "
                         f"got {pred.dtype} and {truth.dtype}")
    return pred, truth


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def mask_scores(pred, truth) -> dict[str, float]:
    """IoU, F1, precision and recall of a predicted mask against the truth.

    pred, truth : bool (H, W).

    Returns ``{"iou", "f1", "precision", "recall"}``, floats in [0, 1]. A
    ratio whose denominator is zero is 1 (two empty masks agree perfectly),
    except precision, which is 0 for an empty prediction of a non-empty truth
    (silence must not score as precise).
    """
    pred, truth = _check_masks(pred, truth)
    tp = int(np.count_nonzero(pred & truth))
    n_pred = int(np.count_nonzero(pred))
    n_true = int(np.count_nonzero(truth))
    precision = 0.0 if (n_pred == 0 and n_true > 0) else _ratio(tp, n_pred)
    return {
        "iou": _ratio(tp, n_pred + n_true - tp),
        "f1": _ratio(2 * tp, n_pred + n_true),
        "precision": precision,
        "recall": _ratio(tp, n_true),
    }


def pixel_iou(pred, truth) -> float:
    """Intersection over union of the True pixels of two bool (H, W) masks; 1.0 for two empty masks."""
    return mask_scores(pred, truth)["iou"]


def pixel_f1(pred, truth) -> float:
    """F1 (Dice) of the True pixels: 2 TP / (2 TP + FP + FN); 1.0 for two empty masks."""
    return mask_scores(pred, truth)["f1"]


def mean_iou(pred, truth) -> float:
    """Mean of the IoU of the manipulated (True) and of the pristine (False) pixels."""
    pred, truth = _check_masks(pred, truth)
    return 0.5 * (pixel_iou(pred, truth) + pixel_iou(~pred, ~truth))


def pixel_auc(truths: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_pixels: int = PIXEL_AUC_MAX_PIXELS) -> float:
    """Threshold-free pixel AUC of ``maps`` against ``truths``, all pixels pooled.

    truths : bool arrays; maps : arrays of the same shapes (bool or float).
    Beyond ``max_pixels`` a fixed-stride subsample is scored. NaN when no
    pixel, or none of one class, is given.
    """
    if len(truths) != len(maps):
        raise ValueError(f"{len(truths)} truths but {len(maps)} maps")
    if len(truths) == 0:
        return math.nan
    for t, m in zip(truths, maps):
        if np.shape(t) != np.shape(m):
            raise ValueError(f"each map must have the shape of its truth, got {np.shape(m)} for {np.shape(t)}")
        if np.asarray(t).dtype != bool:
            raise ValueError(f"truths must be bool masks, got dtype {np.asarray(t).dtype}")
    y = np.concatenate([np.asarray(t).ravel() for t in truths])
    s = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if y.size > max_pixels:
        step = int(math.ceil(y.size / max_pixels))
        y, s = y[::step], s[::step]
    return roc_auc(y, s)


def pixel_metrics(preds, truths, threshold: float = 0.5) -> dict[str, float]:
    """Pixel scores of a stack of predicted maps against a stack of true masks.

    preds : (N, H, W) float maps in [0, 1] (or bool masks); a pixel is called
        manipulated when its value is ``> threshold``.
    truths : (N, H, W) bool.

    Returns ``{"f1", "iou", "miou", "precision", "recall", "auc", "n"}``:
    f1/iou/miou/precision/recall are means over the N faces of
    :func:`mask_scores` / :func:`mean_iou`; auc is :func:`pixel_auc` of the
    continuous maps, pixels pooled. NaN for N = 0.
    """
    preds, truths = np.asarray(preds), np.asarray(truths)
    if preds.shape != truths.shape or preds.ndim != 3:
        raise ValueError(f"preds and truths must be (N, H, W) stacks of one shape, got {preds.shape} and {truths.shape}")
    if truths.dtype != bool:
        raise ValueError(f"truths must be bool masks, got dtype {truths.dtype}")
    if preds.size and not np.isfinite(preds.astype(np.float64)).all():
        raise ValueError("preds hold NaN or infinite values")
    keys = ("f1", "iou", "miou", "precision", "recall")
    if preds.shape[0] == 0:
        return {**{k: math.nan for k in keys}, "auc": math.nan, "n": 0}
    called = preds > threshold if preds.dtype != bool else preds
    rows = []
    for p, t in zip(called, truths):
        s = mask_scores(p, t)
        s["miou"] = mean_iou(p, t)
        rows.append(s)
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    out["auc"] = pixel_auc(list(truths), list(preds))
    out["n"] = int(preds.shape[0])
    return out
