"""Mask fidelity: score pixel-level annotation methods against true masks.

FaceForensics++ ships no ground truth for the comparison masks the field
trains on (MSCC, SSIM, pixel differences); the synthetic trees and pairs of
:mod:`ffmask.synth` do. One module per job:

- :mod:`ffmask.fidelity.collect`: the faces -- :func:`collect_faces` runs
  the annotate pipeline on an FF++-style tree with mask videos,
  :func:`collect_pairs` reads a single-frame pairs folder; and the
  leave-families-out filter (:func:`tuned_on`, :func:`exclude_tuned`).
- :mod:`ffmask.fidelity.scoring`: :func:`evaluate` runs each method and
  scores it per face (IoU, F1, precision, recall from
  :mod:`ffmask.metrics`, plus per-face and per-group best-threshold
  oracles); :func:`group_scores` / :func:`summarise` aggregate by any axis.
- :mod:`ffmask.fidelity.report`: markdown, JSON and figures.

:func:`bench_masks` chains the three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from ffmask.errors import FFMaskError
from ffmask.fidelity.collect import (
    HELD_AXES,
    FaceSample,
    collect,
    collect_faces,
    collect_pairs,
    exclude_tuned,
    is_pairs_folder,
    tuned_on,
)
from ffmask.fidelity.report import group_axes, plot_bars, plot_worst, to_json, to_markdown, write_report
from ffmask.fidelity.scoring import (
    DEFAULT_METHODS,
    DEFAULT_THRESHOLD,
    FOCUS_THRESHOLD,
    MODEL_MAP_THRESHOLD,
    ORACLES,
    RESIDUAL_GRID,
    THRESHOLD_GRID,
    UNIFORM,
    BenchResult,
    FaceScore,
    _scorable,
    binarize,
    evaluate,
    group_scores,
    headline,
    oracle_mask,
    summarise,
    unused_model_options,
)
from ffmask.metrics import mask_scores, pixel_auc

__all__ = [
    "DEFAULT_METHODS", "DEFAULT_THRESHOLD", "FOCUS_THRESHOLD", "MODEL_MAP_THRESHOLD", "UNIFORM", "ORACLES", "THRESHOLD_GRID",
    "RESIDUAL_GRID", "HELD_AXES", "FaceSample", "FaceScore", "BenchResult", "mask_scores", "pixel_auc",
    "binarize", "oracle_mask", "collect_faces", "collect_pairs", "collect", "is_pairs_folder", "tuned_on",
    "exclude_tuned", "evaluate", "group_scores", "summarise", "headline", "group_axes", "to_markdown", "to_json",
    "plot_bars", "plot_worst", "write_report", "bench_masks", "unused_model_options",
]


def bench_masks(
    root,
    out,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    compressions: Sequence[str] = ("c23", "c40"),
    manipulations: Optional[Sequence[str] | str] = None,
    frames: int = 8,
    size: int = 224,
    scale: float = 1.3,
    detector: str = "dlib",
    threshold: float = DEFAULT_THRESHOLD,
    videos: Optional[Callable[[str], bool]] = None,
    tuned: Optional[Sequence] = None,
    worst_method: Optional[str] = None,
    checkpoint=None,
    device: Optional[str] = None,
    progress=None,
) -> tuple[BenchResult, dict[str, Path]]:
    """Collect (tree or pairs folder) + :func:`evaluate` + :func:`write_report` in one call.

    tuned : pairs folders a method was tuned on; only faces sharing no
    region, operation or person with any of them are scored (the
    leave-families-out protocol), and an FFMaskError says so when none is
    left. Raises ValueError for bad methods before any video is decoded,
    and FFMaskError when the tree holds no fake with a mask video or no face.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("give at least one method")
    for name in methods:
        _scorable(name, checkpoint, device)  # fail fast on a typo or a bad checkpoint
    unused = unused_model_options(methods, checkpoint, device)
    if unused:
        raise ValueError(f"{' and '.join(unused)} given, but no method of {methods} runs a model (focus, fam): "
                         "it would change nothing")
    held: dict[str, set] = {}
    for folder in tuned or ():
        for axis, values in tuned_on(folder).items():
            held.setdefault(axis, set()).update(values)
    if not Path(root).exists():
        raise FFMaskError(f"{root}: no such folder")
    faces = collect(root, compressions=compressions, manipulations=manipulations, frames=frames, size=size,
                    scale=scale, detector=detector, videos=videos, progress=progress)
    if held:
        faces = exclude_tuned(faces, held)
        if not faces:
            raise FFMaskError(f"{root}: every face shares a region, operation or person with the tuning set")
    if not faces:
        raise FFMaskError(f"{root}: no face was detected in any sampled frame")
    result = evaluate(faces, methods, threshold=threshold, checkpoint=checkpoint, device=device)
    return result, write_report(result, out, worst_method=worst_method)
