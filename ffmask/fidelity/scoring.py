"""Scoring: run map methods on collected faces and score them against the true masks.

Scoring rules
-------------
- Masks (``kind="mask"``) are compared as they are. Continuous maps
  (``ssim``, ``diff``) are binarised at ``map > threshold`` with
  ``threshold = 0.1`` (:data:`DEFAULT_THRESHOLD`, the MG2 convention
  ``diff@0.1``); FoCus maps at 0.5.
- Per face (:func:`ffmask.metrics.mask_scores`): IoU, F1, precision,
  recall; and ``iou_img``, the IoU of the best threshold *for that face*
  from :data:`THRESHOLD_GRID` (continuous maps; masks: their IoU).
- Per group (method x a grouping axis x compression, :func:`group_scores`):
  the mean of the per-face scores; ``iou_best``, the best single threshold
  for the whole group (an oracle chosen on the faces it scores);
  ``iou_img``; and the pixel AUC pooled over the group
  (:func:`ffmask.metrics.pixel_auc`, on a fixed subsample of each face).
- Ceilings (:data:`ORACLES`, scored like methods): ``oracle`` is the
  per-face best threshold of the smoothed residual
  (:func:`ffmask.targets.hull.residual`), ``oracle+hull`` the same followed
  by one convex hull of the largest component: what any threshold of the
  pair's own evidence could reach, knowing the truth.
- The headline number of a method at a compression is the mean over the
  groups of the per-group mean IoU (every manipulation / family counts
  once, whatever its number of faces).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import cv2
import numpy as np

from ffmask.fidelity.collect import FaceSample
from ffmask.metrics import mask_scores, pixel_auc

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_THRESHOLD",
    "FOCUS_THRESHOLD",
    "UNIFORM",
    "ORACLES",
    "THRESHOLD_GRID",
    "RESIDUAL_GRID",
    "FaceScore",
    "BenchResult",
    "binarize",
    "oracle_mask",
    "evaluate",
    "group_scores",
    "summarise",
    "headline",
]

DEFAULT_METHODS = ("mscc", "ssim", "diff", "diff@0.1", "hull", "uniform", "oracle", "oracle+hull")
DEFAULT_THRESHOLD = 0.1
#: Maps of model-backed methods are called at 0.5: FoCus maps are sigmoids
#: centred on 0.5 (logit 0), FAM maps are normalised to their face's maximum.
MODEL_MAP_THRESHOLD = 0.5
FOCUS_THRESHOLD = MODEL_MAP_THRESHOLD
#: The baseline every map must beat: the whole crop marked as manipulated.
UNIFORM = "uniform"
#: Ceilings that see the truth (per-face best threshold of the smoothed residual, and + one hull).
ORACLES = ("oracle", "oracle+hull")
THRESHOLD_GRID = tuple(np.round(np.r_[np.arange(0.005, 0.1, 0.005), np.arange(0.1, 1.0, 0.02)], 3).tolist())
#: Thresholds of the oracles on the smoothed residual, gray levels.
RESIDUAL_GRID = tuple(np.round(np.r_[np.arange(0.25, 4, 0.25), np.arange(4, 16, 0.5), np.arange(16, 64, 2)], 2).tolist())
# Pixels of each face kept for the pooled AUC (a fixed stride).
_AUC_PIXELS_PER_FACE = 4096

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class FaceScore:
    """Scores of one method on one face."""

    method: str
    face: int  # index into BenchResult.faces
    iou: float
    f1: float
    precision: float
    recall: float
    iou_img: float  # IoU at the face's own best threshold (masks: iou)


@dataclass
class BenchResult:
    """Everything :func:`evaluate` measured.

    scores: one :class:`FaceScore` per (method, face). groups: the default
    grouping (:func:`group_scores` by manipulation). thresholds: the
    binarisation threshold used for each continuous method (None for
    masks). sweeps: per continuous method, (N, len(THRESHOLD_GRID)) IoU of
    each face at each threshold. pixels: per method, each face's subsampled
    (truth, map) for pooled AUCs.
    """

    faces: list[FaceSample]
    methods: list[str]
    scores: list[FaceScore] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    thresholds: dict[str, Optional[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    sweeps: dict[str, np.ndarray] = field(default_factory=dict)
    pixels: dict[str, list] = field(default_factory=dict)
    checkpoint: Optional[str] = None  # the checkpoint of the model-backed method scored, if one was given
    device: Optional[str] = None


def binarize(output: np.ndarray, kind: str, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """A method's output as a bool (H, W) mask.

    ``kind="mask"``: returned as bool. ``kind="continuous"``: ``output >
    threshold``. Other kinds (noise residuals) have no mask and raise
    ValueError.
    """
    output = np.asarray(output)
    if output.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {output.shape}")
    if kind == "mask":
        return output.astype(bool, copy=False)
    if kind == "continuous":
        return output > threshold
    raise ValueError(f"a {kind!r} output cannot be scored as a mask")


def _iou_sweep(output: np.ndarray, truth: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """IoU of ``output > t`` for each t of ``grid`` (empty union -> 1)."""
    v = output.ravel()
    t = truth.ravel()
    pos = np.sort(v[t])
    neg = np.sort(v[~t])
    tp = pos.size - np.searchsorted(pos, grid, side="right")
    fp = neg.size - np.searchsorted(neg, grid, side="right")
    union = fp + pos.size
    return np.where(union == 0, 1.0, tp / np.maximum(union, 1))


def _largest_hull(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = np.zeros(mask.shape, np.uint8)
    if n <= 1:
        return out.astype(bool)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    contours, _ = cv2.findContours((labels == big).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)
    return out.astype(bool)


def oracle_mask(real: np.ndarray, fake: np.ndarray, truth: np.ndarray, *, hull: bool = False) -> np.ndarray:
    """The best mask a single threshold of the smoothed residual gives for this face (it sees ``truth``).

    The residual is :func:`ffmask.targets.hull.residual` (mean RGB absolute
    difference, Gaussian sigma 1.2 % of the side), thresholds
    :data:`RESIDUAL_GRID`; with ``hull=True`` each threshold's mask is
    replaced by the convex hull of its largest component first.
    """
    from ffmask.targets.hull import residual

    d = residual(real, fake)
    grid = np.asarray(RESIDUAL_GRID, np.float32)
    if not hull:
        best = float(grid[int(np.argmax(_iou_sweep(d, truth, grid)))])
        return d > best
    best, best_iou = np.zeros(truth.shape, bool), -1.0
    for t in grid:
        m = _largest_hull(d > t)
        iou = mask_scores(m, truth)["iou"]
        if iou > best_iou:
            best, best_iou = m, iou
    return best


@dataclass(frozen=True)
class _Scorable:
    """How to get one method's 2-D outputs for a list of faces."""

    name: str
    kind: str  # "mask" or "continuous"
    run: Callable[[Sequence[FaceSample]], list]
    threshold: Optional[float] = None  # its own binarisation of a continuous map (None: the run's)


