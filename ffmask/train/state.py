"""Resumable training state without pickle: tensors to safetensors, scalars to JSON.

The optimizer's per-parameter tensors and the random generators' states go
into one safetensors file; the optimizer's hyper-parameters, the scheduler
state and the scalar parts of the generator states go into a JSON-ready
dict that the trainer stores in its checkpoint description.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ffmask.errors import CheckpointError
from ffmask.models.checkpoint import read_safetensors, save_tensors

_STATE = "optim.state."
_RNG = "rng."


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint description")


# ---------------------------------------------------------------- optimizer


def split_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors, JSON-ready scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_STATE}{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = _jsonable(value)
    return tensors, {"param_groups": _jsonable(state_dict["param_groups"]), "state_scalars": scalars}


def join_optimizer_state(tensors: Mapping[str, torch.Tensor], doc: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith(_STATE):
            continue
        index, name = key[len(_STATE):].split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, entries in doc.get("state_scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = [dict(g) for g in doc["param_groups"]]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------- random generators


def get_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """States of torch (CPU and every CUDA device), numpy and Python's random."""
    tensors = {f"{_RNG}torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{_RNG}cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors[f"{_RNG}numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors[f"{_RNG}python"] = torch.tensor(internal, dtype=torch.int64)
    doc = {"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": [version, gauss_next]}
    return tensors, doc


def set_rng_state(tensors: Mapping[str, torch.Tensor], doc: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` saved (CUDA states only when the device count matches)."""
    torch.set_rng_state(tensors[f"{_RNG}torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith(f"{_RNG}cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, pos, has_gauss, cached = doc["numpy"]
    keys = tensors[f"{_RNG}numpy"].numpy().astype(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, cached))
    version, gauss_next = doc["python"]
    random.setstate((version, tuple(int(v) for v in tensors[f"{_RNG}python"].tolist()), gauss_next))


# ---------------------------------------------------------------- files


def save_training_state(path: str | Path, optimizer: torch.optim.Optimizer, scheduler, step: int) -> dict[str, Any]:
    """Write optimizer tensors and RNG states to ``path`` (safetensors).

    Returns the JSON-ready rest (optimizer hyper-parameters, scheduler, RNG
    scalars, the file name and step) for the checkpoint description.
    """
    path = Path(path)
    opt_tensors, opt_doc = split_optimizer_state(optimizer.state_dict())
    rng_tensors, rng_doc = get_rng_state()
    save_tensors(path, {**opt_tensors, **rng_tensors}, {"format": "ffmask-training-state", "step": str(int(step))})
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    return {"file": path.name, "step": int(step), "optimizer": opt_doc,
            "scheduler": _jsonable(sched), "rng": rng_doc}


def load_training_state(directory: str | Path, doc: Mapping[str, Any], optimizer: torch.optim.Optimizer,
                        scheduler, step: int) -> None:
    """Restore optimizer, scheduler and RNG from what :func:`save_training_state` wrote.

    ``doc`` is its returned dict, ``step`` the step of the model weights; a
    training-state file from another step is a CheckpointError.
    """
    path = Path(directory) / doc["file"]
    tensors, meta = read_safetensors(path)
    if meta.get("step") != str(int(step)) or int(doc.get("step", -1)) != int(step):
        raise CheckpointError(f"{path} is from step {meta.get('step')}, the weights from step {step}; "
                              "the checkpoint was interrupted while being written")
    try:
        optimizer.load_state_dict(join_optimizer_state(tensors, doc["optimizer"]))
        sched = dict(doc["scheduler"])
        sched["lr_lambdas"] = [None] * len(scheduler.lr_lambdas) if hasattr(scheduler, "lr_lambdas") else None
        if sched["lr_lambdas"] is None:
            del sched["lr_lambdas"]
        scheduler.load_state_dict(sched)
        set_rng_state(tensors, doc["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"cannot restore the training state from {path}: {exc}") from None
