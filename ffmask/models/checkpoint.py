"""Checkpoints as safetensors weights plus a JSON description; never pickle.

A checkpoint ``stem`` is two files side by side:

- ``stem.safetensors``: the model's state dict; its metadata repeats the
  registry name and training step so a half-written pair is detected;
- ``stem.json``: ``{"format": "ffmask-checkpoint", "format_version": 1,
  "model": <registry name>, "config": {...}, "step": int, ...}`` plus
  whatever the trainer adds (training arguments, metrics).

The model is rebuilt from the JSON alone (``create_model(model, **config)``)
and its weights must then match exactly: every missing key, unexpected key
or shape mismatch is a :class:`~ffmask.errors.CheckpointError`.

Reading accepts safetensors files, and torch files only through
``torch.load(weights_only=True)``, which refuses pickles holding arbitrary
objects.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from ffmask.errors import CheckpointError
from ffmask.outdir import RERUN, writing

PathLike = Union[str, os.PathLike]

FORMAT = "ffmask-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".json"
# Stems a training run writes, in the order a directory is searched.
DIRECTORY_STEMS = ("best", "last")


# ---------------------------------------------------------------- low-level I/O


def _atomic_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (JSON has no NaN)."""
    # NaN/inf are not JSON; an undefined metric (e.g. AUC of one class) becomes null.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON atomically (temporary file, then rename).

    Non-finite floats are written as null.
    """
    path = Path(path)
    tmp = _atomic_path(path)
    text = json.dumps(strict_json(obj), indent=2, allow_nan=False) + "\n"
    with writing(path, tmp=tmp, then=RERUN):  # train resumes, evaluate redoes its report
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def read_json(path: PathLike) -> dict:
    """Read a checkpoint JSON; any problem is a CheckpointError naming the file."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint description {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint description {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint description {path} is not a JSON object")
    return obj


