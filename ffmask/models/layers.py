"""Building blocks of the FoCus map generator (Tian et al., TIFS 2024).

Layers only: no checkpoint handling, no training logic. Every layer works on
float tensors and on any device; none holds trainable state it does not need.

Shapes used below: ``N`` batch, ``T = h * w`` patch tokens on an ``h x w``
grid, ``D`` token width, ``d`` feature maps per class in the CARP head.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# OpenCV's RGB -> GRAY weights; DESIGN.md uses them for every grayscale.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

# The largest 3x3 Sobel magnitude of an image in [0, 1]: |gx| and |gy| are each
# at most 1 + 2 + 1 = 4, so sqrt(4^2 + 4^2).
SOBEL_MAX = 4.0 * math.sqrt(2.0)


def sincos_pos_embed(grid: tuple[int, int], dim: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Fixed 2-D sine-cosine position encodings for a ViT token sequence.

    Follows timm's ``build_sincos2d_pos_embed`` (MoCo v3 layout): for the
    token at row ``y``, column ``x`` the vector is
    ``[sin(y w), sin(x w), cos(y w), cos(x w)]`` with ``w_k = 10000^(-k / (dim/4))``,
    ``k = 0 .. dim/4 - 1``. Prefix tokens (the class token) get zeros, as in MAE,
    so they carry no position.

    Parameters
    ----------
    grid : (h, w) patch grid.
    dim : token width; must be divisible by 4.
    num_prefix_tokens : tokens before the patches (1 for a class token).

    Returns
    -------
    float32 tensor (1, num_prefix_tokens + h * w, dim), values in [-1, 1].
    """
    from timm.layers import build_sincos2d_pos_embed

    h, w = (int(v) for v in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be positive, got {grid}")
    if dim % 4:
        raise ValueError(f"sin-cos position encodings need a width divisible by 4, got {dim}")
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    patches = build_sincos2d_pos_embed([h, w], dim=dim, temperature=10000.0)
    prefix = torch.zeros(num_prefix_tokens, dim, dtype=patches.dtype)
    return torch.cat([prefix, patches], dim=0).unsqueeze(0)


class SobelFilter(nn.Module):
    """Sobel gradient magnitude of an RGB batch, as a 3-channel image.

    gray = 0.299 R + 0.587 G + 0.114 B (OpenCV's weights), then the 3x3 Sobel
    derivatives with OpenCV's kernels and its default border (reflect-101),
    magnitude ``sqrt(gx^2 + gy^2)`` divided by ``4 sqrt(2)`` so it lies in
    [0, 1], repeated over 3 identical channels so an RGB patch embedding (and
    an ImageNet checkpoint) fits it unchanged.

    Input: float (N, 3, H, W) RGB in [0, 1], H, W >= 2.
    Output: float (N, 3, H, W) in [0, 1], same dtype and device.
    """

    def __init__(self) -> None:
        super().__init__()
        gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        kernels = torch.stack([gx, gx.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
        # Fixed filters, rebuilt at construction: buffers outside the state dict.
        self.register_buffer("kernels", kernels, persistent=False)
        self.register_buffer("gray_weights", torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SobelFilter expects (N, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 2:
            raise ValueError(f"SobelFilter needs images of at least 2x2 pixels, got {tuple(x.shape[-2:])}")
        gray = (x * self.gray_weights.to(x.dtype)).sum(dim=1, keepdim=True)
        # torch's "reflect" pads without repeating the edge pixel: OpenCV's BORDER_REFLECT_101.
        padded = F.pad(gray, (1, 1, 1, 1), mode="reflect")
        grad = F.conv2d(padded, self.kernels.to(x.dtype))
        magnitude = torch.sqrt(grad.square().sum(dim=1, keepdim=True)) / SOBEL_MAX
        return magnitude.expand(-1, 3, -1, -1)


class CARPHead(nn.Module):
    """Classification Attentive Regions Proposal head.

    A 1x1 convolution turns the patch tokens into ``2 * d`` feature maps, ``d``
    per class (class 0 real, 1 fake). Class logits are the spatial max of each
    map averaged over its ``d`` maps; so the image is classified by the
    regions that respond most, and those regions form the CAR map
    ``a = sigmoid(sum_c p_c * mean_d f_c)`` with ``p = softmax(logits)``.

    Forward input: tokens float (N, T, D) and the grid (h, w) with h * w == T.
    Forward output (all float32):

    - logits (N, 2)
    - class_maps (N, 2, h, w): ``mean_d f_c`` per class
    - car (N, h, w) in [0, 1]: ``a`` above
    - car_fake (N, h, w) in [0, 1]: ``sigmoid(p_fake * mean_d f_fake)``, the
      fake-class term alone (the map for faces of unknown label)
    """

    num_classes = 2

    def __init__(self, dim: int, maps_per_class: int = 32) -> None:
        super().__init__()
        if dim < 1 or maps_per_class < 1:
            raise ValueError(f"dim and maps_per_class must be positive, got {dim}, {maps_per_class}")
        self.maps_per_class = maps_per_class
        self.proj = nn.Conv2d(dim, self.num_classes * maps_per_class, kernel_size=1)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]):
        n, t, dim = tokens.shape
        h, w = grid
        if h * w != t:
            raise ValueError(f"grid {grid} does not hold {t} tokens")
        fmap = tokens.transpose(1, 2).reshape(n, dim, h, w)
        # The maps and everything derived from them stay float32 under autocast:
        # sigmoid/softmax of bf16 logits would quantise the CAR maps visibly.
        f = self.proj(fmap).float().view(n, self.num_classes, self.maps_per_class, h, w)
        logits = f.amax(dim=(-2, -1)).mean(dim=-1)
        class_maps = f.mean(dim=2)
        probs = logits.softmax(dim=-1)
        car = torch.sigmoid((probs[:, :, None, None] * class_maps).sum(dim=1))
        car_fake = torch.sigmoid(probs[:, 1, None, None] * class_maps[:, 1])
        return logits, class_maps, car, car_fake


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass.

    Written as ``hard + (soft - soft.detach())`` rather than the usual
    ``hard - soft.detach() + soft``: ``x - x`` is exactly zero in floating
    point, so the forward values are exactly those of ``hard`` (0 and 1 stay
    0 and 1), which the usual form does not guarantee.
    """
    return hard.detach() + (soft - soft.detach())


class ComplementaryLearning(nn.Module):
    """Token-wise choice between two modalities (RGB and Sobel), Algorithm 1 of the paper.

    Each modality scores its own tokens with a small MLP; the two scores are
    turned into probabilities ``p = softmax([s_a, s_b])``. During training
    Gumbel(0, 1) noise is added to those *probabilities* (not to log-probabilities),
    ``noisy = (p + g) / tau``, and the token takes the modality with the larger
    noisy value, as a hard one-hot with the straight-through gradient of
    ``softmax(noisy)``. Because ``p`` lies in [0, 1], the noise dominates the
    choice: P(choose a) stays between about 0.27 and 0.73 whatever the scores,
    so neither modality can take every token while training (the paper's
    reason for CL). Adding the noise to log-probabilities instead would make
    P(choose a) = p_a, which can reach 1 and let one modality win everywhere.
    In eval mode no noise is added, so the choice is the argmax of ``p`` and
    inference is deterministic.

    Forward input: z_a, z_b float (N, T, D).
    Forward output: mask float (N, T), exactly 1 where modality a is chosen and
    0 where b is; its gradient is that of the soft choice, so both modalities'
    scorers and backbones receive gradient.
    """

    def __init__(self, dim: int, hidden: int | None = None, tau: float = 1.0) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"Gumbel temperature tau must be > 0, got {tau}")
        hidden = hidden or max(dim // 2, 1)
        self.tau = float(tau)
        self.score_a = self._scorer(dim, hidden)
        self.score_b = self._scorer(dim, hidden)

    @staticmethod
    def _scorer(dim: int, hidden: int) -> nn.Sequential:
        return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def probabilities(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """float32 (N, T, 2): softmax of the two modalities' scores per token (before any noise)."""
        if z_a.shape != z_b.shape or z_a.ndim != 3:
            raise ValueError(f"modalities must share shape (N, T, D), got {tuple(z_a.shape)}, {tuple(z_b.shape)}")
        return torch.cat([self.score_a(z_a), self.score_b(z_b)], dim=-1).float().softmax(dim=-1)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return self.choose(self.probabilities(z_a, z_b))

    def choose(self, probs: torch.Tensor) -> torch.Tensor:
        """The hard mask (N, T) for :meth:`probabilities` ``probs`` (N, T, 2); noisy in training."""
        noisy = probs
        if self.training:
            uniform = torch.rand_like(probs).clamp_(min=1e-10, max=1.0 - 1e-7)
            noisy = probs - torch.log(-torch.log(uniform))  # + Gumbel(0, 1)
        soft = (noisy / self.tau).softmax(dim=-1)
        hard = F.one_hot(soft.argmax(dim=-1), num_classes=2).to(soft.dtype)
        return straight_through(hard, soft)[..., 0]


def standardize_per_image(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) minus its own mean, divided by its own std (+ ``eps``).

    Used for the Sobel magnitude, whose values crowd near 0: a fixed
    ``(x - 0.5) / 0.5`` leaves it almost constant. A flat image (std 0) maps
    to zeros. Same shape, dtype and device as ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    flat = x.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1, unbiased=False).view(-1, 1, 1, 1)
    return (x - mean) / (std + eps)


def mix_tokens(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mask * a + (1 - mask) * b`` token-wise.

    mask: (N, T); a, b: (N, T) or (N, T, D). With a 0/1 mask each output token
    is exactly the chosen modality's token.
    """
    if a.shape != b.shape or a.shape[:2] != mask.shape:
        raise ValueError(f"cannot mix {tuple(a.shape)} and {tuple(b.shape)} with mask {tuple(mask.shape)}")
    m = mask.to(a.dtype)
    if a.ndim == 3:
        m = m.unsqueeze(-1)
    return m * a + (1 - m) * b
