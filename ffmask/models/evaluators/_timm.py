"""What the evaluators share: the timm ``features_only`` backbone with its input normalisation, the
checks of a dense-map backbone's config, and the loss terms (image and pixel cross-entropy)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from ffmask.models._config import check_backbone_name, check_int


def timm_features(backbone: str, *, out_indices: Optional[Sequence[int]] = None,
                  output_stride: Optional[int] = None) -> nn.Module:
    """``timm.create_model(backbone, features_only=True, ...)`` with one-line errors; never downloads.

    out_indices : which feature levels (timm's numbering, 0 = the shallowest); None: all.
    output_stride : 8, 16 or 32 (dilated deeper stages); None: the model's own (32).
    """
    import ffmask  # noqa: F401  (the torchvision shim must be armed before timm)
    import timm

    kwargs = {}
    if out_indices is not None:
        kwargs["out_indices"] = tuple(int(i) for i in out_indices)
    if output_stride is not None:
        kwargs["output_stride"] = int(output_stride)
    try:
        return timm.create_model(backbone, pretrained=False, features_only=True, **kwargs)
    except (RuntimeError, TypeError, ValueError, AssertionError, IndexError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"backbone {backbone!r} with {kwargs or 'defaults'} is not a timm features_only model "
                         f"this evaluator can use: {msg}") from None


def register_normalisation(module: nn.Module, backbone: nn.Module, mean, std) -> None:
    """Non-persistent buffers ``mean``/``std`` (1, 3, 1, 1): the given values, else the backbone's timm
    ``pretrained_cfg`` (ImageNet statistics by default)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    mean = mean or tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = std or tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    module.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)


def attach_backbone(model: nn.Module, config, levels: Optional[int] = None) -> list[int]:
    """Give an evaluator its backbone and input normalisation; returns the channels of the feature levels.

    Sets ``model.config``, ``model.img_size`` (and ``model.map_size`` when
    the config has one), ``model.backbone``: :func:`timm_features` of
    ``config.backbone`` (all its levels; with ``levels``, the config's
    ``out_indices`` at its ``output_stride``, which must give that many, see
    :func:`check_dense_backbone`) and the buffers of
    :func:`register_normalisation` (``config.mean``/``config.std``).
    """
    model.config = config
    model.img_size = config.img_size
    if hasattr(config, "map_size"):
        model.map_size = config.map_size
    if levels is None:
        model.backbone = timm_features(config.backbone)
    else:
        model.backbone = timm_features(config.backbone, out_indices=config.out_indices,
                                       output_stride=config.output_stride)
    channels = list(model.backbone.feature_info.channels())
    if levels is not None and len(channels) != levels:
        raise ValueError(f"backbone {config.backbone!r} gave {len(channels)} feature levels for out_indices "
                         f"{config.out_indices}, expected {levels}")
    register_normalisation(model, model.backbone, config.mean, config.std)
    return channels


def backbone_features(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The feature levels of ``model.backbone`` for images x float (N, 3, H, W) RGB in [0, 1].

    x is normalised by ``model.mean``/``model.std`` (:func:`attach_backbone`)
    first; anything but (N, 3, H, W) is a ValueError.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got {tuple(x.shape)}")
    return model.backbone((x - model.mean) / model.std)


def check_dense_backbone(config, levels: int) -> None:
    """Validate (and normalise, on a frozen dataclass) the backbone fields of a dense-map evaluator's config.

    ``backbone`` a timm name; ``img_size`` >= 32; ``map_size`` >= 1 (None:
    ``img_size``, a full-resolution map); ``output_stride`` 8, 16 or 32;
    ``out_indices`` ``levels`` non-negative backbone level numbers (stored
    as a tuple). ValueError naming the field otherwise.
    """
    check_backbone_name(config.backbone)
    check_int("img_size", config.img_size, 32)
    if config.map_size is None:
        object.__setattr__(config, "map_size", config.img_size)
    check_int("map_size", config.map_size, 1)
    if config.output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {config.output_stride!r}")
    indices = tuple(config.out_indices)
    if len(indices) != levels or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices):
        raise ValueError(f"out_indices must be {levels} backbone level numbers, got {config.out_indices!r}")
    object.__setattr__(config, "out_indices", indices)


def image_cross_entropy(logit: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of image logits (N, 2) (computed in float32) against labels int64 (N,).

    Labels of another shape are a ValueError.
    """
    if labels.ndim != 1 or labels.shape[0] != logit.shape[0]:
        raise ValueError(f"labels must be (N,) = ({logit.shape[0]},), got {tuple(labels.shape)}")
    return torch.nn.functional.cross_entropy(logit.float(), labels)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean pixel cross-entropy of 2-class ``logits`` (N, 2, H, W) against fake-probabilities ``target`` (N, 1, H, W).

    With a {0, 1} mask this is the ordinary cross-entropy with class indices;
    a continuous map in [0, 1] is a soft label (class probabilities 1 - t, t).
    """
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"expected 2-class logits (N, 2, H, W), got {tuple(logits.shape)}")
    if target.shape != (logits.shape[0], 1, *logits.shape[2:]):
        raise ValueError(f"target {tuple(target.shape)} does not match the logits {tuple(logits.shape)}")
    t = target.float()
    return torch.nn.functional.cross_entropy(logits.float(), torch.cat([1.0 - t, t], dim=1))


def resize_target(target: torch.Tensor, size) -> torch.Tensor:
    """A map target (N, 1, M, M) in [0, 1] resized (bilinear, antialiased) to ``size`` (h, w)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    out = torch.nn.functional.interpolate(target.float(), size=tuple(size), mode="bilinear", align_corners=False,
                                          antialias=True)
    return out.clamp(0.0, 1.0)
