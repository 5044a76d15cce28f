"""``efb4-fpn``: the multi-task evaluator of the FoCus paper (Tian et al., Fig. 4, Sec. IV).

An EfficientNet-B4 backbone (timm ``efficientnet_b4``, ``features_only``:
channels 24/32/56/160/448 at strides 2/4/8/16/32) feeds

- a classifier: global average pooling of the deepest features, dropout,
  one linear layer -> 2 logits (real, fake);
- an FPN branch over the deeper stages (strides 8, 16, 32 by default):
  1x1 lateral convolutions to ``fpn_channels``, top-down nearest-neighbour
  upsampling and addition, a 3x3 conv + BN + ReLU on the finest level and a
  1x1 conv to one channel, resized bilinearly to ``map_size`` x ``map_size``
  (the paper's 40 x 40).

Loss (paper): cross-entropy of the logits + 0.1 x binary cross-entropy of the
map logits against the map target (:func:`ffmask.models.evaluators.targets.map_targets`:
the shard map resized to ``map_size``, all zeros for real faces). Without a
map (``--map none``) only the cross-entropy is trained: the plain detector.

The paper does not give its FPN's width or which stages it uses; those are
``fpn_channels`` and ``fpn_levels`` here. ``backbone`` takes any timm model
that supports ``features_only`` (``tf_efficientnet_lite0`` for CPU-sized
runs, whose offline ImageNet weights are ``pretrained="lite0"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffmask.models._config import ModelConfig, check_backbone_name, check_int, check_rate, normalise_mean_std
from ffmask.models.evaluators._timm import attach_backbone, backbone_features, image_cross_entropy
from ffmask.models.evaluators.registry import OptimizerSpec, register_evaluator

NAME = "efb4-fpn"


@dataclass(frozen=True)
class Efb4FpnConfig(ModelConfig):
    """Architecture of an :class:`Efb4Fpn`; stored verbatim in every checkpoint.

    backbone : timm model name supporting ``features_only``.
    img_size : square input side the model runs at (faces are resized to it).
    map_size : side of the predicted map (paper: 40).
    fpn_levels : how many of the deepest feature levels the FPN merges (>= 1).
    fpn_channels : FPN width.
    drop_rate : dropout before the classifier.
    mean, std : input normalisation; None takes the backbone's timm
        ``pretrained_cfg`` (ImageNet's for efficientnet_b4, 0.5/0.5 for
        tf_efficientnet_lite0).
    """

    model_name = NAME  # for messages (not a field)

    backbone: str = "efficientnet_b4"
    img_size: int = 224
    map_size: int = 40
    fpn_levels: int = 3
    fpn_channels: int = 64
    drop_rate: float = 0.2
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None

    def __post_init__(self) -> None:
        check_backbone_name(self.backbone)
        for name, low in (("img_size", 32), ("map_size", 1), ("fpn_levels", 1), ("fpn_channels", 1)):
            check_int(name, getattr(self, name), low)
        check_rate("drop_rate", self.drop_rate)
        normalise_mean_std(self)


class Efb4Fpn(nn.Module):
    """EfficientNet + FPN multi-task evaluator; see the module docstring.

    forward(x): x float (N, 3, img_size, img_size) RGB in [0, 1] (normalised
    inside) -> {"logit": (N, 2), "map": (N, 1, map_size, map_size) logits}.
    """

    def __init__(self, config: Efb4FpnConfig) -> None:
        super().__init__()
        channels = attach_backbone(self, config)
        if config.fpn_levels > len(channels):
            raise ValueError(f"fpn_levels {config.fpn_levels} exceeds the {len(channels)} feature levels of "
                             f"{config.backbone!r}")
        self.fpn_in = channels[-config.fpn_levels:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, config.fpn_channels, 1) for c in self.fpn_in)
        self.smooth = nn.Sequential(
            nn.Conv2d(config.fpn_channels, config.fpn_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.fpn_channels),
            nn.ReLU(inplace=True),
        )
        self.map_head = nn.Conv2d(config.fpn_channels, 1, 1)
        self.dropout = nn.Dropout(config.drop_rate)
        self.classifier = nn.Linear(channels[-1], 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = backbone_features(self, x)
        deepest = feats[-1]
        logit = self.classifier(self.dropout(deepest.mean(dim=(2, 3))))
        levels = feats[-self.config.fpn_levels:]
        top = self.lateral[-1](levels[-1])
        for lateral, feat in zip(reversed(self.lateral[:-1]), reversed(levels[:-1])):
            top = lateral(feat) + F.interpolate(top, size=feat.shape[-2:], mode="nearest")
        map_logit = self.map_head(self.smooth(top))
        map_logit = F.interpolate(map_logit, size=(self.map_size, self.map_size), mode="bilinear",
                                  align_corners=False)
        return {"logit": logit, "map": map_logit}


def classification_map_loss(out: Mapping[str, torch.Tensor], labels: torch.Tensor,
                            map_target: Optional[torch.Tensor], map_weight: float = 0.1
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE(logit, labels) + map_weight * BCE-with-logits(map, map_target) (the paper's 0.1).

    labels : int64 (N,) in {0, 1}; map_target : float (N, 1, M, M) in [0, 1]
    (from :func:`~ffmask.models.evaluators.targets.map_targets`, zeros for
    reals) or None for classification only. Returns the total and the
    detached parts {"total", "cls"[, "map"]}.
    """
    cls = image_cross_entropy(out["logit"], labels)
    parts = {"cls": cls.detach()}
    total = cls
    if map_target is not None:
        pred = out["map"].float()
        if pred.shape != map_target.shape:
            raise ValueError(f"map target {tuple(map_target.shape)} does not match the predicted map {tuple(pred.shape)}")
        bce = F.binary_cross_entropy_with_logits(pred, map_target.float())
        parts["map"] = bce.detach()
        total = total + map_weight * bce
    parts["total"] = total.detach()
    return total, parts


def efb4_fpn_loss(model: nn.Module, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                  map_weight: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The registry-signature loss: :func:`classification_map_loss` of ``batch["label"]`` and ``batch.get("target")``."""
    return classification_map_loss(out, batch["label"], batch.get("target"), map_weight=map_weight)


@register_evaluator(NAME, loss=efb4_fpn_loss, loss_kwargs={"map_weight": 0.1},
                    optimizer=OptimizerSpec("adamw", lr=5e-4, weight_decay=1e-4, schedule="cosine"),
                    description="EfficientNet-B4 + FPN, CE + 0.1 BCE on a 40x40 map (FoCus paper, Fig. 4)")
def efb4_fpn(**cfg: Any) -> Efb4Fpn:
    """The ``efb4-fpn`` evaluator; keyword arguments are :class:`Efb4FpnConfig` fields."""
    return Efb4Fpn(Efb4FpnConfig.from_dict(cfg))
