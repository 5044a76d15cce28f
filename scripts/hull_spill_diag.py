"""Issue #10 diagnostic (session 18): can a pair's residual tell where an edit ends inside the codec's spill?

Session 17 found that H.264 spills an edit's reconstruction error into the
blocks after it in raster order, and that at c40 the vote of ``hull``'s
candidates runs down the face below small edits. Session 18 asked two
questions, both answered by this script:

1. **Physics, method-free** (:func:`spill_profile`, ``--folders``): on each
   pair the mean of the evidence ``hull`` reads (the smoothed,
   texture-normalised residual of
   :func:`ffmask.targets.hull_candidates.pair_evidence`, in units of the
   pair's background low level) inside the true mask, in the band of equal
   height right below it (same columns) and in the band of equal height
   right above it. When the band below is as strong as the edit, no
   threshold or shape feature on that residual can place the edit's lower
   edge. The same pairs' signed difference ``D = fake - real``
   (:func:`difference_coherence`): how coherent it is (``|G * D|`` over
   ``G * |D|``, sigma 2 px) inside the edit and in the band below, on the
   pairs whose band below differs at least 0.8x as much as the edit.
2. **Within-candidate steps** (:func:`step_features`, ``--gate``): for each
   candidate, the row profile of that residual inside it and the split row
   with the largest drop from above to below (at least 30 % of the
   candidate's area above it and 10 % below): the drop as
   ``log((mean above + 0.1) / (mean below + 0.1))``, the split's depth (share
   of the candidate's height) and the area share below it; the same over
   columns (left over right); and each drop minus the pair's largest
   (8 columns). A candidate that runs past an edit into a weaker spill has a
   step inside it. The shipped tree recipe
   (:func:`ffmask.targets.hull_select_train.fit`) is refitted with and without
   them on cached extracts (``hull_select_train.extract(..., keep_masks=True)``
   saved with ``np.savez``, plus ``generator`` and ``pair`` arrays) and scored
   by the shipped vote on held-out pairs (session 14's split: the odd pairs of
   the ``--test`` extracts at CRF 23 / 40 held out; their even pairs and the
   ``--train`` extracts trained on).

Usage::

    python scripts/hull_spill_diag.py --folders PAIRS_DIR [PAIRS_DIR ...]
    python scripts/hull_spill_diag.py --gate --test A.npz:A_pairs ... --train B.npz:B_pairs ...

(``X.npz:DIR``: an extract and the pairs folder it was made from; the
residual is recomputed from the folder in the extract's order.) Results of
session 18: docs/hull_training.md, "Where an edit ends inside the spill".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ffmask.targets import hull_candidates as hc

STEP_COLUMNS = ("step_down", "step_down_depth", "step_down_share", "step_right", "step_right_depth",
                "step_right_share", "step_down_minus_best", "step_right_minus_best")
MIN_BEFORE = 0.3  # share of the candidate's area before a split, at least
MIN_AFTER = 0.1  # ... and after it


def evidence_units(real: np.ndarray, fake: np.ndarray, landmarks: Optional[np.ndarray] = None) -> np.ndarray:
    """The residual ``hull`` reads, in units of the pair's background low level: float32 (h, w), working size."""
    ev = hc.pair_evidence(real, fake, landmarks)
    return (ev.d / max(ev.low, 1e-6)).astype(np.float32)


def spill_profile(u: np.ndarray, truth: np.ndarray) -> Optional[tuple[float, float, float]]:
    """Mean ``u`` inside ``truth``, in the band of equal height right below it and right above it.

    Parameters
    ----------
    u : ndarray of float, shape (h, w)
        The residual (:func:`evidence_units`).
    truth : ndarray of bool, shape (h, w)
        The true mask at the same size.

    Returns
    -------
    (inside, below, above) or None
        The bands span the truth's columns; None when the truth has fewer
        than 20 pixels or the band below fewer than 10 outside the truth.
        ``above`` is NaN when the truth touches the top edge.
    """
    bands = _bands(truth)
    if bands is None:
        return None
    below, above = bands
    return float(u[truth].mean()), float(u[below].mean()), float(u[above].mean()) if above.any() else float("nan")


