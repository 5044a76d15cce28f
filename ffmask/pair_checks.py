"""Checks that a fake's frames show its original's picture the same way up.

A fake and its original are compared pixel by pixel, so they must be the
same picture in the same orientation. A display matrix (rotation or flip
metadata) on only one video of a pair is applied to that video alone when
frames are read as displayed, so the two disagree: a 90 or 270 degree turn
of a non-square video changes the frame's aspect ratio and is caught by the
size check, but a 180 degree turn or a flip keeps the size and would give a
comparison map of two unrelated pictures. :func:`orientation_mismatch` finds
those by comparing small grey thumbnails of the two frames, and with them a
fake that is no copy of its original at all (paired with the wrong original:
a misnamed file, mixed downloads), whose comparison maps would be as wrong
(``mscc`` even marks nothing of such a pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

__all__ = ["THUMBNAIL_SIDE", "NOT_ITS_PICTURE_LEVEL", "Thumbnail", "thumbnail", "orientation_mismatch"]

#: Side of the grey thumbnails compared (pixels): small enough to ignore
#: compression noise and the forged face, large enough to see the scene.
THUMBNAIL_SIDE = 64

#: A turned or flipped copy must match at least this many times better than
#: the frame as it is. Measured on the bundled sample (c23 and c40): true
#: pairs differ by 0.6-5.3 grey levels as they are and by 36-64 turned or
#: flipped, so the ratio leaves a wide margin both ways.
BETTER_BY = 2.0

#: Below this mean difference (grey levels) the frames already agree: nothing
#: is reported, whatever a symmetric or flat scene's flips score.
AGREE_LEVEL = 8.0

#: Above this mean difference (grey levels), with no turn or flip explaining
#: it, the fake is not a copy of its original's picture. True pairs: 0.6-5.3
#: (the bundled sample and a 6-identity synth tree with all five manipulations
#: and the Families forgeries, c23 and c40); a fake against another original
#: of those trees: 41 and more. Measured on synthetic data only: a real
#: dataset whose fakes change a far larger share of the frame would need it
#: measured again.
NOT_ITS_PICTURE_LEVEL = 20.0


@dataclass(frozen=True)
class Thumbnail:
    """A frame reduced to what the orientation check reads.

    grey : float32 (side, side), the frame's grey level (0-255) resized with
        area averaging. square : whether the frame itself is square.
    """

    grey: np.ndarray
    square: bool


def thumbnail(frame: np.ndarray, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """The :class:`Thumbnail` of one (H, W, 3) RGB or (H, W) grey uint8 frame.

    Lets a caller keep a few kilobytes of a frame it is about to drop and
    check the orientation later.
    """
    import cv2

    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise ValueError("frame must be a non-empty (H, W[, C]) array")
    if side < 8:
        raise ValueError(f"side must be >= 8, got {side}")
    grey = frame if frame.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    return Thumbnail(small, frame.shape[0] == frame.shape[1])


def _candidates(thumb: np.ndarray, square: bool) -> dict:
    """Copies of the thumbnail turned back, keyed by how the frame is turned (each undoes its key)."""
    turned = {
        "rotated 180 degrees": thumb[::-1, ::-1],
        "flipped left-right": thumb[:, ::-1],
        "flipped upside down": thumb[::-1, :],
    }
    if square:  # a quarter turn keeps a square frame's size, so the size check cannot see it
        turned["rotated 90 degrees clockwise"] = np.rot90(thumb, 1)  # np.rot90 turns counter-clockwise
        turned["rotated 90 degrees counter-clockwise"] = np.rot90(thumb, 3)
        turned["transposed"] = thumb.T
        turned["anti-transposed"] = np.rot90(thumb, 2).T
    return turned


def orientation_mismatch(original: Union[np.ndarray, Thumbnail], fake: Union[np.ndarray, Thumbnail], *,
                         what: str = "fake") -> Optional[str]:
    """Why ``fake`` is not ``original``'s picture the same way up, or None when it is.

    Parameters
    ----------
    original, fake : ndarray or Thumbnail
        One frame of each video at the same index, (H, W, 3) RGB or (H, W)
        grey, uint8 in [0, 255], or their :func:`thumbnail` (same side). The
        two may differ in resolution (the same picture at another scale),
        not in content beyond a forged face.
    what : str
        The name of the checked video in the message ("fake", "mask").

    Returns
    -------
    str or None
        ``"fake is rotated 180 degrees relative to its original …"`` when a
        turned or flipped copy of ``fake`` matches ``original`` at least
        :data:`BETTER_BY` times better than ``fake`` as it is (and the two
        do not already agree within :data:`AGREE_LEVEL` grey levels);
        ``"fake does not show its original's picture …"`` when no such copy
        does and the two differ by more than :data:`NOT_ITS_PICTURE_LEVEL`;
        otherwise None.
    """
    a = original if isinstance(original, Thumbnail) else thumbnail(original)
    f = fake if isinstance(fake, Thumbnail) else thumbnail(fake)
    if a.grey.shape != f.grey.shape:
        raise ValueError(f"thumbnails differ in size: {a.grey.shape} vs {f.grey.shape}")
    as_is = float(np.abs(a.grey - f.grey).mean())
    if as_is <= AGREE_LEVEL:
        return None
    scores = {name: float(np.abs(a.grey - turned).mean()) for name, turned in _candidates(f.grey, a.square).items()}
    best = min(scores, key=scores.get)
    if scores[best] * BETTER_BY > as_is:
        if as_is > NOT_ITS_PICTURE_LEVEL:
            return (f"{what} does not show its original's picture (mean grey difference {as_is:.1f} on "
                    f"{a.grey.shape[0]} px thumbnails, true pairs differ by a few levels); paired with the "
                    "wrong original?")
        return None
    return (f"{what} is {best} relative to its original (mean grey difference {scores[best]:.1f} that way up, "
            f"{as_is:.1f} as read); rotation or flip metadata on only one of the pair?")
