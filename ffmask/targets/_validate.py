"""Input checks shared by every target method.

Each check raises ``ValueError`` naming the argument and the problem, so a
bad crop fails here with one readable line instead of deep inside OpenCV or
PyWavelets.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# The SSIM window is 7x7; skimage refuses smaller images and so do we.
SSIM_WIN = 7


def check_rgb(image: object, name: str = "image") -> np.ndarray:
    """Return `image` as a C-contiguous ``uint8`` array of shape ``(H, W, 3)``.

    Raises
    ------
    ValueError
        If `image` is not a numpy array, is empty, is not ``(H, W, 3)``,
        or is not ``uint8``.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{name} must be an RGB image of shape (H, W, 3), got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8 (values 0..255), got {image.dtype}")
    return np.ascontiguousarray(image)


def check_pair(real: object, fake: object) -> tuple[np.ndarray, np.ndarray]:
    """Check a (real, fake) pair: both valid RGB ``uint8`` and the same shape."""
    real = check_rgb(real, "real")
    fake = check_rgb(fake, "fake")
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {real.shape} and {fake.shape}"
        )
    return real, fake


def check_min_size(image: np.ndarray, size: int, why: str) -> None:
    """Raise ``ValueError`` if either side of `image` is shorter than `size`."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"{why} needs images of at least {size}x{size} pixels, got {h}x{w}")


def check_fraction(value: object, name: str) -> float:
    """Return `value` as a float in [0, 1); reject NaN, infinities and non-numbers."""
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def check_positive(value: object, name: str) -> float:
    """Return `value` as a finite float > 0."""
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def gray(image: np.ndarray) -> np.ndarray:
    """OpenCV RGB->GRAY (0.299 R + 0.587 G + 0.114 B, rounded), ``uint8`` ``(H, W)``."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
