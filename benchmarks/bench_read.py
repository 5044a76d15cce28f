"""ShardDataset read rate: CPU ms per face of one reader process, and faces/s with 0, 2 and 4 DataLoader workers.

Reads the image and two maps (default ``mscc`` and ``ssim``) of random faces
of real shards (annotate the demo or the issue's synth tree first, or pass
any shard directory), batch 32.

* **CPU ms per face of one process** (``time.process_time`` over 300 random
  faces): what one DataLoader worker spends reading per face whatever the
  machine's load, so ``1000 / ms`` is the faces/s one worker delivers on an
  idle core (before collation). Timed in interleaved rounds; the median and
  the minimum are printed, because other processes on a shared machine
  inflate single rounds. Four ways:

  - ``per face``: ``ds[i]``, each sample dropped at once;
  - ``per face, kept``: ``[ds[i] for i in batch]``, what torch's fetcher did
    before ``__getitems__`` (a batch's samples alive together: they no longer
    fit the core's cache);
  - ``batched``: ``ds.__getitems__(batch)``, what the DataLoader calls now;
  - ``HDF5 filters``: ``ShardDataset(direct=False)``, per face (the reader
    before session 9, as in the figures recorded since);
  - ``per face, stored`` and ``batched, stored``: ``ShardDataset(maps_as=
    "stored")`` (opt-in: maps in their compact form, uint8 / float16, not
    widened to float32).
* **faces/s with W workers** (wall clock, ``--epoch`` shuffled faces, default
  collation; the faster of two runs), through ``__getitems__`` (the default)
  and face by face (a dataset without it), and the workers' own CPU time per
  face (their ``RUSAGE_CHILDREN`` time after they exit: reading, collation
  into shared memory and their start-up), and ``1000 /`` that: the faces/s
  one worker delivers with a core of its own. Also with ``maps_as="stored"``
  through ``__getitems__``. Without workers the main process reads and
  collates (into ordinary memory).
* **the conversion of a stored batch** to the default's float32 maps
  (``ShardDataset.to_float32``, what a trainer runs on the GPU after the
  copy), timed here on CPU torch with one thread for reference: CPU ms per
  face, and checked equal to the default batch.
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
from torch.utils.data import DataLoader, RandomSampler, default_collate

import ffmask  # noqa: F401
from ffmask.shards import ShardDataset


def per_face(ds, order, batch):
    for i in order:
        ds[i]


def per_face_kept(ds, order, batch):
    for b in range(0, len(order), batch):
        [ds[i] for i in order[b:b + batch]]


def batched(ds, order, batch):
    for b in range(0, len(order), batch):
        ds.__getitems__(order[b:b + batch])


def cpu_ms_per_face(ways: dict, n: int = 300, rounds: int = 7, batch: int = 32) -> dict:
    """name -> CPU ms per face for each round; ``ways``: name -> (dataset, reading function); interleaved rounds."""
    first = next(iter(ways.values()))[0]
    order = torch.randperm(len(first), generator=torch.Generator().manual_seed(1))[:n].tolist()
    for ds, read in ways.values():  # open the files, fill the caches
        read(ds, order[:64], batch)
    times: dict = {name: [] for name in ways}
    for r in range(rounds):
        for name, (ds, read) in (list(ways.items()) if r % 2 == 0 else list(ways.items())[::-1]):
            t0 = time.process_time()
            read(ds, order, batch)
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
    many = fast.read_many(range(len(fast))[::-1], channels_first=True, float32=True)
    for i, a in zip(range(len(fast))[::-1], many):
        b = slow.read(i, channels_first=True, float32=True)
        for x, y in [(a["image"], b["image"])] + [(a["maps"][m], b["maps"][m]) for m in maps]:
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                raise SystemExit(f"face {i}: the batched path differs from HDF5's")
            count += 1
    print(f"  verified: {len(fast)} faces, {count} arrays (image, maps {', '.join(maps)}, box, landmarks; "
          "v1 dtypes and float32 planes) identical through both paths and the batched path")


def verify_stored(shards, maps) -> None:
    """Every face with ``maps_as="stored"``, converted by ``to_float32``: the default's float32 maps, bit for bit."""
    default = ShardDataset(shards, maps, return_meta=False)
    stored = ShardDataset(shards, maps, return_meta=False, maps_as="stored")
    for i in range(len(default)):
        want, got = default[i]["maps"], stored.to_float32(stored[i])["maps"]
        for m in maps:
            if got[m].dtype != want[m].dtype or not torch.equal(got[m], want[m]) \
                    or got[m].numpy().tobytes() != want[m].numpy().tobytes():
                raise SystemExit(f"face {i} map {m}: maps_as='stored' converted differs from the default")
    forms = ", ".join(f"{m} {f}" for m, f in stored.map_forms.items())
    print(f"  verified: {len(default)} faces, maps_as='stored' ({forms}) converted = the default's float32, "
          "bit for bit")


