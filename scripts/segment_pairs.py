"""A third forgery generator, for TRAINING data of ``hull``'s scorer only: regions, operations and blends nobody else used.

    python scripts/segment_pairs.py OUT --seed 3101 [--n 300] [--size 256] [--compressions c19,c31,c43]

``ffmask synth`` forges landmark-hull regions with nine operations under
Gaussian feathers or Poisson clones; ``benchmarks/foreign_pairs.py`` forges
ellipses on landmark groups (inpaint, smooth, bulge, swirl, morph, mirror,
relight, recolor) under hard, ramp or multiband blends. A scorer trained on
both can still learn what *those two* generators call a forgery. This one
shares none of their mechanics:

- **regions** (sizes drawn log-uniformly from 1.5 % to 90 % of the face;
  always inside the face, brows to chin, with the forehead): ``superpixels``
  (a connected union of scikit-image SLIC superpixels of the face, grown
  from a random one), ``triangles`` (a connected union of the landmarks'
  Delaunay triangles), ``polygon`` (a random star-shaped polygon),
  ``strokes`` (one to four thick brush strokes, random walks);
- **operations**: ``denoise`` (total-variation or non-local-means
  denoising), ``tone`` (a gamma or sigmoid tone curve), ``histmatch``
  (histogram matching to the other tuning person's face), ``posterize``
  (bit-depth reduction to 6..2 bits), ``median`` (a median filter),
  ``chroma`` (the chroma planes shifted against the luma, a misregistration),
  ``pattern`` (structured noise: oriented sinusoidal gratings),
  ``paste`` (the same region from another camera framing of the same photo
  or from the other person, aligned by a similarity fitted to the 68
  landmarks; colour-corrected to the region when weak) and
  ``elastic`` (a smooth random displacement field);
- **blends**: ``hard``, ``matte`` (a blurred matte of random width
  modulated by smooth noise: an irregular soft edge) and ``spill`` (a
  smoothstep across the region's signed distance, straddling its border by
  a random part of a random width);
- **strength** uniform in [0, 1], each operation mapping it onto its own
  range, from barely visible to obvious.

Everything else is the setting of ``ffmask synth --pairs`` and
``foreign_pairs.py``: a bundled portrait in a random camera framing, each
image of a pair pushed independently through x264 at every ``--compressions``
CRF, the same square crop (face box x 1.3) resized to ``--size``, dlib's 68
landmarks on the compressed real crop, the folder layout of
:func:`ffmask.synth.pairs.build_pairs` (so
:func:`ffmask.targets.hull_select_train.extract` reads it). The true mask is
the exact support of the change, ``any(fake != real)`` before compression,
as in both other generators.

Only the tuning half's people are forged (Biden and Collins, each with the
other as the histogram / paste donor; :data:`ffmask.targets.hull_train.TUNING`,
never Obama's photos), and the held-out report seed ranges of the two
benchmarks are refused (:data:`REFUSED_SEEDS`): this generator makes
training data and is never a report. Deterministic per ``--seed`` (sample
``i`` draws from ``default_rng([seed, 11, i])``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

import ffmask  # noqa: F401  (installs the torchvision shim first)
from ffmask.synth.pairs import PAIRS_FILE, frame_portrait, write_sample
from ffmask.synth.portraits import load_portrait

REGIONS = ("superpixels", "triangles", "polygon", "strokes")
OPERATIONS = ("denoise", "tone", "histmatch", "posterize", "median", "chroma", "pattern", "paste", "elastic")
BLENDS = ("hard", "matte", "spill")
#: the tuning half's people only (ffmask.targets.hull_train.TUNING); never the report half (Obama)
PEOPLE = ("biden", "astronaut")
#: held-out seed ranges of bench_masks.py (21-39: spent and future report seeds) and foreign_pairs.py (2000-2099)
REFUSED_SEEDS = frozenset(range(21, 40)) | frozenset(range(2000, 2100))
_FRAME_SIZES = ((480, 360), (640, 480), (720, 540))
_MIN_AREA = 0.002  # of the frame, as foreign_pairs.py
_AREA_RANGE = (0.015, 0.9)  # region size as a fraction of the face, drawn log-uniformly


# ---------------------------------------------------------------------------------------------------- regions
def face_area(lms: np.ndarray, shape) -> np.ndarray:
    """bool (H, W): the face from brows to chin with the forehead (the landmarks' hull, brows raised)."""
    lms = np.asarray(lms, np.float32)
    height = float(lms[8, 1] - lms[27, 1])
    brows = lms[17:27] - np.array([0, 0.45 * height], np.float32)
    pts = np.concatenate([lms, brows]).round().astype(np.int32)
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(pts), 1)
    return m.astype(bool)


