"""Mask fidelity: score pixel-level annotation methods against true masks.

FaceForensics++ ships no ground truth for the comparison masks the field
trains on (MSCC, SSIM, pixel differences); the synthetic trees of
:mod:`ffmask.synth` do. This module measures every map method on every fake
face of such a tree (or of any FF++-style tree with mask videos) along the
same path users take:

1. :func:`collect_faces` runs the annotate pipeline
   (:func:`ffmask.pipeline.annotate_group`) on each original and its fakes:
   sampled frames decoded, the face detected on the original (dlib by
   default), original, fakes and mask videos cropped with the same box; the
   ``official`` map of the mask crop is the true mask.
2. :func:`evaluate` runs each method (``targets.get_method(name)``) on the
   cached ``(real_crop, fake_crop)`` pairs (with the crop's landmarks for
   methods registered with ``landmarks=True``, as annotate does), the FoCus
   model on the fake crops (``"focus"``) or the all-ones baseline
   (``"uniform"``), and scores it per face.
3. :func:`summarise`, :func:`to_markdown`, :func:`plot_bars` and
   :func:`plot_worst` turn the scores into a table and figures;
   :func:`write_report` writes them all.

Scoring rules
-------------
- Masks (``kind="mask"``) are compared as they are. Continuous maps
  (``ssim``, ``diff``) are binarised at ``map > threshold`` with
  ``threshold = 0.1`` (:data:`DEFAULT_THRESHOLD`, the MG2 convention
  ``diff@0.1``); the ``iou_best`` column gives each method its best single
  threshold from :data:`THRESHOLD_GRID` (an oracle chosen on the very faces
  it scores, so an upper bound, labelled as such in the table).
- Per face: IoU = TP / (TP + FP + FN), F1 = 2TP / (2TP + FP + FN),
  precision = TP / (TP + FP), recall = TP / (TP + FN). A ratio with an empty
  denominator is 1 (nothing to find and nothing claimed) -- with an empty
  prediction and a non-empty truth, precision is 0 because the
  denominator TP + FP is 0 but FN is not: see :func:`mask_scores`.
- Per group (method x manipulation x compression): the mean of the per-face
  scores, and the pixel AUC of the map over all pixels of the group's faces
  (rank formula, :func:`ffmask.train.metrics.roc_auc`; binary masks give
  the balanced accuracy).
- The headline number of a method at a compression is the mean over
  manipulations of the per-manipulation mean IoU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from ffmask.errors import FFMaskError

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_THRESHOLD",
    "FOCUS_THRESHOLD",
    "UNIFORM",
    "THRESHOLD_GRID",
    "FaceSample",
    "FaceScore",
    "BenchResult",
    "mask_scores",
    "binarize",
    "pixel_auc",
    "collect_faces",
    "evaluate",
    "summarise",
    "headline",
    "to_markdown",
    "plot_bars",
    "plot_worst",
    "write_report",
    "bench_masks",
]

DEFAULT_METHODS = ("mscc", "ssim", "diff", "diff@0.1", "hull", "uniform")
DEFAULT_THRESHOLD = 0.1
#: FoCus maps are sigmoids centred on 0.5 (logit 0).
FOCUS_THRESHOLD = 0.5
#: The baseline every map must beat: the whole crop marked as manipulated.
UNIFORM = "uniform"
THRESHOLD_GRID = tuple(np.round(np.r_[np.arange(0.005, 0.1, 0.005), np.arange(0.1, 1.0, 0.02)], 3).tolist())
# Pixels per group fed to the rank-based AUC: a fixed strided subsample
# keeps the sort cheap on big trees and the result deterministic.
_AUC_MAX_PIXELS = 2_000_000

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class FaceSample:
    """One fake face crop with its original and its true mask.

    real, fake : uint8 (S, S, 3) RGB crops with the same box.
    truth : bool (S, S), True where the fake was manipulated.
    landmarks : float32 (68, 2) in crop pixels, or None.
    """

    video_id: str
    manipulation: str
    compression: str
    frame_index: int
    real: np.ndarray
    fake: np.ndarray
    truth: np.ndarray
    landmarks: Optional[np.ndarray] = None


@dataclass(frozen=True)
class FaceScore:
    """Scores of one method on one face (see :func:`mask_scores`)."""

    method: str
    face: int  # index into BenchResult.faces
    iou: float
    f1: float
    precision: float
    recall: float


@dataclass
class BenchResult:
    """Everything :func:`evaluate` measured.

    scores: one :class:`FaceScore` per (method, face). groups: one dict per
    (method, manipulation, compression) with n, iou, f1, precision, recall,
    auc, iou_best and threshold_best. thresholds: the binarisation threshold
    used for each continuous method (None for masks).
    """

    faces: list[FaceSample]
    methods: list[str]
    scores: list[FaceScore] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    thresholds: dict[str, Optional[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    checkpoint: Optional[str] = None  # the FoCus checkpoint when "focus" was scored
    device: Optional[str] = None


# ---------------------------------------------------------------- metrics


def _check_masks(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 2 or pred.size == 0:
        raise ValueError(
            f"pred and truth must be non-empty 2-D arrays of one shape, got {pred.shape} and {truth.shape}"
        )
    if pred.dtype != bool or truth.dtype != bool:
        raise ValueError(f"pred and truth must be bool arrays, got {pred.dtype} and {truth.dtype}")
    return pred, truth


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU, F1, precision and recall of a predicted mask against the truth.

    Parameters
    ----------
    pred, truth : ndarray of bool, shape (H, W)

    Returns
    -------
    dict with keys ``iou``, ``f1``, ``precision``, ``recall`` (floats in
    [0, 1]). A ratio whose denominator is zero is 1: two empty masks agree
    perfectly; an empty prediction of a non-empty truth has precision 1
    would reward silence, so precision is 0 whenever the prediction is
    empty and the truth is not.
    """
    pred, truth = _check_masks(pred, truth)
    tp = int(np.count_nonzero(pred & truth))
    n_pred = int(np.count_nonzero(pred))
    n_true = int(np.count_nonzero(truth))
    union = n_pred + n_true - tp
    precision = 0.0 if (n_pred == 0 and n_true > 0) else _ratio(tp, n_pred)
    return {
        "iou": _ratio(tp, union),
        "f1": _ratio(2 * tp, n_pred + n_true),
        "precision": precision,
        "recall": _ratio(tp, n_true),
    }


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


