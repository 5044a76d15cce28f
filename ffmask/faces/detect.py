"""Face detectors behind one interface: dlib HOG, MTCNN, and "none" (the frame is the face).

Every detector takes uint8 RGB frames ``(H, W, 3)`` and returns, per frame, a
list of :class:`Face` sorted by score (best first). Boxes are in full-frame
pixel-edge coordinates ``x0, y0, x1, y1`` (``x1, y1`` exclusive) whatever
downscaling detection used, and every detector fills the same dlib 68-point
landmark layout, so downstream code never cares which detector ran.

Detectors are built lazily and cached per process by :func:`get_detector`:
loading dlib's models or MTCNN's weights is paid once per worker, not per
video.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ffmask.devices import resolve_device
from ffmask.errors import FFMaskError
from ffmask.faces.landmarks import landmarks68

__all__ = [
    "Face",
    "FaceDetector",
    "DlibDetector",
    "MTCNNDetector",
    "FullFrameDetector",
    "DETECTORS",
    "get_detector",
    "largest_face",
]


@dataclass(frozen=True, eq=False, repr=False)
class Face:
    """One detected face.

    Attributes
    ----------
    box : ndarray, float32 (4,)
        The detector's tight box ``x0, y0, x1, y1`` in full-frame pixels
        (pixel edges, ``x1, y1`` exclusive). It may stick out of the frame a
        little; :func:`ffmask.faces.crop_box` handles that.
    score : float
        Detector confidence: dlib's SVM margin (about -0.5..3, higher is
        surer) or MTCNN's probability in [0, 1]. Comparable only within one
        detector.
    landmarks : ndarray, float32 (68, 2) or None
        ``(x, y)`` points in dlib's 68-point layout (jaw 0-16, brows 17-26,
        nose 27-35, eyes 36-47, mouth 48-67), full-frame pixels; None when
        landmarks were not asked for.

    Arrays are stored read-only; faces compare equal when all fields match.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None

    def __post_init__(self):
        box = np.array(self.box, dtype=np.float32)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise ValueError(f"Face.box must be 4 finite numbers x0, y0, x1, y1, got {self.box!r}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"Face.box is degenerate (need x1 > x0 and y1 > y0): {box.tolist()}")
        box.flags.writeable = False
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks is not None:
            points = np.array(self.landmarks, dtype=np.float32)
            if points.shape != (68, 2):
                raise ValueError(f"Face.landmarks must have shape (68, 2), got {points.shape}")
            points.flags.writeable = False
            object.__setattr__(self, "landmarks", points)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    def __repr__(self):
        box = ", ".join(f"{v:.1f}" for v in self.box)
        points = "None" if self.landmarks is None else "(68, 2)"
        return f"Face(box=[{box}], score={self.score:.3f}, landmarks={points})"

    def __eq__(self, other):
        if not isinstance(other, Face):
            return NotImplemented
        if (self.landmarks is None) != (other.landmarks is None):
            return False
        return (
            np.array_equal(self.box, other.box)
            and self.score == other.score
            and (self.landmarks is None or np.array_equal(self.landmarks, other.landmarks))
        )

    __hash__ = None  # holds arrays


@runtime_checkable
class FaceDetector(Protocol):
    """What every detector offers. Frames are uint8 RGB ``(H, W, 3)``."""

    name: str

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in one frame, best score first; ``[]`` when there is none."""
        ...

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """``[detect(f) for f in frames]``, possibly computed together."""
        ...


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box area (the first one on a tie); None when empty."""
    best = None
    for face in faces:
        if not isinstance(face, Face):
            raise ValueError(f"largest_face expects Face objects, got {type(face).__name__}")
        if best is None or face.area > best.area:
            best = face
    return best


# -- shared helpers ---------------------------------------------------------


def _check_frame(frame, what: str = "frame") -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{what} must be RGB with shape (H, W, 3), got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {frame.shape}")
    return frame


def _check_frames(frames) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"a batch array must be (N, H, W, 3), got shape {frames.shape}")
        frames = list(frames)
    elif not isinstance(frames, Sequence) or isinstance(frames, (str, bytes)):
        raise ValueError(f"frames must be a sequence of arrays, got {type(frames).__name__}")
    return [_check_frame(f, f"frames[{i}]") for i, f in enumerate(frames)]


def _check_max_side(max_side) -> int | None:
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer or None, got {max_side!r}")
    return int(max_side)


