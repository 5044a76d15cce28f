"""Frozen-backbone feature cache for FoCus training (``ffmask train focus --cache-features``).

When the first K stages of both CNN branches are frozen (``--frozen-stages K``),
their output for a given training face never changes during a run: the
frozen weights get no gradient and their BatchNorm layers keep their
statistics. :class:`FeatureCache` computes that output once per face (and
once for its mirror image when training flips faces) and training then runs
only the trainable rest, :meth:`ffmask.models.focus.FocusNet.forward_features`:
the remaining backbone stages (none when every stage is frozen), the CARP
heads, Complementary Learning and the fusion block. On CPU a step of the
Lite0 variant then costs milliseconds instead of seconds.

The cached run takes the very steps of the uncached run: the same batches
(:class:`ffmask.train.focus.StepBatchSampler`), the same flips drawn from the
same global generator, the same Gumbel noise. Only augmentations that change
the image at every step (crop and colour jitter) cannot be cached; the
trainer refuses them with the cache.

A cache remembers a fingerprint of the frozen weights it was computed with
(:func:`frozen_fingerprint`); :meth:`FeatureCache.check` refuses a model
whose frozen stages differ (stale features). :func:`load_or_build` keeps the
cache in a safetensors file (the trainer's ``out/features.safetensors``) and
reuses it only when both that fingerprint and the faces' :func:`data_key`
match, so a resumed run does not recompute it and a changed model or data
set never reads stale features.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ffmask.errors import FFMaskError
from ffmask.models.focus import FocusNet, prepare_images


def frozen_fingerprint(model: FocusNet) -> str:
    """SHA-1 of everything the frozen stages' output depends on.

    The config (input size, normalisation, Sobel normalisation, backbone,
    padding, token stride), the number of frozen stages, and every parameter
    and buffer of the frozen modules of both branches, in a fixed order.
    """
    h = hashlib.sha1()
    h.update(repr(sorted(model.config.to_dict().items())).encode())
    h.update(f"stages={model.cached_stages}".encode())
    for branch in (model.rgb_branch, model.sobel_branch):
        for module in branch._frozen:
            for name, tensor in (*module.named_parameters(), *module.named_buffers()):
                h.update(name.encode())
                h.update(tensor.detach().to("cpu", torch.float64 if tensor.is_floating_point() else torch.int64)
                         .contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class FeatureCache:
    """The frozen stages' output of both branches for a list of faces.

    rgb, sobel : float32 (N, V, C, H, W): view 0 the face as validation sees
        it (resized to the model input), view 1 (when V == 2) its mirror image.
    stages : frozen stages the features came through.
    fingerprint : :func:`frozen_fingerprint` of the model they came from.
    """

    rgb: torch.Tensor
    sobel: torch.Tensor
    stages: int
    fingerprint: str

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def flips(self) -> bool:
        """Whether the mirror image of every face is cached too."""
        return self.rgb.shape[1] == 2

    @property
    def nbytes(self) -> int:
        return self.rgb.numel() * self.rgb.element_size() + self.sobel.numel() * self.sobel.element_size()

    @classmethod
    @torch.no_grad()
    def build(cls, model: FocusNet, dataset: Dataset, indices: np.ndarray, *, flips: bool, batch_size: int = 64,
              device: Optional[torch.device] = None) -> "FeatureCache":
        """Run the frozen stages of ``model`` over ``dataset[indices]`` (items with "image" uint8 (3, S, S)).

        Each image goes through the same resize as training and inference
        (:func:`ffmask.models.focus.prepare_images`); with ``flips`` the
        resized image is also mirrored (``x.flip(-1)``, as the training loop
        flips). ValueError for a ViT or a model without frozen stages.
        """
        device = device if device is not None else next(model.parameters()).device
        was_training = model.training
        model.eval()
        views = (False, True) if flips else (False,)
        rgb = sobel = None
        try:
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                read = getattr(dataset, "batch", None)  # a ShardDataset reads a chunk as one batch
                images = (read([int(i) for i in chunk], maps=())["image"] if read is not None else
                          torch.stack([torch.as_tensor(dataset[int(i)]["image"]) for i in chunk])).to(device)
                x = prepare_images(images, model.img_size)
                feats = [model.frozen_features(x.flip(-1) if flip else x) for flip in views]
                f_rgb = torch.stack([f[0] for f in feats], dim=1).float().cpu()
                f_sob = torch.stack([f[1] for f in feats], dim=1).float().cpu()
                if rgb is None:
                    rgb = torch.empty((len(indices), *f_rgb.shape[1:]), dtype=torch.float32)
                    sobel = torch.empty((len(indices), *f_sob.shape[1:]), dtype=torch.float32)
                rgb[start:start + len(chunk)] = f_rgb
                sobel[start:start + len(chunk)] = f_sob
        finally:
            model.train(was_training)
        if rgb is None:
            raise ValueError("a feature cache needs at least one face")
        return cls(rgb.to(device), sobel.to(device), model.cached_stages, frozen_fingerprint(model))

    def take(self, positions, flip: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of the faces at ``positions`` (B,) of the cache, mirrored where ``flip`` (B,) bool is True.

        Returns (rgb, sobel) float32 (B, C, H, W), the input of
        :meth:`ffmask.models.focus.FocusNet.forward_features`.
        """
        pos = torch.as_tensor(positions, dtype=torch.int64, device=self.rgb.device)
        if flip is None:
            view = torch.zeros_like(pos)
        else:
            if not self.flips and bool(flip.any()):
                raise ValueError("this feature cache holds no mirrored faces (built with flips=False)")
            view = flip.to(self.rgb.device).long()
        return self.rgb[pos, view], self.sobel[pos, view]

    def check(self, model: FocusNet) -> None:
        """FFMaskError unless ``model``'s frozen stages are those the cache was computed with."""
        if model.cached_stages != self.stages or frozen_fingerprint(model) != self.fingerprint:
            raise FFMaskError("the feature cache is stale: the model's frozen backbone stages are not the ones "
                              "the cached features were computed with")


