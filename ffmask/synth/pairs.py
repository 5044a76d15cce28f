"""Fast mode: single-frame (real, fake, true mask) face-crop pairs of the families.

No video, no motion: each sample is one frame of a bundled portrait (a
random camera framing), forged by one family (:mod:`ffmask.synth.families`),
then -- the setting mask methods meet on FF++ -- the real and the fake frame
are each pushed *independently* through H.264 (x264 CRF 23 / 40, one intra
frame), cropped with the same square box (the face box enlarged 1.3x),
resized to ``size`` px, and the real crop gets dlib's 68 landmarks, as
``ffmask annotate`` passes them.

Layout written by :func:`build_pairs`::

    OUT/pairs.json                    one record per sample (family, identity, landmarks per compression)
    OUT/<c>/<id>_real.png, <id>_fake.png   the crops after compression <c> (raw: none)
    OUT/masks/<id>.png                the true mask of the crop (white = changed)

Deterministic per seed: sample ``i`` draws from ``np.random.default_rng([seed, 3, i])``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from ffmask.errors import FFMaskError
from ffmask.outdir import RERUN_OVERWRITE, writing
from ffmask.synth.families import draw_family, family_name, forge_family
from ffmask.synth.motion import random_motion, render_frame, transform_points
from ffmask.synth.portraits import load_portrait, portrait_names

__all__ = ["PAIRS_FILE", "MAX_PAIRS", "PairSample", "h264_roundtrip", "identity_keys", "build_pairs", "frame_portrait",
           "write_sample", "read_pairs"]

PAIRS_FILE = "pairs.json"
#: More samples than this is a typo: each takes about 0.13 CPU-seconds and 375 kB (256 px crops, c23 and
#: c40; 20 samples measured), so 100000 already fill about 37 GB in about 4 CPU-hours (one process).
MAX_PAIRS = 100_000
_CRF = {"raw": None, "c23": 23, "c40": 40}
_CRF_MAX = 51  # x264's CRF range is 0..51


def _crf(name: str) -> Optional[int]:
    """x264 CRF of a compression name: ``raw`` (None), ``c23``, ``c40`` or any ``c<N>``, 0 <= N <= 51."""
    if name in _CRF:
        return _CRF[name]
    if isinstance(name, str) and name[:1] == "c" and name[1:].isdigit() and int(name[1:]) <= _CRF_MAX:
        return int(name[1:])
    raise ValueError(f"compressions must be raw or c<CRF> with CRF in 0..{_CRF_MAX} (c23, c40 as FF++), got {name!r}")
_FRAME_SIZES = ((320, 240), (384, 288), (480, 360), (640, 480))
_MIN_MASK = 0.002  # a forgery changing less than this share of the crop is redrawn
Progress = Callable[[int, int, str], None]


def identity_keys() -> tuple[str, ...]:
    """Every bundled portrait and its mirror image: ``obama``, ``obama-mirrored``, ..."""
    return tuple(f"{n}{m}" for n in portrait_names() for m in ("", "-mirrored"))


def _portrait(key: str):
    name, _, mirrored = key.partition("-")
    return load_portrait(name, bool(mirrored))


def h264_roundtrip(image: np.ndarray, crf: Optional[int]) -> np.ndarray:
    """``image`` (uint8 RGB, even sides) encoded as one x264 intra frame at ``crf`` and decoded.

    ``crf=None`` returns a copy (no compression).
    """
    import av

    if crf is None:
        return image.copy()
    h, w = image.shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"crf": str(int(crf)), "threads": "1", "x264-params": "mbtree=0"}
    packets = list(enc.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
    packets += list(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    return frames[0].to_ndarray(format="rgb24")


@dataclass
class PairsSummary:
    out: Path
    samples: int = 0
    redrawn: int = 0
    seconds: float = 0.0
    families: dict = field(default_factory=dict)


def frame_portrait(rng: np.random.Generator, portrait, frame_sizes: Sequence[tuple[int, int]]):
    """One frame of ``portrait`` in a random camera framing, drawn from ``rng``.

    Draws a frame size (W, H) from ``frame_sizes``, a camera path
    (:func:`ffmask.synth.motion.random_motion`) and a time in [0, 4) s, in
    that order. Returns ``(frame, landmarks, face_box, motion, t)``: uint8
    RGB (H, W, 3), float32 (68, 2) landmarks and float32 (4,) face box
    (x0, y0, x1, y1) in frame pixels, the camera path and the time.
    """
    fw, fh = frame_sizes[int(rng.integers(len(frame_sizes)))]
    ph, pw = portrait.image.shape[:2]
    motion = random_motion(rng, (pw, ph), portrait.box, (fw, fh))
    t = float(rng.uniform(0, 4))
    affine = motion.affine(t)
    corners = np.array([portrait.box[:2], portrait.box[2:]], np.float64)
    return (render_frame(portrait.image, motion, t), transform_points(portrait.landmarks, affine),
            transform_points(corners, affine).reshape(-1), motion, t)


def _sample(seed: int, i: int, identities, family_options, frame_sizes) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng([seed, 3, i])
    key = str(rng.choice(identities))
    target = _portrait(key)
    others = [k for k in identity_keys() if _portrait(k).person != target.person] or list(identity_keys())
    source_key = str(rng.choice(others))
    source = _portrait(source_key)
    frame, lms, face_box, motion, t = frame_portrait(rng, target, frame_sizes)
    fw, fh = motion.frame_size
    sh, sw = source.image.shape[:2]
    s_motion = random_motion(rng, (sw, sh), source.box, (fw, fh))
    s_frame = render_frame(source.image, s_motion, t)
    s_lms = transform_points(source.landmarks, s_motion.affine(t))
    redraws = 0
    while True:
        params = draw_family(rng, **family_options)
        fake, mask = forge_family(frame, lms, params, s_frame, s_lms)
        if mask.mean() >= _MIN_MASK or redraws >= 20:
            break
        redraws += 1
    record = {"identity": key, "person": target.person, "source": source_key, "frame_size": [fw, fh],
              "family": family_name(params), "params": params}
    return record, frame, fake, mask, face_box, redraws


def build_pairs(
    out,
    *,
    seed: int = 0,
    n: int = 100,
    identities: Optional[Sequence[str]] = None,
    regions=None,
    operations=None,
    blends=None,
    strength: Optional[tuple[float, float]] = None,
    compressions: Sequence[str] = ("c23", "c40"),
    size: int = 256,
    scale: float = 1.3,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
) -> PairsSummary:
    """Write ``n`` (1 to :data:`MAX_PAIRS`) single-frame family forgeries, compressed and cropped
    (``size`` 32 to ``pipeline.MAX_CROP_SIZE`` pixels), into ``out``.

    identities : portrait keys (:func:`identity_keys`) the target faces come
    from (default all); the swap source is always another person.
    regions, operations, blends : family subsets (default all).
    strength : (lo, hi) within [0, 1]. compressions : raw, c23, c40 or any
    ``c<CRF>`` (x264 CRF 0..51; training data drawn over a range of CRFs).
    Raises ValueError for bad options, FFMaskError for a non-empty ``out``
    without ``overwrite``.
    """
    from ffmask.pipeline import MAX_CROP_SIZE

    t0 = time.perf_counter()
    if not 1 <= int(n) <= MAX_PAIRS:
        raise ValueError(f"n must be from 1 to {MAX_PAIRS}, got {n}")
    if not 32 <= int(size) <= MAX_CROP_SIZE:  # --crop 100000 (a typo) would die of memory in OpenCV
        raise ValueError(f"size must be from 32 to {MAX_CROP_SIZE} pixels, got {size}")
    keys = identity_keys()
    identities = tuple(identities) if identities else keys
    bad = [k for k in identities if k not in keys]
    if bad:
        raise ValueError(f"unknown identities {bad}; choose from {', '.join(keys)}")
    compressions = tuple(compressions)
    if not compressions:
        raise ValueError("compressions must name at least one of raw, c23, c40 (or c<CRF>)")
    for c in compressions:
        _crf(c)
    family_options = {"regions": regions, "operations": operations, "blends": blends, "strength": strength}
    draw_family(np.random.default_rng(0), **family_options)  # validate before writing anything
    out = Path(out)
    if (out / PAIRS_FILE).exists() and not overwrite:
        raise FFMaskError(f"{out} already holds pairs; pass --overwrite to replace them")
    for sub in (*compressions, "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    summary = PairsSummary(out=out)
    records = []
    for i in range(int(n)):
        record, frame, fake, mask, face_box, redraws = _sample(seed, i, identities, family_options, _FRAME_SIZES)
        records.append(write_sample(out, f"{i:05d}", record, frame, fake, mask, face_box,
                                    compressions=compressions, size=size, scale=scale))
        summary.redrawn += redraws
        summary.families[record["family"]] = summary.families.get(record["family"], 0) + 1
        if progress:
            progress(i + 1, int(n), record["family"])
    meta = {"generator": "ffmask synth --pairs", "seed": int(seed), "size": int(size), "scale": float(scale),
            "compressions": list(compressions), "identities": list(identities),
            "options": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in family_options.items()},
            "samples": records}
    with writing(out / PAIRS_FILE, then=RERUN_OVERWRITE):
        (out / PAIRS_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    summary.samples = len(records)
    summary.seconds = time.perf_counter() - t0
    return summary


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8, BGR or grey) as a PNG; a failed write is one OutputError line.

    ``cv2.imwrite`` only returns False when the file cannot be written (a
    full disk left a pairs folder without its crops, and synth said done)."""
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise FFMaskError(f"cannot encode {path} as PNG")
    with writing(path, then=RERUN_OVERWRITE):
        path.write_bytes(data.tobytes())


