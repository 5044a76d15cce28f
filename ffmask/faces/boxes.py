"""Crop boxes: square the face box, enlarge it, keep it in the frame, crop and resize.

Coordinates are pixel *edges*: a box ``(x0, y0, x1, y1)`` covers columns
``x0 <= x < x1`` and rows ``y0 <= y < y1``, so ``image[y0:y1, x0:x1]`` is its
crop and ``x1 - x0`` its width. Nothing here looks at pixel values, so a box
found on an original frame crops its fake and its mask-video frame at exactly
the same place.
"""

from __future__ import annotations

import math
import cv2
import numpy as np

__all__ = [
    "crop_box",
    "crop_resize",
    "crop_pair",
    "points_to_crop",
    "same_aspect",
    "scale_box",
    "scale_points",
    "ASPECT_TOLERANCE",
    "INTERPOLATIONS",
]

_CV2_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
}
#: Accepted values of ``interpolation`` in :func:`crop_resize`.
INTERPOLATIONS = ("auto", *_CV2_INTERPOLATION)
#: Largest relative difference of width/height ratios for two frames to count
#: as one picture at two resolutions (:func:`same_aspect`). Rescaling to whole,
#: even pixel sizes moves the ratio by well under 1% (1280x720 -> 854x480:
#: 0.08%; 1080x1920 -> 404x720: 0.25%); a crop or letterbox (16:9 vs 4:3) moves
#: it by 25% or more.
ASPECT_TOLERANCE = 0.01
# dtypes cv2.resize handles natively; bool goes through uint8.
_RESIZABLE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def _frame_hw(frame_shape) -> tuple[int, int]:
    shape = tuple(frame_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"frame_shape must be (H, W) or (H, W, C), got {shape}")
    try:
        height, width = (int(v) for v in shape[:2])
    except (TypeError, ValueError):
        raise ValueError(f"frame_shape must hold integers, got {shape}") from None
    if height != shape[0] or width != shape[1] or height < 1 or width < 1:
        raise ValueError(f"frame_shape must hold positive integers, got {shape}")
    return height, width


def _face_box(face_box) -> np.ndarray:
    try:
        box = np.asarray(face_box, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"face box must be 4 numbers x0, y0, x1, y1, got {face_box!r}") from None
    if box.shape != (4,):
        raise ValueError(f"face box must have shape (4,) x0, y0, x1, y1, got shape {box.shape}")
    if not np.all(np.isfinite(box)):
        raise ValueError(f"face box must be finite, got {box.tolist()}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"degenerate face box (need x1 > x0 and y1 > y0): {box.tolist()}")
    return box


def _place(center: float, side: int, length: int) -> tuple[int, int]:
    """Start/end of a ``side``-long interval centred on ``center`` within ``[0, length)``."""
    start = math.floor(center - side / 2 + 0.5)  # round half up: symmetric for integer boxes
    # Shift inside when it fits; when it does not, this clamps to the whole axis.
    start = max(0, min(start, length - side))
    return start, min(length, start + side)


def crop_box(face_box, frame_shape, scale: float = 1.3) -> np.ndarray:
    """Square crop box around a face, enlarged by ``scale`` and kept inside the frame.

    Parameters
    ----------
    face_box : array-like, (4,)
        The detector's tight box ``x0, y0, x1, y1`` in frame pixels (floats
        allowed; it may stick out of the frame but must overlap it).
    frame_shape : tuple
        ``(H, W)`` or ``(H, W, C)`` of the frame the box will crop.
    scale : float
        Side of the crop relative to the longer side of the face box, > 0.

    Returns
    -------
    box : ndarray, int32 (4,)
        ``x0, y0, x1, y1`` with ``x1, y1`` exclusive, never empty. The box is a
        square of side ``ceil(scale * max(w, h))`` centred on the face and
        shifted to lie inside the frame. Along an axis where that square is
        longer than the frame it is clamped to the whole axis, so the box is
        then not square. For ``scale >= 1`` it contains any integer face box
        lying inside the frame.

    Raises
    ------
    ValueError
        On a degenerate or non-finite face box, a box outside the frame, a bad
        ``frame_shape`` or ``scale <= 0``.
    """
    height, width = _frame_hw(frame_shape)
    box = _face_box(face_box)
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise ValueError(
            f"face box {box.tolist()} lies outside the {height}x{width} frame"
        )
    # The tiny tolerance keeps float noise (1.3 * 100 = 130.00000000000003)
    # from adding a whole pixel.
    side = max(1, math.ceil(scale * max(x1 - x0, y1 - y0) - 1e-9))
    cx0, cx1 = _place((x0 + x1) / 2, side, width)
    cy0, cy1 = _place((y0 + y1) / 2, side, height)
    return np.array([cx0, cy0, cx1, cy1], dtype=np.int32)


def _crop_bounds(box, height: int, width: int) -> tuple[int, int, int, int]:
    try:
        values = np.asarray(box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 integers x0, y0, x1, y1, got {box!r}") from None
    if values.shape != (4,):
        raise ValueError(f"box must have shape (4,) x0, y0, x1, y1, got shape {values.shape}")
    if values.dtype.kind not in "iu":
        if values.dtype.kind != "f" or not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"box must hold whole pixel coordinates (use crop_box), got {values.tolist()}")
    x0, y0, x1, y1 = (int(v) for v in values)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"box {[x0, y0, x1, y1]} is empty or outside the {height}x{width} image "
            "(need 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H)"
        )
    return x0, y0, x1, y1


