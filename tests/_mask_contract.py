"""The contract every learned pair-mask method keeps (hull_mask, hull_net_mask), checked on a real synth pair."""

from __future__ import annotations

import cv2
import numpy as np


def _iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def check_pair_mask_contract(mask_fn, s) -> tuple[np.ndarray, np.ndarray]:
    """Assert ``mask_fn(real, fake, landmarks=None)`` on the pair sample ``s`` (256 px, a real edit):

    a non-empty bool mask of the crop's shape; the same for copies of the
    inputs; all False for identical images, with and without landmarks; on
    the pair resized to a non-square 200 x 330 crop (landmarks scaled), a
    mask of that shape about as close to the resized truth (IoU at most 0.25
    lower). Returns that resized (real, fake) for further size checks.
    """
    a = mask_fn(s.real, s.fake, s.landmarks)
    assert a.dtype == bool and a.shape == s.truth.shape and a.any()
    assert np.array_equal(a, mask_fn(s.real.copy(), s.fake.copy(), s.landmarks.copy()))
    assert not mask_fn(s.real, s.real.copy(), s.landmarks).any()
    assert not mask_fn(s.real, s.real.copy()).any()
    size = (200, 330)  # (w, h)
    scale = np.array([size[0] / 256, size[1] / 256])
    real, fake = (cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (s.real, s.fake))
    b = mask_fn(real, fake, s.landmarks * scale)
    assert b.shape == (330, 200)
    truth = cv2.resize(s.truth.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    assert _iou(b, truth) > _iou(a, s.truth) - 0.25
    return real, fake
