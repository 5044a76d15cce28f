"""Cheap ceilings of evidence-map variants for ``hull`` on tuning pair folders (docs/hull_training.md, "Evidence for c40").

    python scripts/evidence_proxy.py PAIRS_FOLDER [--limit 300] [--stride 1] [--out rows.json]

For every pair of a folder written by ``ffmask synth --pairs`` (or
:func:`ffmask.synth.pairs.build_pairs`), at every compression, each
variant of the evidence map (:data:`VARIANTS`, all at ``hull``'s 96 px
working size, divided by the original's texture weight) gets three figures:

- ``thr``: the best IoU any single threshold of the map reaches over the
  whole image (50 quantiles; IoU against the truth area-resized to the
  working size);
- ``hull``: the same, each threshold's map replaced by one convex hull of
  its largest component;
- ``orc``: the candidate oracle -- the best of the selector's own candidates
  (:func:`ffmask.targets.hull_candidates.candidate_masks`, MSCC included)
  built on that map, IoU at the crop size -- with and without landmarks.

Besides maps, two second candidate sources (:data:`SOURCE_VARIANTS`, session 12,
:mod:`ffmask.targets.experiments.hull_regions`) get their candidate oracle alone and together
with the shipped candidates (``union_abs_struct``, ``union_abs_regions``).

It prints the means by CRF band (18-26, 27-37, 38-45) and writes one row
per sample to ``--out``. Never run it on the report seeds (synth 21-30, foreign 2000-2003).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

import ffmask  # noqa: F401
from ffmask.metrics import pixel_iou
from ffmask.synth.pairs import read_pairs
from ffmask.targets import hull as H
from ffmask.targets import hull_candidates as hc
from ffmask.targets.mscc import mscc_mask

VARIANTS = ("abs", "signed", "signed2", "max_abs_signed", "max_abs_signed2", "ms_signed", "ms_abs")
#: variants of the learned local evidence map (``--net WEIGHTS``, session 11; :mod:`ffmask.targets.experiments.hull_evidence`)
NET_VARIANTS = ("net", "max_abs_net", "gate_abs_net")
NET_GRAY = 100.0  # the net's probability p as a map of 100 * p "gray levels" (the candidates' 1-level floor: p 0.01)
#: fixed probability levels tried on the ``net`` map besides its own background / Otsu / peak levels
NET_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
GATE_FLOOR = 0.2  # gate_abs_net = abs * (GATE_FLOOR + p)
#: second candidate sources of session 12 (:mod:`ffmask.targets.experiments.hull_regions`, at most 12 candidates each): their own
#: oracle ``NAME:orc``, their count ``NAME:n`` and, with ``abs``, ``union_abs_NAME:orc`` (shipped candidates + theirs)
SOURCE_VARIANTS = ("struct", "regions")
QUANTILES = np.r_[np.linspace(0.3, 0.95, 27), np.linspace(0.955, 0.999, 23)]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma >= 0.3 else x


def variants(real: np.ndarray, fake: np.ndarray, landmarks, names=VARIANTS,
             net=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """name -> float32 (h, w) map of every :data:`VARIANTS` entry; the face region and the background.

    ``abs``: the absolute residual as hull used it before the signed
    difference (sigma 1.2 % of the side); ``signed`` / ``signed2``:
    ``mean_c |G * (fake - real)_c|`` at sigma 1.2 / 2.4 %; ``max_abs_signed``
    / ``max_abs_signed2``: the maximum of ``abs`` and that signed map, each
    over its background low level, in ``abs``'s gray levels
    (``max_abs_signed2`` is what :func:`~ffmask.targets.hull_candidates.pair_evidence`
    computes now, up to its 1-gray-level floor of the low levels); ``ms_signed`` / ``ms_abs``: the
    maximum over sigma 1.2, 2.4 and 4.8 % of the signed / absolute map, each over its low level.

    With ``net`` (layers of :func:`ffmask.targets.experiments.hull_evidence.load_weights`), the learned map's
    variants (:data:`NET_VARIANTS`): ``net`` = :data:`NET_GRAY` * p; ``max_abs_net`` = the maximum of
    ``abs`` and ``net``, each over its background low level (the net's floored at 1), in ``abs``'s gray
    levels; ``gate_abs_net`` = ``abs * (GATE_FLOOR + p)``. Only the maps of ``names`` are returned.
    """
    big_h, big_w = real.shape[:2]
    h, w = hc.working_size((big_h, big_w))
    raw = H.abs_difference(real, fake)
    diff = cv2.subtract(fake, real, dtype=cv2.CV_32F)  # signed fake - real per channel, float32
    small = real
    if (h, w) != (big_h, big_w):
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
        diff = cv2.resize(diff, (w, h), interpolation=cv2.INTER_AREA)
        small = cv2.resize(real, (w, h), interpolation=cv2.INTER_AREA)
    side = min(h, w)
    weight = H.texture_weight(small)
    pts = None if landmarks is None else np.asarray(landmarks, np.float64) * np.array([w / big_w, h / big_h])
    face, outside = H.face_region((h, w), pts)

    def low(d):
        return max(H.background_levels(d, outside)[0], 1e-3)

    s0 = H.SIGMA * side
    d0 = _blur(raw, s0) / weight
    low0 = low(d0)
    out = {"abs": d0}
    if net is not None:
        from ffmask.targets.experiments import hull_evidence as he

        z = he.forward(he.evidence_inputs(real, fake), net)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        m = NET_GRAY * p
        out.update({"net": m, "max_abs_net": np.maximum(d0 / low0, m / max(low(m), 1.0)) * low0,
                    "gate_abs_net": d0 * (GATE_FLOOR + p)})
    if any(n in names for n in VARIANTS[1:]):
        signed = {f: np.abs(_blur(diff, s0 * f)).mean(axis=2) / weight for f in (1, 2, 4)}
        absolute = {f: _blur(raw, s0 * f) / weight for f in (1, 2, 4)}
        out.update({"signed": signed[1], "signed2": signed[2],
                    "max_abs_signed": np.maximum(d0 / low0, signed[1] / low(signed[1])) * low0,
                    "max_abs_signed2": np.maximum(d0 / low0, signed[2] / low(signed[2])) * low0,
                    "ms_signed": np.max([m / low(m) for m in signed.values()], axis=0) * low0,
                    "ms_abs": np.max([m / low(m) for m in absolute.values()], axis=0) * low0})
    return {k: v.astype(np.float32) for k, v in out.items() if k in names}, face, outside


def _largest_hull(mask: np.ndarray) -> np.ndarray:
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = np.bincount(labels.ravel(), minlength=n)
    areas[0] = 0
    out = np.zeros(mask.shape, np.uint8)
    contours, _ = cv2.findContours((labels == int(np.argmax(areas))).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)
    return out.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def score_folder(folder: Path, limit: int, stride: int, names=VARIANTS, net=None) -> list[dict]:
    """One row per sample (pair x compression x landmarks) with every variant's ``thr``, ``hull`` and ``orc``.

    With both ``abs`` and ``net`` among ``names``, also ``union_abs_net:orc``: the oracle of both
    candidate sets together (the best of the two; it cannot fall below ``abs``'s). Likewise for the
    candidate sources of :data:`SOURCE_VARIANTS` (``struct``: :func:`ffmask.targets.experiments.hull_regions.structure_candidates`
    of the local-structure evidence; ``regions``: :func:`~ffmask.targets.experiments.hull_regions.region_candidates` of the
    shipped residual evidence): ``NAME:orc``, ``NAME:n`` and ``union_abs_NAME:orc``.
    """
    from ffmask.targets.experiments import hull_regions as hr

    map_names = tuple(n for n in names if n not in SOURCE_VARIANTS)
    rows = []
    count: dict = {}
    for s in read_pairs(folder):
        k = count[s.compression] = count.get(s.compression, -1) + 1
        if k % stride or k // stride >= limit:
            continue
        mscc = mscc_mask(s.real, s.fake)
        for lm in (True, False):
            landmarks = s.landmarks if lm else None
            maps, face, outside = variants(s.real, s.fake, landmarks, map_names, net)
            h, w = face.shape
            truth = cv2.resize(s.truth.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.5
            row = {"id": s.id, "comp": s.compression, "lm": lm, "region": s.record["params"]["region"],
                   "operation": s.record["params"]["operation"]}
            for name, d in maps.items():
                if lm:  # the ceilings do not depend on the landmarks
                    levels = np.quantile(d, QUANTILES)
                    row[name + ":thr"] = max(_iou(d > t, truth) for t in levels)
                    row[name + ":hull"] = max(_iou(_largest_hull(d > t), truth) for t in levels)
                med, spread = H.background_noise(d, outside)
                lo, hi = H.background_levels(d, outside)
                vals = d[face]
                ev = hc.Evidence(d, face, outside, med, spread, lo, hi, H._otsu(vals) if vals.size else 0.0,
                                 float(np.quantile(vals, 0.99)) if vals.size else 0.0, s.real.shape[:2], lm)
                extra = [("level", f, NET_GRAY * f) for f in NET_LEVELS] if name == "net" else ()
                masks, _ = hc.candidate_masks(ev, mscc, extra)
                row[name + ":orc"] = max((pixel_iou(hc.to_crop(m, s.truth.shape), s.truth) for m in masks),
                                         default=0.0)
            if "abs" in maps and "net" in maps:
                row["union_abs_net:orc"] = max(row["abs:orc"], row["net:orc"])
            for name in SOURCE_VARIANTS:
                if name not in names:
                    continue
                if name == "struct":
                    masks, _ = hr.structure_candidates(hr.structure_evidence(s.real, s.fake, landmarks))
                else:
                    masks, _ = hr.region_candidates(hc.pair_evidence(s.real, s.fake, landmarks))
                row[name + ":n"] = len(masks)
                row[name + ":orc"] = max((pixel_iou(hc.to_crop(m, s.truth.shape), s.truth) for m in masks),
                                         default=0.0)
                if "abs" in maps:
                    row[f"union_abs_{name}:orc"] = max(row["abs:orc"], row[name + ":orc"])
            rows.append(row)
    return rows


def summary(rows: list[dict], names=VARIANTS) -> str:
    bands = {"CRF 18-26": (0, 26), "CRF 27-37": (27, 37), "CRF 38-45": (38, 99)}
    lines = ["variant | " + " | ".join(f"{b}: thr / hull / oracle lm, no lm" for b in bands)]
    names = [n for n in names] + [u for u in ("union_abs_net",) + tuple(f"union_abs_{v}" for v in SOURCE_VARIANTS)
                                  if rows and f"{u}:orc" in rows[0]]
    for name in names:
        cells = []
        for lo, hi in bands.values():
            rr = [r for r in rows if lo <= int(r["comp"][1:]) <= hi]
            if not rr:
                cells.append("-")
                continue
            lm = [r for r in rr if r["lm"]]
            nolm = [r for r in rr if not r["lm"]]
            cells.append("%s / %s / %s, %s" % tuple(
                "%.3f" % np.mean([r[f"{name}:{k}"] for r in part]) if f"{name}:{k}" in part[0] else "-"
                for k, part in (("thr", lm), ("hull", lm), ("orc", lm), ("orc", nolm))))
        lines.append(f"{name} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--limit", type=int, default=300, help="pairs per compression, at most")
    ap.add_argument("--stride", type=int, default=1, help="every STRIDE-th pair")
    ap.add_argument("--out", type=Path, default=None, help="write the per-sample rows here (JSON)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated, of %s" % ", ".join(VARIANTS + NET_VARIANTS + SOURCE_VARIANTS))
    ap.add_argument("--net", type=Path, default=None,
                    help="weights of the learned evidence map (scripts/train_hull_evidence.py) for the net variants")
    args = ap.parse_args(argv)
    seed = json.loads((args.folder / "pairs.json").read_text("utf-8")).get("seed")
    if seed is not None and (21 <= int(seed) <= 30 or 2000 <= int(seed) <= 2003):
        sys.exit(f"error: {args.folder} is report seed {seed}; the proxy is for tuning data only")
    names = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in names if v not in VARIANTS + NET_VARIANTS + SOURCE_VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant(s) {', '.join(unknown)}")
    if any(v in NET_VARIANTS for v in names) and args.net is None:
        sys.exit("error: the net variants need --net WEIGHTS")
    net = None
    if args.net is not None:
        from ffmask.targets.experiments import hull_evidence as he

        net = he.load_weights(args.net)
    t0 = time.perf_counter()
    rows = score_folder(args.folder, args.limit, args.stride, names, net)
    print(summary(rows, names))
    print(f"{len(rows)} samples, {time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
