"""A second forgery generator, written apart from ``ffmask.synth``, for an out-of-generator check of masks.

    python benchmarks/foreign_pairs.py OUT [--seed 2000] [--n 120] [--size 256]
    python benchmarks/bench_masks.py --root OUT --methods hull,hull-nolm,mscc,hull-rules,oracle,oracle+hull
    python benchmarks/foreign_pairs.py OUT --seed 2101 --n 300 --people tuning \
        --operations inpaint,smooth,bulge,relight --compressions c18,c30,c42   # training data

``ffmask synth``'s families are what every learned part of ``hull`` was tuned
on (its tuning half) and what its held-out report uses (its other half). A
method can still be fitted to *that generator*: its regions are landmark
hulls, its blends Gaussian feathers or Poisson clones, its operations the
nine of :data:`ffmask.synth.families.OPERATIONS`. This script forges the same
kind of data by other means, so a report on it says how a mask method does
on manipulations nobody wrote its training data with:

- **regions**: ellipses fitted to landmark groups (mouth, one eye, both eyes,
  nose, the whole face, the lower face below the eyes) and a half face cut by
  the nose line -- scaled at random;
- **operations** (none of them is in ``ffmask.synth``): ``inpaint`` (OpenCV's
  Telea or Navier-Stokes inpainting re-renders the region from its border),
  ``smooth`` (skin smoothing by an edge-preserving bilateral filter, as beauty
  filters do), ``bulge`` (a radial magnification or pinch, the "big eyes"
  liquify), ``swirl`` (scikit-image's swirl about the region's centre),
  ``morph`` (an alpha morph with another person's face, warped by
  scikit-image's piecewise-affine transform), ``mirror`` (the region replaced
  by the face mirrored about its nose line: copy-move), ``relight`` (a smooth
  illumination gradient multiplied in), ``recolor`` (an HSV hue rotation and
  saturation change, as lipstick or make-up filters);
- **blends**: ``hard``, ``ramp`` (a linear alpha ramp over a distance
  transform of random width), ``multiband`` (Burt and Adelson's
  Laplacian-pyramid blend over 3-5 levels, composited over the region
  grown by 4 px);
- **strength** in [0, 1], each operation mapping it onto its own range.

Everything else is the setting ``annotate`` meets and ``ffmask synth
--pairs`` uses too: a bundled portrait in a random camera framing (only the
report half's person, Obama's three photos and their mirror images), each
image of a pair pushed independently through x264 (CRF 23 / 40, one intra
frame), the same square crop (the face box enlarged 1.3x) resized to
``--size``, dlib's 68 landmarks on the compressed real crop. The true mask is
the exact support of the change, ``any(fake != real)`` before compression.
The folder has the layout of :func:`ffmask.synth.pairs.build_pairs`, so
``bench_masks.py --root`` and ``ffmask bench masks`` score it by region,
operation, blend and strength.

``--people tuning`` forges the tuning half's people instead (Biden and
Collins, each with the other as the source; never Obama) and
``--operations`` draws from a subset: the training data of ``hull``'s
scorer (:data:`ffmask.targets.hull_select_train.FOREIGN_SETS`). The
report seeds 2000-2002 are refused for it; the defaults draw what every
report drew.

Deterministic per ``--seed`` (sample ``i`` draws from
``default_rng([seed, 7, i])``). Use a seed for one report and never tune on
it; the figures quoted in docs/hull.md name theirs.
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

REGIONS = ("mouth", "eye", "eyes", "nose", "face", "lower", "half")
OPERATIONS = ("inpaint", "smooth", "bulge", "swirl", "morph", "mirror", "relight", "recolor")
BLENDS = ("hard", "ramp", "multiband")
#: The report half's person only (the tuning half is Biden and the astronaut).
IDENTITIES = ("obama", "obama2", "obama3")
SOURCES = ("biden", "astronaut")
#: ``--people``: (targets, sources) of each half. ``report`` (the default) forges Obama's photos;
#: ``tuning`` forges the tuning half's people (:data:`ffmask.targets.hull_train.TUNING`, never Obama),
#: each with the other one as the source, to make *training* data for a learned part.
PEOPLE = {"report": (IDENTITIES, SOURCES), "tuning": (("biden", "astronaut"), ("biden", "astronaut"))}
#: seeds kept for reports: never drawn with the tuning half's people
REPORT_SEEDS = (2000, 2001, 2002, 2003)  # 2003: the next fresh report seed, reserved
#: operations that only make sense on some regions (a whole-face inpainting is a smear, not a forgery)
_OP_REGIONS = {"inpaint": ("mouth", "eye", "eyes", "nose"), "bulge": ("mouth", "eye", "eyes", "nose"),
               "swirl": ("mouth", "eye", "nose"), "mirror": ("eye", "eyes", "mouth", "half", "lower"),
               "morph": ("face", "lower", "mouth", "eyes", "half")}
_GROUPS = {"mouth": np.r_[48:60], "eye": None, "eyes": np.r_[17:27, 36:48], "nose": np.r_[27:36],
           "face": np.r_[0:27], "lower": np.r_[1:16, 29:36, 48:60]}
_FRAME_SIZES = ((480, 360), (640, 480), (720, 540))
_MIN_AREA = 0.002


def _ellipse_mask(points: np.ndarray, shape, scale: float) -> np.ndarray:
    (cx, cy), (a, b), ang = cv2.fitEllipse(points.astype(np.float32))
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, ((cx, cy), (max(a * scale, 3.0), max(b * scale, 3.0)), ang), 1, -1)
    return m.astype(bool)


def _nose_line(lms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point on the face's vertical axis and its unit direction (nose bridge to chin)."""
    top, bottom = lms[27], lms[8]
    d = bottom - top
    return top, d / max(float(np.hypot(*d)), 1e-6)


