"""Synthetic face forgeries with true masks: a miniature FaceForensics++.

- :mod:`ffmask.synth.portraits` — the bundled public-domain photos and their faces.
- :mod:`ffmask.synth.motion` — camera motion that turns a photo into a video.
- :mod:`ffmask.synth.warp` — piecewise-affine warps, hulls, feathering.
- :mod:`ffmask.synth.forge` — Deepfakes / Face2Face / FaceSwap / NeuralTextures
  style manipulations of one frame, each returning ``(fake, mask)``.
- :mod:`ffmask.synth.families` — region x operation x blend x strength
  forgeries (``draw_family``, ``forge_family``), the true mask being the
  exact set of changed pixels.
- :mod:`ffmask.synth.tree` — :func:`build_synth`, the FF++ folder tree (the
  four presets and ``Families``).
- :mod:`ffmask.synth.pairs` — :func:`build_pairs`, the fast single-frame
  mode: independently compressed, cropped pairs with landmarks.
"""

from ffmask.synth.forge import (
    METHODS,
    forge_deepfakes,
    forge_face2face,
    forge_faceswap,
    forge_frame,
    forge_neuraltextures,
)
from ffmask.synth.portraits import Portrait, load_portrait
from ffmask.synth.tree import SynthSummary, build_synth

__all__ = [
    "METHODS",
    "Portrait",
    "SynthSummary",
    "build_synth",
    "forge_deepfakes",
    "forge_face2face",
    "forge_faceswap",
    "forge_frame",
    "forge_neuraltextures",
    "load_portrait",
]