def save_tensors(path: PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` to a safetensors file atomically.

    Tensors are copied to contiguous CPU memory first; ``metadata`` values
    must be strings (a safetensors rule).
    """
    from safetensors.torch import save_file

    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = _atomic_path(path)
    with writing(path, tmp=tmp, then=RERUN):  # train resumes, evaluate redoes its report
        save_file(flat, str(tmp), metadata=dict(metadata or {}))
        os.replace(tmp, path)
    return path


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with a little-endian u64 header length, then '{'.
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise CheckpointError(f"cannot open {path}: {exc}") from None
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


def read_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (on CPU)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights {path} not found")
    if not _is_safetensors(path):
        raise CheckpointError(f"{path} is not a safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None
    return tensors, metadata


def read_tensor_file(path: PathLike) -> Any:
    """Load a weights file without executing code.

    safetensors files are read directly; anything else goes through
    ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
    containers. Returns a dict of tensors (safetensors) or whatever plain
    structure the torch file holds.

    Raises CheckpointError for a missing file, a pickle holding arbitrary
    objects, or an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found")
    if _is_safetensors(path):
        return read_safetensors(path)[0]
    try:
        # A file object, not the path: torch.load hands paths ending in
        # ".safetensors" to safetensors, which would mask a disguised pickle.
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol chatter
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message:
            detail = message.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in message else ""
            detail = " ".join(detail.split("Check the documentation")[0].split()) or "objects other than tensors"
            raise CheckpointError(
                f"refusing to load {path}: it is not a safetensors file and a weights-only torch.load rejects it "
                f"(pickled objects other than plain tensors, or not a weights file: {detail})"
            ) from None
        raise CheckpointError(f"{path} is neither a safetensors file nor a readable torch weights file ({message})") from None
    except Exception as exc:  # zip/EOF/format errors from torch.load
        raise CheckpointError(f"{path} is neither a safetensors file nor a readable torch weights file ({exc})") from None


def find_state_dict(obj: Any, path: PathLike = "<weights>") -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded weights file.

    Accepts a flat ``{name: tensor}`` dict or one nested under the usual keys
    ("state_dict", "model", "module", "model_state", "ema"). Non-tensor
    entries next to the tensors (epoch counters and the like) are dropped.
    """
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
        for key in ("state_dict", "model", "module", "model_state", "ema"):
            if key in obj:
                return find_state_dict(obj[key], path)
    raise CheckpointError(f"{path} holds no tensor dictionary (state dict) that could be loaded")


# ---------------------------------------------------------------- checkpoints


def resolve_checkpoint(path: PathLike) -> tuple[Path, Path]:
    """``(weights, description)`` paths of the checkpoint at ``path``.

    ``path`` may be the ``.safetensors`` file, the ``.json`` file, their
    common stem, or a directory of a training run (``best`` is preferred to
    ``last``).
    """
    path = Path(path)
    if path.is_dir():
        for stem in DIRECTORY_STEMS:
            if (path / (stem + CONFIG_SUFFIX)).is_file():
                return path / (stem + WEIGHTS_SUFFIX), path / (stem + CONFIG_SUFFIX)
        found = sorted(p for p in path.glob("*" + CONFIG_SUFFIX) if p.with_suffix(WEIGHTS_SUFFIX).is_file())
        if len(found) == 1:
            return found[0].with_suffix(WEIGHTS_SUFFIX), found[0]
        raise CheckpointError(
            f"directory {path} holds no checkpoint (expected best.json or last.json with their .safetensors)"
            if not found else f"directory {path} holds several checkpoints; name one of {[p.name for p in found]}"
        )
    if path.suffix == CONFIG_SUFFIX:
        return path.with_suffix(WEIGHTS_SUFFIX), path
    if path.suffix:
        return path, path.with_suffix(CONFIG_SUFFIX)
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + CONFIG_SUFFIX)


def save_checkpoint(
    stem: PathLike,
    model: torch.nn.Module,
    *,
    model_name: str,
    config: Mapping[str, Any],
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``stem.safetensors`` and ``stem.json``; returns both paths.

    The weights are written first and the JSON last, so a JSON on disk always
    describes complete weights (the step in both is checked on load).
    """
    from ffmask import __version__

    from ffmask.outdir import ensure_out_dir

    stem = Path(stem)
    ensure_out_dir(stem.parent)
    weights = stem.with_name(stem.name + WEIGHTS_SUFFIX)
    description = stem.with_name(stem.name + CONFIG_SUFFIX)
    save_tensors(weights, model.state_dict(), {"format": FORMAT, "model": model_name, "step": str(int(step))})
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_name,
        "config": dict(config),
        "step": int(step),
        "ffmask_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    doc.update(extra or {})
    write_json(description, doc)
    return weights, description


def read_description(path: PathLike, model_name: str | None = None) -> dict:
    """The checked JSON description of a checkpoint (see module docstring)."""
    doc = read_json(path)
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ffmask checkpoint description (format {doc.get('format')!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {doc.get('format_version')!r}; "
                              f"this ffmask reads version {FORMAT_VERSION}")
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("model"), str):
        raise CheckpointError(f"{path} lacks the model name or its config")
    if model_name is not None and doc["model"] != model_name:
        raise CheckpointError(f"{path} is a {doc['model']!r} checkpoint, expected {model_name!r}")
    return doc


def match_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``model`` exactly, or raise CheckpointError saying what differs."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:2])})")
    if problems:
        raise CheckpointError(f"{where} does not match its config: " + ", ".join(problems))
    model.load_state_dict(state, strict=True)


def build_from_description(doc: Mapping[str, Any], where: str) -> torch.nn.Module:
    """``create_model(doc["model"], **doc["config"])``, errors as CheckpointError."""
    from ffmask.models.registry import create_model

    try:
        return create_model(doc["model"], **doc["config"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: cannot build model {doc['model']!r} from its config ({exc})") from None


def load_checkpoint(path: PathLike, *, model_name: str | None = None, map_location: str | torch.device = "cpu",
                    config_defaults: Mapping[str, Any] | None = None):
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    Returns ``(model, description)``; the model is in eval mode on
    ``map_location``. ``config_defaults``: values for config keys that the
    stored config lacks (keys added to a model after older checkpoints were
    written, set to what those checkpoints were trained with). Raises CheckpointError when a file is missing, is not
    safetensors/weights-only, belongs to another model, or its weights do not
    match its config.
    """
    weights, description = resolve_checkpoint(path)
    doc = read_description(description, model_name)
    if weights.is_file() and _is_safetensors(weights):
        tensors, meta = read_safetensors(weights)
        if "step" in meta and str(doc.get("step")) != meta["step"]:
            raise CheckpointError(
                f"{weights} (step {meta['step']}) and {description} (step {doc.get('step')}) are from different "
                "saves; the checkpoint was probably interrupted while being written"
            )
    else:
        tensors = find_state_dict(read_tensor_file(weights), weights)
    if config_defaults:
        doc = dict(doc, config={**dict(config_defaults), **doc["config"]})
    model = build_from_description(doc, str(description))
    match_state_dict(model, tensors, str(weights))
    model.to(map_location).eval()
    return model, doc
