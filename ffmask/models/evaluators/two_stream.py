"""``two-stream``: the semantic + noise multi-scale detector of Kong et al. (paper 002, Sec. III, Fig. 2).

- One shared backbone: timm ``xception65`` (``features_only``; it supports
  ``output_stride``, timm's ``legacy_xception`` does not) at 299 px. Three
  feature levels feed the heads; the default ``out_indices=(0, 1, 3)`` are
  xception65's levels at strides 2, 4 and 16, the depths of the paper's
  "after conv2, block2 and block11" of the original Xception (Sec. IV-B).
- At each level a semantic head and a noise head, each a depth-wise
  separable convolution block (depth-wise 3x3, point-wise 1x1 to
  ``width``, BN, ReLU) and a 1x1 output convolution: 2 classes (real /
  manipulated pixel) for the semantic head, 1 channel (the noise residual)
  for the noise head.
- The final localisation map is 0.1 / 0.2 / 0.7 times the three semantic
  maps' manipulated-pixel probabilities (shallow to deep), upsampled to
  ``map_size``.
- Classification: the deepest semantic and noise head features,
  concatenated, multiplied element-wise by the deepest semantic map's
  manipulated probability (spatial attention), a fusion block (separable
  conv block), global average pooling and one linear layer -> 2 logits.

Loss (Eq. 1-6): CE(image logits) (the paper's BCE, with two logits) +
1.0 x sum over the three levels of the pixel CE of the semantic map against
the map target resized to that level (Eq. 3) + 0.1 x sum over the levels of
L1(noise map, noise target) (Eq. 6). The noise target is the shard's noise
residual (``batch["noise"]``, 3 channels, the wavelet filter of
:func:`ffmask.targets.noise.noise_map` with σ by compression, in the 0..255
units in which σ = 5 / 10 are given) averaged over the three colour
channels to the heads' one channel, at the input size; each predicted noise
map is upsampled (bilinear) to that size. Without a map (``--map none``)
the semantic maps are not supervised (the noise and class terms are).
Adam, lr 2e-4, weight decay 1e-5 (Sec. IV-B; the issue text says 2e-5,
from the public code). The paper's two-step schedule (backbone + semantic
heads first, then everything) is not reproduced: one run trains all.

Outputs: {"logit": (N, 2), "map": (N, 1, M, M) logit of the fused map,
"sem0".."sem2": (N, 2, h_j, w_j) semantic logits, "noise0".."noise2":
(N, 1, h_j, w_j) noise maps}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffmask.models._config import ModelConfig, check_int, normalise_mean_std
from ffmask.models.evaluators._timm import (
    attach_backbone,
    backbone_features,
    check_dense_backbone,
    image_cross_entropy,
    resize_target,
    soft_cross_entropy,
)
from ffmask.models.evaluators.registry import OptimizerSpec, register_evaluator

NAME = "two-stream"
LEVELS = 3


@dataclass(frozen=True)
class TwoStreamConfig(ModelConfig):
    """Architecture of a :class:`TwoStream`; stored verbatim in every checkpoint.

    backbone : timm model name supporting ``features_only`` (and ``output_stride``).
    img_size : square input side (paper: 299).
    map_size : side of the fused localisation map; None: ``img_size``.
    output_stride : the backbone's (16: xception65's exit flow dilated; 32: none).
    out_indices : the three backbone levels (shallow to deep) the heads read.
    width : channels of every head's separable block and of the fusion block.
    map_weights : weights of the three semantic maps in the fused map (paper: 0.1, 0.2, 0.7).
    mean, std : input normalisation; None takes the backbone's timm ``pretrained_cfg``.
    """

    model_name = NAME  # for messages (not a field)

    backbone: str = "xception65"
    img_size: int = 299
    map_size: Optional[int] = None
    output_stride: int = 16
    out_indices: tuple[int, ...] = (0, 1, 3)
    width: int = 64
    map_weights: tuple[float, ...] = (0.1, 0.2, 0.7)
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None

    def __post_init__(self) -> None:
        check_dense_backbone(self, LEVELS)
        check_int("width", self.width, 1)
        weights = tuple(float(w) for w in self.map_weights)
        if len(weights) != LEVELS or min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"map_weights must be three non-negative weights summing to 1, got {self.map_weights!r}")
        object.__setattr__(self, "map_weights", weights)
        normalise_mean_std(self)


def _separable(cin: int, cout: int) -> nn.Sequential:
    """Depth-wise 3x3 + point-wise 1x1 + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TwoStream(nn.Module):
    """The semantic + noise two-stream detector; see the module docstring.

    forward(x): x float (N, 3, img_size, img_size) RGB in [0, 1] (normalised
    inside) -> {"logit", "map", "sem0".."sem2", "noise0".."noise2"}.
    """

    def __init__(self, config: TwoStreamConfig) -> None:
        super().__init__()
        levels = attach_backbone(self, config, levels=LEVELS)
        w = config.width
        self.sem_blocks = nn.ModuleList(_separable(c, w) for c in levels)
        self.sem_out = nn.ModuleList(nn.Conv2d(w, 2, 1) for _ in levels)
        self.noise_blocks = nn.ModuleList(_separable(c, w) for c in levels)
        self.noise_out = nn.ModuleList(nn.Conv2d(w, 1, 1) for _ in levels)
        self.fusion = _separable(2 * w, w)
        self.classifier = nn.Linear(w, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = backbone_features(self, x)
        out: dict[str, torch.Tensor] = {}
        size = (self.map_size, self.map_size)
        fused = 0.0
        for j, f in enumerate(feats):
            sem_feat = self.sem_blocks[j](f)
            noise_feat = self.noise_blocks[j](f)
            out[f"sem{j}"] = self.sem_out[j](sem_feat)
            out[f"noise{j}"] = self.noise_out[j](noise_feat)
            prob = out[f"sem{j}"].float().softmax(dim=1)[:, 1:2]
            fused = fused + self.config.map_weights[j] * F.interpolate(prob, size=size, mode="bilinear",
                                                                       align_corners=False)
        gate = out[f"sem{LEVELS - 1}"].softmax(dim=1)[:, 1:2]
        z = self.fusion(torch.cat([sem_feat, noise_feat], dim=1) * gate)
        out["logit"] = self.classifier(z.mean(dim=(2, 3)))
        out["map"] = torch.logit(fused.clamp(1e-6, 1 - 1e-6))
        return out


def noise_target(noise: torch.Tensor, size: int) -> torch.Tensor:
    """The noise heads' target: (N, 3, S, S) residual -> (N, 1, size, size), the mean of the colour channels.

    Resized (bilinear, antialiased) when S differs from ``size`` (the model's
    input side, as the image is).
    """
    if noise.ndim != 4 or noise.shape[1] != 3:
        raise ValueError(f"expected a 3-channel noise residual (N, 3, S, S), got {tuple(noise.shape)}")
    t = noise.float().mean(dim=1, keepdim=True)
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t


def two_stream_loss(model: nn.Module, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                    map_weight: float = 1.0, noise_weight: float = 0.1
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CE(image) + map_weight * sum_j CE(sem_j, target) + noise_weight * sum_j L1(noise_j, noise target).

    batch : {"label": int64 (N,), "noise": float32 (N, 3, S, S), "target":
    float32 (N, 1, M, M) in [0, 1] (optional)}. Returns the total and the
    detached parts {"total", "cls", "noise"[, "map"]} ("map" and "noise" are the sums over the levels).
    """
    cls = image_cross_entropy(out["logit"], batch["label"])
    size = model.img_size
    n_target = noise_target(batch["noise"], size)
    noise = sum(F.l1_loss(F.interpolate(out[f"noise{j}"].float(), size=(size, size), mode="bilinear",
                                        align_corners=False), n_target) for j in range(LEVELS))
    total = cls + noise_weight * noise
    parts = {"cls": cls.detach(), "noise": noise.detach()}
    target = batch.get("target")
    if target is not None:
        maps = sum(soft_cross_entropy(out[f"sem{j}"], resize_target(target, out[f"sem{j}"].shape[-2:]))
                   for j in range(LEVELS))
        total = total + map_weight * maps
        parts["map"] = maps.detach()
    parts["total"] = total.detach()
    return total, parts


@register_evaluator(NAME, loss=two_stream_loss, loss_kwargs={"map_weight": 1.0, "noise_weight": 0.1},
                    inputs=("noise",), optimizer=OptimizerSpec("adam", lr=2e-4, weight_decay=1e-5, schedule="cosine"),
                    paper_map="official",
                    description="semantic + noise two-stream Xception, maps 0.1/0.2/0.7, CE + CE maps + 0.1 L1 noise "
                                "(Kong et al.)")
def two_stream(**cfg: Any) -> TwoStream:
    """The ``two-stream`` evaluator; keyword arguments are :class:`TwoStreamConfig` fields."""
    return TwoStream(TwoStreamConfig.from_dict(cfg))