def data_key(dataset: Dataset, indices: np.ndarray, flips: bool) -> str:
    """SHA-1 naming the cached faces: the indices, whether mirrors are cached, and the pixels of up to
    16 evenly spaced faces (so another data set with the same count is told apart)."""
    indices = np.asarray(indices, dtype=np.int64)
    h = hashlib.sha1(indices.tobytes())
    h.update(f"flips={bool(flips)}".encode())
    for i in np.unique(np.linspace(0, max(len(indices) - 1, 0), 16).round().astype(np.int64)):
        if len(indices):
            h.update(np.ascontiguousarray(np.asarray(dataset[int(indices[i])]["image"])).tobytes())
    return h.hexdigest()


def load_or_build(model: FocusNet, dataset: Dataset, indices: np.ndarray, path: Union[str, Path], *, flips: bool,
                  batch_size: int = 64, device: Optional[torch.device] = None) -> tuple[FeatureCache, bool]:
    """The cache stored at ``path`` when it matches ``model``'s frozen stages and these faces, else a new one.

    A new cache is written to ``path`` (safetensors, atomically). Returns
    (cache, built): ``built`` is False when the file was reused.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    path = Path(path)
    key = data_key(dataset, indices, flips)
    want = {"fingerprint": frozen_fingerprint(model), "stages": str(model.cached_stages), "data": key}
    device = device if device is not None else next(model.parameters()).device
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                meta = dict(fh.metadata() or {})
                if all(meta.get(k) == v for k, v in want.items()):
                    cache = FeatureCache(fh.get_tensor("rgb").to(device), fh.get_tensor("sobel").to(device),
                                         model.cached_stages, want["fingerprint"])
                    return cache, False
        except (OSError, SafetensorError, KeyError, RuntimeError):
            pass  # unreadable or partial: rebuilt below
    cache = FeatureCache.build(model, dataset, indices, flips=flips, batch_size=batch_size, device=device)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"rgb": cache.rgb.cpu().contiguous(), "sobel": cache.sobel.cpu().contiguous()}, str(tmp), metadata=want)
    os.replace(tmp, path)
    return cache, True
