"""Follow one face through a video's sampled frames.

Videos with several people (DFDC has many) need the *same* person in every
crop of a video, or a fake's frames mix a manipulated and an untouched face.
The rule: the largest face of the first frame that has one starts the track;
in each later frame the face overlapping the track's last box most (IoU) is
the same person, as long as the overlap is at least ``min_iou``. A frame
where no face overlaps enough has no tracked face (its frame is skipped,
like a frame without a face), and the track keeps its last box, so the
person is found again when they reappear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ffmask.faces.detect import Face, largest_face

__all__ = ["FaceTrack", "box_iou", "track_faces", "MIN_IOU"]

#: Sampled frames are far apart (20 frames over a 10 s clip: 0.5 s), so a
#: person moves; two people side by side barely overlap. 0.2 keeps the first
#: and rejects the second.
MIN_IOU = 0.2


@dataclass(frozen=True)
class FaceTrack:
    """The tracked face of each frame, and what the frames held.

    faces : tuple of (Face or None)
        The tracked face per input frame; None where the frame has no face
        or none overlapping the track.
    faces_seen : int
        Most faces detected in any one frame (0: no face anywhere).
    lost : int
        Frames that had faces but none overlapping the track.
    """

    faces: tuple[Optional[Face], ...]
    faces_seen: int
    lost: int


def box_iou(a, b) -> float:
    """Intersection over union of two boxes ``x0, y0, x1, y1`` (edges, ``x1, y1`` exclusive), in [0, 1]."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != (4,) or b.shape != (4,):
        raise ValueError(f"boxes must be 4 numbers x0, y0, x1, y1, got {a.shape} and {b.shape}")
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_faces(faces_per_frame: Sequence[Sequence[Face]], min_iou: float = MIN_IOU) -> FaceTrack:
    """Pick one person's face in every frame (frames in time order).

    Parameters
    ----------
    faces_per_frame : sequence of sequences of Face
        The detector's faces of each frame, in time order.
    min_iou : float in (0, 1]
        Least IoU with the track's last box for a face to continue the track.

    Returns
    -------
    FaceTrack
        ``faces[i]`` is frame ``i``'s tracked face or None. With one face per
        frame and no jumps this is exactly the per-frame largest face.
    """
    if not 0.0 < float(min_iou) <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    tracked: list[Optional[Face]] = []
    last: Optional[Face] = None
    seen = lost = 0
    for faces in faces_per_frame:
        faces = list(faces)
        seen = max(seen, len(faces))
        if last is None:
            last = largest_face(faces)
            tracked.append(last)
            continue
        best = max(faces, key=lambda f: box_iou(f.box, last.box), default=None)
        if best is not None and box_iou(best.box, last.box) >= min_iou:
            last = best
            tracked.append(best)
        else:
            lost += bool(faces)
            tracked.append(None)
    return FaceTrack(tuple(tracked), seen, lost)
