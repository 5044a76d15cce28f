"""Pixel-level targets: pure functions from face crops to maps.

Every function takes ``uint8`` RGB arrays of shape ``(H, W, 3)`` and returns
a numpy array of the same height and width; nothing here reads files or
keeps state that changes a result: ``hull_mask`` and ``hull_net_mask`` read
their shipped weights once per process, and ``ssim_map`` / ``mscc_mask`` keep
the last pair's SSIM window sums (keyed on the pixels themselves, read-only),
so asking for both maps of one pair computes them once. Bad input raises
``ValueError`` naming the problem.

========================================  ===================================
``ssim_map(real, fake)``                  float32 (H, W) in [0, 1], 1 - SSIM
``diff_map(real, fake)``                  float32 (H, W) in [0, 1]
``diff_mask(real, fake, threshold=0.1)``  bool (H, W)
``mscc_mask(real, fake)``                 bool (H, W), MSCCNet annotation
``noise_map(image, sigma=5.0)``           float32 (H, W, 3), noise residual
``official_mask(mask_frame)``             bool (H, W), FF++ mask videos
``hull_mask(real, fake)``                 bool (H, W), best of per-pair candidates (ours)
``hull_rules_mask(real, fake)``           bool (H, W), per-pair hand rules (ours)
``hull_net_mask(real, fake)``             bool (H, W), the rules + learned refinement
========================================  ===================================

``METHODS`` maps CLI names to these functions; :func:`get_method` also
resolves parametrised names (``diff@0.05``, ``noise@10``) and tells what a
method needs (``spec.input``, ``spec.paired``) and returns (``spec.kind``).
"""

from ffmask.targets.comparison import diff_map, diff_mask, ssim_map
from ffmask.targets.hull import hull_mask, hull_net_mask, hull_rules_mask
from ffmask.targets.mscc import mscc_mask
from ffmask.targets.noise import noise_map
from ffmask.targets.official import official_mask
from ffmask.targets.registry import (
    INPUTS,
    KINDS,
    METHODS,
    MethodSpec,
    available_methods,
    get_method,
    register_family,
    register_method,
)

__all__ = [
    "hull_mask",
    "hull_net_mask",
    "hull_rules_mask",
    "INPUTS",
    "KINDS",
    "METHODS",
    "MethodSpec",
    "available_methods",
    "diff_map",
    "diff_mask",
    "get_method",
    "mscc_mask",
    "noise_map",
    "official_mask",
    "register_family",
    "register_method",
    "ssim_map",
]