def _detection_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(h, w) of the copy detection runs on: longest side <= max_side."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _downscale(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float, float]:
    """Frame shrunk for detection and the per-axis factors (small = full * factor)."""
    height, width = frame.shape[:2]
    h, w = _detection_size(height, width, max_side)
    if (h, w) == (height, width):
        return frame, 1.0, 1.0
    small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return small, w / width, h / height


def _faces(boxes, scores, frame: np.ndarray, fx: float, fy: float, landmarks: bool) -> list[Face]:
    """Faces from boxes found on a copy scaled by (fx, fy), best score first.

    Edge coordinates scale exactly (cv2.resize maps pixel centres (i + 0.5)),
    so dividing by the factor maps a box back to the full frame. Landmarks
    are computed on the full-resolution frame for precision.
    """
    faces = []
    for box, score in zip(boxes, scores):
        x0, y0, x1, y1 = (float(v) for v in box)
        full = (x0 / fx, y0 / fy, x1 / fx, y1 / fy)
        if not (full[2] > full[0] and full[3] > full[1]) or not all(map(math.isfinite, full)):
            continue  # a degenerate box carries no face
        points = None
        if landmarks:
            # dlib rectangles are inclusive, our boxes exclusive.
            points = landmarks68(frame, (full[0], full[1], full[2] - 1, full[3] - 1))
        faces.append(Face(np.array(full, dtype=np.float32), float(score), points))
    faces.sort(key=lambda f: -f.score)
    return faces


