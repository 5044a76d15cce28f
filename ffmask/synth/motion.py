"""Gentle camera motion that turns a still portrait into a short video.

A video frame at time ``t`` (seconds) is the portrait seen through a camera
that pans and zooms smoothly (sums of slow sinusoids) while the exposure
drifts linearly. Motion is a similarity transform from portrait pixels to
frame pixels, so the portrait's landmarks map exactly onto every frame: the
ground-truth face geometry is known without re-detecting anything.

Pixel coordinates follow OpenCV: integer coordinates are pixel centres.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = ["CameraMotion", "random_motion", "prescale", "render_frame", "transform_points"]


@dataclass(frozen=True)
class CameraMotion:
    """Camera path over a portrait, for frames of ``frame_size`` = (W, H).

    scale: frame pixels per portrait pixel at rest. center: portrait point
    (x, y) at the frame centre at rest. pan_amp: pan amplitude (x, y) in
    portrait pixels; pan_hz / pan_phase: its frequency (Hz) and phase
    (radians). zoom_amp: relative zoom amplitude (0.05 = +-5 %), with
    zoom_hz / zoom_phase. gain0 + gain_slope * t: brightness gain.
    """

    frame_size: tuple[int, int]
    scale: float
    center: tuple[float, float]
    pan_amp: tuple[float, float]
    pan_hz: tuple[float, float]
    pan_phase: tuple[float, float]
    zoom_amp: float
    zoom_hz: float
    zoom_phase: float
    gain0: float
    gain_slope: float

    def zoom(self, t: float) -> float:
        return 1.0 + self.zoom_amp * math.sin(2 * math.pi * self.zoom_hz * t + self.zoom_phase)

    def gain(self, t: float) -> float:
        """Brightness multiplier at ``t`` seconds."""
        return float(self.gain0 + self.gain_slope * t)

    def affine(self, t: float) -> np.ndarray:
        """float64 (2, 3) map from portrait pixels to frame pixels at ``t`` seconds."""
        s = self.scale * self.zoom(t)
        cx = self.center[0] + self.pan_amp[0] * math.sin(2 * math.pi * self.pan_hz[0] * t + self.pan_phase[0])
        cy = self.center[1] + self.pan_amp[1] * math.sin(2 * math.pi * self.pan_hz[1] * t + self.pan_phase[1])
        w, h = self.frame_size
        # frame centre ((w-1)/2, (h-1)/2) <- portrait (cx, cy)
        return np.array([[s, 0.0, (w - 1) / 2 - s * cx], [0.0, s, (h - 1) / 2 - s * cy]])

    def to_dict(self) -> dict:
        """JSON-ready parameters (rounded for readability)."""
        def rnd(v):
            if isinstance(v, (tuple, list)):
                return [rnd(x) for x in v]
            return round(float(v), 6) if isinstance(v, float) else v
        return {k: rnd(v) for k, v in asdict(self).items()}


def random_motion(
    rng: np.random.Generator,
    portrait_size: tuple[int, int],
    face_box: tuple[float, float, float, float],
    frame_size: tuple[int, int],
) -> CameraMotion:
    """Draw a gentle camera path that keeps the face well inside the frame.

    portrait_size, frame_size: (W, H) in pixels. face_box: the portrait's
    face (x0, y0, x1, y1). The face takes 32-42 % of the frame width (more
    when the portrait is too small to fill the frame otherwise), sits a
    little above the frame centre, and the view never leaves the portrait,
    so no border is ever invented.
    """
    pw, ph = portrait_size
    fw_, fh_ = frame_size
    x0, y0, x1, y1 = face_box
    face_w = max(x1 - x0, 1.0)

    zoom_amp = float(rng.uniform(0.02, 0.06))
    scale = float(rng.uniform(0.32, 0.42)) * fw_ / face_w
    # smallest scale at which the widest (zoomed-out) view still fits
    fit = max(fw_ / (pw - 1), fh_ / (ph - 1)) / (1 - zoom_amp)
    scale = max(scale, fit * 1.001)
    s_min = scale * (1 - zoom_amp)
    half = (fw_ / 2 / s_min, fh_ / 2 / s_min)  # widest half view, portrait px

    face_c = ((x0 + x1) / 2, (y0 + y1) / 2 + 0.12 * fh_ / scale)
    amp_want = (float(rng.uniform(0.01, 0.04)) * fw_ / scale, float(rng.uniform(0.005, 0.02)) * fh_ / scale)
    center, amp = [], []
    for c, a, hv, size in zip(face_c, amp_want, half, (pw, ph)):
        room = max(0.0, (size - 1) / 2 - hv)  # how far the centre may move from the middle
        a = min(a, room)
        lo, hi = hv + a, (size - 1) - hv - a
        center.append(float(min(max(c, lo), hi)))
        amp.append(float(a))
    return CameraMotion(
        frame_size=(int(fw_), int(fh_)),
        scale=scale,
        center=(center[0], center[1]),
        pan_amp=(amp[0], amp[1]),
        pan_hz=(float(rng.uniform(0.15, 0.5)), float(rng.uniform(0.15, 0.5))),
        pan_phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
        zoom_amp=zoom_amp,
        zoom_hz=float(rng.uniform(0.15, 0.4)),
        zoom_phase=float(rng.uniform(0, 2 * math.pi)),
        gain0=float(rng.uniform(0.92, 1.05)),
        gain_slope=float(rng.uniform(-0.04, 0.04)),
    )


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points; returns float32 (N, 2)."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


def prescale(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a portrait to a camera's rest ``scale`` once, for :func:`render_frame`.

    image: uint8 RGB (H, W, 3). Shrinking uses area averaging (no aliasing),
    enlarging bicubic interpolation. Returns ``(small, to_small)``: the
    resized image and the float64 (2, 3) affine from portrait pixels to its
    pixels.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {getattr(image, 'dtype', None)} "
                         f"{getattr(image, 'shape', None)}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    ph, pw = image.shape[:2]
    sw, sh = max(1, round(pw * scale)), max(1, round(ph * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    small = cv2.resize(image, (sw, sh), interpolation=interp)
    # cv2.resize maps pixel centres as x_small = (x + 0.5) * (sw / pw) - 0.5
    kx, ky = sw / pw, sh / ph
    to_small = np.array([[kx, 0.0, 0.5 * kx - 0.5], [0.0, ky, 0.5 * ky - 0.5]])
    return small, to_small


def render_frame(
    image: np.ndarray, motion: CameraMotion, t: float,
    prescaled: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The frame at ``t`` seconds: uint8 RGB (H, W, 3) of ``motion.frame_size``.

    image: the portrait, uint8 RGB. It is resized to the rest scale first
    (``prescaled``, from :func:`prescale`, saves doing that per frame), then
    warped by the small residual pan/zoom with bilinear interpolation, so
    the result is ``motion.affine(t)`` applied to the portrait; then the
    brightness gain is applied (rounded, saturated).
    """
    small, to_small = prescaled if prescaled is not None else prescale(image, motion.scale)
    residual = _compose(motion.affine(t), _invert(to_small))
    w, h = motion.frame_size
    frame = cv2.warpAffine(small, residual, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    gain = motion.gain(t)
    if gain != 1.0:
        frame = cv2.convertScaleAbs(frame, alpha=gain)
    return frame


def _invert(a: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(a)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine x -> a(b(x))."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]
