"""FaceForensics++ official manipulation masks.

Rössler et al., "FaceForensics++: Learning to Detect Manipulated Facial
Images" (ICCV 2019) ship mask videos for Deepfakes, Face2Face, FaceSwap and
NeuralTextures (``manipulated_sequences/<Method>/masks/videos``): white where
the face was replaced, black elsewhere. Compression smears the edges, so a
pixel counts as manipulated when its gray level exceeds 1.
"""

from __future__ import annotations

import numpy as np

from ffmask.targets._validate import gray

__all__ = ["official_mask"]


def official_mask(mask_frame: np.ndarray) -> np.ndarray:
    """Binary mask from one decoded FF++ mask-video frame: ``gray > 1``.

    Parameters
    ----------
    mask_frame : ndarray of uint8, shape (H, W, 3) or (H, W)
        RGB frame of the mask video (converted with OpenCV's RGB->GRAY
        weights) or an already-gray frame, cropped with the same box as the
        fake it belongs to.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the manipulated region.

    Raises
    ------
    ValueError
        If the frame is not a ``uint8`` numpy array of shape (H, W, 3) or
        (H, W), or is empty.
    """
    if not isinstance(mask_frame, np.ndarray):
        raise ValueError(f"mask_frame must be a numpy array, got {type(mask_frame).__name__}")
    if mask_frame.size == 0:
        raise ValueError(f"mask_frame is empty (shape {mask_frame.shape})")
    if not (mask_frame.ndim == 2 or (mask_frame.ndim == 3 and mask_frame.shape[2] == 3)):
        raise ValueError(
            "mask_frame must be an RGB (H, W, 3) or gray (H, W) image, "
            f"got shape {mask_frame.shape}"
        )
    if mask_frame.dtype != np.uint8:
        raise ValueError(
            f"mask_frame must have dtype uint8 (values 0..255), got {mask_frame.dtype}"
        )
    if mask_frame.ndim == 3:
        mask_frame = gray(np.ascontiguousarray(mask_frame))
    return mask_frame > 1
