"""Build a miniature FaceForensics++ tree with true manipulation masks.

Layout (exactly FF++'s)::

    OUT/original_sequences/youtube/<c>/videos/000.mp4
    OUT/manipulated_sequences/<Method>/<c>/videos/<target>_<source>.mp4
    OUT/manipulated_sequences/<Method>/masks/videos/<target>_<source>.mp4
    OUT/splits/{train,val,test}.json
    OUT/ground_truth.json

``<c>`` is ``raw`` (lossless), ``c23`` or ``c40`` (x264 CRF 23 / 40); every
compression level encodes the same uncompressed frames. Original videos
come in pairs (000, 001), (002, 003), ...; each pair [a, b] gives the fakes
a_b (target a, face/expression of source b) and b_a, as in FF++'s splits.

Everything is a pure function of the seed: each original and each fake
draws from its own ``np.random.default_rng([seed, kind, ...])`` stream, so a
subset of methods or compressions reproduces the same videos.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from joblib import Parallel, delayed

from ffmask.errors import FFMaskError
from ffmask.synth.families import draw_family, forge_family
from ffmask.synth.forge import METHODS, draw_params, forge_frame
from ffmask.synth.motion import CameraMotion, prescale, random_motion, render_frame, transform_points
from ffmask.synth.portraits import Portrait, load_portrait, portrait_info, portrait_plan

__all__ = [
    "DEFAULT_IDENTITIES",
    "DEFAULT_FRAMES",
    "DEFAULT_SIZE",
    "DEFAULT_FPS",
    "DEFAULT_COMPRESSIONS",
    "COMPRESSIONS",
    "SynthSummary",
    "parse_size",
    "parse_compressions",
    "parse_manipulations",
    "pair_videos",
    "split_pairs",
    "build_synth",
]

DEFAULT_IDENTITIES = 6
DEFAULT_FRAMES = 48
DEFAULT_SIZE = (320, 240)
DEFAULT_FPS = 25.0
DEFAULT_COMPRESSIONS = ("c23", "c40")
#: At most FaceForensics++'s own count of original videos: a tree that mirrors it needs
#: no more, and 1000 already take about 1.5 CPU-hours at the default size and frames
#: (0.37 s per 48-frame video, 14 videos per identity).
MAX_IDENTITIES = 1000
#: A worker holds one whole video in memory: a fake's RGB frames and its mask's grey ones,
#: 4 bytes per pixel per frame (measured 4.4 at 320x240: 145 MB more RSS for 432 more
#: frames). More than this per video (6990 frames at 320x240, 1747 at 640x480; FF++'s
#: originals average about 500) is a typo, or a run that dies of memory hours in.
MAX_VIDEO_BYTES = 2 * 1024 ** 3
_BYTES_PER_PIXEL_FRAME = 4
# FF++ compression folder -> x264 CRF (None: lossless, qp 0)
COMPRESSIONS = {"raw": None, "c23": 23, "c40": 40}
#: Folder of the family forgeries (:mod:`ffmask.synth.families`): one random
#: region x operation x blend x strength per video, drawn from the seed.
FAMILIES = "Families"
ALL_MANIPULATIONS = METHODS + (FAMILIES,)
_ALIASES = {"df": "Deepfakes", "f2f": "Face2Face", "fs": "FaceSwap", "nt": "NeuralTextures", "fam": FAMILIES}
_MIN_SIDE = 96  # below this the face is too small for dlib's detector
_OURS = ("original_sequences", "manipulated_sequences", "splits", "ground_truth.json")

Progress = Callable[[int, int, str], None]


@dataclass
class SynthSummary:
    """What :func:`build_synth` wrote.

    videos: ``{row: {column: count}}`` with rows ``original`` and each method,
    columns the compressions and ``masks``. pairs: the [a, b] pairs per
    split. seconds: wall time. bytes: total size of the files written.
    """

    out: Path
    videos: dict[str, dict[str, int]] = field(default_factory=dict)
    splits: dict[str, list[list[str]]] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0

    @property
    def n_files(self) -> int:
        return sum(sum(row.values()) for row in self.videos.values())


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (W, H); both even and at least 96 (ValueError otherwise)."""
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"size must look like 320x240, got {text!r}")
    w, h = int(parts[0]), int(parts[1])
    _check_size((w, h))
    return w, h


