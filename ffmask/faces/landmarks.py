"""dlib's 68-point facial landmark predictor.

The model file ships inside the ``face-recognition-models`` wheel. We locate
it with ``importlib.util.find_spec`` instead of importing that package, whose
``__init__`` needs ``pkg_resources`` (removed from setuptools 82).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from ffmask.errors import FFMaskError

_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"


def model_file(name: str, what: str) -> str:
    """Absolute path of model file ``name`` of the ``face-recognition-models`` wheel.

    ``what`` names the model in the error (an FFMaskError, one line) when the
    package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FFMaskError(f"the {what} is missing: pip install face-recognition-models")
    path = os.path.join(spec.submodule_search_locations[0], "models", name)
    if not os.path.isfile(path):
        raise FFMaskError(f"{what} not found at {path}")
    return path


def predictor_path() -> str:
    """Absolute path of ``shape_predictor_68_face_landmarks.dat``."""
    return model_file(_MODEL_NAME, "68-point landmark model")


@functools.lru_cache(maxsize=1)
def _predictor():
    import dlib

    return dlib.shape_predictor(predictor_path())


def landmarks68(image: np.ndarray, box) -> np.ndarray:
    """68 dlib landmarks of the face inside ``box``.

    image: uint8 RGB (H, W, 3) or gray (H, W). box: (x0, y0, x1, y1) in pixels,
    the face detector's tight box. Returns float32 (68, 2) as (x, y).
    """
    import dlib

    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be uint8 (H,W) or (H,W,3), got {image.dtype} {image.shape}")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = _predictor()(np.ascontiguousarray(image), dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
