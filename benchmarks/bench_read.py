"""ShardDataset read rate: CPU ms per face of one reader process, and faces/s with 0, 2 and 4 DataLoader workers.

Reads the image and two maps (default ``mscc`` and ``ssim``) of random faces
of real shards (annotate the demo or the issue's synth tree first, or pass
any shard directory), batch 32.

* **CPU ms per face of one process** (``time.process_time`` over 300 random
  faces): what one DataLoader worker spends reading per face whatever the
  machine's load, so ``1000 / ms`` is the faces/s one worker delivers on an
  idle core (before collation). Timed in interleaved rounds; the median and
  the minimum are printed, because other processes on a shared machine
  inflate single rounds. The ways:

  - ``per face``: ``ds[i]``, each sample dropped at once;
  - ``per face, kept``: ``[ds[i] for i in batch]``, what torch's fetcher did
    before ``__getitems__`` (a batch's samples alive together: they no longer
    fit the core's cache);
  - ``batched``: ``ds.__getitems__(batch)``, what the DataLoader calls now;
  - ``HDF5 filters``: ``ShardDataset(direct=False)``, per face (the reader
    before session 9, as in the figures recorded since);
  - ``per face, stored`` and ``batched, stored``: ``ShardDataset(maps_as=
    "stored")`` (opt-in: maps in their compact form, uint8 / float16, not
    widened to float32);
  - ``batch() private`` / ``batch() shared``: ``ds.batch(batch)`` (one block per
    batch, each face copied in as it is decoded), in ordinary memory and in
    shared memory (what a DataLoader worker must return);
  - ``collate shared``: ``default_collate(ds.__getitems__(batch))`` as it runs in
    a worker (every batch tensor in a new shared-memory block), for comparison;
  each with ``, stored`` for ``maps_as="stored"``.
* **a new shared-memory block** (``torch.UntypedStorage._new_shared``, what every
  worker batch gets): CPU ms per face to allocate it (torch ``fallocate``s the
  pages, zeroed), to touch it first (a minor fault per 4 KiB page) and to free
  it, for one batch of the default and of the stored samples.
* **faces/s with W workers** (wall clock, ``--epoch`` shuffled faces; the faster of
  two runs) for the default and the stored samples, two ways: ``__getitems__``
  (``DataLoader(ds, batch_size=B)``: the workers' samples stacked by
  ``default_collate`` into shared memory) and ``batches`` (``DataLoader(
  BatchedShards(ds), batch_size=None, sampler=BatchSampler(...))``: each worker
  reads its batch straight into one shared block, what ``ffmask train`` does).
  For each: the workers' own CPU time per face (their ``RUSAGE_CHILDREN`` time
  after they exit: reading, collation into shared memory, sending and their
  start-up) and ``1000 /`` that, the faces/s one worker delivers with a core
  of its own; its parts measured inside the workers (reading, collating, the
  rest) and the workers' minor page faults per face; and the main process's
  CPU per face (receiving the batches). Without workers the main process
  reads and collates (into ordinary memory).
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
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, default_collate

import ffmask  # noqa: F401
from ffmask.shards import BatchedShards, ShardDataset


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


def batch_private(ds, order, batch):
    for b in range(0, len(order), batch):
        ds.batch(order[b:b + batch], shared=False)


def batch_shared(ds, order, batch):
    for b in range(0, len(order), batch):
        ds.batch(order[b:b + batch], shared=True)


class _AsInAWorker:
    """``default_collate`` allocates shared memory when ``get_worker_info()`` is not None: make it so here."""

    def __enter__(self):
        self.saved = torch.utils.data.get_worker_info
        torch.utils.data.get_worker_info = lambda: True

    def __exit__(self, *exc):
        torch.utils.data.get_worker_info = self.saved


def collate_shared(ds, order, batch):
    with _AsInAWorker():
        for b in range(0, len(order), batch):
            default_collate(ds.__getitems__(order[b:b + batch]))


def shared_block_ms(nbytes: int, batch: int, reps: int = 30) -> tuple:
    """CPU ms per face (median of ``reps``) to allocate a new shared block of ``nbytes`` (a batch of
    ``batch`` faces), to touch each of its pages first, and to free it; and the minor faults per face."""
    alloc, touch, free, faults = [], [], [], []
    for _ in range(reps):
        t0, f0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        storage = torch.UntypedStorage._new_shared(nbytes)
        t1 = time.process_time()
        torch.empty(0, dtype=torch.uint8).set_(storage)[::4096] = 1
        t2 = time.process_time()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        del storage
        t3 = time.process_time()
        alloc.append(t1 - t0)
        touch.append(t2 - t1)
        free.append(t3 - t2)
    return tuple(1000 * statistics.median(x) / batch for x in (alloc, touch, free)) + \
        (statistics.median(faults) / batch,)


def children_usage() -> tuple:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


_READ_CPU = [0.0]  # CPU seconds spent reading samples in this process since the last batch was collated


class TimedReads:
    """Adds the CPU time of every read to ``_READ_CPU`` of the process that reads (a DataLoader worker)."""

    def __getitems__(self, indices):
        t0 = time.process_time()
        samples = super().__getitems__(indices)
        _READ_CPU[0] += time.process_time() - t0
        return samples


class Samples(TimedReads, ShardDataset):
    """``ShardDataset`` as it is: torch's fetcher calls ``__getitems__`` per batch, then the collate."""


