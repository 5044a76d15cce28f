"""Map targets of the evaluators: shard maps resized to the predicted map's size, zero for reals."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Shard maps are masks {0, 1} or continuous maps in [0, 1], stored as float16:
# allow its rounding, nothing more.
_RANGE_TOLERANCE = 1e-3


def map_targets(maps: torch.Tensor, labels: torch.Tensor, size: int) -> torch.Tensor:
    """Supervision for a predicted ``size`` x ``size`` map.

    Parameters
    ----------
    maps : float (N, H, W) or (N, 1, H, W), values in [0, 1] (masks or
        continuous maps as read from shards).
    labels : int (N,), 0 real / 1 fake. Unknown labels (-1) are a ValueError:
        an unlabelled face has no target.
    size : side of the predicted map (the paper's 40).

    Returns
    -------
    float32 (N, 1, size, size) in [0, 1]: bilinear resize with antialiasing
    (a downscaled mask keeps its area as partial values instead of aliasing),
    and all zeros for every real face whatever its map holds (the paper's
    rule; comparison maps of reals are zero anyway, a weak map need not be).
    """
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise ValueError(f"maps must be (N, H, W) or (N, 1, H, W), got {tuple(maps.shape)}")
    if labels.ndim != 1 or labels.shape[0] != maps.shape[0]:
        raise ValueError(f"labels must be (N,) = ({maps.shape[0]},), got {tuple(labels.shape)}")
    bad = sorted(set(labels.tolist()) - {0, 1})
    if bad:
        raise ValueError(f"map targets need labels 0 (real) or 1 (fake), got {bad}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    maps = maps.float()
    if maps.numel():
        lo, hi = float(maps.min()), float(maps.max())
        if not (lo >= -_RANGE_TOLERANCE and hi <= 1 + _RANGE_TOLERANCE):  # also catches NaN
            raise ValueError(f"maps must hold values in [0, 1], got [{lo}, {hi}]; noise residuals are no map targets")
    if tuple(maps.shape[-2:]) != (size, size):
        maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    fake = (labels == 1).to(maps.device, maps.dtype).view(-1, 1, 1, 1)
    return (maps.clamp(0.0, 1.0) * fake).contiguous()
