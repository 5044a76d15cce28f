"""Training loops, losses and metrics.

- :mod:`ffmask.train.focus`: the FoCus map generator (``train_focus``).
- metrics: :mod:`ffmask.metrics` (``ffmask.train.metrics`` re-exports the old names).
- :mod:`ffmask.train.state`: resumable optimizer/RNG state without pickle.
"""

from ffmask.metrics import accuracy, mean_iou, pixel_f1, pixel_iou, roc_auc

__all__ = ["accuracy", "mean_iou", "pixel_f1", "pixel_iou", "roc_auc"]
