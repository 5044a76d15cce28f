"""Shard write/read speed and size for each storage choice, on real annotated faces.

Takes the faces of existing shards (any schema version; default: annotate
the bundled sample with mask + continuous + noise maps first) and rewrites
them with each image codec and noise storage of schema 2 (and the v1
layout), printing write faces/s, KiB/face and ShardDataset random-access
read faces/s (image + every map). Real faces matter: i.i.d. random noise,
which earlier versions of this benchmark wrote, is incompressible by
construction. The machine is shared: the load average is printed.

    python benchmarks/bench_shards.py [SHARDS] [--faces 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import ffmask  # noqa: F401  (installs the torchvision shim before torch users)
from ffmask.shards import FaceRecord, ShardIndex, ShardWriter

SETTINGS = [  # (label, writer options)
    ("v1 raw/float16", {"schema_version": 1}),
    ("v2 delta, scaled", {}),
    ("v2 png, scaled", {"image_codec": "png"}),
    ("v2 blosc, scaled", {"image_codec": "blosc"}),
    ("v2 delta, derived", {"noise_storage": "derived"}),
    ("v2 jpeg95, scaled", {"image_codec": "jpeg", "jpeg_quality": 95}),
]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="?")
    ap.add_argument("--faces", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            from ffmask.annotate import annotate
            from ffmask.pipeline import JobSpec

            shards = Path(tmp) / "sample"
            annotate("ff++", Path(__file__).resolve().parents[1] / "sample_data" / "ff++", shards,
                     JobSpec(methods=("mscc", "ssim", "noise"), frames=4), jobs=2)
        records, kinds, size = load_records(shards, args.faces)
        print(f"{len(records)} faces of {size} px from {shards}; maps {kinds}; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'storage':>20} {'write faces/s':>14} {'KiB/face':>9} {'read faces/s':>13}")
        from ffmask.shards import ShardDataset

        for label, options in SETTINGS:
            if options.get("noise_storage") == "derived" and "noise" not in kinds.values():
                continue
            out = Path(tmp) / f"{label.replace(' ', '_').replace(',', '')}.h5"
            t0 = time.perf_counter()
            with ShardWriter(out, size=size, maps=kinds, config={}, **options) as w:
                for r in records:
                    w.append(r)
            write = len(records) / (time.perf_counter() - t0)
            ds = ShardDataset(out, maps=list(kinds), return_meta=False)
            order = np.random.default_rng(0).permutation(len(ds))
            t0 = time.perf_counter()
            for i in order:
                ds[int(i)]
            read = len(order) / (time.perf_counter() - t0)
            print(f"{label:>20} {write:14.0f} {out.stat().st_size / len(records) / 1024:9.1f} {read:13.0f}")


if __name__ == "__main__":
    main()