def crop_resize(image: np.ndarray, box, size: int, *, interpolation: str = "auto") -> np.ndarray:
    """Crop ``image[y0:y1, x0:x1]`` and resize it to ``size x size``.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        uint8 RGB frame, a 2-D mask (bool or uint8), or a float map
        (uint8, uint16, int16, float32, float64 or bool).
    box : array-like, (4,)
        Whole-pixel ``x0, y0, x1, y1`` (exclusive ends) inside the image, e.g.
        from :func:`crop_box`.
    size : int
        Output side in pixels, >= 1.
    interpolation : {"auto", "area", "linear", "nearest"}
        "auto" is "nearest" for bool masks, otherwise "area" when the crop
        shrinks along both axes and "linear" when any axis is enlarged. Use
        "nearest" for label masks so they keep their values.

    Returns
    -------
    crop : ndarray, (size, size) or (size, size, C)
        Same dtype and channel count as ``image``; a new array, never a view.

    The result depends only on the box and the image shape, never on pixel
    values, so the same box crops an original, its fake and its mask alike.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C) and non-empty, got shape {image.shape}")
    if image.ndim == 3 and not 1 <= image.shape[2] <= 512:
        raise ValueError(f"image must have 1..512 channels, got shape {image.shape}")
    is_bool = image.dtype == np.bool_
    if not is_bool and image.dtype.type not in _RESIZABLE:
        raise ValueError(
            f"image dtype must be bool, uint8, uint16, int16, float32 or float64, got {image.dtype}"
        )
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    size = int(size)
    x0, y0, x1, y1 = _crop_bounds(box, image.shape[0], image.shape[1])

    if interpolation == "auto":
        if is_bool:
            interpolation = "nearest"
        elif x1 - x0 >= size and y1 - y0 >= size:
            interpolation = "area"
        else:
            interpolation = "linear"
    elif is_bool and interpolation != "nearest":
        raise ValueError(f"bool masks need interpolation='nearest' (or 'auto'), got {interpolation!r}")

    # OpenCV reads a row-strided view in place (rows need not be adjacent),
    # which is the same pixels as a contiguous copy without making one.
    crop = image[y0:y1, x0:x1]
    if crop.strides[-1] != crop.itemsize or (crop.ndim == 3 and crop.strides[1] != crop.shape[2] * crop.itemsize):
        crop = np.ascontiguousarray(crop)
    if is_bool:
        crop = crop.view(np.uint8)
    out = cv2.resize(crop, (size, size), interpolation=_CV2_INTERPOLATION[interpolation])
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel
        out = out[:, :, None]
    if is_bool:
        out = out.astype(bool)
    if np.may_share_memory(out, image):
        out = out.copy()
    return out


def crop_pair(
    real: np.ndarray,
    fake: np.ndarray,
    box,
    size: int,
    *,
    mask: np.ndarray | None = None,
    interpolation: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Crop an original, its fake (and the fake's mask frame) with one box.

    ``box`` comes from the original frame (``crop_box`` of its detected face)
    and is applied unchanged to every array, so the crops stay pixel-aligned.

    Parameters
    ----------
    real, fake : ndarray, uint8 (H, W, 3)
        Frames of the original and the fake at the same frame index.
    box : array-like, (4,)
        Whole-pixel ``x0, y0, x1, y1`` inside the frames.
    size : int
        Output side.
    mask : ndarray, (H, W) or (H, W, C), optional
        A mask-video frame (any dtype :func:`crop_resize` takes); cropped with
        "nearest" so label values survive.
    interpolation : str
        For ``real`` and ``fake``; see :func:`crop_resize`.

    Returns
    -------
    real_crop, fake_crop : ndarray, uint8 (size, size, 3)
    mask_crop : ndarray (size, size[, C]) or None
    """
    for name, frame in (("real", real), ("fake", fake)):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"{name} must be a uint8 RGB array (H, W, 3), got "
                f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
            )
    if real.shape != fake.shape:
        raise ValueError(f"real and fake frames differ in shape: {real.shape} vs {fake.shape}")
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.shape[:2] != real.shape[:2]:
            raise ValueError(
                f"mask must be an array with the frames' height and width {real.shape[:2]}, "
                f"got shape {getattr(mask, 'shape', type(mask).__name__)}"
            )
    real_crop = crop_resize(real, box, size, interpolation=interpolation)
    fake_crop = crop_resize(fake, box, size, interpolation=interpolation)
    mask_crop = None if mask is None else crop_resize(mask, box, size, interpolation="nearest")
    return real_crop, fake_crop, mask_crop