def write_sample(out, sid: str, record: dict, frame: np.ndarray, fake: np.ndarray, mask: np.ndarray,
                 face_box: np.ndarray, *, compressions: Sequence[str], size: int, scale: float = 1.3) -> dict:
    """Write one forged frame as a sample of a pairs folder (the layout of the module docstring).

    frame, fake : uint8 RGB (H, W, 3) before compression; mask : bool (H, W),
    the true mask; face_box : (4,) the face's tight box in frame pixels. The
    real and the fake frame are each pushed through x264 at every
    compression, cropped with the same square box (``scale`` x the face box)
    and resized to ``size``; dlib's landmarks are taken on the compressed
    real crop. Fills and returns ``record`` (id, box, landmarks, mask_area).
    """
    from ffmask.faces import crop_box, crop_resize, landmarks68, points_to_crop

    out = Path(out)
    box = crop_box(face_box, frame.shape, scale)
    crop_mask = crop_resize(mask, box, size)
    _write_png(out / "masks" / f"{sid}.png", crop_mask.astype(np.uint8) * 255)
    face_in_crop = points_to_crop(np.asarray(face_box).reshape(2, 2), box, size).reshape(-1)
    record.update(id=sid, box=[int(v) for v in box], landmarks={}, mask_area=round(float(crop_mask.mean()), 6))
    for c in compressions:
        real_c = crop_resize(h264_roundtrip(frame, _crf(c)), box, size)
        fake_c = crop_resize(h264_roundtrip(fake, _crf(c)), box, size)
        _write_png(out / c / f"{sid}_real.png", real_c[..., ::-1])
        _write_png(out / c / f"{sid}_fake.png", fake_c[..., ::-1])
        # dlib's landmarks on the (compressed) real crop, inside the known face box
        record["landmarks"][c] = np.round(landmarks68(real_c, face_in_crop), 2).tolist()
    return record