def _scorable(name: str, checkpoint=None, device=None) -> _Scorable:
    """Resolve a method name: a pair target method, a model-backed image method, ``uniform`` or an oracle.

    Raises ValueError for an unknown method or one without a 2-D map.
    """
    from ffmask import targets

    if name == UNIFORM:
        return _Scorable(name, "mask", lambda faces: [np.ones(f.truth.shape, bool) for f in faces])
    if name in ORACLES:
        with_hull = name == "oracle+hull"
        return _Scorable(name, "mask", lambda faces: [oracle_mask(f.real, f.fake, f.truth, hull=with_hull)
                                                      for f in faces])
    no_landmarks = name.endswith("-nolm")
    spec = targets.get_method(name[: -len("-nolm")] if no_landmarks else name)
    if spec.batched and spec.input == "image" and spec.kind == "continuous" and not no_landmarks:
        return _model_scorable(spec, checkpoint, device)
    no_landmarks = name.endswith("-nolm")
    spec = targets.get_method(name[: -len("-nolm")] if no_landmarks else name)
    if not spec.paired or spec.kind not in ("mask", "continuous"):
        raise ValueError(
            f"method {name!r} is a {spec.kind} method fed {spec.input!r}; only pair methods returning a mask or "
            f"a continuous map, model-backed single-image methods, '{UNIFORM}' and {', '.join(map(repr, ORACLES))} can be scored"
        )

    def run_pair(faces):
        if spec.landmarks and not no_landmarks:
            return [np.asarray(spec.fn(f.real, f.fake, landmarks=f.landmarks)) for f in faces]
        return [np.asarray(spec.fn(f.real, f.fake)) for f in faces]

    return _Scorable(name, spec.kind, run_pair)