def _bands(truth: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The bands of ``truth``'s height right below it (outside it) and right above it, over its columns:
    bool masks like ``truth``; None when the truth has fewer than 20 pixels or the band below fewer than 10."""
    if truth.sum() < 20:
        return None
    ys, xs = np.nonzero(truth)
    top, bottom = ys.min(), ys.max() + 1
    height = bottom - top
    below = np.zeros_like(truth)
    below[bottom:bottom + height, xs.min():xs.max() + 1] = True
    below &= ~truth
    if below.sum() < 10:
        return None
    above = np.zeros_like(truth)
    above[max(0, top - height):top, xs.min():xs.max() + 1] = True
    return below, above


def difference_coherence(real: np.ndarray, fake: np.ndarray, truth: np.ndarray, sigma: float = 2.0
                         ) -> Optional[tuple[float, float, float, float]]:
    """How coherent the signed difference is inside ``truth`` and in the band of equal height right below it.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
    truth : ndarray of bool, shape (H, W)
    sigma : float
        Gaussian sigma, pixels.

    Returns
    -------
    (coherence inside, coherence below, mean |D| inside, mean |D| below) or None
        Coherence: mean ``|G * D|`` over mean ``G * |D|`` (channel means), 1 for
        a difference of one sign, near 0 for sign-alternating noise; ``D`` the
        signed difference ``fake - real``. None for too small a truth or no band
        below (as :func:`spill_profile`).
    """
    bands = _bands(truth)
    if bands is None:
        return None
    below = bands[0]
    d = fake.astype(np.float32) - real.astype(np.float32)
    smooth_abs = np.abs(cv2.GaussianBlur(d, (0, 0), sigma)).mean(2)
    abs_smooth = cv2.GaussianBlur(np.abs(d), (0, 0), sigma).mean(2)
    magnitude = np.abs(d).mean(2)
    return (float(smooth_abs[truth].mean() / max(abs_smooth[truth].mean(), 1e-9)),
            float(smooth_abs[below].mean() / max(abs_smooth[below].mean(), 1e-9)),
            float(magnitude[truth].mean()), float(magnitude[below].mean()))


def profile_step(masks: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest drop of ``u`` across a split of each mask's rows (axis 1).

    Parameters
    ----------
    masks : ndarray of float32 or bool, shape (K, a, b)
    u : ndarray of float32, shape (a, b)

    Returns
    -------
    drop, depth, share : ndarray of float, shape (K,)
        ``log((mean above + 0.1) / (mean below + 0.1))`` at the best split
        with at least :data:`MIN_BEFORE` of the mask's area above it and
        :data:`MIN_AFTER` below; the split's depth as a share of the mask's
        height (rows from its first to the split, inclusive); the area share
        below it. 0 / 1 / 0 for a mask without such a split.
    """
    m = np.asarray(masks, np.float32)
    row_sum = np.einsum("kab,ab->ka", m, np.asarray(u, np.float32))
    row_count = m.sum(2)
    total_count = row_count.sum(1, keepdims=True)
    count_before = np.cumsum(row_count, 1)
    sum_before = np.cumsum(row_sum, 1)
    count_after = total_count - count_before
    sum_after = row_sum.sum(1, keepdims=True) - sum_before
    valid = (count_before >= MIN_BEFORE * total_count) & (count_after >= MIN_AFTER * total_count) & (total_count > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.log((sum_before / np.maximum(count_before, 1e-9) + 0.1)
                      / (sum_after / np.maximum(count_after, 1e-9) + 0.1))
    drop = np.where(valid, drop, -np.inf)
    k = np.arange(len(m))
    split = drop.argmax(1)
    best = drop[k, split]
    found = np.isfinite(best)
    rows = row_count > 0
    first = rows.argmax(1)
    last = rows.shape[1] - 1 - rows[:, ::-1].argmax(1)
    depth = (split - first + 1) / np.maximum(last - first + 1, 1)
    share = count_after[k, split] / np.maximum(total_count[:, 0], 1e-9)
    return np.where(found, best, 0.0), np.where(found, depth, 1.0), np.where(found, share, 0.0)


def step_features(masks: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The :data:`STEP_COLUMNS` of a pair's candidates ``masks`` (K, h, w) on its residual ``u`` (h, w):
    float32 (K, 8)."""
    if len(masks) == 0:
        return np.zeros((0, len(STEP_COLUMNS)), np.float32)
    m = np.asarray(masks, np.float32)
    down = profile_step(m, u)
    right = profile_step(m.transpose(0, 2, 1), np.asarray(u).T)
    cols = [*down, *right, down[0] - down[0].max(), right[0] - right[0].max()]
    return np.stack(cols, 1).astype(np.float32)


def folder_profiles(folder: Path, compressions: Sequence[str] = ("c23", "c40")) -> dict:
    """Per compression: the share of pairs whose band below is at least as strong as the edit (and at least 0.8x),
    the share whose band above is at least 0.8x, and the mean ``u`` of each band (landmarks given)."""
    from ffmask.synth.pairs import read_pairs

    out = {}
    for comp in compressions:
        rows = []
        for s in read_pairs(folder, [comp]):
            u = evidence_units(s.real, s.fake, s.landmarks)
            h, w = u.shape
            truth = cv2.resize(s.truth.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
            p = spill_profile(u, truth)
            c = difference_coherence(s.real, s.fake, s.truth)
            if p is not None and c is not None:
                rows.append((*p, *c))
        r = np.array(rows, float).reshape(-1, 7)
        weak = r[:, 6] >= 0.8 * r[:, 5]  # the band below differs at least 0.8x as much as the edit (full size)
        out[comp] = {"pairs": len(r), "inside": float(np.mean(r[:, 0])), "below": float(np.mean(r[:, 1])),
                     "above": float(np.nanmean(r[:, 2])),
                     "below_ge_inside": float(np.mean(r[:, 1] >= r[:, 0])),
                     "below_ge_0.8_inside": float(np.mean(r[:, 1] >= 0.8 * r[:, 0])),
                     "above_ge_0.8_inside": float(np.nanmean(r[:, 2] >= 0.8 * r[:, 0])),
                     "ambiguous": int(weak.sum()),
                     "coherence_inside_gt_below_ambiguous": float(np.mean(r[weak, 3] > r[weak, 4])) if weak.any()
                     else float("nan")}
    return out


def _with_steps(extract_path: Path, folder: Path) -> dict:
    """A cached extract with the :data:`STEP_COLUMNS` appended to ``x`` (its last columns), the residual
    recomputed from ``folder``
    (pairs in :func:`ffmask.targets.hull_select_train.extract`'s order: each pair with, then without landmarks)."""
    from ffmask.synth.pairs import read_pairs

    with np.load(extract_path) as fh:
        data = {k: fh[k] for k in fh.files}
    us = [evidence_units(s.real, s.fake, lms) for s in read_pairs(folder) for lms in (s.landmarks, None)]
    if len(us) != len(data["region"]):
        raise ValueError(f"{extract_path}: {len(data['region'])} samples, {folder} gives {len(us)}")
    group = data["group"]
    n = len(data["region"])
    starts, ends = np.searchsorted(group, np.arange(n), "left"), np.searchsorted(group, np.arange(n), "right")
    extra = np.zeros((len(group), len(STEP_COLUMNS)), np.float32)
    for g in range(n):
        a, b = starts[g], ends[g]
        h, w = data["small"][g]
        masks = np.unpackbits(data["masks"][a:b], axis=1)[:, :h * w].reshape(b - a, h, w)
        extra[a:b] = step_features(masks, us[g])
    data["x"] = np.concatenate([data["x"], extra], 1)
    return data


def gate(test: Sequence[tuple[Path, Path]], train: Sequence[tuple[Path, Path]]) -> dict:
    """Held-out vote IoU per generator / compression / landmark cell, the shipped recipe without and with the
    step columns fitted on the same rows (session 14's split; see the module docstring)."""
    from ffmask.targets import hull_select_train as hst

    tr, va = [], []
    for path, folder in test:
        d = _with_steps(path, folder)
        tr.append(hst.subset(d, d["pair"] % 2 == 0))
        va.append(hst.subset(d, (d["pair"] % 2 == 1) & np.isin(d["compression"], ("c23", "c40"))))
    tr += [_with_steps(path, folder) for path, folder in train]
    tr, va = hst.concat(tr), hst.concat(va)
    base = tr["x"].shape[1] - len(STEP_COLUMNS)
    preds = {"shipped recipe": hst.predict(hst.fit(tr["x"][:, :base], tr["y"]), va["x"][:, :base]),
             "with steps": hst.predict(hst.fit(tr["x"], tr["y"]), va["x"])}
    out = {}
    for cell, pick in hst.generator_cells(va):
        out[cell] = {name: float(hst.fused_scores(p, va, pick).mean()) for name, p in preds.items()}
    return out


def _pairs(specs: Sequence[str]) -> list[tuple[Path, Path]]:
    out = []
    for spec in specs:
        path, sep, folder = spec.partition(":")
        if not sep:
            raise SystemExit(f"error: {spec!r} is not EXTRACT.npz:PAIRS_DIR")
        out.append((Path(path), Path(folder)))
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folders", nargs="*", default=[], help="pairs folders (ffmask synth pairs) for the profile")
    ap.add_argument("--gate", action="store_true", help="refit the shipped recipe with the step columns")
    ap.add_argument("--test", nargs="*", default=[], help="EXTRACT.npz:PAIRS_DIR, odd pairs held out")
    ap.add_argument("--train", nargs="*", default=[], help="EXTRACT.npz:PAIRS_DIR, trained on")
    args = ap.parse_args(argv)
    for folder in args.folders:
        for comp, r in folder_profiles(Path(folder)).items():
            print(f"{Path(folder).name} {comp} {r['pairs']} pairs: mean u inside {r['inside']:.2f} "
                  f"below {r['below']:.2f} above {r['above']:.2f} | "
                  f"below >= inside {100 * r['below_ge_inside']:.0f} %, "
                  f">= 0.8x {100 * r['below_ge_0.8_inside']:.0f} % | "
                  f"above >= 0.8x {100 * r['above_ge_0.8_inside']:.0f} % | "
                  f"{r['ambiguous']} pairs whose band below differs >= 0.8x the edit: the edit more coherent in "
                  f"{100 * r['coherence_inside_gt_below_ambiguous']:.0f} %")
    if args.gate:
        print(json.dumps(gate(_pairs(args.test), _pairs(args.train)), indent=1))


if __name__ == "__main__":
    main()
