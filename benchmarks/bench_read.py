"""ShardDataset read rate: faces/s with 0, 2 and 4 DataLoader workers.

Reads the image and two maps (default ``mscc`` and ``ssim``) of every face
of real shards (annotate the issue's synth tree first, or pass any shard
directory), in random order, batch 32, and prints faces/s per setting and
per worker, and the CPU time one face costs a reader process (the wall-clock
rates of a loaded machine understate an idle one). Each setting is timed twice and the faster pass reported; the
load average is printed because other processes on the machine slow it.

    python benchmarks/bench_read.py SHARDS [--maps mscc,ssim] [--workers 0,2,4]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

import ffmask  # noqa: F401
from ffmask.shards import ShardDataset


def cpu_ms_per_face(ds, n: int = 300) -> float:
    """CPU time of one process reading faces (what a worker costs, whatever the machine's load)."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1))[:n].tolist()
    for i in order[:20]:
        ds[i]
    best = float("inf")
    for _ in range(2):
        t0 = time.process_time()
        for i in order:
            ds[i]
        best = min(best, time.process_time() - t0)
    return 1000 * best / len(order)


def rate(ds, workers: int, batch: int) -> float:
    loader = DataLoader(ds, batch_size=batch, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(0)),
                        num_workers=workers, persistent_workers=False)
    t0 = time.perf_counter()
    n = 0
    for sample in loader:
        n += len(sample["label"])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--maps", default="mscc,ssim")
    ap.add_argument("--workers", default="0,2,4")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = ShardDataset(args.shards, maps=args.maps.split(","), return_meta=False)
    with ds.index.paths[0].open("rb"):
        pass
    print(f"{ds} on {os.cpu_count()} cores; image + maps {args.maps}; batch {args.batch}")
    ms = cpu_ms_per_face(ds)
    print(f"  one process: {ms:.2f} CPU ms/face -> {1000 / ms:.0f} faces/s per worker on an idle core")
    for workers in (int(w) for w in args.workers.split(",")):
        load = os.getloadavg()[0]
        best = max(rate(ds, workers, args.batch) for _ in range(2))
        per = best / max(workers, 1)
        print(f"  workers {workers}: {best:7.0f} faces/s  ({per:.0f} per {'worker' if workers else 'process'}; "
              f"load average {load:.1f})")


if __name__ == "__main__":
    main()