def _grow(adjacency: list[set], sizes: np.ndarray, start: int, target: float, rng) -> list[int]:
    """Units grown from ``start`` through ``adjacency`` in random order until their size reaches ``target``."""
    chosen, frontier, total = [start], set(adjacency[start]), float(sizes[start])
    while total < target and frontier:
        nxt = sorted(frontier)[int(rng.integers(len(frontier)))]
        frontier.discard(nxt)
        chosen.append(nxt)
        total += float(sizes[nxt])
        frontier |= adjacency[nxt] - set(chosen)
    return chosen


def _superpixels(frame, area, target, rng) -> np.ndarray:
    from skimage.segmentation import slic

    ys, xs = np.nonzero(area)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    labels = slic(frame[y0:y1, x0:x1], n_segments=int(rng.integers(30, 250)), compactness=float(rng.uniform(5, 30)),
                  start_label=0, mask=area[y0:y1, x0:x1])  # -1 outside the face
    n = int(labels.max()) + 1
    adjacency = [set() for _ in range(n)]
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:], labels[:-1])):
        pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
        for p, q in pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs.min(1) >= 0)]:
            adjacency[p].add(int(q))
            adjacency[q].add(int(p))
    sizes = np.bincount(labels[labels >= 0].ravel(), minlength=n)
    chosen = _grow(adjacency, sizes, int(rng.choice(np.flatnonzero(sizes)) if sizes.any() else 0), target, rng)
    out = np.zeros(area.shape, bool)
    out[y0:y1, x0:x1] = np.isin(labels, chosen)
    return out


def _triangles(lms, area, target, rng) -> np.ndarray:
    from scipy.spatial import Delaunay

    tri = Delaunay(np.asarray(lms, np.float64))
    masks = []
    for simplex in tri.simplices:
        m = np.zeros(area.shape, np.uint8)
        cv2.fillConvexPoly(m, np.asarray(lms)[simplex].round().astype(np.int32), 1)
        masks.append(m.astype(bool))
    sizes = np.array([m.sum() for m in masks], np.float64)
    adjacency = [set(int(j) for j in nb if j >= 0) for nb in tri.neighbors]
    chosen = _grow(adjacency, sizes, int(rng.integers(len(masks))), target, rng)
    return np.any([masks[k] for k in chosen], axis=0)


