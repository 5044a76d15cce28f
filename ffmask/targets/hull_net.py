"""The learned refinement behind ``hull``: per-pair evidence maps in, mask logits out.

:func:`evidence` turns a (real, fake) crop pair into ``len(CHANNELS)``
generator-agnostic maps at a fixed working resolution (``RES`` x ``RES``):
the residual at three smoothing scales, each divided by the level that
compression alone reaches in this pair's background (so the compression
strength is normalised out), the residual over the face's own Otsu split,
the signed luminance change, the face prior (landmark hull over the
forehead, or the central ellipse without landmarks), the background used
for the noise level, the hand-rule mask (:func:`ffmask.targets.hull.hull_rules_mask`),
the texture weight and the pair's noise level. :func:`build_net` is a
two-level U-Net (about 16 k parameters, a receptive field of about a fifth
of the crop) that reads the maps named in :data:`INPUTS` -- not the face
prior nor the background: a net that sees them learns *where* the training
families' regions lie, and fails on other regions (docs/hull_training.md) -- and
returns mask logits; :func:`refine_probability` upsamples their sigmoid
to the crop.

The shipped weights (``weights/hull_refine.safetensors``, < 100 kB) were
trained on synth families of the tuning half only (regions hull, nose,
cheek, forehead; operations resample, blur, color, noise, expression;
Biden and Collins): recipe in :mod:`ffmask.targets.hull_train` and
docs/hull_training.md. torch is imported, and the weights read, on the first call
only (cached per process); ``torch.set_num_threads`` is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ffmask.targets._weights import WeightsCache

__all__ = ["RES", "CHANNELS", "INPUTS", "WEIGHTS", "evidence", "build_net", "load_net", "refine_probability"]

RES = 64  # working resolution (px) of the evidence maps and the net
CHANNELS = ("d_fine", "d_mid", "d_wide", "d_otsu", "signed", "face", "background", "rules", "texture", "level")
SCALES = (0.006, 0.012, 0.03)  # residual smoothing sigmas, fractions of the crop side
WIDTHS = (16, 24)  # U-Net widths per level (64, 32 px); one conv at 64 px, two below
#: the maps the shipped net reads: no face prior or background map, so it cannot learn where regions lie
INPUTS = ("d_fine", "d_mid", "d_wide", "d_otsu", "signed", "rules", "texture", "level")
WEIGHTS = Path(__file__).with_name("weights") / "hull_refine.safetensors"


def _resize(a: np.ndarray, res: int) -> np.ndarray:
    return cv2.resize(a.astype(np.float32), (res, res), interpolation=cv2.INTER_AREA)


def evidence(real: np.ndarray, fake: np.ndarray, landmarks: Optional[np.ndarray] = None,
             res: int = RES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evidence maps of a checked pair for the refinement net.

    Parameters
    ----------
    real, fake : ndarray of uint8, shape (H, W, 3)
        Already validated RGB crops (:func:`ffmask.targets._validate.check_pair`).
    landmarks : ndarray (N, 2) of float, or None
        Validated landmarks in crop pixels (NaN-free), or None.
    res : int
        Working resolution.

    Returns
    -------
    maps : ndarray of float32, shape (len(CHANNELS), res, res)
    face : ndarray of bool, shape (H, W)
        The face region (:func:`ffmask.targets.hull.face_region`); the mask is kept inside it.
    rules : ndarray of bool, shape (H, W)
        The hand-rule mask (:func:`ffmask.targets.hull.hull_rules_mask`) at the crop size.
    """
    from ffmask.targets import hull as _hull

    h, w = real.shape[:2]
    side = min(h, w)
    face, outside = _hull.face_region((h, w), landmarks)
    tex = _hull.texture_weight(real)
    raw = _hull.abs_difference(real, fake)
    maps = []
    mid = None
    mid_level = 1.0
    for s in SCALES:
        d = cv2.GaussianBlur(raw, (0, 0), max(0.3, s * side), borderType=cv2.BORDER_REFLECT) / tex
        low, _ = _hull.background_levels(d, outside)
        maps.append(np.log1p(d / low))
        if s == _hull.SIGMA or mid is None:
            mid, mid_level = d, low
    otsu = max(_hull._otsu(mid[face]) if face.any() else 0.0, _hull.MIN_LEVEL)
    maps.append(np.log1p(mid / otsu))
    gray = (cv2.cvtColor(fake, cv2.COLOR_RGB2GRAY).astype(np.float32)
            - cv2.cvtColor(real, cv2.COLOR_RGB2GRAY).astype(np.float32))
    signed = cv2.GaussianBlur(gray, (0, 0), max(0.3, _hull.SIGMA * side), borderType=cv2.BORDER_REFLECT)
    signed /= mid_level * tex
    maps.append(np.sign(signed) * np.log1p(np.abs(signed)))
    maps.append(face.astype(np.float32))
    maps.append(outside.astype(np.float32))
    rules = _hull.hull_rules_mask(real, fake, landmarks)
    maps.append(rules.astype(np.float32))
    maps.append(np.log(tex))
    out = np.stack([_resize(m, res) for m in maps])
    level = np.full((1, res, res), np.log1p(mid_level) / 3.0, np.float32)
    return np.concatenate([out, level]).astype(np.float32), face, rules


