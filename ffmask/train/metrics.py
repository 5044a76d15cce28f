"""Deprecated location: the metrics live in :mod:`ffmask.metrics` (one module for training,
``evaluate`` and ``bench``). Re-exported here so existing imports keep working."""

from ffmask.metrics import accuracy, mean_iou, pixel_f1, pixel_iou, roc_auc

__all__ = ["accuracy", "mean_iou", "pixel_f1", "pixel_iou", "roc_auc"]