def _model_backed(name: str) -> bool:
    """Whether method ``name`` (as :func:`_scorable` resolves it) runs a model: only those read a
    checkpoint and a device."""
    from ffmask import targets

    if name == UNIFORM or name in ORACLES or name.endswith("-nolm"):
        return False
    spec = targets.get_method(name)
    return spec.batched and spec.input == "image" and spec.kind == "continuous"


def unused_model_options(methods: Iterable[str], checkpoint=None, device=None) -> list[str]:
    """The model options given (``"checkpoint"``, ``"device"``) that none of ``methods`` reads.

    Only model-backed methods (``focus``, ``fam``) load a checkpoint and run
    on a device; given with pair methods alone they would change nothing, and
    the report would not say so. Raises ValueError for an unknown method.
    """
    given = [name for name, value in (("checkpoint", checkpoint), ("device", device)) if value is not None]
    if not given or any(_model_backed(name) for name in methods):
        return []
    return given


def _model_scorable(spec, checkpoint, device) -> _Scorable:
    """A model-backed single-image method (``focus``, ``fam``) scored on the fake alone.

    The model is loaded as ``annotate`` loads it (the registry entry's
    ``check`` and ``model`` on a run's options: ``checkpoint`` for this
    method, or its default), and each face gets the map annotate writes for a
    face of unknown label, at the model's grid upsampled bilinearly to the
    crop as shard readers do.
    """
    from ffmask.pipeline import JobSpec
    from ffmask.shards.codec import upsample_grid

    options = JobSpec(methods=(spec.name,), device=device,
                      checkpoints=() if checkpoint is None else ((spec.name, str(checkpoint)),))
    if spec.check is not None:
        spec.check(options)
    model = spec.model(options)

    def run_model(faces):
        if not faces:
            return []
        images = np.stack([f.fake for f in faces])
        maps, _ = spec.fn(model, images, np.full(len(faces), -1, np.int64))
        return [upsample_grid(m, f.fake.shape[0]) if m.shape != f.fake.shape[:2] else np.asarray(m, np.float32)
                for m, f in zip(maps, faces)]

    return _Scorable(spec.name, "continuous", run_model, MODEL_MAP_THRESHOLD)


def _subsample(a: np.ndarray) -> np.ndarray:
    flat = np.asarray(a).ravel()
    step = max(1, int(math.ceil(flat.size / _AUC_PIXELS_PER_FACE)))
    return flat[::step]


def evaluate(
    faces: Sequence[FaceSample],
    methods: Iterable[str] = DEFAULT_METHODS,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    checkpoint=None,
    device=None,
    progress: Optional[Progress] = None,
) -> BenchResult:
    """Run each method on each face and score it against the true mask.

    methods : CLI names (``targets.get_method``) of pair methods returning a
    mask or a continuous map (those registered with ``landmarks=True`` get
    ``FaceSample.landmarks``; the suffix ``-nolm``, e.g. ``hull-nolm``,
    calls them without); model-backed single-image methods such as ``"focus"``
    and ``"fam"`` (the map of the fake alone, as annotate writes it for a
    face with no original, from ``checkpoint`` or the method's default); ``"uniform"`` (an all-ones mask: the baseline every
    map must beat); ``"oracle"``, ``"oracle+hull"`` (ceilings, see the
    module docstring). threshold : binarisation of continuous maps
    (model-backed maps use :data:`MODEL_MAP_THRESHOLD`).
    Raises ValueError for an unknown or unsuitable method, or no faces.
    """
    faces = list(faces)
    if not faces:
        raise ValueError("no faces to evaluate")
    methods = list(dict.fromkeys(methods))
    scorables = {name: _scorable(name, checkpoint, device) for name in methods}
    result = BenchResult(faces=faces, methods=methods, device=device,
                         checkpoint=None if checkpoint is None else str(checkpoint))
    grid = np.asarray(THRESHOLD_GRID, dtype=np.float32)
    for m_i, name in enumerate(methods):
        spec = scorables[name]
        continuous = spec.kind == "continuous"
        method_threshold = (threshold if spec.threshold is None else spec.threshold) if continuous else None
        result.thresholds[name] = method_threshold
        t0 = time.perf_counter()
        outputs = spec.run(faces)
        result.seconds[name] = (time.perf_counter() - t0) / len(faces)
        sweeps = []
        result.pixels[name] = []
        for i, (face, out) in enumerate(zip(faces, outputs)):
            s = mask_scores(binarize(out, spec.kind, method_threshold or 0.0), face.truth)
            if continuous:
                sweeps.append(_iou_sweep(np.asarray(out, np.float32), face.truth, grid))
                s["iou_img"] = float(sweeps[-1].max())
            else:
                s["iou_img"] = s["iou"]
            result.scores.append(FaceScore(name, i, **s))
            result.pixels[name].append((_subsample(face.truth), _subsample(np.asarray(out, np.float32))))
        if continuous:
            result.sweeps[name] = np.stack(sweeps)
        if progress:
            progress(m_i + 1, len(methods), name)
    result.groups = group_scores(result, "manipulation")
    return result


