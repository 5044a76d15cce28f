"""A training run's JSON-lines log and its running loss averages (shared by every loop)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ffmask.models.checkpoint import strict_json
from ffmask.outdir import writing


def append_log(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one strict-JSON line (NaN/inf become null) to ``path``;
    a failed write (disk full, read-only) is an OutputError naming the file."""
    line = json.dumps(strict_json(record), allow_nan=False) + "\n"
    with writing(path):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after ``step`` (by a run that crashed before its next checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                keep.append(line)
        except (ValueError, AttributeError):
            continue
    with writing(path):
        path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def mean_losses(window: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each loss term over a window of per-step loss dicts ({} for none)."""
    if not window:
        return {}
    return {k: float(np.mean([w[k] for w in window])) for k in window[0]}
