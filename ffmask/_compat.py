"""Make a CUDA-built torchvision importable on a CPU-only torch.

The pinned torchvision wheel is built against CUDA. On the CPU build of torch
its compiled extension does not load, so ``torchvision::nms`` is never
defined and ``import torchvision`` dies while registering fake kernels for it
("operator torchvision::nms does not exist"). timm and facenet-pytorch import
torchvision, so without help neither works.

:func:`install` puts a one-shot import hook in front of ``torchvision``. The
first time anything imports torchvision, the hook tries to load the real
extension; only if that fails does it define ``torchvision::nms`` and
``torchvision::qnms`` with plain-torch kernels and let ``torchvision.ops.nms``
use them. A working install is never touched, and nothing (not even torch) is
imported until torchvision itself is.
"""

from __future__ import annotations

import glob
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

# torchvision registers fake kernels for exactly these two ops unconditionally.
_NMS_OPS = ("nms", "qnms")
_NMS_SCHEMA = "{}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_library = None  # keeps the torch.library.Library alive (registrations die with it)


def _nms_reference(dets, scores, iou_threshold: float):
    """Greedy non-maximum suppression; same contract as ``torchvision.ops.nms``.

    dets: float (N, 4) boxes x0, y0, x1, y1; scores: float (N,).
    Returns int64 indices of kept boxes, highest score first.
    """
    import torch

    if dets.is_quantized:
        dets, scores = dets.dequantize(), scores.dequantize()
    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=dets.device)
    x0, y0, x1, y1 = dets.unbind(1)
    areas = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool, device=dets.device)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x1[i], x1) - torch.maximum(x0[i], x0)).clamp(min=0)
        h = (torch.minimum(y1[i], y1) - torch.maximum(y0[i], y0)).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=dets.device)


def _real_ops_load(package_dir: str) -> bool:
    """True if torchvision's own compiled ops load in this process."""
    import torch

    for path in glob.glob(os.path.join(package_dir, "_C.*")):
        try:
            torch.ops.load_library(path)
            return True
        except (OSError, RuntimeError):
            return False
    return False


def _define_fallback_ops() -> None:
    global _library
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for name in _NMS_OPS:
        _library.define(_NMS_SCHEMA.format(name))
        _library.impl(name, _nms_reference, "CompositeExplicitAutograd")


def _nms_only_assert() -> None:
    # torchvision.ops.boxes guards nms (and rotated IoU) with a global "are the
    # compiled ops loaded" check; nms now exists, rotated IoU still does not.
    import torch

    if not hasattr(torch.ops.torchvision, "box_iou_rotated"):
        caller = sys._getframe(1).f_code.co_name
        if caller != "nms":
            raise RuntimeError(
                "torchvision's compiled ops are unavailable on this torch build; "
                "only nms is provided by ffmask's CPU fallback"
            )


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real torchvision loader, then points its nms guard at the fallback."""

    def __init__(self, real: importlib.abc.Loader):
        self._real = real

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        self._real.exec_module(module)
        import torchvision.ops.boxes as boxes

        boxes._assert_has_ops = _nms_only_assert


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        uninstall()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.submodule_search_locations:
            return spec
        if _real_ops_load(spec.submodule_search_locations[0]):
            return spec
        _define_fallback_ops()
        spec.loader = _PatchingLoader(spec.loader)
        return spec


_hook = _TorchvisionHook()


def install() -> bool:
    """Arm the hook; a no-op when torchvision is already imported or absent.

    Returns True when the hook was armed.
    """
    if "torchvision" in sys.modules or _hook in sys.meta_path:
        return False
    if importlib.util.find_spec("torchvision") is None:
        return False
    sys.meta_path.insert(0, _hook)
    return True


def uninstall() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def fallback_active() -> bool:
    """True when ffmask's plain-torch nms is the one torchvision uses."""
    return _library is not None
