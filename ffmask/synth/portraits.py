"""The bundled public-domain portraits and their faces.

Each portrait is a head-and-shoulders photo in ``ffmask/synth/portraits/``
(provenance and licence in the README there). :func:`load_portrait` returns
the image with its dlib face box and 68 landmarks, found once and cached.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ffmask.errors import FFMaskError

__all__ = ["Portrait", "portrait_names", "load_portrait", "portrait_plan", "portrait_info"]

# The order in which synth assigns portraits to original videos 000, 001, ...
# Consecutive videos form the swap pairs (000,001), (002,003), ..., so this
# order puts different people in each pair (three of the five photos are of
# one person, so the fifth pair of ten shares a person, as some FF++ pairs do).
# After the five photos come their mirror images; beyond ten the list repeats
# with fresh camera motion.
_PLAN = (
    ("obama", False), ("biden", False), ("astronaut", False), ("obama2", False),
    ("obama3", False), ("biden", True), ("obama", True), ("astronaut", True),
    ("obama2", True), ("obama3", True),
)


@dataclass(frozen=True, eq=False)
class Portrait:
    """A portrait photo and its face.

    image: uint8 RGB (H, W, 3), read-only. box: dlib face box (x0, y0, x1, y1)
    in pixels. landmarks: float32 (68, 2) as (x, y), dlib's 68-point layout.
    """

    name: str
    person: str
    mirrored: bool
    image: np.ndarray
    box: tuple[float, float, float, float]
    landmarks: np.ndarray

    @property
    def key(self) -> str:
        """``name`` or ``name-mirrored``: unique per image variant."""
        return f"{self.name}-mirrored" if self.mirrored else self.name


@functools.lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict]:
    text = resources.files("ffmask.synth").joinpath("portraits", "portraits.json").read_text("utf-8")
    return {p["name"]: p for p in json.loads(text)["portraits"]}


def portrait_names() -> tuple[str, ...]:
    """Names of the bundled portraits, in synth's assignment order."""
    return tuple(dict.fromkeys(name for name, _ in _PLAN))


def portrait_info(name: str) -> dict:
    """Provenance record of one portrait (file, person, origin, licence, crop box)."""
    cat = _catalogue()
    if name not in cat:
        raise FFMaskError(f"unknown portrait {name!r}; bundled: {', '.join(sorted(cat))}")
    return dict(cat[name])


def portrait_plan(n: int) -> list[tuple[str, bool]]:
    """``(name, mirrored)`` for original videos ``0 .. n-1`` (cycles after ten)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [_PLAN[i % len(_PLAN)] for i in range(n)]


@functools.lru_cache(maxsize=None)
def load_portrait(name: str, mirrored: bool = False) -> Portrait:
    """Load a bundled portrait (optionally mirrored left-right) with its face.

    The face box is the one dlib's HOG frontal detector found on the bundled
    image (one upsampling), stored in ``portraits.json`` because detection
    takes about a second per photo; a mirrored portrait gets the mirrored
    box. The 68 landmarks are predicted afresh on the (mirrored) image by
    ``ffmask.faces.landmarks``, so point 36 is always the subject's right
    eye corner.
    """
    from PIL import Image

    from ffmask.faces.landmarks import landmarks68

    info = portrait_info(name)
    data = resources.files("ffmask.synth").joinpath("portraits", info["file"]).read_bytes()
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    x0, y0, x1, y1 = (float(v) for v in info["face_box_xyxy"])
    if mirrored:
        image = image[:, ::-1]
        width = image.shape[1]
        x0, x1 = width - 1 - x1, width - 1 - x0
    image = np.ascontiguousarray(image)
    box = (x0, y0, x1, y1)
    lms = landmarks68(image, box)
    image.setflags(write=False)
    lms.setflags(write=False)
    return Portrait(name=name, person=info["person"], mirrored=bool(mirrored), image=image,
                    box=box, landmarks=lms)