def conversion_ms(stored, batch: int, reps: int = 20) -> float:
    """CPU ms per face of ``stored.to_float32`` on a collated batch (CPU torch, one thread),
    checked against the default batch."""
    ids = list(range(min(batch, len(stored))))
    collated = default_collate(stored.__getitems__(ids))
    default = ShardDataset(stored.paths, list(stored.maps), return_meta=False)
    want = default_collate(default.__getitems__(ids))["maps"]
    got = stored.to_float32(collated)["maps"]
    if any(not torch.equal(got[m], want[m]) or got[m].dtype != want[m].dtype for m in want):
        raise SystemExit("to_float32 of a stored batch differs from the default batch")
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        stored.to_float32(collated)
        best = min(best, time.process_time() - t0)
    return 1000 * best / len(ids)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_READ_CPU = [0.0]  # CPU seconds spent reading samples in this process since the last batch was collated


class TimedReads:
    """Adds the CPU time of every read to ``_READ_CPU`` of the process that reads (a DataLoader worker)."""

    def __getitem__(self, i):
        t0 = time.process_time()
        sample = super().__getitem__(i)
        _READ_CPU[0] += time.process_time() - t0
        return sample

    def __getitems__(self, indices):
        t0 = time.process_time()
        samples = super().__getitems__(indices)
        _READ_CPU[0] += time.process_time() - t0
        return samples


class Batched(TimedReads, ShardDataset):
    """``ShardDataset`` as it is: torch's fetcher calls ``__getitems__`` per batch."""


class FaceByFace(TimedReads, ShardDataset):
    """The dataset without ``__getitems__``: the fetcher calls ``ds[i]`` per face."""

    __getitems__ = None  # torch's fetcher tests it for truth


def timed_collate(batch):
    """``(default_collate(batch), CPU s reading it, CPU s collating it)``, measured where it runs."""
    t0 = time.process_time()
    out = default_collate(batch)  # in a worker: into a new shared-memory block
    collate = time.process_time() - t0
    read, _READ_CPU[0] = _READ_CPU[0], 0.0
    return out, read, collate


def rate(ds, workers: int, batch: int, faces: int) -> tuple:
    """(faces/s over ``faces`` shuffled faces, the workers' CPU ms per face (NaN without workers),
    CPU ms per face reading, CPU ms per face collating)."""
    sampler = RandomSampler(ds, num_samples=faces, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=False,
                        collate_fn=timed_collate)
    c0 = children_cpu()
    t0 = time.perf_counter()
    n, read, collate = 0, 0.0, 0.0
    for sample, r, c in loader:
        n += len(sample["label"])
        read += r
        collate += c
    wall = time.perf_counter() - t0
    del loader  # the workers exit and are waited for: their CPU time is counted
    cpu = 1000 * (children_cpu() - c0) / n if workers else float("nan")
    return n / wall, cpu, 1000 * read / n, 1000 * collate / n


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
            verify_stored(args.shards, sorted(f["maps"]))
    stored = ShardDataset(args.shards, maps=maps, return_meta=False, maps_as="stored")
    loader_datasets = {"__getitems__": Batched(args.shards, maps=maps, return_meta=False),
                       "face by face": FaceByFace(args.shards, maps=maps, return_meta=False),
                       "stored": Batched(args.shards, maps=maps, return_meta=False, maps_as="stored")}
    ways = {"per face": (ds, per_face), "per face, kept": (ds, per_face_kept), "batched": (ds, batched),
            "HDF5 filters": (before, per_face), "per face, stored": (stored, per_face),
            "batched, stored": (stored, batched)}
    times = cpu_ms_per_face(ways, n=args.faces, rounds=args.rounds, batch=args.batch)
    for name, t in times.items():
        med, low = statistics.median(t), min(t)
        print(f"  one process, {name:16s}: {med:.3f} CPU ms/face median, {low:.3f} min of {len(t)} rounds "
              f"-> {1000 / med:.0f} ({1000 / low:.0f}) faces/s per worker on an idle core")
    print(f"  (load average {os.getloadavg()[0]:.1f} after the CPU timing)")
    forms = ", ".join(f"{m} {f}" for m, f in stored.map_forms.items())
    print(f"  stored batch -> float32 maps (to_float32; {forms}), CPU torch, 1 thread: "
          f"{conversion_ms(stored, args.batch):.3f} CPU ms/face (min of 20; on a GPU a few kernels per batch)")
    for workers in (int(w) for w in args.workers.split(",")):
        for name, dataset in loader_datasets.items():
            load = os.getloadavg()[0]
            runs = [rate(dataset, workers, args.batch, args.epoch) for _ in range(2)]
            best, cpu, read, collate = max(runs)
            per = best / max(workers, 1)
            where = (f"workers' CPU {cpu:.2f} ms/face = {1000 / cpu:.0f} faces/s per worker-core: "
                     if workers else "main process: ")
            print(f"  workers {workers}, {name:12s}: {best:7.0f} faces/s  ({per:.0f} per "
                  f"{'worker' if workers else 'process'}; {where}reading {read:.2f}, collating {collate:.2f}"
                  f"{', start-up and the rest %.2f' % (cpu - read - collate) if workers else ''}; "
                  f"load average {load:.1f})")


if __name__ == "__main__":
    main()