def _polygon(lms, area, target, rng) -> np.ndarray:
    centre = np.asarray(lms)[int(rng.integers(17, 68))] + rng.normal(0, 3, 2)
    radius = np.sqrt(target / np.pi)
    k = int(rng.integers(5, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = radius * rng.uniform(0.5, 1.4, k)
    pts = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
    m = np.zeros(area.shape, np.uint8)
    cv2.fillPoly(m, [pts.round().astype(np.int32)], 1)
    return m.astype(bool)


def _strokes(area, target, face: float, rng) -> np.ndarray:
    ys, xs = np.nonzero(area)
    m = np.zeros(area.shape, np.uint8)
    n = int(rng.integers(1, 5))
    for _ in range(n):
        k = int(rng.integers(0, len(xs)))
        p = np.array([xs[k], ys[k]], np.float64)
        thick = max(2, int(round(np.sqrt(target / n) * rng.uniform(0.25, 0.6))))
        steps = int(rng.integers(3, 9))
        heading = rng.uniform(0, 2 * np.pi)
        pts = [p.copy()]
        for _ in range(steps):
            heading += rng.normal(0, 0.6)
            p = p + face * rng.uniform(0.04, 0.12) * np.array([np.cos(heading), np.sin(heading)])
            pts.append(p.copy())
        cv2.polylines(m, [np.array(pts).round().astype(np.int32)], False, 1, thickness=thick)
    return m.astype(bool)


def region(frame: np.ndarray, lms: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """bool (H, W) region ``name`` of the frame, inside :func:`face_area`; its size drawn log-uniformly."""
    area = face_area(lms, frame.shape[:2])
    total = float(area.sum())
    target = total * float(np.exp(rng.uniform(*np.log(_AREA_RANGE))))
    if name == "superpixels":
        m = _superpixels(frame, area, target, rng)
    elif name == "triangles":
        m = _triangles(lms, area, target, rng)
    elif name == "polygon":
        m = _polygon(lms, area, target, rng)
    elif name == "strokes":
        m = _strokes(area, target, np.sqrt(total), rng)
    else:
        raise ValueError(f"unknown region {name!r}; choose from {', '.join(REGIONS)}")
    return m & area


# ---------------------------------------------------------------------------------------------------- blends
def _smooth_noise(shape, scale: float, rng) -> np.ndarray:
    """float32 (H, W) noise in [0, 1], smooth over about ``scale`` pixels."""
    small = rng.random((max(2, int(shape[0] / scale) + 2), max(2, int(shape[1] / scale) + 2))).astype(np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def matte(mask: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W) alpha in [0, 1] of blend ``kind`` over the region ``mask``."""
    m = mask.astype(np.float32)
    r = float(np.sqrt(m.sum() / np.pi))
    if kind == "hard":
        return m
    if kind == "matte":
        sigma = float(rng.uniform(1.0, max(1.5, 0.25 * r)))
        soft = cv2.GaussianBlur(m, (0, 0), sigma)
        noise = _smooth_noise(mask.shape, float(rng.uniform(4, 24)), rng)
        return np.clip(soft * (0.3 + 1.4 * noise) * rng.uniform(1.0, 1.6), 0, 1)
    if kind == "spill":
        inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
        signed = inside - outside
        width = float(rng.uniform(2.0, max(3.0, 0.5 * r)))
        t = np.clip((signed + width * rng.uniform(0, 0.8)) / width, 0, 1)
        return (t * t * (3 - 2 * t)).astype(np.float32)
    raise ValueError(f"unknown blend {kind!r}; choose from {', '.join(BLENDS)}")


# ---------------------------------------------------------------------------------------------------- operations
def _window(support: np.ndarray, pad: int = 12) -> tuple[slice, slice]:
    ys, xs = np.nonzero(support)
    h, w = support.shape
    return (slice(max(0, ys.min() - pad), min(h, ys.max() + pad + 1)),
            slice(max(0, xs.min() - pad), min(w, xs.max() + pad + 1)))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return _u8(a.astype(np.float32) + t * (b.astype(np.float32) - a))


def operate(frame, lms, support, op: str, s: float, rng, donor=None) -> np.ndarray:
    """The manipulated layer (uint8 RGB, frame size) before blending, ``s`` the strength in [0, 1].

    Filters run on the window around ``support`` (the blend's alpha > 0);
    ``donor`` = (frame, landmarks) of another face (``histmatch``, ``paste``).
    """
    out = frame.copy()
    if op == "paste":
        dframe, dlms = donor
        m, _ = cv2.estimateAffinePartial2D(np.asarray(dlms, np.float32), np.asarray(lms, np.float32))
        warped = cv2.warpAffine(dframe, m, frame.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # a weak paste is colour-corrected to the target region (mean and spread per channel), a strong one raw
        sel = support
        a, b = frame[sel].astype(np.float32), warped[sel].astype(np.float32)
        fixed = (warped - b.mean(0)) / (b.std(0) + 1e-3) * a.std(0) + a.mean(0)
        return _mix(fixed, warped, s)
    ys, xs = _window(support)
    win = frame[ys, xs]
    if op == "denoise":
        if rng.random() < 0.5:
            from skimage.restoration import denoise_tv_chambolle

            res = 255 * denoise_tv_chambolle(win / 255.0, weight=0.02 + 0.2 * s, channel_axis=-1)
        else:
            hh = 2 + 14 * s
            res = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(win), None, hh, hh, 5, 13)
    elif op == "tone":
        x = win / 255.0
        if rng.random() < 0.5:
            res = 255 * x ** float(np.exp(rng.choice([-1, 1]) * (0.05 + 0.6 * s)))
        else:
            gain, cut = 4 + 10 * s, float(rng.uniform(0.35, 0.65))
            sig = 1 / (1 + np.exp(gain * (cut - x)))
            lo, hi = 1 / (1 + np.exp(gain * cut)), 1 / (1 + np.exp(gain * (cut - 1)))
            res = 255 * (x + (0.1 + 0.9 * s) * ((sig - lo) / (hi - lo) - x))
    elif op == "histmatch":
        from skimage.exposure import match_histograms

        dframe, dlms = donor
        ref = dframe[face_area(dlms, dframe.shape[:2])]
        matched = match_histograms(win.reshape(-1, 3), ref, channel_axis=-1).reshape(win.shape)
        res = win + (0.2 + 0.8 * s) * (matched - win.astype(np.float64))
    elif op == "posterize":
        bits = int(round(6 - 4 * s))
        step = 2 ** (8 - bits)
        res = (win // step) * step + step // 2
    elif op == "median":
        res = cv2.medianBlur(np.ascontiguousarray(win), (3, 5, 7, 9)[min(3, int(4 * s))])
    elif op == "chroma":
        ycc = cv2.cvtColor(np.ascontiguousarray(win), cv2.COLOR_RGB2YCrCb).astype(np.float32)
        shift = (0.7 + 4 * s) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)], np.float32)
        t = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        for c in (1, 2):
            ycc[..., c] = cv2.warpAffine(ycc[..., c], t, win.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
        res = cv2.cvtColor(_u8(ycc), cv2.COLOR_YCrCb2RGB)
    elif op == "pattern":
        yy, xx = np.mgrid[:win.shape[0], :win.shape[1]].astype(np.float32)
        wave = np.zeros(win.shape[:2], np.float32)
        for _ in range(int(rng.integers(1, 4))):
            ang, period = rng.uniform(0, np.pi), rng.uniform(3, 20)
            wave += np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period + rng.uniform(0, 2 * np.pi))
        wave *= _smooth_noise(win.shape[:2], float(rng.uniform(8, 30)), rng)
        tint = rng.uniform(0.6, 1.0, 3) if rng.random() < 0.5 else np.ones(3)
        res = win + (1.0 + 9 * s) * wave[..., None] * tint
    elif op == "elastic":
        h, w = win.shape[:2]
        sigma = float(rng.uniform(4, 16))
        d = [cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), sigma) for _ in range(2)]
        amp = (0.6 + 5 * s) / max(float(np.abs(np.stack(d)).max()), 1e-6)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        res = cv2.remap(np.ascontiguousarray(win), xx + amp * d[0], yy + amp * d[1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT)
    else:
        raise ValueError(f"unknown operation {op!r}; choose from {', '.join(OPERATIONS)}")
    out[ys, xs] = _u8(res)
    return out


# ---------------------------------------------------------------------------------------------------- samples
def _draw(rng) -> dict:
    return {"region": str(rng.choice(REGIONS)), "operation": str(rng.choice(OPERATIONS)),
            "blend": str(rng.choice(BLENDS)), "strength": float(rng.uniform(0, 1))}


def forge(frame, lms, params: dict, rng, donor) -> tuple[np.ndarray, np.ndarray]:
    """(fake uint8 RGB, true mask bool) of one draw ``params`` on ``frame``; mask = ``any(fake != frame)``."""
    reg = region(frame, lms, params["region"], rng)
    if reg.sum() < 50:
        return frame.copy(), np.zeros(frame.shape[:2], bool)
    alpha = matte(reg, params["blend"], rng)
    layer = operate(frame, lms, alpha > 0, params["operation"], params["strength"], rng, donor)
    fake = _u8(frame + alpha[..., None] * (layer.astype(np.float32) - frame))
    return fake, np.any(fake != frame, axis=-1)


def check_seed(seed: int) -> int:
    """``seed`` as an int; ValueError for a held-out report seed (:data:`REFUSED_SEEDS`)."""
    if int(seed) in REFUSED_SEEDS:
        raise ValueError(f"seed {seed} is in a held-out report range (21-39, 2000-2099): not for training data")
    return int(seed)


def sample(seed: int, i: int):
    """(record, real frame, fake frame, true mask, face box) of sample ``i`` of ``seed``."""
    rng = np.random.default_rng([seed, 11, i])
    name = str(rng.choice(PEOPLE))
    target = load_portrait(name, bool(rng.random() < 0.5))
    frame, lms, face_box, motion, _ = frame_portrait(rng, target, _FRAME_SIZES)
    # the donor: the other person, or (for a paste) another framing of the same photo half the time
    other = load_portrait([p for p in PEOPLE if p != name][0], bool(rng.random() < 0.5))
    same = bool(rng.random() < 0.5)
    dframe, dlms, _, _, _ = frame_portrait(rng, target if same else other, _FRAME_SIZES)
    hframe, hlms, _, _, _ = (dframe, dlms, 0, 0, 0) if not same else frame_portrait(rng, other, _FRAME_SIZES)
    for _ in range(30):
        p = _draw(rng)
        op_rng = np.random.default_rng(rng.integers(2**32))
        donor = (dframe, dlms) if p["operation"] == "paste" else (hframe, hlms)
        fake, truth = forge(frame, lms, p, op_rng, donor)
        if truth.mean() >= _MIN_AREA:
            break
    if p["operation"] == "paste":
        p["donor"] = "same-person" if same else "other-person"
    record = {"identity": f"{name}{'-mirrored' if target.mirrored else ''}", "person": target.person,
              "source": other.name, "frame_size": list(motion.frame_size),
              "family": f"{p['region']}/{p['operation']}/{p['blend']}", "params": p}
    return record, frame, fake, truth, face_box


def build(out: Path, *, seed: int, n: int, size: int = 256, compressions=("c23", "c40"), scale: float = 1.3) -> Path:
    """Write ``n`` samples of ``seed`` into ``out`` (the pairs layout of :mod:`ffmask.synth.pairs`)."""
    seed = check_seed(seed)
    out = Path(out)
    for sub in (*compressions, "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records = []
    t0 = time.perf_counter()
    for i in range(int(n)):
        record, frame, fake, truth, face_box = sample(seed, i)
        records.append(write_sample(out, f"{i:05d}", record, frame, fake, truth, face_box,
                                    compressions=compressions, size=size, scale=scale))
        print(f"\r{i + 1}/{n} {record['family']:<34}", end="", flush=True)
    print(f"\nwrote {n} pairs to {out} in {time.perf_counter() - t0:.0f} s")
    meta = {"generator": "scripts/segment_pairs.py", "seed": seed, "size": int(size), "scale": scale,
            "compressions": list(compressions), "identities": list(PEOPLE), "options": {}, "samples": records}
    (out / PAIRS_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--compressions", default="c23,c40", help="comma-separated x264 CRFs as cNN")
    args = ap.parse_args()
    if (args.out / PAIRS_FILE).exists():
        raise SystemExit(f"error: {args.out} already holds pairs")
    comps = tuple(c for c in args.compressions.split(",") if c)
    try:
        check_seed(args.seed)
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        if not comps or any(not (c[:1] == "c" and c[1:].isdigit() and 0 <= int(c[1:]) <= 51) for c in comps):
            raise ValueError(f"compressions must be cNN with an x264 CRF 0-51, got {args.compressions!r}")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    build(args.out, seed=args.seed, n=args.n, size=args.size, compressions=comps)


if __name__ == "__main__":
    main()
