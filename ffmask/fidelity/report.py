"""Reporting: tables (markdown, JSON) and figures of a :class:`~ffmask.fidelity.scoring.BenchResult`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ffmask.fidelity.scoring import (
    THRESHOLD_GRID,
    ORACLES,
    UNIFORM,
    BenchResult,
    _scorable,
    binarize,
    group_scores,
    summarise,
)
from ffmask.metrics import mask_scores

__all__ = ["group_axes", "to_markdown", "to_json", "bar_styles", "plot_bars", "plot_worst", "write_report"]

_COLS = ("iou", "f1", "precision", "recall", "auc", "iou_best", "iou_img")
_HEAD = "IoU | F1 | precision | recall | pixel AUC | IoU* (best thr. per group) | IoU° (best thr. per face)"


def group_axes(result: BenchResult) -> list[str]:
    """The axes worth a table: ``region``, ``operation``, ``blend``, ``strength`` when the faces
    carry them, else ``manipulation``."""
    axes = [a for a in ("region", "operation", "blend", "strength") if any(a in f.tags for f in result.faces)]
    return axes or ["manipulation"]


def _save(fig, path) -> Path:
    """Lay out, write ``fig`` as a PNG at ``path`` (folders made), close it."""
    import matplotlib.pyplot as plt

    from ffmask.outdir import RERUN, writing

    fig.tight_layout()
    path = Path(path)
    try:
        with writing(path, then=RERUN):  # a full disk is one line naming the file
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def to_markdown(result: BenchResult, axes: Optional[Sequence[str]] = None) -> str:
    """Summary table (mean over the groups of the first axis) and one table per axis, as markdown."""
    axes = list(axes or group_axes(result))
    tables = {a: (result.groups if a == "manipulation" else group_scores(result, a)) for a in axes}
    lines = [f"### Mean over {axes[0]}s", "", f"| method | compression | faces | {_HEAD} |", "|" + "---|" * 10]
    for r in summarise(result, axes[0], tables[axes[0]]):
        lines.append("| " + " | ".join([r["method"], r["compression"], str(r["n"])] + [_fmt(r[c]) for c in _COLS]) + " |")
    for axis in axes:
        lines += ["", f"### By {axis}", "", f"| method | {axis} | compression | faces | {_HEAD} | thr.* |",
                  "|" + "---|" * 12]
        for g in sorted(tables[axis], key=lambda g: (g["compression"], g["group"], result.methods.index(g["method"]))):
            lines.append("| " + " | ".join([g["method"], g["group"], g["compression"], str(g["n"])]
                                           + [_fmt(g[c]) for c in _COLS] + [_fmt(g["threshold_best"])]) + " |")
    thr = ", ".join(f"{m} > {t}" for m, t in result.thresholds.items() if t is not None)
    lines += ["", f"Continuous maps binarised at {thr or 'n/a'}. IoU* = best mean IoU over one threshold per "
              f"group from {THRESHOLD_GRID[0]}..{THRESHOLD_GRID[-1]}; IoU° = mean over faces of each face's own "
              "best threshold (both oracles that see the truth; masks: same as IoU). `oracle` / `oracle+hull`: "
              "per-face best threshold of the smoothed residual (+ one hull of the largest component), the "
              "ceiling of thresholding the pair's evidence. Pixel AUC pooled over the group's pixels.", ""]
    return "\n".join(lines)


def to_json(result: BenchResult, axes: Optional[Sequence[str]] = None) -> dict:
    """A JSON-ready dict: summary, groups per axis, per-face scores, thresholds, ms per face."""
    axes = list(axes or group_axes(result))
    faces = [{"video_id": f.video_id, "manipulation": f.manipulation, "compression": f.compression,
              "frame_index": f.frame_index, **f.tags} for f in result.faces]
    return {
        "methods": result.methods,
        "thresholds": result.thresholds,
        "threshold_grid": list(THRESHOLD_GRID),
        "ms_per_face": {k: v * 1000 for k, v in result.seconds.items()},
        "axes": axes,
        "summary": summarise(result, axes[0]),
        "groups": result.groups,
        "groups_by": {a: group_scores(result, a) for a in axes if a != "manipulation"},
        "faces": faces,
        "scores": [s.__dict__ for s in result.scores],
    }


def bar_styles(methods: Sequence[str]) -> dict[str, dict]:
    """Matplotlib ``bar`` keywords per method: a colour of its own, the ceilings (:data:`ORACLES`) grey and hatched.

    Methods get tab10's colours, tab20's when there are more than ten
    (tab10 would repeat one); the ceilings, which see the truth, are shades
    of grey with a hatch so they do not read as methods.
    """
    import matplotlib

    methods = list(methods)
    ordinary = [m for m in methods if m not in ORACLES]
    colors = matplotlib.colormaps["tab10" if len(ordinary) <= 10 else "tab20"].colors
    style = {name: dict(color=colors[k % len(colors)]) for k, name in enumerate(ordinary)}
    greys = ("0.45", "0.8")
    style.update({name: dict(color=greys[k % len(greys)], hatch="//", edgecolor="0.3", linewidth=0)
                  for k, name in enumerate(m for m in methods if m in ORACLES)})
    return style


def plot_bars(result: BenchResult, path, by: Optional[str] = None) -> Path:
    """Bar chart of mean IoU per method, grouped by compression: one panel for the mean
    and one per value of ``by`` (default the first of :func:`group_axes`). Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = by or group_axes(result)[0]
    groups = result.groups if by == "manipulation" else group_scores(result, by)
    comps = sorted({g["compression"] for g in groups})
    values = sorted({g["group"] for g in groups})
    panels = ["mean"] + values
    ncol = min(len(panels), 5)
    nrow = int(math.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 3.0 * nrow), sharey=True, squeeze=False)
    width = 0.8 / max(1, len(result.methods))
    style = bar_styles(result.methods)
    summary = {(r["method"], r["compression"]): r["iou"] for r in summarise(result, by, groups)}
    lookup = {(g["method"], g["group"], g["compression"]): g["iou"] for g in groups}
    for ax, panel in zip(axes.ravel(), panels):
        for k, name in enumerate(result.methods):
            vals = [summary.get((name, c), np.nan) if panel == "mean" else lookup.get((name, panel, c), np.nan)
                    for c in comps]
            ax.bar(np.arange(len(comps)) + (k - (len(result.methods) - 1) / 2) * width, vals, width,
                   label=name, **style[name])
        ax.set_xticks(np.arange(len(comps)), comps)
        ax.set_title(panel if panel == "mean" else f"{by}: {panel}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean IoU vs true mask")
    # One legend beside the panels: inside a panel it hides the bars it explains.
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


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

    method = method or next((m for m in reversed(result.methods) if m != UNIFORM and m not in ORACLES),
                            result.methods[-1])
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
                ax.set_ylabel(f"{face.manipulation[:20]} {face.compression}\n{face.video_id.split('/')[-1]}"
                              f"#{face.frame_index}",
                              fontsize=6)
            if r == 0 and col in ("original", "fake", "truth"):
                ax.set_title(col, fontsize=7)
    fig.suptitle(f"worst {len(rows)} faces for {method} (IoU in titles; green = true mask outline)", fontsize=8)
    return _save(fig, path)