def region(lms: np.ndarray, shape, name: str, rng: np.random.Generator) -> np.ndarray:
    """bool (H, W) region of the frame, from the 68 landmarks (x, y)."""
    if name == "eye":
        pts = lms[np.r_[36:42]] if rng.random() < 0.5 else lms[np.r_[42:48]]
        return _ellipse_mask(pts, shape, rng.uniform(1.8, 3.0))
    if name == "half":
        face = _ellipse_mask(lms[np.r_[0:27]], shape, rng.uniform(0.95, 1.1))
        p, d = _nose_line(lms)
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        side = (xx - p[0]) * d[1] - (yy - p[1]) * d[0]  # sign of the cross product: left / right of the axis
        return face & ((side > 0) if rng.random() < 0.5 else (side < 0))
    scale = {"mouth": (1.2, 1.8), "eyes": (1.0, 1.3), "nose": (1.1, 1.6), "face": (0.9, 1.1),
             "lower": (0.85, 1.05)}[name]
    return _ellipse_mask(lms[_GROUPS[name]], shape, rng.uniform(*scale))


def _centre_radius(mask: np.ndarray) -> tuple[float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), float(np.sqrt(mask.sum() / np.pi))


def _remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def operate(frame, lms, mask, op: str, s: float, rng, source=None, source_lms=None) -> np.ndarray:
    """The manipulated layer (uint8 RGB, frame size) before blending; ``s`` is the strength in [0, 1]."""
    h, w = mask.shape
    if op == "inpaint":
        m8 = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
        method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
        out = cv2.inpaint(frame, m8, 3 + 6 * s, method)
        # a weak inpainting keeps part of the original detail (re-rendered, not erased)
        return np.clip(frame + (0.35 + 0.65 * s) * (out.astype(np.float32) - frame), 0, 255).round().astype(np.uint8)
    if op == "smooth":
        d = int(5 + 10 * s) | 1
        out = cv2.bilateralFilter(frame, d, 20 + 60 * s, 3 + 6 * s)
        return out
    if op in ("bulge", "swirl"):
        cx, cy, r = _centre_radius(mask)
        r *= 1.3
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        dx, dy = xx - cx, yy - cy
        rho = np.sqrt(dx * dx + dy * dy) / max(r, 1.0)
        inside = rho < 1
        if op == "bulge":
            k = (0.15 + 0.45 * s) * (1 if rng.random() < 0.75 else -0.6)  # magnify, sometimes pinch
            f = np.where(inside, 1 - k * (1 - rho) ** 2, 1.0)
            return _remap(frame, cx + dx * f, cy + dy * f)
        from skimage.transform import swirl

        out = swirl(frame, center=(cx, cy), strength=(0.6 + 2.4 * s) * (1 if rng.random() < 0.5 else -1),
                    radius=r, preserve_range=True, order=1, mode="reflect")
        return np.clip(out, 0, 255).round().astype(np.uint8)
    if op == "morph":
        from skimage.transform import PiecewiseAffineTransform, warp

        t = PiecewiseAffineTransform.from_estimate(lms.astype(np.float64), source_lms.astype(np.float64))
        warped = warp(source, t, output_shape=(h, w), order=1, preserve_range=True, mode="edge")
        # the mesh covers the landmarks' hull only: outside it the frame stays as it is
        mesh = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mesh, cv2.convexHull(lms.astype(np.int32)), 1)
        alpha = (0.3 + 0.6 * s) * cv2.erode(mesh, np.ones((5, 5), np.uint8))[..., None]
        return np.clip((1 - alpha) * frame + alpha * warped, 0, 255).round().astype(np.uint8)
    if op == "mirror":
        p, d = _nose_line(lms)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        # reflect every pixel about the nose line (p, d)
        vx, vy = xx - p[0], yy - p[1]
        along = vx * d[0] + vy * d[1]
        mx, my = p[0] + 2 * along * d[0] - vx, p[1] + 2 * along * d[1] - vy
        out = _remap(frame, mx, my)
        return np.clip(frame + (0.5 + 0.5 * s) * (out.astype(np.float32) - frame), 0, 255).round().astype(np.uint8)
    if op == "relight":
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        cx, cy, r = _centre_radius(mask)
        ramp = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / max(r, 1.0)
        gain = 1 + (0.06 + 0.3 * s) * np.clip(ramp, -1.5, 1.5) * (1 if rng.random() < 0.5 else -1)
        return np.clip(frame * gain[..., None], 0, 255).round().astype(np.uint8)
    if op == "recolor":
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + (8 + 40 * s) * (1 if rng.random() < 0.5 else -1)) % 256
        hsv[..., 1] = np.clip(hsv[..., 1] * (1 + (0.1 + 0.5 * s) * rng.choice([-1, 1])), 0, 255)
        return cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    raise ValueError(f"unknown operation {op!r}")


