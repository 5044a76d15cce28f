"""Faces: detectors behind one interface, 68-point landmarks and crop boxes.

>>> from ffmask.faces import get_detector, largest_face, crop_box, crop_resize
>>> face = largest_face(get_detector("dlib").detect(frame))     # doctest: +SKIP
>>> box = crop_box(face.box, frame.shape, scale=1.3)           # doctest: +SKIP
>>> crop = crop_resize(frame, box, 224)                        # doctest: +SKIP

For a fake and its original, detect on the original and crop both (and the
mask-video frame) with the same box: :func:`crop_pair`.
"""

from ffmask.faces.boxes import (
    ASPECT_TOLERANCE,
    INTERPOLATIONS,
    crop_box,
    crop_pair,
    crop_resize,
    points_to_crop,
    same_aspect,
    scale_box,
    scale_points,
)
from ffmask.faces.detect import (
    DETECTORS,
    DlibDetector,
    Face,
    FaceDetector,
    MTCNNDetector,
    get_detector,
    largest_face,
)
from ffmask.faces.landmarks import landmarks68, predictor_path

__all__ = [
    "Face",
    "FaceDetector",
    "DlibDetector",
    "MTCNNDetector",
    "DETECTORS",
    "get_detector",
    "largest_face",
    "crop_box",
    "crop_resize",
    "crop_pair",
    "INTERPOLATIONS",
    "ASPECT_TOLERANCE",
    "same_aspect",
    "scale_box",
    "scale_points",
    "landmarks68",
    "points_to_crop",
    "predictor_path",
]