def timed_collate(batch):
    """``(default_collate(batch), CPU s reading it, CPU s collating it)``, measured where it runs."""
    t0 = time.process_time()
    out = default_collate(batch)  # in a worker: into a new shared-memory block per tensor
    collate = time.process_time() - t0
    read, _READ_CPU[0] = _READ_CPU[0], 0.0
    return out, read, collate


class TimedBatches(BatchedShards):
    """``BatchedShards``: a worker reads each batch into one block (reading and collating are one pass)."""

    def __getitem__(self, indices):
        t0 = time.process_time()
        out = super().__getitem__(indices)
        _READ_CPU[0] += time.process_time() - t0
        return out


def timed_batch(batch):
    read, _READ_CPU[0] = _READ_CPU[0], 0.0
    return batch, read, 0.0


def rate(ds, workers: int, batch: int, faces: int, whole: bool) -> tuple:
    """(faces/s over ``faces`` shuffled faces, the workers' CPU ms per face (NaN without workers),
    CPU ms per face reading, collating (both measured where they run), the workers' minor faults per face,
    the main process's CPU ms per face). ``whole``: through ``BatchedShards``, else ``__getitems__``."""
    sampler = RandomSampler(ds, num_samples=faces, generator=torch.Generator().manual_seed(0))
    if whole:
        loader = DataLoader(TimedBatches(ds), batch_size=None, sampler=BatchSampler(sampler, batch, False),
                            num_workers=workers, persistent_workers=False, collate_fn=timed_batch)
    else:
        loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=False,
                            collate_fn=timed_collate)
    (c0, f0), m0 = children_usage(), time.process_time()
    t0 = time.perf_counter()
    n, read, collate = 0, 0.0, 0.0
    for sample, r, c in loader:
        n += len(sample["label"])
        read += r
        collate += c
    wall = time.perf_counter() - t0
    main = time.process_time() - m0
    del loader  # the workers exit and are waited for: their CPU time is counted
    c1, f1 = children_usage()
    cpu = 1000 * (c1 - c0) / n if workers else float("nan")
    return n / wall, cpu, 1000 * read / n, 1000 * collate / n, (f1 - f0) / n, 1000 * main / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--maps", default="mscc,ssim")
    ap.add_argument("--workers", default="0,2,4")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the one-process CPU timing")
    ap.add_argument("--faces", type=int, default=320, help="random faces per round of the CPU timing")
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
    ways = {"per face": (ds, per_face), "per face, kept": (ds, per_face_kept), "batched": (ds, batched),
            "HDF5 filters": (before, per_face), "batch() private": (ds, batch_private),
            "batch() shared": (ds, batch_shared), "collate shared": (ds, collate_shared),
            "per face, stored": (stored, per_face), "batched, stored": (stored, batched),
            "batch() private, stored": (stored, batch_private), "batch() shared, stored": (stored, batch_shared),
            "collate shared, stored": (stored, collate_shared)}
    times = cpu_ms_per_face(ways, n=args.faces, rounds=args.rounds, batch=args.batch)
    for name, t in times.items():
        med, low = statistics.median(t), min(t)
        print(f"  one process, {name:23s}: {med:.3f} CPU ms/face median, {low:.3f} min of {len(t)} rounds "
              f"-> {1000 / med:.0f} ({1000 / low:.0f}) faces/s per core")
    print(f"  (load average {os.getloadavg()[0]:.1f} after the CPU timing)")
    for name, d in (("default", ds), ("stored", stored)):
        nbytes = sum(t.numel() * t.element_size() for t in [d.batch([0])["image"], *d.batch([0])["maps"].values()])
        alloc, touch, free, faults = shared_block_ms(nbytes * args.batch, args.batch)
        print(f"  a new shared block for a {name} batch ({nbytes / 1024:.0f} KiB per face): allocate {alloc:.3f}, "
              f"first touch {touch:.3f} ({faults:.0f} minor faults), free {free:.3f} CPU ms per face (median of 30)")
    forms = ", ".join(f"{m} {f}" for m, f in stored.map_forms.items())
    print(f"  stored batch -> float32 maps (to_float32; {forms}), CPU torch, 1 thread: "
          f"{conversion_ms(stored, args.batch):.3f} CPU ms/face (min of 20; on a GPU a few kernels per batch)")
    loader_datasets = {"default": Samples(args.shards, maps=maps, return_meta=False),
                       "stored": Samples(args.shards, maps=maps, return_meta=False, maps_as="stored")}
    for workers in (int(w) for w in args.workers.split(",")):
        for name, dataset in loader_datasets.items():
            for whole in (False, True):
                load = os.getloadavg()[0]
                runs = [rate(dataset, workers, args.batch, args.epoch, whole) for _ in range(2)]
                best, cpu, read, collate, faults, main_cpu = max(runs)
                per = best / max(workers, 1)
                how = f"{name}, {'batches' if whole else '__getitems__'}"
                if workers:
                    parts = (f"reading and collating {read:.2f}" if whole else
                             f"reading {read:.2f}, collating {collate:.2f}")
                    where = (f"workers' CPU {cpu:.2f} ms/face = {1000 / cpu:.0f} faces/s per worker-core: {parts}, "
                             f"the rest {cpu - read - collate:.2f}; {faults:.0f} minor faults/face; "
                             f"main process {main_cpu:.2f}")
                else:
                    where = (f"main process: reading and collating {read:.2f}" if whole else
                             f"main process: reading {read:.2f}, collating {collate:.2f}")
                print(f"  workers {workers}, {how:22s}: {best:6.0f} faces/s ({per:.0f} per "
                      f"{'worker' if workers else 'process'}; {where}; load average {load:.1f})")


if __name__ == "__main__":
    main()
