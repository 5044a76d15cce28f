"""Training loops, losses and metrics.

- :mod:`ffmask.train.focus`: the FoCus map generator (``train_focus``).
- :mod:`ffmask.train.metrics`: ROC AUC, accuracy, pixel IoU/F1/mIoU.
- :mod:`ffmask.train.state`: resumable optimizer/RNG state without pickle.
"""

from ffmask.train.metrics import accuracy, mean_iou, pixel_f1, pixel_iou, roc_auc

__all__ = ["accuracy", "mean_iou", "pixel_f1", "pixel_iou", "roc_auc"]