@dataclass(frozen=True, eq=False)
class PairSample:
    """One crop pair of a pairs folder: uint8 RGB real/fake (S, S, 3), bool truth (S, S),
    float32 (68, 2) landmarks of the real crop, and the sample's record."""

    id: str
    compression: str
    real: np.ndarray
    fake: np.ndarray
    truth: np.ndarray
    landmarks: np.ndarray
    record: dict


def read_pairs(root, compressions: Optional[Sequence[str]] = None) -> Iterator[PairSample]:
    """Yield every :class:`PairSample` of a folder written by :func:`build_pairs`."""
    root = Path(root)
    path = root / PAIRS_FILE
    if not path.is_file():
        raise FFMaskError(f"{root}: no {PAIRS_FILE} (not a folder written by `ffmask synth --pairs`)")
    meta = json.loads(path.read_text("utf-8"))
    comps = [c for c in meta["compressions"] if compressions is None or c in compressions]
    for c in comps:
        for rec in meta["samples"]:
            sid = rec["id"]
            real = cv2.imread(str(root / c / f"{sid}_real.png"), cv2.IMREAD_COLOR)
            fake = cv2.imread(str(root / c / f"{sid}_fake.png"), cv2.IMREAD_COLOR)
            truth = cv2.imread(str(root / "masks" / f"{sid}.png"), cv2.IMREAD_GRAYSCALE)
            if real is None or fake is None or truth is None:
                raise FFMaskError(f"{root}: sample {sid} ({c}) is missing an image")
            yield PairSample(sid, c, real[..., ::-1].copy(), fake[..., ::-1].copy(), truth > 127,
                             np.asarray(rec["landmarks"][c], np.float32), rec)
