"""Where videos, their originals, labels, splits and mask videos come from.

Scanners only *describe* items; they never open a video. Problems with the
tree (a missing folder, an unpaired fake, a bad file name) are reported in
``DatasetScan.problems``, never raised, so one bad corner of a download does
not stop a run or silently change what happens to the other videos.
"""

from __future__ import annotations

from ffmask.datasets.base import DatasetProblem, VideoItem
from ffmask.datasets.registry import DATASETS, DatasetError, DatasetScan, get_dataset

__all__ = ["get_dataset", "DATASETS", "DatasetScan", "DatasetError", "VideoItem", "DatasetProblem"]
