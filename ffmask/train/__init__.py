"""Training loops, losses and metrics.

- :mod:`ffmask.train.focus`: the FoCus map generator (``train_focus``).
- :mod:`ffmask.train.evaluator`: the evaluators (``train_evaluator``).
- :mod:`ffmask.train.loop`: what both loops share: resume, validation, checkpoints, log, Ctrl-C.
- metrics: :mod:`ffmask.metrics` (``ffmask.train.metrics`` re-exports the old names).
- :mod:`ffmask.train.state`: resumable optimizer/RNG state without pickle.
"""

from ffmask.metrics import accuracy, mean_iou, pixel_f1, pixel_iou, roc_auc

__all__ = ["accuracy", "mean_iou", "pixel_f1", "pixel_iou", "roc_auc"]
