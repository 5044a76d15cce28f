"""Training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focus_loss(out, labels: torch.Tensor, fus_weight: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """FoCus objective: L_loc(rgb) + L_loc(sobel) + fus_weight * L_fus.

    Each term is the cross-entropy of one classifier's logits (N, 2) against
    ``labels`` (N,) int64 in {0 real, 1 fake}; ``out`` is a FocusOutput.
    Returns the total and the detached parts {"rgb", "sobel", "fus", "total"}.
    """
    if labels.ndim != 1 or labels.shape[0] != out.logits_fus.shape[0]:
        raise ValueError(f"labels must be (N,) = ({out.logits_fus.shape[0]},), got {tuple(labels.shape)}")
    rgb = F.cross_entropy(out.logits_rgb.float(), labels)
    sobel = F.cross_entropy(out.logits_sobel.float(), labels)
    fus = F.cross_entropy(out.logits_fus.float(), labels)
    total = rgb + sobel + fus_weight * fus
    parts = {"total": total.detach(), "rgb": rgb.detach(), "sobel": sobel.detach(), "fus": fus.detach()}
    return total, parts
