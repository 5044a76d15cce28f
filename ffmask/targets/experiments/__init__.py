"""Records of ``hull`` experiments that failed their gates (issue #10): not shipped methods.

Nothing in :mod:`ffmask.targets` or the CLI imports these modules; only the
scripts that ran the experiments and their tests do, so that the figures in
docs/hull_training.md can be reproduced:

- :mod:`~ffmask.targets.experiments.hull_evidence`: the learned local evidence
  map of session 11 (``scripts/train_hull_evidence.py``, ``scripts/evidence_proxy.py``);
- :mod:`~ffmask.targets.experiments.hull_regions`: session 12's structure and
  Chan-Vese region candidate sources (``scripts/evidence_proxy.py``);
- :mod:`~ffmask.targets.experiments.hull_cnn`: session 14's scorer that sees the
  candidates (``scripts/hull_cnn_diag.py``).

Session 15's extent estimate lives in its script alone (``scripts/hull_extent_diag.py``).
"""