def blend(frame, layer, mask, kind: str, s: float, rng) -> np.ndarray:
    """``layer`` composited onto ``frame`` inside ``mask`` by ``kind``."""
    if kind == "hard":
        return np.where(mask[..., None], layer, frame)
    if kind == "ramp":
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        _, _, r = _centre_radius(mask)
        width = max(1.0, rng.uniform(0.1, 0.5) * r)
        a = np.clip(dist / width, 0, 1)[..., None]
        return np.clip(frame + a * (layer.astype(np.float32) - frame), 0, 255).round().astype(np.uint8)
    if kind == "multiband":
        # Burt and Adelson's Laplacian-pyramid blend: each band mixed under a mask blurred to its scale
        levels = int(rng.integers(3, 6))
        m = mask.astype(np.float32)
        a, b = frame.astype(np.float32), layer.astype(np.float32)
        gm, la, lb = [m], [], []
        for _ in range(levels):
            a2, b2 = cv2.pyrDown(a), cv2.pyrDown(b)
            la.append(a - cv2.pyrUp(a2, dstsize=a.shape[1::-1]))
            lb.append(b - cv2.pyrUp(b2, dstsize=b.shape[1::-1]))
            gm.append(cv2.pyrDown(gm[-1]))
            a, b = a2, b2
        out = gm[-1][..., None] * b + (1 - gm[-1][..., None]) * a
        for k in range(levels - 1, -1, -1):
            out = cv2.pyrUp(out, dstsize=la[k].shape[1::-1])
            out += gm[k][..., None] * lb[k] + (1 - gm[k][..., None]) * la[k]
        # the forger composites the blended region grown by the finest band's reach, not the whole frame
        reach = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
        return np.where(reach[..., None], np.clip(out, 0, 255).round().astype(np.uint8), frame)
    raise ValueError(f"unknown blend {kind!r}")


def _draw(rng, operations=OPERATIONS) -> dict:
    op = str(rng.choice(operations))
    reg = str(rng.choice(_OP_REGIONS.get(op, REGIONS)))
    return {"region": reg, "operation": op, "blend": str(rng.choice(BLENDS)), "strength": float(rng.uniform(0, 1))}


def check_options(people: str = "report", operations=OPERATIONS, seed: int | None = None) -> tuple[str, ...]:
    """Validated ``operations`` as a tuple; ValueError on an unknown half, operation or a report seed misused."""
    if people not in PEOPLE:
        raise ValueError(f"unknown people {people!r}; choose from {', '.join(PEOPLE)}")
    ops = tuple(operations)
    bad = [o for o in ops if o not in OPERATIONS]
    if bad or not ops:
        raise ValueError(f"unknown operation(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(OPERATIONS)}")
    if people != "report" and seed is not None and int(seed) in REPORT_SEEDS:
        raise ValueError(f"seed {seed} is a report seed ({', '.join(map(str, REPORT_SEEDS))}): not for training data")
    return ops