def pixel_auc(truths: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_pixels: int = _AUC_MAX_PIXELS) -> float:
    """Threshold-free pixel AUC of ``maps`` against ``truths``, pooled.

    truths : bool arrays; maps : arrays of the same shapes (bool or float).
    All pixels of all pairs are pooled; beyond ``max_pixels`` a fixed
    stride subsample is used. Returns NaN when one class is absent.
    """
    from ffmask.train.metrics import roc_auc

    if len(truths) != len(maps):
        raise ValueError(f"{len(truths)} truths but {len(maps)} maps")
    if not truths:
        return math.nan
    y = np.concatenate([np.asarray(t, dtype=bool).ravel() for t in truths])
    s = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    if y.shape != s.shape:
        raise ValueError("each map must have the shape of its truth")
    if y.size > max_pixels:
        step = int(math.ceil(y.size / max_pixels))
        y, s = y[::step], s[::step]
    return roc_auc(y, s)


# ------------------------------------------------------------ collection


def collect_faces(
    root,
    *,
    compressions: Sequence[str] = ("c23", "c40"),
    manipulations: Optional[Sequence[str] | str] = None,
    frames: int = 8,
    size: int = 224,
    scale: float = 1.3,
    detector: str = "dlib",
    videos: Optional[Callable[[str], bool]] = None,
    progress: Optional[Progress] = None,
) -> list[FaceSample]:
    """Decode, detect and crop every fake face of an FF++-style tree with masks.

    Exactly what ``ffmask annotate ff++ --method official`` does, for each
    compression and each fake that has a mask video: ``frames`` evenly
    spaced frame indices of its original (the same for fake and mask),
    face detected on the original frame (largest face; frames without one
    are skipped), crop box ``crop_box(face, scale)`` applied to all three,
    resized to ``size``; the landmarks are mapped into the crop.
    ``videos`` filters fakes by video id (e.g. ``"Deepfakes/000_001"``).
    ``progress(done, total, original_id)`` is called after each original.

    Raises FFMaskError when the tree has no fake with a mask video.
    """
    from ffmask.datasets.ffpp import scan_ffpp
    from ffmask.faces import get_detector, points_to_crop
    from ffmask.pipeline import JobSpec, annotate_group, plan_groups

    # The annotate path itself (the original's detections and box for every
    # fake, the mask video cropped alike), so the benchmark measures what
    # users get; "official" turns the mask crop into the true mask.
    spec = JobSpec(methods=("official",), frames=frames, size=size, scale=scale, detector=detector)
    groups = []
    for comp in compressions:
        scan = scan_ffpp(root, compression=comp, manipulations=manipulations, include_originals=False)
        items = [
            item for item in scan.items
            if item.original is not None and item.mask_path is not None and Path(item.mask_path).is_file()
            and (videos is None or videos(item.video_id))
        ]
        groups += plan_groups(items, paired=True)
    if not groups:
        raise FFMaskError(f"{root}: no fake video with a mask video found for compressions {list(compressions)}")

    det = get_detector(detector, landmarks=True)
    out: list[FaceSample] = []
    for done, group in enumerate(groups, 1):
        group.write_original = True  # its records carry the real crops
        records = annotate_group(group, spec, det).records
        reals = {r.frame_index: r.image for r in records if r.label == 0}
        for rec in records:
            if rec.label != 1 or rec.frame_index not in reals:
                continue
            lms = None if rec.landmarks is None else points_to_crop(rec.landmarks, rec.box, size)
            out.append(FaceSample(rec.video_id, rec.manipulation, rec.compression, rec.frame_index,
                                  reals[rec.frame_index], rec.image, np.asarray(rec.maps["official"], bool), lms))
        if progress:
            progress(done, len(groups), group.original.video_id)
    return out


