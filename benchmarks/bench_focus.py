"""FoCus inference throughput (faces/s) through the annotate API.

Measures ``FocusAnnotator.__call__`` end to end: uint8 crops in, resized,
both branches, fusion, maps upsampled to the crop and copied back as numpy.
Weights are random (throughput does not depend on them), so no checkpoint is
needed.

- CPU: the bundled checkpoint, the Lite0 CNN variant, ViT-Ti/16 and
  ViT-S/16 at 224, batch 32 (float32).
- CUDA (when available): the same at batch 256 with bf16 autocast. The goal
  is >= 1500 faces/s for ViT-S/16 on one H100.

Usage: python benchmarks/bench_focus.py [--faces N] [--cpu-only] [--gpu-only]

Map-quality controls instead of throughput (``ffmask.train.focus_controls``):
python benchmarks/bench_focus.py --controls TREE [--checkpoint CKPT ...] [--frames 4] [--compression c23]
scores a'_fus of every fake face of an FF++-style tree with true masks (e.g.
``ffmask synth`` output) against the fixed-mean-map, grey-image and
shuffled-mask controls, token shares and frame AUC; one column per
checkpoint ("bundled" = the bundled default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import ffmask  # noqa: F401  (torchvision shim before timm)
from ffmask.models import create_model
from ffmask.models.focus import FocusAnnotator

BACKBONES = ("tf_efficientnet_lite0", "vit_tiny_patch16_224", "vit_small_patch16_224")


def sample_faces(n: int, size: int = 224) -> np.ndarray:
    """n uint8 (size, size, 3) crops of the astronaut photo at shifting offsets."""
    import cv2
    from skimage.data import astronaut

    img = astronaut()
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        y, x = (i * 37) % 200, (i * 53) % 200
        out[i] = cv2.resize(img[y:y + 300, x:x + 300], (size, size), interpolation=cv2.INTER_AREA)
    return out


def measure(backbone: str, device: str, batch_size: int, n_faces: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` faces/s of the annotator on ``n_faces`` 224 px crops (after one warm-up batch).

    ``backbone="bundled"`` times the bundled default checkpoint (what
    ``--method focus`` uses without ``--checkpoint``).
    """
    torch.manual_seed(0)
    if backbone == "bundled":
        from ffmask.models.focus import load_focus

        annotator = load_focus(device=device)
    else:
        annotator = FocusAnnotator(create_model("focus", backbone=backbone, img_size=224), device=device)
    faces = sample_faces(n_faces)
    labels = np.resize(np.array([1, -1, 0]), n_faces)
    annotator(faces[:batch_size], labels[:batch_size], batch_size=batch_size)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        annotator(faces, labels, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return n_faces / best


def run_controls(tree: str, checkpoints: list[str], compression: str, frames: int, size: int) -> None:
    """Print the position-prior controls of each checkpoint on the fakes of ``tree``."""
    import json

    from ffmask import fidelity
    from ffmask.models.focus import load_focus
    from ffmask.train.focus_controls import controls_table, faces_for_controls, focus_controls

    samples = fidelity.collect_faces(tree, compressions=(compression,), frames=frames, size=size)
    fakes, masks, reals, groups = faces_for_controls(samples)
    rows = {}
    for ckpt in checkpoints:
        annotator = load_focus(None if ckpt == "bundled" else ckpt, device="cpu")
        rows[ckpt] = focus_controls(annotator, fakes, masks, reals, groups)
        print(json.dumps({"checkpoint": ckpt, **rows[ckpt].to_dict(), "goals": rows[ckpt].goals()}), flush=True)
    print(f"\n{tree} ({compression}, {frames} frames per video, {size} px crops)")
    for row in controls_table(rows):
        print("  ".join(f"{cell:38s}" if i == 0 else f"{cell:>12s}" for i, cell in enumerate(row)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=None, help="faces per timed pass (default 64 CPU, 2048 GPU)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--controls", metavar="TREE", help="score map controls on this FF++-style tree with masks")
    parser.add_argument("--checkpoint", action="append", help="checkpoint(s) for --controls (default: bundled)")
    parser.add_argument("--compression", default="c23")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    opts = parser.parse_args()
    if opts.controls:
        run_controls(opts.controls, opts.checkpoint or ["bundled"], opts.compression, opts.frames, opts.size)
        return

    rows = []
    if not opts.gpu_only:
        for backbone in ("bundled", *BACKBONES):
            n = opts.faces or 64
            rows.append(("cpu", f"{torch.get_num_threads()} threads, fp32", backbone, 32,
                         measure(backbone, "cpu", 32, n, repeats=2)))
            print(f"{rows[-1][0]:5s} {rows[-1][2]:24s} batch {rows[-1][3]:4d}: {rows[-1][4]:8.1f} faces/s", flush=True)
    if torch.cuda.is_available() and not opts.cpu_only:
        name = torch.cuda.get_device_name()
        for backbone in BACKBONES:
            n = opts.faces or 2048
            rows.append(("cuda", f"{name}, bf16", backbone, 256, measure(backbone, "cuda", 256, n)))
            print(f"{rows[-1][0]:5s} {rows[-1][2]:24s} batch {rows[-1][3]:4d}: {rows[-1][4]:8.1f} faces/s", flush=True)
        vit_s = [r[4] for r in rows if r[0] == "cuda" and r[2] == "vit_small_patch16_224"]
        print(f"GPU goal (ViT-S >= 1500 faces/s on an H100): {'met' if vit_s and vit_s[0] >= 1500 else 'NOT met'} "
              f"({vit_s[0]:.0f} faces/s on {name})")
    elif not opts.cpu_only:
        print("CUDA not available: GPU figures skipped")

    print("\ndevice  setting                         backbone                 batch   faces/s")
    for device, setting, backbone, batch, fps in rows:
        print(f"{device:7s} {setting[:31]:31s} {backbone:24s} {batch:5d} {fps:9.1f}")


if __name__ == "__main__":
    main()
