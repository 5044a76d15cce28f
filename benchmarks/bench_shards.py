"""Shard size and speed for each storage choice, on real annotated faces.

Takes the faces of existing shards (any schema version; default: annotate
the bundled sample with mask + continuous + noise maps first) and rewrites
them with each image codec, map predictor / packing and noise storage of schema 2 (and
the v1 layout). Prints, per setting, KiB per face in all and by dataset, the
write rate and the CPU time of a ShardDataset read (image + every map); then,
per image codec, KiB per face and CPU ms per face to encode and to decode an
image alone. Real faces matter: i.i.d. random noise, which earlier versions
of this benchmark wrote, is incompressible by construction. CPU times are
the minimum over interleaved rounds of ``time.process_time`` (the machine
is shared; the load average is printed).

    python benchmarks/bench_shards.py [SHARDS] [--faces 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import ffmask  # noqa: F401  (installs the torchvision shim before torch users)
from ffmask.shards import FaceRecord, ShardIndex, ShardWriter

SETTINGS = [  # (label, writer options)
    ("v1 raw/float16", {"schema_version": 1}),
    ("v2 delta, plain maps", {"image_codec": "delta", "map_predictor": "none", "map_packing": "none"}),
    ("v2 gradient, auto, unpacked", {"map_packing": "none"}),  # the default before packings
    ("v2 gradient, auto (default)", {}),
    ("v2 gradient, bit-shuffled maps", {"map_predictor": "gradient", "map_packing": "none"}),
    ("v2 gradient, packed maps", {"map_predictor": "gradient", "map_packing": "nibbles"}),
    ("v2 png, auto", {"image_codec": "png"}),
    ("v2 blosc, auto", {"image_codec": "blosc"}),
    ("v2 gradient, noise derived", {"noise_storage": "derived"}),
    ("v2 jpeg95, auto", {"image_codec": "jpeg", "jpeg_quality": 95}),
]
IMAGE_CODECS = ["gradient", "delta", "png", "blosc", "raw"]
# Note: faces come back from ShardIndex with grid maps (focus) upsampled, so
# this benchmark stores them full-size; annotate stores the model's grid.


def load_records(shards, n: int) -> tuple[list[FaceRecord], dict, int]:
    from ffmask.shards.summary import common_maps
    from ffmask.targets.noise import sigma_for_compression

    kinds = common_maps(shards)
    index = ShardIndex(shards, list(kinds))
    records = []
    for i in np.linspace(0, len(index) - 1, min(n, len(index))).astype(int):
        face = index.read(int(i), geometry=True)
        lms = face["landmarks"]
        records.append(FaceRecord(
            image=np.ascontiguousarray(face["image"]), maps=dict(face["maps"]), label=face["label"],
            video_id=face["video_id"], original_id=face["original_id"], manipulation=face["manipulation"],
            compression=face["compression"], split=face["split"], frame_index=face["frame_index"], box=face["box"],
            landmarks=None if np.isnan(lms).all() else lms,
            map_params={name: {"sigma": sigma_for_compression(face["compression"])}
                        for name, kind in kinds.items() if kind == "noise"},
        ))
    return records, kinds, index.size


def write(path: Path, records, kinds, size, **options) -> float:
    """Write a shard; CPU seconds per face."""
    t0 = time.process_time()
    with ShardWriter(path, size=size, maps=kinds, config={}, **options) as w:
        for r in records:
            w.append(r)
    return (time.process_time() - t0) / len(records)


def by_dataset(path: Path, n: int) -> dict:
    """KiB per face of every dataset holding more than 0.05 KiB per face, largest first."""
    sizes = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: sizes.__setitem__(name, obj.id.get_storage_size() / n / 1024)
                     if isinstance(obj, h5py.Dataset) else None)
    return {k: v for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v > 0.05}


def predictors(path: Path) -> str:
    """Maps stored otherwise than as plain integers: name=predictor[+packing]."""
    with h5py.File(path) as f:
        found = {name: "+".join(str(ds.attrs[a]) for a in ("predictor", "packing")
                                if ds.attrs.get(a) not in (None, "none"))
                 for name, ds in f.get("maps", {}).items()}
    return ",".join(f"{k}={v}" for k, v in found.items() if v) or "-"


def read_cpu_ms(readers: list, order, rounds: int = 5) -> list[float]:
    """CPU ms per face of each reader over ``order``, min over interleaved rounds."""
    best = [float("inf")] * len(readers)
    for reader in readers:
        for i in order[:10]:
            reader(int(i))
    for _ in range(rounds):
        for k, reader in enumerate(readers):
            t0 = time.process_time()
            for i in order:
                reader(int(i))
            best[k] = min(best[k], (time.process_time() - t0) * 1000 / len(order))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="?")
    ap.add_argument("--faces", type=int, default=200)
    args = ap.parse_args()
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            from ffmask.annotate import annotate
            from ffmask.pipeline import JobSpec

            shards = Path(tmp) / "sample"
            annotate("ff++", Path(__file__).resolve().parents[1] / "sample_data" / "ff++", shards,
                     JobSpec(methods=("mscc", "ssim", "noise"), frames=4), jobs=2)
        records, kinds, size = load_records(shards, args.faces)
        n = len(records)
        print(f"{n} faces of {size} px from {shards}; maps {kinds}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        from ffmask.shards import ShardDataset

        rows, readers = [], []
        for label, options in SETTINGS:
            if options.get("noise_storage") == "derived" and "noise" not in kinds.values():
                continue
            out = Path(tmp) / f"{len(rows)}.h5"
            cpu = write(out, records, kinds, size, **options)
            ds = ShardDataset(out, maps=list(kinds), return_meta=False)
            rows.append((label, out, cpu, out.stat().st_size / n / 1024))
            readers.append(ds.__getitem__)
        order = np.random.default_rng(0).permutation(n)
        read = read_cpu_ms(readers, order, rounds=3)
        print(f"\nwhole shards (image + every map), CPU ms per face; load average {os.getloadavg()[0]:.1f}")
        print(f"{'storage':>30} {'KiB/face':>9} {'write ms':>9} {'read ms':>8}  by dataset (KiB/face); predicted or packed maps")
        for (label, out, cpu, kib), ms in zip(rows, read):
            parts = " ".join(f"{k.replace('maps/', '')} {v:.1f}" for k, v in by_dataset(out, n).items())
            print(f"{label:>30} {kib:9.1f} {1000 * cpu:9.2f} {ms:8.2f}  {parts}; {predictors(out)}")

        print(f"\nimage codecs alone, CPU ms per face; load average {os.getloadavg()[0]:.1f}")
        image_records = [FaceRecord(**{**r.__dict__, "maps": {}, "map_params": {}}) for r in records]
        indexes, stats = [], []
        for codec in IMAGE_CODECS:
            out = Path(tmp) / f"image-{codec}.h5"
            cpu = min(write(out, image_records, {}, size, image_codec=codec) for _ in range(2))
            # The whole file: PNG/JPEG bytes live in HDF5's heap, outside the dataset's storage size.
            kib = out.stat().st_size / n / 1024
            indexes.append(ShardIndex(out))
            stats.append((codec, kib, cpu))
        decode = read_cpu_ms([lambda i, index=index: index.read(i, channels_first=True) for index in indexes], order)
        print(f"{'codec':>10} {'file KiB/face':>14} {'write ms':>9} {'read+decode ms':>15}")
        for (codec, kib, cpu), ms in zip(stats, decode):
            print(f"{codec:>10} {kib:14.1f} {1000 * cpu:9.2f} {ms:15.3f}")


if __name__ == "__main__":
    main()
