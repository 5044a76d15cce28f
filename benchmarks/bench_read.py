"""ShardDataset read rate: CPU ms per face of one reader process, and faces/s with 0, 2 and 4 DataLoader workers.

Reads the image and two maps (default ``mscc`` and ``ssim``) of random faces
of real shards (annotate the demo or the issue's synth tree first, or pass
any shard directory), batch 32.

* **CPU ms per face of one process** (``ShardDataset[i]``, ``time.process_time``
  over 300 random faces): what one DataLoader worker spends per face whatever
  the machine's load, so ``1000 / ms`` is the faces/s one worker delivers on
  an idle core. The default fast path and the HDF5 filter path
  (``ShardDataset(direct=False)``, the reader before) are timed in
  interleaved rounds; the median and the minimum are printed, because other
  processes on a shared machine inflate single rounds.
* **faces/s with W workers** (wall clock, ``--epoch`` shuffled faces, default
  collation; the faster of two runs) and the workers' own CPU time per face
  (their ``RUSAGE_CHILDREN`` time after they exit: reading, collation into
  shared memory and their start-up).
  Wall-clock rates on a loaded machine understate an idle one; the load
  average is printed with each.

    python benchmarks/bench_read.py SHARDS [--maps mscc,ssim] [--workers 0,2,4] [--rounds 7] [--epoch 3000] [--verify]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader, RandomSampler

import ffmask  # noqa: F401
from ffmask.shards import ShardDataset


def cpu_ms_per_face(datasets: dict, n: int = 300, rounds: int = 7) -> dict:
    """name -> CPU ms per face of ``ds[i]`` for each round, the datasets timed in interleaved rounds."""
    first = next(iter(datasets.values()))
    order = torch.randperm(len(first), generator=torch.Generator().manual_seed(1))[:n].tolist()
    for ds in datasets.values():  # open the files, fill the caches
        for i in order[:30]:
            ds[i]
    times: dict = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, ds in datasets.items():
            t0 = time.process_time()
            for i in order:
                ds[i]
            times[name].append(1000 * (time.process_time() - t0) / len(order))
    return times


def verify(shards, maps) -> None:
    """Every face of ``shards`` read through the fast path and through HDF5's filters, in every
    read mode: the arrays (dtype, shape, bytes) must be identical; prints what was compared."""
    import numpy as np

    from ffmask.shards import ShardIndex

    fast, slow = ShardIndex(shards, maps), ShardIndex(shards, maps, direct=False)
    count = 0
    for i in range(len(fast)):
        for kw in ({"geometry": True}, {"channels_first": True, "float32": True}):
            a, b = fast.read(i, **kw), slow.read(i, **kw)
            pairs = [(a["maps"][m], b["maps"][m]) for m in maps] + [(a[k], b[k]) for k in ("image", "box", "landmarks")
                                                                    if k in a]
            for x, y in pairs:
                if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                    raise SystemExit(f"face {i} {kw}: the fast path differs from HDF5's")
                count += 1
            if {k: v for k, v in a.items() if not isinstance(v, (dict, np.ndarray))} != \
               {k: v for k, v in b.items() if not isinstance(v, (dict, np.ndarray))}:
                raise SystemExit(f"face {i} {kw}: the fast path's labels or strings differ")
    print(f"  verified: {len(fast)} faces, {count} arrays (image, maps {', '.join(maps)}, box, landmarks; "
          "v1 dtypes and float32 planes) identical through both paths")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rate(ds, workers: int, batch: int, faces: int) -> tuple[float, float]:
    """(faces/s over ``faces`` shuffled faces, the workers' CPU ms per face; NaN without workers)."""
    sampler = RandomSampler(ds, num_samples=faces, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=False)
    c0 = children_cpu()
    t0 = time.perf_counter()
    n = 0
    for sample in loader:
        n += len(sample["label"])
    wall = time.perf_counter() - t0
    del loader  # the workers exit and are waited for: their CPU time is counted
    cpu = 1000 * (children_cpu() - c0) / n if workers else float("nan")
    return n / wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--maps", default="mscc,ssim")
    ap.add_argument("--workers", default="0,2,4")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the one-process CPU timing")
    ap.add_argument("--faces", type=int, default=300, help="random faces per round of the CPU timing")
    ap.add_argument("--verify", action="store_true",
                    help="first compare every face through both paths, with every map of the shards")
    ap.add_argument("--epoch", type=int, default=3000,
                    help="faces each DataLoader setting reads (whole permutations of the shards' faces, "
                         "so the workers' start-up is a small share)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    # More workers than cores is what the benchmark measures: torch's warning about it is noise here.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    maps = args.maps.split(",")
    ds = ShardDataset(args.shards, maps=maps, return_meta=False)
    before = ShardDataset(args.shards, maps=maps, return_meta=False, direct=False)
    print(f"{ds} on {os.cpu_count()} cores; image + maps {args.maps}; batch {args.batch}; "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.verify:
        import h5py

        with h5py.File(ds.paths[0]) as f:
            verify(args.shards, sorted(f["maps"]))
    times = cpu_ms_per_face({"fast path": ds, "HDF5 filters": before}, n=args.faces, rounds=args.rounds)
    for name, t in times.items():
        med, low = statistics.median(t), min(t)
        print(f"  one process, {name:12s}: {med:.3f} CPU ms/face median, {low:.3f} min of {len(t)} rounds "
              f"-> {1000 / med:.0f} ({1000 / low:.0f}) faces/s per worker on an idle core")
    print(f"  (load average {os.getloadavg()[0]:.1f} after the CPU timing)")
    for workers in (int(w) for w in args.workers.split(",")):
        load = os.getloadavg()[0]
        runs = [rate(ds, workers, args.batch, args.epoch) for _ in range(2)]
        best, cpu = max(runs)
        per = best / max(workers, 1)
        cpu_text = f"; workers' CPU {cpu:.2f} ms/face" if workers else ""
        print(f"  workers {workers}: {best:7.0f} faces/s  ({per:.0f} per {'worker' if workers else 'process'}"
              f"{cpu_text}; load average {load:.1f})")


if __name__ == "__main__":
    main()