def _finite(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _check_options(name: str, options: dict, allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for the {name!r} detector; it accepts {list(allowed)}"
        )


# -- dlib -------------------------------------------------------------------


#: dlib's frontal face detector as ``fhog_object_detector.save`` writes it.
#: ``dlib.get_frontal_face_detector()`` rebuilds the same detector from a
#: compressed copy compiled into dlib, which takes ~0.45 s of CPU in every
#: worker process; this file loads in ~2 ms. tests/test_faces_model_file.py
#: checks that it is byte for byte what the installed dlib's detector saves.
FRONTAL_MODEL = Path(__file__).with_name("weights") / "dlib_frontal_face_detector.svm"


#: Levels of its own image pyramid the detector scans on a copy shrunk for
#: video mode (see ``DlibDetector.face_px``): faces from ``face_px`` up to
#: about 1.7x that width. The face of the frame before is about ``face_px``
#: wide there, found at level 1 or 2; the levels above look for faces
#: 2x-10x larger and take a third of the time. A face grown past them is not
#: found there and the frame is searched in full, as when it has moved away.
VIDEO_PYRAMID_LEVELS = 4


@functools.lru_cache(maxsize=4)
def _dlib_frontal_levels(levels: int):
    """dlib's frontal detector scanning only the first ``levels`` levels of its image pyramid.

    The same detector with the scanner's ``max_pyramid_levels`` (1000 in
    dlib's model) set to ``levels`` in its serialised form; the full detector
    when that field is not where dlib 19-20 put it.
    """
    import dlib

    full = _dlib_frontal()
    state = full.__getstate__()[0]
    # window 80x80 then max_pyramid_levels = 1000, as dlib serialises ints
    # (a byte count, then little-endian bytes)
    head = bytes([1, 80, 1, 80, 2, 0xE8, 0x03])
    at = state.find(head)
    if at != 12 or not 1 <= levels <= 127:
        return full
    detector = dlib.fhog_object_detector.__new__(dlib.fhog_object_detector)
    detector.__setstate__((state[:at + 4] + bytes([1, levels]) + state[at + len(head):],))
    return detector


@functools.lru_cache(maxsize=1)
def _dlib_frontal():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib is a hard dependency
        raise FFMaskError("the dlib detector needs dlib: pip install dlib-bin") from exc
    try:
        return dlib.fhog_object_detector(str(FRONTAL_MODEL))
    except RuntimeError:  # a missing or unreadable copy: dlib's own, slower to build
        return dlib.get_frontal_face_detector()


class DlibDetector:
    """dlib's HOG + linear SVM frontal face detector, with 68 landmarks.

    Parameters
    ----------
    landmarks : bool
        Run dlib's 68-point predictor on each face (about 1-3 ms a face).
    max_side : int or None
        Detect on a copy whose longest side is at most this (INTER_AREA);
        None detects at full resolution. dlib's HOG window is 80x80 pixels, so
        at ``upsample=0`` faces smaller than about 80 px *in the shrunk copy*
        are missed.
    upsample : int
        Times dlib doubles the image before detecting (finds faces down to
        ~40 px at 1, ~20 px at 2) at ~4x the cost per step.
    threshold : float
        dlib's ``adjust_threshold``: detections with a lower SVM score are
        dropped; raise it to cut false positives.
    face_px : int or None
        Video mode for :meth:`detect_batch` (frames of one video): once a
        face is found, later frames are shrunk so that face is about
        ``face_px`` pixels wide (dlib's window is 80 px) before detecting,
        and the boxes are mapped back to the full frame; a frame where the
        shrunk copy shows no face is detected again at the normal size. On
        the shrunk copy only :data:`VIDEO_PYRAMID_LEVELS` levels of dlib's
        pyramid are scanned (faces up to ~1.7x ``face_px``). None (default)
        detects every frame at ``max_side``. :meth:`detect` is unaffected.

    Detection runs on grayscale, as FaceForensics++'s own extraction script
    does: it is ~25% faster than dlib's max-over-RGB gradients.
    """

    name = "dlib"
    OPTIONS = ("upsample", "threshold", "face_px")

    def __init__(self, *, landmarks: bool = True, max_side: int | None = 640, upsample: int = 0,
                 threshold: float = 0.0, face_px: int | None = None):
        if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or not 0 <= upsample <= 4:
            raise ValueError(f"upsample must be an integer in 0..4, got {upsample!r}")
        threshold = _finite("threshold", threshold)
        if face_px is not None and (isinstance(face_px, bool) or not isinstance(face_px, (int, np.integer))
                                    or not 40 <= face_px <= 1000):
            raise ValueError(f"face_px must be an integer in 40..1000 or None, got {face_px!r}")
        self.face_px = None if face_px is None else int(face_px)
        self.landmarks = bool(landmarks)
        self.max_side = _check_max_side(max_side)
        self.upsample = int(upsample)
        self.threshold = threshold
        self._detector = _dlib_frontal()
        # video mode's shrunk copies: only the pyramid levels near the tracked face
        self._near_detector = _dlib_frontal_levels(VIDEO_PYRAMID_LEVELS) if self.face_px is not None else None

    def __repr__(self):
        return (f"DlibDetector(landmarks={self.landmarks}, max_side={self.max_side}, "
                f"upsample={self.upsample}, threshold={self.threshold})")

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in one uint8 RGB frame ``(H, W, 3)``, best score first."""
        _check_frame(frame)
        return self._detect_scaled(frame, *_downscale(frame, self.max_side))

    def _detect_scaled(self, frame, small, fx, fy) -> list[Face]:
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, scores, _ = self._detector.run(gray, self.upsample, self.threshold)
        # dlib's right/bottom are inclusive pixel indices; +1 gives edges.
        boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
        return _faces(boxes, scores, frame, fx, fy, self.landmarks)

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """One :meth:`detect` per frame (dlib has no batched mode); see ``face_px`` for video mode."""
        frames = _check_frames(frames)
        if self.face_px is None:
            return [self.detect(f) for f in frames]
        out, levels = [], 0
        for frame in frames:
            faces = self._detect_pyramid(frame, levels) if levels else []
            if not faces:
                faces = self.detect(frame)
            if faces:
                box = largest_face(faces).box
                levels = _pyramid_levels(float(box[2] - box[0]), self.face_px, frame.shape, self.max_side)
            out.append(faces)
        return out

    def _detect_pyramid(self, frame: np.ndarray, levels: int) -> list[Face]:
        """Detect on the frame shrunk by dlib's own pyramid, ``levels`` steps of 5/6.

        dlib's pyramid of the shrunk copy is then exactly the full frame's
        pyramid from level ``levels`` on, so the same windows are scored and
        the boxes (mapped back with dlib's own ``rect_up``) match full-frame
        detection, minus the faces too small for those levels, and minus
        the faces too large for the :data:`VIDEO_PYRAMID_LEVELS` levels
        scanned from there.
        """
        import dlib

        down = _pyramid_down()
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        for _ in range(levels):
            gray = down(gray)
        rects, scores, _ = self._near_detector.run(gray, self.upsample, self.threshold)
        boxes = []
        for r in rects:
            up = down.rect_up(dlib.rectangle(r.left(), r.top(), r.right(), r.bottom()), levels)
            boxes.append((up.left(), up.top(), up.right() + 1, up.bottom() + 1))
        return _faces(boxes, scores, frame, 1.0, 1.0, self.landmarks)


@functools.lru_cache(maxsize=1)
def _pyramid_down():
    import dlib

    return dlib.pyramid_down(6)


# dlib's HOG pyramid shrinks by 5/6 per level.
_PYRAMID_STEP = 5 / 6


def _pyramid_levels(face_width: float, face_px: int, shape, max_side) -> int:
    """Pyramid levels k so the face is about ``face_px`` wide in the (5/6)^k copy.

    The face stays at least ``face_px`` wide (k is rounded down); never fewer
    levels than keep the copy within ``max_side``.
    """
    k = math.floor(math.log(face_px / face_width) / math.log(_PYRAMID_STEP)) if face_width > face_px else 0
    if max_side is not None and max(shape[:2]) > max_side:
        k = max(k, math.ceil(math.log(max_side / max(shape[:2])) / math.log(_PYRAMID_STEP) - 1e-9))
    return max(0, k)


# -- MTCNN ------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _mtcnn(device: str, min_face_size: int, thresholds: tuple, factor: float):
    import ffmask  # noqa: F401  (installs the torchvision shim before facenet imports it)

    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        raise FFMaskError(
            "the mtcnn detector needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0"
        ) from exc
    model = MTCNN(keep_all=True, min_face_size=min_face_size, thresholds=list(thresholds),
                  factor=factor, select_largest=False, post_process=False, device=device)
    return model.eval()


class MTCNNDetector:
    """MTCNN (facenet-pytorch; weights ship in the wheel), batched, GPU when present.

    Parameters
    ----------
    device : str or None
        torch device; None picks CUDA when available, else the CPU.
    landmarks : bool
        Fill the 68 landmarks by running dlib's predictor on MTCNN's box over
        the full-resolution frame, so every detector yields the same layout.
    max_side : int or None
        Detect on a copy whose longest side is at most this; None = full size.
    min_face_size : int
        Smallest face (pixels, in the shrunk copy) MTCNN's pyramid looks for.
    thresholds : tuple of 3 floats
        P-, R- and O-net score thresholds.
    factor : float
        Image pyramid scale step, in (0, 1).
    batch_size : int
        Most frames sent through the networks at once (bounds memory).
    """

    name = "mtcnn"
    OPTIONS = ("min_face_size", "thresholds", "factor", "batch_size")

    def __init__(self, *, device: str | None = None, landmarks: bool = True, max_side: int | None = 640,
                 min_face_size: int = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, batch_size: int = 32):
        if isinstance(min_face_size, bool) or not isinstance(min_face_size, (int, np.integer)) or min_face_size < 12:
            raise ValueError(f"min_face_size must be an integer >= 12, got {min_face_size!r}")
        given = thresholds
        try:
            thresholds = tuple(_finite("thresholds", t) for t in given)
        except (TypeError, ValueError):
            thresholds = ()
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be 3 numbers in [0, 1], got {given!r}")
        factor = _finite("factor", factor)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = str(resolve_device(device))
        self.landmarks = bool(landmarks)
        self.max_side = _check_max_side(max_side)
        self.min_face_size = int(min_face_size)
        self.thresholds = thresholds
        self.factor = factor
        self.batch_size = int(batch_size)
        self._model = _mtcnn(self.device, self.min_face_size, self.thresholds, self.factor)

    def __repr__(self):
        return (f"MTCNNDetector(device={self.device!r}, landmarks={self.landmarks}, "
                f"max_side={self.max_side}, min_face_size={self.min_face_size})")

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in one uint8 RGB frame ``(H, W, 3)``, best score first."""
        return self.detect_batch([_check_frame(frame)])[0]

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per frame; frames of one size go through the networks together."""
        frames = _check_frames(frames)
        results: list[list[Face] | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.shape[:2], []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                for i, faces in zip(chunk, self._detect_same_size([frames[i] for i in chunk])):
                    results[i] = faces
        return results

    def _detect_same_size(self, frames: list[np.ndarray]) -> list[list[Face]]:
        scaled = [_downscale(f, self.max_side) for f in frames]
        small = np.stack([s for s, _, _ in scaled])
        if min(small.shape[1:3]) < self.min_face_size:
            # Too small for even one pyramid level: facenet would crash on it.
            return [[] for _ in frames]
        boxes, probs = self._model.detect(small)
        out = []
        for frame, (_, fx, fy), frame_boxes, frame_probs in zip(frames, scaled, boxes, probs):
            if frame_boxes is None:
                out.append([])
                continue
            frame_boxes = np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4)
            frame_probs = np.asarray(frame_probs, dtype=np.float64).reshape(-1)
            out.append(_faces(frame_boxes, frame_probs, frame, fx, fy, self.landmarks))
        return out


# -- none: the frame is the face ---------------------------------------------


class FullFrameDetector:
    """No detection: every frame is one face filling the whole frame.

    For datasets that already ship face crops (WildDeepfake): the crop box
    is then the whole frame (``crop_box`` clamps its enlarged square to the
    frame), resized to ``--size``. There are no landmarks, whatever
    ``landmarks`` asks for; ``max_side`` is accepted and ignored (nothing is
    searched, so nothing needs shrinking). Its one face has score 1.0.
    """

    name = "none"
    OPTIONS = ()

    def __init__(self, *, landmarks: bool = False, max_side: int | None = None):
        _check_max_side(max_side)

    def __repr__(self):
        return "FullFrameDetector()"

    def detect(self, frame: np.ndarray) -> list[Face]:
        """``[Face(box=(0, 0, W, H), score=1.0)]`` for a uint8 RGB frame ``(H, W, 3)``."""
        height, width = _check_frame(frame).shape[:2]
        return [Face(np.array([0, 0, width, height], np.float32), 1.0, None)]

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        return [self.detect(f) for f in _check_frames(frames)]


# -- registry ---------------------------------------------------------------

#: Detector name -> class; the names :func:`get_detector` accepts.
DETECTORS = types.MappingProxyType({"dlib": DlibDetector, "mtcnn": MTCNNDetector, "none": FullFrameDetector})


def _freeze(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@functools.lru_cache(maxsize=16)
def _cached_detector(name, device, landmarks, max_side, options):
    cls = DETECTORS[name]
    kwargs = dict(options)
    if cls is MTCNNDetector:
        kwargs["device"] = device
    return cls(landmarks=landmarks, max_side=max_side, **kwargs)


# Options the annotation pipeline adds for frames of one video (see each class).
VIDEO_OPTIONS = {"dlib": {"face_px": 100}}


def get_detector(name: str = "dlib", *, device: str | None = None, landmarks: bool = True,
                 max_side: int | None = 640, video: bool = False, **options) -> FaceDetector:
    """The named face detector, built once per process and reused.

    Parameters
    ----------
    name : {"dlib", "mtcnn", "none"}
        "dlib": HOG frontal detector (CPU). "mtcnn": facenet-pytorch MTCNN,
        batched, on CUDA when available. "none": no detection, the whole
        frame is the face (pre-cropped datasets).
    device : str or None
        torch device for MTCNN (None = CUDA when available, else CPU). dlib
        always runs on the CPU; ``device`` other than None/"cpu" is an error
        for it rather than silently ignored.
    landmarks : bool
        Fill :attr:`Face.landmarks` with dlib's 68 points.
    max_side : int or None
        Detect on a copy whose longest side is at most this many pixels.
    video : bool
        :meth:`detect_batch` receives frames of one video: apply the
        detector's ``VIDEO_OPTIONS`` (dlib: detect on a copy where the face
        is ~100 px wide) unless ``options`` set them.
    **options
        Detector-specific settings: dlib ``upsample`` (default 0) and
        ``threshold``; mtcnn ``min_face_size``, ``thresholds``, ``factor``,
        ``batch_size``.

    Raises
    ------
    ValueError
        Unknown name, unknown option or a bad value.
    """
    if not isinstance(name, str) or name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {list(DETECTORS)}")
    cls = DETECTORS[name]
    if video:
        options = {**VIDEO_OPTIONS.get(name, {}), **options}
    _check_options(name, options, cls.OPTIONS)
    if cls is DlibDetector and device not in (None, "cpu"):
        raise ValueError(f"the dlib detector runs on the CPU only, got device={device!r}")
    max_side = _check_max_side(max_side)
    frozen = tuple(sorted((k, _freeze(v)) for k, v in options.items()))
    try:
        hash((device, frozen))
    except TypeError:
        raise ValueError(f"device and detector options must be plain values, got {device!r}, {options!r}") from None
    return _cached_detector(name, device, bool(landmarks), max_side, frozen)