def build_net(in_channels: int = len(CHANNELS), widths: tuple[int, ...] = WIDTHS):
    """A small U-Net (torch ``nn.Module``): (B, in_channels, R, R) -> (B, 1, R, R) logits, R divisible by 8."""
    import torch
    from torch import nn

    def block(i: int, o: int, convs: int = 2) -> nn.Sequential:
        layers = []
        for k in range(convs):
            layers += [nn.Conv2d(i if k == 0 else o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                       nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    class RefineNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = list(widths)
            # one conv per side at full resolution (the costly level), two below
            self.down = nn.ModuleList([block(in_channels, w[0], 1)]
                                      + [block(w[k], w[k + 1]) for k in range(len(w) - 1)])
            self.up = nn.ModuleList([block(w[k + 1] + w[k], w[k], 1 if k == 0 else 2) for k in range(len(w) - 1)])
            self.head = nn.Conv2d(w[0], 1, 1)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            skips = []
            for k, layer in enumerate(self.down):
                if k:
                    x = nn.functional.max_pool2d(x, 2)
                x = layer(x)
                skips.append(x)
            for k in range(len(self.up) - 1, -1, -1):
                x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
                x = self.up[k](torch.cat([x, skips[k]], 1))
            return self.head(x)

    return RefineNet()


def load_net(path: Optional[Path] = None):
    """The refinement net with the shipped (or ``path``'s) weights, eval mode; cached per path and process.

    Raises
    ------
    ValueError
        When the file is missing, not safetensors, or does not fit the architecture.
    """
    return _NETS.get(path)


def _read_net(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"cannot read hull refinement weights {path}: {exc}") from None
    config = json.loads(meta.get("config", "{}"))
    inputs = tuple(config.get("inputs", CHANNELS))
    if (tuple(config.get("channels", CHANNELS)) != CHANNELS or int(config.get("res", RES)) != RES
            or not set(inputs) <= set(CHANNELS)):
        raise ValueError(f"{path}: weights were trained for other evidence maps ({config})")
    net = build_net(len(inputs), tuple(config.get("widths", WIDTHS)))
    net.inputs = [CHANNELS.index(c) for c in inputs]
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the refinement net: {str(exc).splitlines()[0]}") from None
    net.eval()
    return net


_NETS = WeightsCache("hull refinement weights", WEIGHTS, _read_net)


def refine_probability(maps: np.ndarray, shape: tuple[int, int], net=None) -> np.ndarray:
    """Mask probability at the crop size: float32 (H, W) in [0, 1].

    ``maps`` (C, R, R) from :func:`evidence`; the logits are upsampled
    bilinearly to ``shape`` before the sigmoid.
    """
    import torch

    net = net if net is not None else load_net()
    with torch.inference_mode():
        x = np.ascontiguousarray(maps[getattr(net, "inputs", slice(None))])
        logits = net(torch.from_numpy(x)[None])[0, 0].numpy()
    h, w = shape
    up = cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR)
    return (1.0 / (1.0 + np.exp(-np.clip(up, -30, 30)))).astype(np.float32)
