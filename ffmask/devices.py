"""Which torch device to run on: one rule for detectors, models and training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from ffmask.errors import FFMaskError

if TYPE_CHECKING:  # torch is imported only when a device is resolved
    import torch


def resolve_device(device: Union[str, "torch.device", None]) -> "torch.device":
    """``None`` or ``"auto"``: CUDA when available, else the CPU; otherwise ``torch.device(device)``.

    Raises ValueError for a string torch does not parse, and FFMaskError for
    a device ffmask does not run on (only ``cpu`` and ``cuda[:N]``: ``mps``,
    ``meta``, ``xpu`` ... used to fail later with a torch traceback), for CUDA
    on a machine without it, and for a CUDA index the machine does not have.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"not a torch device: {device!r} ({exc})") from None
    if dev.type not in ("cpu", "cuda"):
        raise FFMaskError(f"device {device!r}: ffmask runs on cpu or cuda[:N] only")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FFMaskError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FFMaskError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                          "device(s) (cuda:0 ...)")
    return dev