def _check_size(size) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if w < _MIN_SIDE or h < _MIN_SIDE:
        raise ValueError(f"size must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {w}x{h}")
    if w % 2 or h % 2:
        raise ValueError(f"width and height must be even (H.264 yuv420p), got {w}x{h}")
    return w, h


def _split_csv(value) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


def parse_compressions(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"c23,c40"`` (or a list) -> canonical tuple in raw, c23, c40 order."""
    names = [v.lower() for v in _split_csv(value)]
    bad = [v for v in names if v not in COMPRESSIONS]
    if bad or not names:
        raise ValueError(f"compression must be a comma-separated subset of raw,c23,c40, got {value!r}")
    return tuple(c for c in COMPRESSIONS if c in names)


def parse_manipulations(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"Deepfakes,NT"`` (names, case-insensitive, or DF/F2F/FS/NT) -> canonical tuple."""
    lookup = {m.lower(): m for m in ALL_MANIPULATIONS} | _ALIASES
    names = _split_csv(value)
    bad = [v for v in names if v.lower() not in lookup]
    if bad or not names:
        raise ValueError(
            f"manipulations must be a comma-separated subset of {','.join(ALL_MANIPULATIONS)} "
            f"(or DF,F2F,FS,NT,FAM), got {value!r}"
        )
    chosen = {lookup[v.lower()] for v in names}
    return tuple(m for m in ALL_MANIPULATIONS if m in chosen)


def pair_videos(n: int) -> list[tuple[str, str]]:
    """FF++-style pairs of original video ids: (000, 001), (002, 003), ...

    With an odd ``n`` the last original has no partner (and no fakes).
    """
    ids = _ids(n)
    return [(ids[i], ids[i + 1]) for i in range(0, n - 1, 2)]


def split_pairs(pairs: Sequence[tuple[str, str]]) -> dict[str, list[list[str]]]:
    """Assign pairs to train/val/test in FF++'s 72/14/14 proportions.

    val and test get ``max(1, round(0.14 * P))`` pairs each once there are at
    least 3 pairs (so each split is non-empty); 2 pairs go to train and
    test; a single pair to train. The pairs keep their order: the first go
    to train, then val, then test.
    """
    p = len(pairs)
    if p >= 3:
        n_val = n_test = max(1, round(0.14 * p))
    elif p == 2:
        n_val, n_test = 0, 1
    else:
        n_val = n_test = 0
    n_train = p - n_val - n_test
    as_lists = [[a, b] for a, b in pairs]
    return {
        "train": as_lists[:n_train],
        "val": as_lists[n_train:n_train + n_val],
        "test": as_lists[n_train + n_val:],
    }


def _ids(n: int) -> list[str]:
    return [f"{i:03d}" for i in range(n)]


@dataclass(frozen=True, eq=False)
class _Original:
    """One original video: a portrait, its camera path and the prescaled image."""

    vid: str
    portrait: Portrait
    motion: CameraMotion
    fps: float
    prescaled: tuple[np.ndarray, np.ndarray]

    @classmethod
    def make(cls, vid: str, portrait: Portrait, motion: CameraMotion, fps: float) -> "_Original":
        return cls(vid, portrait, motion, fps, prescale(portrait.image, motion.scale))

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Uncompressed frame ``index`` (uint8 RGB) and its float32 (68, 2) landmarks."""
        t = index / self.fps
        image = render_frame(self.portrait.image, self.motion, t, self.prescaled)
        return image, transform_points(self.portrait.landmarks, self.motion.affine(t))


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FFMaskError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FFMaskError(f"{out} is not empty; pass --overwrite to replace the synthetic tree there")
        # Only remove what synth writes: --overwrite on a wrong folder must
        # not delete unrelated files.
        for name in _OURS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, obj, indent: Optional[int] = 2) -> None:
    from ffmask.outdir import RERUN_OVERWRITE, writing

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, tmp=tmp, then=RERUN_OVERWRITE):  # a full disk is one line, not a traceback
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
            f.write("\n")
        os.replace(tmp, path)


def _original_path(compression: str, vid: str) -> str:
    return f"original_sequences/youtube/{compression}/videos/{vid}.mp4"


def _fake_path(method: str, compression: str, name: str) -> str:
    return f"manipulated_sequences/{method}/{compression}/videos/{name}.mp4"


def _mask_path(method: str, name: str) -> str:
    return f"manipulated_sequences/{method}/masks/videos/{name}.mp4"


def _encode(out: Path, rel: str, frames: list[np.ndarray], fps: float, compression: str) -> None:
    from ffmask.outdir import RERUN_OVERWRITE, writing
    from ffmask.video import write_video

    crf = COMPRESSIONS[compression]
    with writing(out / rel, then=RERUN_OVERWRITE):  # write_video deletes its tmp file; a full disk is one line
        write_video(out / rel, frames, fps=fps, crf=crf or 0, lossless=crf is None)


def build_synth(
    out,
    *,
    seed: int = 0,
    identities: int = DEFAULT_IDENTITIES,
    frames: int = DEFAULT_FRAMES,
    size: tuple[int, int] = DEFAULT_SIZE,
    fps: float = DEFAULT_FPS,
    compressions: str | Sequence[str] = DEFAULT_COMPRESSIONS,
    manipulations: str | Sequence[str] = METHODS,
    overwrite: bool = False,
    jobs: Optional[int] = None,
    progress: Optional[Progress] = None,
    families: Optional[dict] = None,
) -> SynthSummary:
    """Write a miniature FF++ tree with true masks into ``out``; returns a summary.

    seed: any non-negative int; the same seed and options give the same
    uncompressed frames, masks and ``ground_truth.json``. identities: number
    of original videos (2 to :data:`MAX_IDENTITIES`). frames: frames per video
    (1 to :func:`max_frames` of ``size``: 6990 at 320x240). size:
    (width, height), even, >= 96. compressions: subset of raw, c23, c40.
    manipulations: subset of Deepfakes, Face2Face, FaceSwap, NeuralTextures
    and Families (a random family forgery per video, :mod:`ffmask.synth.families`).
    overwrite: replace a previous tree in a non-empty ``out`` (only synth's
    own folders and files are removed); otherwise a non-empty ``out`` is an
    error. families: keyword options of :func:`ffmask.synth.families.draw_family`
    (``regions``, ``operations``, ``blends``, ``strength``) for the Families
    fakes. jobs: worker processes (default: one per CPU core, or a single
    process for small trees); the output does not depend on it. progress: called as ``progress(done, total, label)`` after each
    video job (an original, or one fake with all its encodings and mask).

    Raises ValueError for bad options and FFMaskError for a non-empty
    ``out``.
    """
    t_start = time.perf_counter()
    seed = _int_option(seed, "seed", 0)
    identities = _int_option(identities, "identities", 2)
    if identities > MAX_IDENTITIES:
        raise ValueError(f"identities must be at most {MAX_IDENTITIES} (FaceForensics++'s count of originals), "
                         f"got {identities}")
    frames = _int_option(frames, "frames", 1)
    width, height = _check_size(size)
    most = max_frames((width, height))
    if frames > most:
        gigabytes = frames * width * height * _BYTES_PER_PIXEL_FRAME / 1e9
        raise ValueError(f"frames must be at most {most} at {width}x{height} (a worker holds a whole video in "
                         f"memory: {frames} frames would take {gigabytes:.1f} GB), got {frames}")
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    compressions = parse_compressions(compressions)
    manipulations = parse_manipulations(manipulations)
    if jobs is not None:
        _int_option(jobs, "jobs", 1)
    families = dict(families or {})
    draw_family(np.random.default_rng(0), **families)  # bad family options fail before anything is written
    out = Path(out)
    _prepare_out(out, overwrite)

    ids = _ids(identities)
    originals = []
    for i, (vid, (name, mirrored)) in enumerate(zip(ids, portrait_plan(identities))):
        portrait = load_portrait(name, mirrored)
        ph, pw = portrait.image.shape[:2]
        motion = random_motion(np.random.default_rng([seed, 0, i]), (pw, ph), portrait.box, (width, height))
        originals.append(_Original.make(vid, portrait, motion, fps))
    pairs = pair_videos(identities)
    splits = split_pairs(pairs)
    fakes = [(m, a, b) for m in manipulations for x, y in pairs for a, b in ((x, y), (y, x))]

    total = len(originals) + len(fakes)
    done = 0
    summary = SynthSummary(out=out, splits=splits)
    summary.videos["original"] = {c: 0 for c in compressions}
    for m in manipulations:
        summary.videos[m] = {**{c: 0 for c in compressions}, "masks": 0}

    by_id = {o.vid: o for o in originals}
    tasks = [delayed(_original_job)(out, o, frames, compressions) for o in originals]
    tasks += [
        delayed(_fake_job)(out, method, by_id[a], by_id[b], frames, compressions,
                           _fake_params(seed, method, a, b, families))
        for method, a, b in fakes
    ]
    gt_originals, gt_fakes = {}, []
    n_jobs = _n_jobs(jobs, total, float(total) * frames * width * height)
    runner = Parallel(n_jobs=n_jobs, return_as="generator") if n_jobs > 1 else None
    results = runner(tasks) if runner else (fn(*args, **kw) for fn, args, kw in tasks)
    for kind, record in results:
        if kind == "original":
            gt_originals[record["id"]] = record
            for c in compressions:
                summary.videos["original"][c] += 1
            label = f"original {record['id']}"
        else:
            gt_fakes.append(record)
            for c in compressions:
                summary.videos[record["method"]][c] += 1
            summary.videos[record["method"]]["masks"] += 1
            label = f"{record['method']} {record['name']}"
        done += 1
        if progress:
            progress(done, total, label)

    for split, lst in splits.items():
        _write_json(out / "splits" / f"{split}.json", lst, indent=None)
    _write_json(out / "ground_truth.json", _ground_truth(
        seed, identities, frames, (width, height), fps, compressions, manipulations, originals,
        gt_originals, gt_fakes, splits,
    ))
    summary.seconds = time.perf_counter() - t_start
    summary.bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()
                        and p.relative_to(out).parts[0] in _OURS)
    return summary


# Starting worker processes costs a few seconds; below this much work
# (videos x frames x pixels) one process finishes sooner.
_PARALLEL_WORK = 2e7


def _n_jobs(jobs: Optional[int], n_tasks: int, work: float) -> int:
    if jobs is None:
        jobs = (os.cpu_count() or 1) if work >= _PARALLEL_WORK else 1
    jobs = _int_option(jobs, "jobs", 1)
    return max(1, min(jobs, n_tasks))


def _fake_params(seed: int, method: str, target: str, source: str, families: Optional[dict] = None) -> dict:
    rng = np.random.default_rng([seed, 1, ALL_MANIPULATIONS.index(method), int(target), int(source)])
    return _FORGERS[method][0](method, rng, **(families or {}))


def _forge_families(method, target, target_lms, source, source_lms, params, t):
    return forge_family(target, target_lms, params, source, source_lms)


# manipulation -> (draw per-video params from an rng, forge one frame at t seconds)
_FORGERS = {**{m: (lambda method, rng, **_: draw_params(method, rng), forge_frame) for m in METHODS},
            FAMILIES: (lambda method, rng, **options: draw_family(rng, **options), _forge_families)}


def _original_job(out: Path, orig: _Original, frames: int, compressions) -> tuple[str, dict]:
    """Render and encode one original video; returns its ground-truth record."""
    video = [orig.frame(k)[0] for k in range(frames)]
    for c in compressions:
        _encode(out, _original_path(c, orig.vid), video, orig.fps, c)
    width, height = orig.motion.frame_size
    return "original", {
        "id": orig.vid,
        "portrait": orig.portrait.name,
        "person": orig.portrait.person,
        "mirrored": orig.portrait.mirrored,
        "frames": frames,
        "fps": orig.fps,
        "width": width,
        "height": height,
        "face_box_in_portrait": [round(v, 3) for v in orig.portrait.box],
        "landmarks_in_portrait": np.round(orig.portrait.landmarks.astype(np.float64), 2).tolist(),
        "motion": orig.motion.to_dict(),
        "videos": {c: _original_path(c, orig.vid) for c in compressions},
    }


def _fake_job(out: Path, method: str, target: _Original, source: _Original, frames: int,
              compressions, params: dict) -> tuple[str, dict]:
    """Forge, encode and mask one fake video; returns its ground-truth record."""
    name = f"{target.vid}_{source.vid}"
    fps = target.fps
    fake_frames, mask_frames, areas = [], [], []
    for k in range(frames):
        t_img, t_lms = target.frame(k)
        s_img, s_lms = source.frame(k)
        fake, mask = _FORGERS[method][1](method, t_img, t_lms, s_img, s_lms, params, k / fps)
        fake_frames.append(fake)
        mask_frames.append(mask.astype(np.uint8) * 255)
        areas.append(round(float(mask.mean()), 6))
    for c in compressions:
        _encode(out, _fake_path(method, c, name), fake_frames, fps, c)
    _encode(out, _mask_path(method, name), mask_frames, fps, "raw")
    return "fake", {
        "name": name,
        "method": method,
        "target": target.vid,
        "source": source.vid,
        "frames": frames,
        "compressions": list(compressions),
        "videos": {c: _fake_path(method, c, name) for c in compressions},
        "mask": _mask_path(method, name),
        "params": params,
        "mask_area": areas,
    }


def max_frames(size: tuple[int, int]) -> int:
    """The most frames per video :func:`build_synth` writes at ``size`` (width, height):
    one video must fit in :data:`MAX_VIDEO_BYTES` of memory (at least 1)."""
    width, height = size
    return max(1, MAX_VIDEO_BYTES // (int(width) * int(height) * _BYTES_PER_PIXEL_FRAME))


def _int_option(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _ground_truth(seed, identities, frames, size, fps, compressions, manipulations, originals,
                  gt_originals, gt_fakes, splits) -> dict:
    from ffmask import __version__

    used = sorted({o.portrait.name for o in originals})
    mirrored = sorted({o.portrait.name for o in originals if o.portrait.mirrored})
    return {
        "generator": "ffmask synth",
        "ffmask_version": __version__,
        "seed": seed,
        "options": {
            "identities": identities,
            "frames": frames,
            "size": list(size),
            "fps": fps,
            "compressions": list(compressions),
            "manipulations": list(manipulations),
        },
        "notes": {
            "crf": {c: COMPRESSIONS[c] for c in compressions},
            "raw": "lossless H.264 (qp 0, yuv420p)",
            "masks": "lossless H.264; white (gray > 1) = pixels the manipulation changed in the "
                     "uncompressed frame; frame-aligned with the fakes",
            "mask_area": "per-frame fraction of the frame covered by the true mask",
            "pairs": "consecutive originals (000,001), (002,003), ...; each [a, b] gives a_b and b_a; "
                     "fake a_b has target a and source b",
            "mirrored": "originals with mirrored=true use the horizontally flipped photo, "
                        "a distinct source video of the same person",
            "landmarks": "a frame's 68 dlib landmarks = motion affine(t) applied to landmarks_in_portrait",
            "motion": "frame(t) = portrait warped by a similarity: scale*(1+zoom_amp*sin(2pi*zoom_hz*t+"
                      "zoom_phase)) about center+pan_amp*sin(2pi*pan_hz*t+pan_phase), brightness "
                      "gain0+gain_slope*t; t = frame/fps seconds",
        },
        "portraits": {
            name: {k: v for k, v in portrait_info(name).items() if k in ("file", "person", "origin", "license")}
            for name in used
        },
        "mirrored_portraits": mirrored,
        "originals": gt_originals,
        "fakes": gt_fakes,
        "splits": splits,
    }