def write_report(result: BenchResult, out, *, worst_method: Optional[str] = None, worst_n: int = 8,
                 title: str = "Mask fidelity") -> dict[str, Path]:
    """Write ``masks.md``, ``masks.json``, ``masks_iou.png`` (and ``masks_iou_<axis>.png``
    for each further axis) and ``masks_worst.png`` into the folder ``out``; returns their paths by kind."""
    from ffmask.outdir import RERUN, writing

    out = Path(out)
    axes = group_axes(result)
    paths = {"markdown": out / "masks.md", "json": out / "masks.json"}
    texts = {"markdown": f"# {title}\n\n" + to_markdown(result, axes),
             "json": json.dumps(to_json(result, axes), indent=1, allow_nan=True) + "\n"}
    for kind, text in texts.items():
        with writing(paths[kind], then=RERUN):  # a full disk is one line naming the file
            out.mkdir(parents=True, exist_ok=True)
            paths[kind].write_text(text, encoding="utf-8")
    paths["bars"] = plot_bars(result, out / "masks_iou.png", axes[0])
    for axis in axes[1:]:
        paths[f"bars_{axis}"] = plot_bars(result, out / f"masks_iou_{axis}.png", axis)
    paths["worst"] = plot_worst(result, out / "masks_worst.png", method=worst_method, n=worst_n)
    return paths