def group_scores(result: BenchResult, by: str = "manipulation",
                 faces: Optional[Sequence[int]] = None) -> list[dict]:
    """Per (method, value of ``by``, compression): n, mean iou/f1/precision/recall/iou_img,
    pooled pixel auc, iou_best and threshold_best (continuous maps; masks: iou and None).

    by : ``manipulation``, ``compression`` or a face tag (``region``,
    ``operation``, ``blend``, ``strength``, ``identity``). faces : indices
    to restrict to (default all). Group dicts carry the value under the key
    ``group`` and, for ``by="manipulation"``, also under ``manipulation``.
    """
    chosen = set(range(len(result.faces)) if faces is None else faces)
    keys = sorted({(result.faces[i].key(by), result.faces[i].compression) for i in chosen})
    members = {k: [] for k in keys}
    for i in sorted(chosen):
        members[(result.faces[i].key(by), result.faces[i].compression)].append(i)
    by_method: dict[str, list[FaceScore]] = {}
    for s in result.scores:
        by_method.setdefault(s.method, []).append(s)
    grid = np.asarray(THRESHOLD_GRID)
    groups = []
    for name in result.methods:
        rows = by_method.get(name, [])
        row_of = {s.face: s for s in rows}
        for (value, comp), idx in members.items():
            picked = [row_of[i] for i in idx]
            g = {"method": name, "group": value, "by": by, "compression": comp, "n": len(idx)}
            if by == "manipulation":
                g["manipulation"] = value
            for k in ("iou", "f1", "precision", "recall", "iou_img"):
                g[k] = float(np.mean([getattr(r, k) for r in picked]))
            px = [result.pixels[name][i] for i in idx]
            g["auc"] = pixel_auc([p[0] for p in px], [p[1] for p in px])
            if name in result.sweeps:
                ious = result.sweeps[name][idx].mean(axis=0)
                best = int(np.argmax(ious))
                g["iou_best"], g["threshold_best"] = float(ious[best]), float(grid[best])
            else:
                g["iou_best"], g["threshold_best"] = g["iou"], None
            groups.append(g)
    return groups


def summarise(result: BenchResult, by: str = "manipulation", groups: Optional[list[dict]] = None) -> list[dict]:
    """Per (method, compression): mean over the groups of each group score.

    Returns dicts with method, compression, n (faces), iou, f1, precision,
    recall, auc, iou_best, iou_img, in method then compression order.
    ``groups`` defaults to :func:`group_scores` of ``by``.
    """
    if groups is None:
        groups = result.groups if by == "manipulation" else group_scores(result, by)
    rows = []
    comps = sorted({g["compression"] for g in groups})
    for name in result.methods:
        for comp in comps:
            gs = [g for g in groups if g["method"] == name and g["compression"] == comp]
            if not gs:
                continue
            row = {"method": name, "compression": comp, "n": int(sum(g["n"] for g in gs))}
            for k in ("iou", "f1", "precision", "recall", "auc", "iou_best", "iou_img"):
                row[k] = float(np.nanmean([g[k] for g in gs]))
            rows.append(row)
    return rows


def headline(result: BenchResult, by: str = "manipulation") -> dict[str, dict[str, float]]:
    """``{method: {compression: mean IoU over the groups of by}}``."""
    out: dict[str, dict[str, float]] = {}
    for row in summarise(result, by):
        out.setdefault(row["method"], {})[row["compression"]] = row["iou"]
    return out