def points_to_crop(points, box, size: int) -> np.ndarray:
    """Map frame points (landmarks) into the pixels of ``crop_resize(frame, box, size)``.

    Parameters
    ----------
    points : array-like, (N, 2)
        ``x, y`` in frame pixels (pixel centres at integers, as dlib gives).
    box : array-like, (4,)
        The crop box ``x0, y0, x1, y1`` (pixel edges).
    size : int
        Side of the resized crop.

    Returns
    -------
    ndarray, float32 (N, 2)
        ``x, y`` in crop pixels; points outside the box fall outside
        ``[0, size)``. NaNs stay NaN.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {box!r}")
    if int(size) < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    # cv2.resize maps pixel centres: (x + 0.5) scales, not x.
    scale = np.array([size / (x1 - x0), size / (y1 - y0)])
    return ((pts + 0.5 - np.array([x0, y0])) * scale - 0.5).astype(np.float32)



def same_aspect(from_shape, to_shape, tolerance: float = ASPECT_TOLERANCE) -> bool:
    """Whether two frame sizes have the same width/height ratio, within ``tolerance``.

    ``from_shape``, ``to_shape``: ``(H, W)`` or ``(H, W, C)``. ``tolerance``
    is relative: ``|r_to - r_from| <= tolerance * r_from`` with ``r = W / H``.
    """
    fh, fw = _frame_hw(from_shape)
    th, tw = _frame_hw(to_shape)
    tolerance = float(tolerance)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    ratio_from, ratio_to = fw / fh, tw / th
    return abs(ratio_to - ratio_from) <= tolerance * ratio_from


def _axis_scales(from_shape, to_shape) -> tuple[int, int, float, float]:
    fh, fw = _frame_hw(from_shape)
    th, tw = _frame_hw(to_shape)
    return th, tw, tw / fw, th / fh


def scale_box(box, from_shape, to_shape) -> np.ndarray:
    """Carry a crop box from one frame size to the same picture at another size.

    For a fake (or mask video) encoded at another resolution than its
    original: the box found on the original frame is mapped to the fake's
    pixels, each axis by its own factor, so it covers the same content.

    Parameters
    ----------
    box : array-like, (4,)
        Whole-pixel ``x0, y0, x1, y1`` (exclusive ends) inside ``from_shape``.
    from_shape, to_shape : tuple
        ``(H, W)`` or ``(H, W, C)`` of the frame the box belongs to, and of
        the frame it is wanted in.

    Returns
    -------
    ndarray, int32 (4,)
        Edges scaled and rounded to the nearest pixel, inside ``to_shape``
        and never empty. Equal shapes return the box unchanged.
    """
    fh, fw = _frame_hw(from_shape)
    x0, y0, x1, y1 = _crop_bounds(box, fh, fw)
    th, tw, sx, sy = _axis_scales(from_shape, to_shape)
    x0, x1 = _scale_edges(x0, x1, sx, tw)
    y0, y1 = _scale_edges(y0, y1, sy, th)
    return np.array([x0, y0, x1, y1], dtype=np.int32)


def _scale_edges(start: int, end: int, factor: float, length: int) -> tuple[int, int]:
    # Edges are positions between pixels: they scale by the factor itself.
    a = min(max(int(math.floor(start * factor + 0.5)), 0), length - 1)
    b = min(max(int(math.floor(end * factor + 0.5)), a + 1), length)
    return a, b


def scale_points(points, from_shape, to_shape) -> np.ndarray:
    """Carry points (landmarks, ``x, y`` in pixel centres) to another frame size.

    Parameters
    ----------
    points : array-like, (N, 2)
        ``x, y`` in the pixels of ``from_shape`` (centres at integers, as
        dlib gives). NaNs stay NaN.
    from_shape, to_shape : tuple
        ``(H, W)`` or ``(H, W, C)``.

    Returns
    -------
    ndarray, float32 (N, 2)
        The same points in the pixels of ``to_shape``: ``(x + 0.5) * s - 0.5``
        per axis, matching how a resize maps pixel centres.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    _, _, sx, sy = _axis_scales(from_shape, to_shape)
    return ((pts + 0.5) * np.array([sx, sy]) - 0.5).astype(np.float32)
