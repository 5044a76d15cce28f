"""``msccnet``: the Multi-spectral Class Center Network (Miao et al., paper 001, Sec. 3 and 5.1).

Architecture (Fig. 2), shapes for a 512 px input and the paper's dilated ResNet-50:

- backbone: timm ``resnet50`` with ``output_stride=8, features_only=True,
  out_indices=(2, 3, 4)``: layers 2-4, 512/1024/2048 x 64 x 64 (any timm
  ``features_only`` backbone with ``output_stride`` works: ``backbone=``,
  ``output_stride=``, ``out_indices=``);
- classification branch: global average pooling of the deepest level + one
  linear layer -> the image logits (P2, Eq. 3);
- Multi-level Features Aggregation (MFA, Sec. 3.2, Eq. 4-5): each level
  through its aligned layer (3x3 conv + BN + ReLU to C channels, resized to
  the deepest level's grid: the paper's *Downsample*, an identity at output
  stride 8), concatenated, 3x3 conv + BN + ReLU 3C -> C: F_A (C x h x w);
- Multi-Spectral Class Center module (MSCC, Sec. 3.3): F_A's channels split
  into N groups (the paper's N = 4 DCT bases (0,0), (0,1), (1,0), (1,1));
  group n multiplied by the 2D DCT basis image n built for the actual h x w
  (:func:`dct_basis`) -> multi-spectral features; a shared pixel head C3
  (1x1 conv + BN + ReLU + dropout + 1x1 conv -> K = 2) gives each group's
  coarse class map P_A (N x K x h x w); class centres = the class
  probabilities (softmax over K) x the group's spectral features, as means
  over the pixels (N x K x c); a GCN over the N centre nodes (1x1 conv
  across nodes + residual, ReLU, linear over channels); each pixel of F_A's
  group n is re-expressed as the softmax(similarity to the K centres)
  weighted sum of the centres; concatenated with F_A, 3x3 conv + BN + ReLU
  2C -> C: F_M (Eq. 12-14);
- mask decoder C1: 1x1 conv + BN + ReLU + dropout + 1x1 conv -> 2 classes,
  upsampled bilinearly to ``map_size`` (the paper: 8x to the input);
- the coarse maps fused by a 1x1 conv over the N groups (P_A', Eq. 15).

Loss (Eq. 16): CE(image logits) + CE(pixel mask) + CE(P_A'), each weight
1.0. The pixel targets are the map target at ``map_size`` (zeros for reals);
a {0, 1} mask gives the ordinary cross-entropy, a continuous map a soft
label. The paper's ignore index 255 never occurs in ffmask's targets (every
pixel is 0..1), so nothing is ignored. Without a map (``--map none``) only
the image CE is trained. SGD lr 0.009, momentum 0.9, weight decay 5e-4,
poly 0.9 (Sec. 5.1.2).

Outputs: {"logit": (N, 2), "map": (N, 1, M, M) logit(fake) - logit(real) of
the mask decoder (so sigmoid(map) is its softmax fake probability),
"mask_logits": (N, 2, M, M), "mscc_logits": (N, 2, M, M)}.

Where the paper and the authors' public code differ (we follow the paper;
see docs/evaluators.md): the code builds its DCT buffer for a fixed 64 x 64
grid (512 px input only) and with k x k bases per its config; it multiplies
the *raw* coarse logits with the features for the class centres (the paper's
P_A is a probability, Eq. 9-10) and does not normalise them by the class
mass; it also has SSSegmentation's auxiliary decoder, which the paper's loss
(Eq. 16) does not contain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ffmask.models._config import ModelConfig, check_int, check_rate, normalise_mean_std
from ffmask.models.evaluators._timm import (
    attach_backbone,
    backbone_features,
    check_dense_backbone,
    image_cross_entropy,
    resize_target,
    soft_cross_entropy,
)
from ffmask.models.evaluators.registry import OptimizerSpec, register_evaluator

NAME = "msccnet"
NUM_CLASSES = 2
PAPER_BASES = ((0, 0), (0, 1), (1, 0), (1, 1))


@dataclass(frozen=True)
class MsccNetConfig(ModelConfig):
    """Architecture of an :class:`MsccNet`; stored verbatim in every checkpoint.

    backbone : timm model name supporting ``features_only`` and ``output_stride``.
    img_size : square input side (paper: 512).
    map_size : side of the predicted maps; None: ``img_size`` (the paper's 8x upsampling).
    output_stride : the backbone's (paper: 8).
    out_indices : the three backbone levels aggregated by MFA, the last one
        also feeds the classifier (paper: layers 2, 3, 4).
    channels : C, the MFA / MSCC width (divisible by the number of bases).
    bases : the DCT bases (u, v), one per channel group (paper: N = 4).
    dropout : of the pixel heads.
    mean, std : input normalisation; None takes the backbone's timm ``pretrained_cfg``.
    """

    model_name = NAME  # for messages (not a field)

    backbone: str = "resnet50"
    img_size: int = 512
    map_size: Optional[int] = None
    output_stride: int = 8
    out_indices: tuple[int, ...] = (2, 3, 4)
    channels: int = 512
    bases: tuple[tuple[int, int], ...] = PAPER_BASES
    dropout: float = 0.1
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None

    def __post_init__(self) -> None:
        check_dense_backbone(self, 3)
        bases = tuple(tuple(b) for b in self.bases)
        if not bases or any(len(b) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in b)
                            for b in bases) or len(set(bases)) != len(bases):
            raise ValueError(f"bases must be distinct (u, v) pairs of non-negative integers, got {self.bases!r}")
        object.__setattr__(self, "bases", bases)
        check_int("channels", self.channels, len(bases))
        if self.channels % len(bases):
            raise ValueError(f"channels ({self.channels}) must be divisible by the number of bases ({len(bases)})")
        check_rate("dropout", self.dropout)
        normalise_mean_std(self)


def dct_basis(height: int, width: int, bases) -> torch.Tensor:
    """float32 (len(bases), height, width): the orthonormal 2D DCT-II basis images B_{u,v}.

    B_{u,v}(i, j) = a_u a_v cos(pi u (i + 1/2) / height) cos(pi v (j + 1/2) / width),
    a_0 = sqrt(1/n), a_k = sqrt(2/n), so that sum(f * B_{u,v}) is the (u, v)
    coefficient of ``scipy.fft.dctn(f, norm="ortho")`` (Eq. 6 before the sum).
    Built for any grid, so any input size works.
    """
    out = torch.empty(len(bases), height, width, dtype=torch.float64)
    i = torch.arange(height, dtype=torch.float64)
    j = torch.arange(width, dtype=torch.float64)
    for n, (u, v) in enumerate(bases):
        cu = torch.cos(math.pi * u * (i + 0.5) / height) * math.sqrt((1 if u == 0 else 2) / height)
        cv = torch.cos(math.pi * v * (j + 0.5) / width) * math.sqrt((1 if v == 0 else 2) / width)
        out[n] = cu[:, None] * cv[None, :]
    return out.float()


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _pixel_head(cin: int, dropout: float) -> nn.Sequential:
    """1x1 conv + BN + ReLU + dropout + 1x1 conv -> NUM_CLASSES (the paper's C1 and C3)."""
    return nn.Sequential(nn.Conv2d(cin, cin, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Dropout2d(dropout), nn.Conv2d(cin, NUM_CLASSES, 1))


class CentreGCN(nn.Module):
    """GCN over the N spectral class-centre nodes (Eq. 11): x (B, N, K, c) -> (B, N, K, c).

    A 1x1 convolution across the nodes (message passing), plus the input,
    ReLU, then one linear map of the channels (the node update).
    """

    def __init__(self, nodes: int, channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(nodes, nodes, 1, bias=False)
        self.update = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.update(F.relu(self.mix(x) + x))


class MultiSpectralClassCenter(nn.Module):
    """The MSCC module (Sec. 3.3): F_A (B, C, h, w) -> (F_M (B, C, h, w), P_A' (B, K, h, w) logits)."""

    def __init__(self, channels: int, bases, dropout: float) -> None:
        super().__init__()
        self.bases = tuple(bases)
        self.groups = len(self.bases)
        self.c = channels // self.groups
        self.coarse = _pixel_head(self.c, dropout)      # C3, shared by the N spectral groups
        self.fuse = nn.Conv2d(self.groups, 1, 1)          # P_A -> P_A' (Eq. 15)
        self.gcn = CentreGCN(self.groups, self.c)
        self.bottleneck = _conv_bn_relu(2 * channels, channels, 3)  # Eq. 14
        self._basis: dict[tuple, torch.Tensor] = {}

    def basis(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) DCT basis images for this grid (cached per size, device and dtype)."""
        key = (h, w, like.device, like.dtype)
        if key not in self._basis:
            self._basis[key] = dct_basis(h, w, self.bases).to(like.device, like.dtype)[:, None]
        return self._basis[key]

    def forward(self, fa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, ch, h, w = fa.shape
        n, c, k = self.groups, self.c, NUM_CLASSES
        groups = fa.view(b, n, c, h, w)
        spectral = groups * self.basis(h, w, fa)                              # Eq. 7-8: (B, N, c, h, w)
        coarse = self.coarse(spectral.reshape(b * n, c, h, w)).view(b, n, k, h, w)  # P_A (Eq. 9)
        fused = self.fuse(coarse.reshape(b, n, k, h * w)).view(b, k, h, w)      # P_A' (Eq. 15)
        prob = coarse.reshape(b, n, k, h * w).float().softmax(dim=2)          # per-pixel class probabilities
        feats = spectral.reshape(b, n, c, h * w).transpose(2, 3).float()     # (B, N, hw, c)
        # Eq. 10: class centres, as probability-weighted means over the pixels.
        centres = prob @ feats / prob.sum(dim=3, keepdim=True).clamp_min(1e-6)  # (B, N, K, c)
        centres = self.gcn(centres.to(fa.dtype))                               # Eq. 11
        x = groups.reshape(b, n, c, h * w).transpose(2, 3)                    # F_A split: (B, N, hw, c)
        weights = (x @ centres.transpose(2, 3)).softmax(dim=-1)              # Eq. 12: (B, N, hw, K)
        refined = (weights @ centres).transpose(2, 3).reshape(b, ch, h, w)   # Eq. 13, back to (B, C, h, w)
        return self.bottleneck(torch.cat([fa, refined], dim=1)), fused


class MsccNet(nn.Module):
    """MSCCNet; see the module docstring.

    forward(x): x float (N, 3, img_size, img_size) RGB in [0, 1] (normalised
    inside) -> {"logit": (N, 2), "map": (N, 1, M, M), "mask_logits": (N, 2, M, M),
    "mscc_logits": (N, 2, M, M)}.
    """

    def __init__(self, config: MsccNetConfig) -> None:
        super().__init__()
        levels = attach_backbone(self, config, levels=3)
        self.align = nn.ModuleList(_conv_bn_relu(cin, config.channels, 3) for cin in levels)  # MFA (Eq. 4)
        self.aggregate = _conv_bn_relu(3 * config.channels, config.channels, 3)           # MFA (Eq. 5)
        self.mscc = MultiSpectralClassCenter(config.channels, config.bases, config.dropout)
        self.decoder = _pixel_head(config.channels, config.dropout)                         # C1
        self.classifier = nn.Linear(levels[-1], NUM_CLASSES)                                # C2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = backbone_features(self, x)
        logit = self.classifier(feats[-1].mean(dim=(2, 3)))
        grid = feats[-1].shape[-2:]
        aligned = []
        for layer, f in zip(self.align, feats):
            f = layer(f)
            if f.shape[-2:] != grid:  # the paper's Downsample (identity at output stride 8)
                f = F.adaptive_avg_pool2d(f, grid) if f.shape[-1] > grid[-1] else \
                    F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            aligned.append(f)
        fm, coarse = self.mscc(self.aggregate(torch.cat(aligned, dim=1)))
        size = (self.map_size, self.map_size)
        mask = F.interpolate(self.decoder(fm), size=size, mode="bilinear", align_corners=False)
        coarse = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        return {"logit": logit, "map": mask[:, 1:2] - mask[:, 0:1], "mask_logits": mask, "mscc_logits": coarse}


def msccnet_loss(model: nn.Module, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                 cls_weight: float = 1.0, seg_weight: float = 1.0, mscc_weight: float = 1.0
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 16: cls_weight CE(image) + seg_weight CE(mask) + mscc_weight CE(P_A'); the pixel terms need a target.

    batch : {"label": int64 (N,), "target": float32 (N, 1, M, M) in [0, 1] (optional)}.
    Returns the total and the detached parts {"total", "cls"[, "seg", "mscc"]}.
    """
    cls = image_cross_entropy(out["logit"], batch["label"])
    total, parts = cls_weight * cls, {"cls": cls.detach()}
    target = batch.get("target")
    if target is not None:
        target = resize_target(target, out["mask_logits"].shape[-2:])
        seg = soft_cross_entropy(out["mask_logits"], target)
        mscc = soft_cross_entropy(out["mscc_logits"], target)
        total = total + seg_weight * seg + mscc_weight * mscc
        parts.update(seg=seg.detach(), mscc=mscc.detach())
    parts["total"] = total.detach()
    return total, parts


@register_evaluator(NAME, loss=msccnet_loss, loss_kwargs={"cls_weight": 1.0, "seg_weight": 1.0, "mscc_weight": 1.0},
                    optimizer=OptimizerSpec("sgd", lr=0.009, weight_decay=5e-4, momentum=0.9, schedule="poly",
                                            power=0.9),
                    paper_map="mscc",
                    description="MSCCNet: dilated ResNet-50, MFA + multi-spectral class centres, CE x3 (Miao et al.)")
def msccnet(**cfg: Any) -> MsccNet:
    """The ``msccnet`` evaluator; keyword arguments are :class:`MsccNetConfig` fields."""
    return MsccNet(MsccNetConfig.from_dict(cfg))
