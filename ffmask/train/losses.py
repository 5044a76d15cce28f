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


def dense_mil_loss(fake_maps: torch.Tensor, labels: torch.Tensor, top_fraction: float = 0.1) -> torch.Tensor:
    """Token-level multiple-instance loss of one CARP head's fake-class map.

    fake_maps : float (N, h, w) token logits ``mean_d f_fake`` (``FocusOutput.maps_rgb[:, 1]``).
    labels : int64 (N,), 0 real / 1 fake.
    top_fraction : share of a fake face's tokens that must look fake, in (0, 1].

    A real face has no forged token, so every one of its tokens is pushed
    towards "not fake" (binary cross-entropy with target 0, mean over the
    tokens). A fake face has at least a few forged tokens, location unknown,
    so only the mean of its ``k = max(1, round(top_fraction * h * w))``
    largest token logits is pushed towards "fake" (target 1). Returns the
    mean over the faces (float32 scalar).

    The paper's CARP loss reaches only each map's spatial maximum, so on a
    real face it lowers one token per map; this term lowers all of them.
    """
    if fake_maps.ndim != 3 or labels.shape != fake_maps.shape[:1]:
        raise ValueError(f"need fake maps (N, h, w) and labels (N,), got {tuple(fake_maps.shape)}, {tuple(labels.shape)}")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    tokens = fake_maps.float().flatten(1)
    k = max(1, int(round(top_fraction * tokens.shape[1])))
    real = F.binary_cross_entropy_with_logits(tokens, torch.zeros_like(tokens), reduction="none").mean(dim=1)
    top = tokens.topk(k, dim=1).values.mean(dim=1)
    fake = F.binary_cross_entropy_with_logits(top, torch.ones_like(top), reduction="none")
    return torch.where(labels == 1, fake, real).mean()


def focus_dense_loss(out, labels: torch.Tensor, fus_weight: float = 0.1, top_fraction: float = 0.1,
                     dense_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The FoCus objective (:func:`focus_loss`) plus ``dense_weight`` x the dense MIL term of both branches.

    The extra term, :func:`dense_mil_loss` on the fake-class map of the RGB
    and of the Sobel CARP head, pushes every token of a real face towards
    "not fake" and the top tokens of a fake face towards "fake". Not in the
    paper (an ffmask variant, ``ffmask train focus --loss dense``). Parts:
    those of :func:`focus_loss` plus "dense".
    """
    if out.maps_rgb is None or out.maps_sobel is None:
        raise ValueError("the dense FoCus loss needs the CARP class maps (FocusOutput.maps_rgb / maps_sobel)")
    total, parts = focus_loss(out, labels, fus_weight)
    dense = dense_mil_loss(out.maps_rgb[:, 1], labels, top_fraction) + \
        dense_mil_loss(out.maps_sobel[:, 1], labels, top_fraction)
    total = total + dense_weight * dense
    parts.update(total=total.detach(), dense=dense.detach())
    return total, parts