# ------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class _Scorable:
    """How to get one method's 2-D outputs for a list of faces."""

    name: str
    kind: str  # "mask" or "continuous"
    run: Callable[[Sequence[FaceSample]], list]


def _scorable(name: str, checkpoint=None, device=None) -> _Scorable:
    """Resolve a method name: a pair target method, ``focus`` or ``uniform``.

    Raises ValueError for an unknown method or one without a 2-D map.
    """
    from ffmask import targets

    if name == UNIFORM:
        return _Scorable(name, "mask", lambda faces: [np.ones(f.truth.shape, bool) for f in faces])
    if name == "focus":
        from ffmask.pipeline import focus_annotator

        annotator = focus_annotator(None if checkpoint is None else str(checkpoint), device)

        def run_focus(faces):
            if not faces:
                return []
            images = np.stack([f.fake for f in faces])
            # Unknown label: the map annotate writes for a face with no original.
            maps, _ = annotator(images, np.full(len(faces), -1, np.int64))
            return list(maps)

        return _Scorable(name, "continuous", run_focus)
    spec = targets.get_method(name)
    if not spec.paired or spec.kind not in ("mask", "continuous"):
        raise ValueError(
            f"method {name!r} is a {spec.kind} method fed {spec.input!r}; "
            f"only pair methods returning a mask or a continuous map, 'focus' and '{UNIFORM}' can be scored"
        )

    def run_pair(faces):
        if spec.landmarks:
            return [np.asarray(spec.fn(f.real, f.fake, landmarks=f.landmarks)) for f in faces]
        return [np.asarray(spec.fn(f.real, f.fake)) for f in faces]

    return _Scorable(name, spec.kind, run_pair)


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
    ``FaceSample.landmarks``); ``"focus"`` (the FoCus map of the fake alone,
    as annotate writes it for a face with no original, from ``checkpoint``
    or the bundled model); ``"uniform"`` (an all-ones mask: the baseline
    every map must beat). threshold : binarisation of continuous maps
    (``focus`` uses :data:`FOCUS_THRESHOLD`).
    Raises ValueError for an unknown or unsuitable method, or no faces.
    """
    import time

    faces = list(faces)
    if not faces:
        raise ValueError("no faces to evaluate")
    methods = list(dict.fromkeys(methods))
    scorables = {name: _scorable(name, checkpoint, device) for name in methods}
    result = BenchResult(faces=faces, methods=methods, device=device,
                         checkpoint=None if checkpoint is None else str(checkpoint))
    keys = sorted({(f.manipulation, f.compression) for f in faces})
    grid = np.asarray(THRESHOLD_GRID, dtype=np.float32)
    for m_i, name in enumerate(methods):
        spec = scorables[name]
        continuous = spec.kind == "continuous"
        method_threshold = (FOCUS_THRESHOLD if name == "focus" else threshold) if continuous else None
        result.thresholds[name] = method_threshold
        t0 = time.perf_counter()
        outputs = spec.run(faces)
        result.seconds[name] = (time.perf_counter() - t0) / len(faces)
        for i, (face, out) in enumerate(zip(faces, outputs)):
            s = mask_scores(binarize(out, spec.kind, method_threshold or 0.0), face.truth)
            result.scores.append(FaceScore(name, i, **s))
        for manip, comp in keys:
            members = [i for i, f in enumerate(faces) if f.manipulation == manip and f.compression == comp]
            rows = [s for s in result.scores[-len(faces):] if s.face in set(members)]
            group = {
                "method": name, "manipulation": manip, "compression": comp, "n": len(members),
                **{k: float(np.mean([getattr(r, k) for r in rows])) for k in ("iou", "f1", "precision", "recall")},
                "auc": pixel_auc([faces[i].truth for i in members], [outputs[i] for i in members]),
            }
            if continuous:
                ious = np.mean([_iou_sweep(outputs[i], faces[i].truth, grid) for i in members], axis=0)
                best = int(np.argmax(ious))
                group["iou_best"], group["threshold_best"] = float(ious[best]), float(grid[best])
            else:
                group["iou_best"], group["threshold_best"] = group["iou"], None
            result.groups.append(group)
        if progress:
            progress(m_i + 1, len(methods), name)
    return result


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


# ------------------------------------------------------------- reporting


def summarise(result: BenchResult) -> list[dict]:
    """Per (method, compression): mean over manipulations of each group score.

    Returns dicts with method, compression, n (faces), iou, f1, precision,
    recall, auc, iou_best, in method then compression order.
    """
    rows = []
    comps = sorted({g["compression"] for g in result.groups})
    for name in result.methods:
        for comp in comps:
            gs = [g for g in result.groups if g["method"] == name and g["compression"] == comp]
            if not gs:
                continue
            row = {"method": name, "compression": comp, "n": int(sum(g["n"] for g in gs))}
            for k in ("iou", "f1", "precision", "recall", "auc", "iou_best"):
                row[k] = float(np.nanmean([g[k] for g in gs]))
            rows.append(row)
    return rows


def headline(result: BenchResult) -> dict[str, dict[str, float]]:
    """``{method: {compression: mean IoU over manipulations}}``."""
    out: dict[str, dict[str, float]] = {}
    for row in summarise(result):
        out.setdefault(row["method"], {})[row["compression"]] = row["iou"]
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def to_markdown(result: BenchResult) -> str:
    """The summary table and the per-manipulation table as markdown."""
    cols = ("iou", "f1", "precision", "recall", "auc", "iou_best")
    head = "| method | compression | faces | IoU | F1 | precision | recall | pixel AUC | IoU* (oracle thr.) |"
    sep = "|" + "---|" * 9
    lines = ["### Mean over manipulations", "", head, sep]
    for r in summarise(result):
        lines.append("| " + " | ".join([r["method"], r["compression"], str(r["n"])] + [_fmt(r[c]) for c in cols]) + " |")
    lines += ["", "### By manipulation", "",
              "| method | manipulation | compression | faces | IoU | F1 | precision | recall | pixel AUC | IoU* | thr.* |",
              "|" + "---|" * 11]
    for g in sorted(result.groups, key=lambda g: (g["compression"], g["manipulation"], result.methods.index(g["method"]))):
        lines.append("| " + " | ".join(
            [g["method"], g["manipulation"], g["compression"], str(g["n"])]
            + [_fmt(g[c]) for c in cols] + [_fmt(g["threshold_best"])]) + " |")
    thr = ", ".join(f"{m} > {t}" for m, t in result.thresholds.items() if t is not None)
    lines += ["", f"Continuous maps binarised at {thr or 'n/a'}. IoU* = best mean IoU over thresholds "
              f"{THRESHOLD_GRID[0]}..{THRESHOLD_GRID[-1]} chosen on these faces (an oracle upper bound; "
              "masks: same as IoU). Pixel AUC pooled over the group's pixels.", ""]
    return "\n".join(lines)


def to_json(result: BenchResult) -> dict:
    """A JSON-ready dict: summary, groups, per-face scores, thresholds, ms per face."""
    faces = [{"video_id": f.video_id, "manipulation": f.manipulation, "compression": f.compression,
              "frame_index": f.frame_index} for f in result.faces]
    return {
        "methods": result.methods,
        "thresholds": result.thresholds,
        "threshold_grid": list(THRESHOLD_GRID),
        "ms_per_face": {k: v * 1000 for k, v in result.seconds.items()},
        "summary": summarise(result),
        "groups": result.groups,
        "faces": faces,
        "scores": [s.__dict__ for s in result.scores],
    }


def plot_bars(result: BenchResult, path) -> Path:
    """Bar chart of mean IoU per method, grouped by compression, one panel
    per manipulation plus the mean. Writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({g["compression"] for g in result.groups})
    manips = sorted({g["manipulation"] for g in result.groups})
    panels = ["mean"] + manips
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharey=True, squeeze=False)
    width = 0.8 / max(1, len(result.methods))
    colors = plt.get_cmap("tab10").colors
    summary = {(r["method"], r["compression"]): r["iou"] for r in summarise(result)}
    for ax, panel in zip(axes[0], panels):
        for k, name in enumerate(result.methods):
            vals = []
            for comp in comps:
                if panel == "mean":
                    vals.append(summary.get((name, comp), np.nan))
                else:
                    g = [g for g in result.groups if g["method"] == name and g["manipulation"] == panel
                         and g["compression"] == comp]
                    vals.append(g[0]["iou"] if g else np.nan)
            ax.bar(np.arange(len(comps)) + (k - (len(result.methods) - 1) / 2) * width, vals, width,
                   label=name, color=colors[k % len(colors)])
        ax.set_xticks(np.arange(len(comps)), comps)
        ax.set_title(panel)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean IoU vs true mask")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_worst(result: BenchResult, path, *, method: Optional[str] = None, n: int = 8) -> Path:
    """Contact sheet of the ``n`` faces where ``method`` scores the lowest IoU.

    Rows: faces (worst first). Columns: original, fake, true mask, then each
    method's binarised prediction (the true mask outline drawn in green).
    ``method`` defaults to the last method of the run. Writes a PNG.
    """
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    method = method or next((m for m in reversed(result.methods) if m != UNIFORM), result.methods[-1])
    if method not in result.methods:
        raise ValueError(f"method {method!r} was not evaluated; evaluated: {result.methods}")
    rows = sorted((s for s in result.scores if s.method == method), key=lambda s: s.iou)[:n]
    cols = ["original", "fake", "truth"] + result.methods
    picked = [result.faces[s.face] for s in rows]
    preds = {}
    for name in result.methods:
        spec = _scorable(name, result.checkpoint, result.device)
        preds[name] = [binarize(np.asarray(o), spec.kind, result.thresholds.get(name) or 0.0)
                       for o in spec.run(picked)]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.6 * len(cols), 1.7 * len(rows)), squeeze=False)
    for r, s in enumerate(rows):
        face = result.faces[s.face]
        contours, _ = cv2.findContours(face.truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for c, col in enumerate(cols):
            ax = axes[r][c]
            if col == "original":
                img = face.real
            elif col == "fake":
                img = face.fake
            elif col == "truth":
                img = np.repeat(face.truth[..., None].astype(np.uint8) * 255, 3, axis=2)
            else:
                pred = preds[col][r]
                img = np.repeat(pred[..., None].astype(np.uint8) * 255, 3, axis=2)
                cv2.drawContours(img, contours, -1, (0, 200, 0), 2)
                iou = mask_scores(pred, face.truth)["iou"]
                ax.set_title(f"{col} {iou:.2f}", fontsize=7)
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{face.manipulation[:4]} {face.compression}\n{face.video_id.split('/')[-1]}#{face.frame_index}",
                              fontsize=6)
            if r == 0 and col in ("original", "fake", "truth"):
                ax.set_title(col, fontsize=7)
    fig.suptitle(f"worst {len(rows)} faces for {method} (IoU in titles; green = true mask outline)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: BenchResult, out, *, worst_method: Optional[str] = None, worst_n: int = 8) -> dict[str, Path]:
    """Write ``masks.md``, ``masks.json``, ``masks_iou.png`` and
    ``masks_worst.png`` into the folder ``out``; returns their paths by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "masks.md", "json": out / "masks.json"}
    paths["markdown"].write_text("# Mask fidelity\n\n" + to_markdown(result), encoding="utf-8")
    paths["json"].write_text(json.dumps(to_json(result), indent=1, allow_nan=True) + "\n", encoding="utf-8")
    paths["bars"] = plot_bars(result, out / "masks_iou.png")
    paths["worst"] = plot_worst(result, out / "masks_worst.png", method=worst_method, n=worst_n)
    return paths


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
    worst_method: Optional[str] = None,
    checkpoint=None,
    device: Optional[str] = None,
    progress: Optional[Progress] = None,
) -> tuple[BenchResult, dict[str, Path]]:
    """:func:`collect_faces` + :func:`evaluate` + :func:`write_report` in one call.

    Raises ValueError for bad methods before any video is decoded, and
    FFMaskError when the tree holds no fake with a mask video or no face.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("give at least one method")
    for name in methods:
        _scorable(name, checkpoint, device)  # fail fast on a typo or a bad checkpoint
    faces = collect_faces(root, compressions=compressions, manipulations=manipulations, frames=frames,
                          size=size, scale=scale, detector=detector, videos=videos, progress=progress)
    if not faces:
        raise FFMaskError(f"{root}: no face was detected in any sampled frame")
    result = evaluate(faces, methods, threshold=threshold, checkpoint=checkpoint, device=device)
    return result, write_report(result, out, worst_method=worst_method)