def sample(seed: int, i: int, people: str = "report", operations=OPERATIONS):
    """(record, real frame, fake frame, true mask, face box) of sample ``i``.

    ``people`` picks the half whose photos are forged (:data:`PEOPLE`),
    ``operations`` the operations drawn from; the defaults are the report
    data (their draws and bytes are those of every earlier report).
    """
    operations = check_options(people, operations)
    targets, sources = PEOPLE[people]
    rng = np.random.default_rng([seed, 7, i])
    name = str(rng.choice(targets))
    target = load_portrait(name, bool(rng.random() < 0.5))
    frame, lms, face_box, motion, _ = frame_portrait(rng, target, _FRAME_SIZES)
    src = load_portrait(str(rng.choice([s for s in sources if s != name])), bool(rng.random() < 0.5))
    for _ in range(30):
        p = _draw(rng, operations)
        op_rng = np.random.default_rng(rng.integers(2**32))
        mask = region(lms, frame.shape[:2], p["region"], op_rng)
        if mask.sum() < 50:
            continue
        layer = operate(frame, lms, mask, p["operation"], p["strength"], op_rng, src.image, src.landmarks)
        fake = blend(frame, layer, mask, p["blend"], p["strength"], op_rng)
        truth = np.any(fake != frame, axis=-1)
        if truth.mean() >= _MIN_AREA:
            break
    record = {"identity": f"{name}{'-mirrored' if target.mirrored else ''}", "person": target.person,
              "source": src.name, "frame_size": list(motion.frame_size),
              "family": f"{p['region']}/{p['operation']}/{p['blend']}",
              "params": p}
    return record, frame, fake, truth, face_box


def build(out: Path, *, seed: int, n: int, size: int, compressions=("c23", "c40"), scale: float = 1.3,
          people: str = "report", operations=OPERATIONS) -> Path:
    """Write ``n`` samples of seed ``seed`` into ``out`` (the pairs layout of :mod:`ffmask.synth.pairs`).

    ``people`` and ``operations`` as in :func:`sample`; a non-default choice
    is recorded under ``options`` in the folder's pairs file.
    """
    operations = check_options(people, operations, seed)
    out = Path(out)
    for sub in (*compressions, "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records = []
    t0 = time.perf_counter()
    for i in range(n):
        record, frame, fake, truth, face_box = sample(seed, i, people, operations)
        records.append(write_sample(out, f"{i:05d}", record, frame, fake, truth, face_box,
                                    compressions=compressions, size=size, scale=scale))
        print(f"\r{i + 1}/{n} {record['family']:<28}", end="", flush=True)
    print(f"\nwrote {n} pairs to {out} in {time.perf_counter() - t0:.0f} s")
    options = {}  # the report defaults leave it empty, as in every earlier report folder
    if people != "report" or operations != OPERATIONS:
        options = {"people": people, "operations": list(operations)}
    meta = {"generator": "benchmarks/foreign_pairs.py", "seed": int(seed), "size": int(size), "scale": scale,
            "compressions": list(compressions), "identities": list(PEOPLE[people][0]), "options": options,
            "samples": records}
    (out / PAIRS_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--people", default="report", help="whose photos: report (Obama, the default) or tuning "
                    "(Biden and the astronaut, for training data; not with the report seeds 2000-2002)")
    ap.add_argument("--operations", default=",".join(OPERATIONS), help="comma-separated subset of the operations")
    ap.add_argument("--compressions", default="c23,c40", help="comma-separated x264 CRFs as cNN")
    args = ap.parse_args()
    if (args.out / PAIRS_FILE).exists():
        raise SystemExit(f"{args.out} already holds pairs")
    comps = tuple(c for c in args.compressions.split(",") if c)
    try:
        ops = check_options(args.people, tuple(o for o in args.operations.split(",") if o), args.seed)
        if not comps or any(not (c[:1] == "c" and c[1:].isdigit() and 0 <= int(c[1:]) <= 51) for c in comps):
            raise ValueError(f"compressions must be cNN with an x264 CRF 0-51, got {args.compressions!r}")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    build(args.out, seed=args.seed, n=args.n, size=args.size, compressions=comps, people=args.people, operations=ops)


if __name__ == "__main__":
    main()
