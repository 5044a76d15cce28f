"""Shard write/read speed and size for each compression choice.

Writes realistic faces (crops of skimage's astronaut photo, a blob mask, a
smooth continuous map, a noise residual) and prints faces/s and KiB/face for
each (image_compression, map_compression) pair, then the random-access read
rate of ShardDataset. Usage: python benchmarks/bench_shards.py [--faces N] [--size S]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

import ffmask  # noqa: F401  (installs the torchvision shim before torch users)
from ffmask.shards import FaceRecord, ShardWriter


def make_records(n: int, size: int, seed: int = 0) -> list[FaceRecord]:
    rng = np.random.default_rng(seed)
    photo = data.astronaut()
    yy, xx = np.mgrid[:size, :size]
    records = []
    for i in range(n):
        x0, y0 = rng.integers(0, 120, size=2)
        crop = cv2.resize(photo[y0 : y0 + 300, x0 + 100 : x0 + 400], (size, size), interpolation=cv2.INTER_AREA)
        cx, cy, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        mask = ((xx / size - cx) ** 2 + (yy / size - cy) ** 2) < r * r
        cont = cv2.GaussianBlur(mask.astype(np.float32), (31, 31), 0) * rng.uniform(0.5, 1)
        noise = rng.normal(0, 3, (size, size, 3)).astype(np.float32)
        records.append(FaceRecord(
            image=crop, maps={"mscc": mask, "ssim": cont, "noise": noise}, label=i % 2,
            video_id=f"Deepfakes/{i // 20:03d}_{i // 20 + 1:03d}", original_id=f"youtube/{i // 20:03d}",
            manipulation="Deepfakes", compression="c23", split="train", frame_index=i % 20,
            box=np.array([10, 20, 310, 320]), landmarks=rng.uniform(0, 300, (68, 2)).astype(np.float32),
        ))
    return records


def bench_write(records, size, out: Path, image_c, map_c) -> tuple[float, float]:
    kinds = {"mscc": "mask", "ssim": "continuous", "noise": "noise"}
    t0 = time.perf_counter()
    with ShardWriter(out, size=size, maps=kinds, config={}, image_compression=image_c,
                     map_compression=map_c) as w:
        for r in records:
            w.append(r)
    dt = time.perf_counter() - t0
    return len(records) / dt, out.stat().st_size / len(records) / 1024


def bench_read(path: Path, n_reads: int) -> float:
    from ffmask.shards import ShardDataset

    ds = ShardDataset(path, maps=["mscc", "ssim", "noise"])
    order = np.random.default_rng(0).permutation(len(ds))[:n_reads]
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    return len(order) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    records = make_records(args.faces, args.size)
    print(f"{args.faces} faces of {args.size}px, maps: mask + continuous + noise")
    print(f"{'images':>8} {'maps':>6} {'write faces/s':>14} {'KiB/face':>9} {'read faces/s':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for image_c in (None, "lzf"):
            for map_c in ("auto", None, "lzf", "gzip"):
                out = Path(tmp) / f"{image_c}_{map_c}.h5"
                rate, kib = bench_write(records, args.size, out, image_c, map_c)
                read = bench_read(out, min(200, args.faces))
                print(f"{str(image_c):>8} {str(map_c):>6} {rate:14.0f} {kib:9.1f} {read:13.0f}")


if __name__ == "__main__":
    main()
