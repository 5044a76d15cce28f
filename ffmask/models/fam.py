"""Forgery Attention Maps and Suspicious Forgeries Erasing (Wang & Deng, RFM, CVPR 2021).

- :func:`forgery_attention`: the FAM of any detector whose ``forward(x)``
  returns ``{"logit": (N, 2)}``: ``|d(logit_fake - logit_real) / dx|``, the
  maximum over the colour channels, the model in eval mode (paper Eq. 1).
  The gradient is taken with respect to the model's own input, float RGB in
  [0, 1] (every ffmask evaluator normalises inside its forward), so FAMs of
  models with different normalisations are comparable. Batch norm in eval
  mode keeps the faces of a batch independent, so the gradient of the summed
  logit differences is every face's own gradient; parameter gradients are
  neither computed nor touched (a training step's ``.grad`` stays as it was).
- :func:`erase_blocks`: Suspicious Forgeries Erasing (paper Algorithm 1) on
  given FAMs: the top-N FAM points, skipping points already inside an erased
  block, each covered by a random block filled with uniform noise.
- :func:`sfe_augment`: the two together on a training batch, the
  ``augment`` of the ``rfm`` evaluator.

Used by ``ffmask annotate ... --method fam`` (:mod:`ffmask.models.fam_method`)
and the ``rfm`` evaluator (:mod:`ffmask.models.evaluators.rfm`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["PAPER_BLOCK", "PAPER_SIZE", "block_limits", "erase_blocks", "forgery_attention", "sfe_augment"]

#: The paper's largest erasing block (H_max = W_max = 120) at its 224 px input.
PAPER_BLOCK = 120
PAPER_SIZE = 224


def forgery_attention(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FAMs and fake probabilities of a batch.

    Parameters
    ----------
    model : nn.Module
        ``forward(x) -> {"logit": (N, 2), ...}`` (class 1 fake); run in eval
        mode here, its training mode restored afterwards.
    x : float tensor (N, 3, H, W)
        The model's input (RGB in [0, 1] for ffmask evaluators), on the
        model's device.

    Returns
    -------
    fam : float32 (N, H, W) >= 0, unnormalised, detached.
    prob : float32 (N,) the model's fake probability, detached.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W), got {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    try:
        # inference_mode(False): the pipeline or a caller may run under inference mode.
        with torch.inference_mode(False), torch.enable_grad():
            inp = x.detach().clone().float().requires_grad_(True)
            logit = model(inp)["logit"].float()
            if logit.ndim != 2 or logit.shape != (x.shape[0], 2):
                raise ValueError(f"the model's logit must be (N, 2), got {tuple(logit.shape)}")
            (grad,) = torch.autograd.grad((logit[:, 1] - logit[:, 0]).sum(), inp)
        fam = grad.abs().amax(dim=1)
        prob = logit.detach().softmax(-1)[:, 1]
    finally:
        model.train(was_training)
    return fam.detach().float(), prob.float()


def block_limits(size: int) -> int:
    """The largest erasing block side at input side ``size``: the paper's 120 at 224, scaled (>= 1)."""
    return max(1, int(round(PAPER_BLOCK * size / PAPER_SIZE)))


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def erase_blocks(fam: torch.Tensor, generator: torch.Generator, *, blocks: int = 3,
                 max_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Where Suspicious Forgeries Erasing puts its blocks (paper Algorithm 1), as a mask.

    For each face, ``blocks`` times: the largest FAM value not yet inside an
    erased block is the anchor; a block of ``h x w`` pixels, ``h =
    randint(1, H_max)``, ``w = randint(1, W_max)``, is placed at a random
    offset that keeps the anchor inside it (rows ``i - a .. i - a + h - 1``,
    ``a = randint(0, h - 1)``, likewise for columns) and clipped to the
    image. (The authors' code draws the offset from 1..h, which leaves the
    anchor just outside the block when it equals h; Algorithm 1's text
    covers the anchor, which is what is done here.) Ties go to the first
    pixel in row-major order.

    Parameters
    ----------
    fam : float (N, H, W) attention maps (any scale).
    generator : torch.Generator (CPU); every draw comes from it, in face
        order, so the result is a pure function of its state.
    blocks : N of the paper (3).
    max_size : (H_max, W_max); default :func:`block_limits` of H and W.

    Returns
    -------
    bool (N, H, W): True where a block erases, on ``fam``'s device.
    """
    if fam.ndim != 3:
        raise ValueError(f"fam must be (N, H, W), got {tuple(fam.shape)}")
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
        raise ValueError(f"blocks must be an integer >= 0, got {blocks!r}")
    n, h_img, w_img = fam.shape
    h_max, w_max = max_size if max_size is not None else (block_limits(h_img), block_limits(w_img))
    if h_max < 1 or w_max < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size!r}")
    scores = fam.detach().float().cpu()
    mask = torch.zeros(n, h_img, w_img, dtype=torch.bool)
    for i in range(n):
        for _ in range(blocks):
            free = scores[i].masked_fill(mask[i], float("-inf"))
            if not mask[i].logical_not().any():
                break
            r, c = divmod(int(free.flatten().argmax()), w_img)
            h, w = _randint(1, h_max, generator), _randint(1, w_max, generator)
            top, left = r - _randint(0, h - 1, generator), c - _randint(0, w - 1, generator)
            mask[i, max(top, 0):min(top + h, h_img), max(left, 0):min(left + w, w_img)] = True
    return mask.to(fam.device)


def sfe_augment(model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator, *,
                blocks: int = 3, prob: float = 1.0, mean: Sequence[float] = (0.5, 0.5, 0.5),
                std: Sequence[float] = (0.5, 0.5, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Suspicious Forgeries Erasing of a training batch (paper Algorithm 1 with its FAM).

    The FAM of ``model`` (eval mode, then restored) on ``x``; :func:`erase_blocks`
    with the largest block 120 px at 224 px scaled with the input side;
    each erased pixel gets uniform noise in [-1, 1] *of the normalised
    input*, i.e. ``mean + std * u`` in the [0, 1] RGB the model takes.

    Parameters
    ----------
    model : the detector being trained.
    x : float (B, 3, H, W) RGB in [0, 1], the model's input.
    generator : torch.Generator (CPU), seeded by the caller per step; the
        blocks, the erase decisions and the noise all come from it.
    blocks : erasing blocks per face (paper N = 3).
    prob : probability that a face is erased at all (paper p = 1.0).
    mean, std : the model's input normalisation (3 values each).

    Returns
    -------
    x : float32 (B, 3, H, W) erased faces (a new tensor).
    mask : bool (B, H, W) the erased pixels.
    """
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected float images (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
    if prob <= 0:  # nothing is erased: skip the FAM's forward and backward
        return x.float(), torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.bool, device=x.device)
    fam, _ = forgery_attention(model, x)
    mask = erase_blocks(fam, generator, blocks=blocks)
    keep = torch.rand(x.shape[0], generator=generator) < prob
    mask &= keep.to(mask.device)[:, None, None]
    u = torch.rand(tuple(x.shape), generator=generator).mul_(2).sub_(1).to(x.device)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return torch.where(mask[:, None], m + s * u, x.float()), mask
