"""Does ``hull`` still make the same candidates, features and masks as a reference commit?

    python scripts/check_hull_exact.py [--ref db0707f] [--work DIR] [--pairs DIR ...]

The reference code (default commit ``db0707f``, before the speed-up of
``hull_select``) is exported with ``git archive`` into ``WORK/ref`` and run in
a subprocess (``PYTHONPATH=WORK/ref``) on every pair, with and without
landmarks, writing its candidates (packed bits and their source / shape /
param / level), feature rows and final masks to ``WORK/ref.npz``; then the
current code (this checkout) computes the same and the two are compared:
candidates bit for bit and in the same order, features within 1e-6
relative (1e-9 absolute near 0), masks bit for bit.

Pairs: the folders given with ``--pairs`` (written by ``ffmask synth --pairs``
or :func:`ffmask.synth.pairs.build_pairs`), by default built into
``WORK/pairs`` from the tuning seeds 101-104 (40 samples each at 256, 224,
160 and 320 px, c23 and c40: 320 pairs). Never pass the held-out seeds 21-26.
Exit status 1 when anything differs.

    python scripts/check_hull_exact.py --rewrite-golden

recomputes the golden test files from the inputs they store, for a deliberate
change of the candidates or features (then the scorer is retrained).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: (seed, crop size, samples) of the default pair folders: tuning seeds only
DEFAULT_SETS = ((101, 256, 40), (102, 224, 40), (103, 160, 40), (104, 320, 40))


def _cases(folders):
    """(name, real, fake, landmarks or None) of every pair, with and without landmarks."""
    from ffmask.synth.pairs import read_pairs

    for folder in folders:
        for p in read_pairs(folder):
            for lm in (True, False):
                yield (f"{Path(folder).name}/{p.compression}/{p.id}/{'lm' if lm else 'nolm'}",
                       p.real, p.fake, p.landmarks if lm else None)


def compute(folders) -> dict:
    """Candidates, features and masks of every case with the ``ffmask`` on the path: name -> arrays."""
    import cv2

    from ffmask.targets import hull_candidates as hc
    from ffmask.targets import hull_features as hf
    from ffmask.targets.hull import hull_mask
    from ffmask.targets.mscc import mscc_mask

    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    out = {}
    with threadpool_limits(1):  # as in the reference's subprocess: a multithreaded BLAS sums in another order
        for name, real, fake, lm in _cases(folders):
            ev = hc.pair_evidence(real, fake, lm)
            masks, info = hc.candidate_masks(ev, mscc_mask(real, fake))
            x = hf.candidate_features(ev, masks, info)
            mask = hull_mask(real, fake, lm)
            meta = [[r["source"], r["shape"], float(r["param"]), float(r["level"])] for r in info]
            out[name] = {"masks": np.packbits(masks.reshape(len(masks), -1), axis=1), "shape": np.array(masks.shape),
                         "info": np.frombuffer(json.dumps(meta).encode(), np.uint8), "features": x,
                         "mask": np.packbits(mask), "mask_shape": np.array(mask.shape)}
    return out


def _pin_magnitude() -> None:
    """Make the reference deterministic: ``cv2.magnitude`` into a 64-byte aligned buffer.

    Its last bit depends on the output's address modulo 32 (OpenCV 4.14's
    SIMD path), which made the reference's texture weight, hence its
    features and (rarely) its candidates and masks, differ from run to run
    at the same commit. The current :func:`ffmask.targets.hull.texture_weight`
    writes into such a buffer itself; the reference run gets the same.
    """
    import cv2

    original = cv2.magnitude

    def magnitude(x, y, magnitude=None):
        n = x.size * x.itemsize
        buf = np.empty(n + 64, np.uint8)
        start = (-buf.ctypes.data) % 64
        out = buf[start:start + n].view(x.dtype).reshape(x.shape)
        original(x, y, out)
        if magnitude is None:
            return out
        magnitude[...] = out
        return magnitude

    cv2.magnitude = magnitude


#: the golden test's pairs (tests/test_hull_golden.py): (pair folder, compression, sample id, crop size)
GOLDEN = (("seed103_160", "c23", "00003", 104), ("seed103_160", "c40", "00010", 104),
          ("seed102_224", "c23", "00005", 64))


def write_golden(pairs_root: Path, out: Path) -> None:
    """Inputs, candidates and features of the :data:`GOLDEN` pairs (area-resized to their size), with
    and without landmarks, computed by the ``ffmask`` on the path, into one compressed npz ``out``."""
    import cv2

    from ffmask.synth.pairs import read_pairs
    from ffmask.targets.mscc import mscc_mask

    arrays = {}
    for i, (folder, comp, sid, size) in enumerate(GOLDEN):
        p = next(q for q in read_pairs(pairs_root / folder, [comp]) if q.id == sid)
        s = p.real.shape[0]
        real, fake = (cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in (p.real, p.fake))
        pts = (p.landmarks * (size / s)).astype(np.float32)
        arrays[f"{i}_real"] = cv2.imencode(".png", real)[1].reshape(-1)
        arrays[f"{i}_fake"] = cv2.imencode(".png", fake)[1].reshape(-1)
        arrays[f"{i}_landmarks"] = pts
        mscc = mscc_mask(real, fake)
        for tag, lm in (("lm", pts), ("nolm", None)):
            _golden_candidates(arrays, f"{i}_{tag}", real, fake, lm, mscc)
    np.savez_compressed(out, **arrays)


def _golden_candidates(arrays: dict, key: str, real, fake, landmarks, mscc) -> np.ndarray:
    """Write the pair's candidates (packed bits), their records (JSON of [source, shape, param, level, trim];
    trim 0 for code before session 17) and feature rows into ``arrays`` under ``KEY_candidates``, ``KEY_info``,
    ``KEY_features``, computed by the ``ffmask`` on the path; returns the candidates."""
    from ffmask.targets import hull_candidates as hc
    from ffmask.targets import hull_features as hf

    ev = hc.pair_evidence(real, fake, landmarks)
    masks, info = hc.candidate_masks(ev, mscc)
    rows = [[r["source"], r["shape"], float(r["param"]), float(r["level"]), float(r.get("trim", 0.0))] for r in info]
    arrays[f"{key}_candidates"] = np.packbits(masks, axis=-1)
    arrays[f"{key}_info"] = np.frombuffer(json.dumps(rows).encode(), np.uint8)
    arrays[f"{key}_features"] = hf.candidate_features(ev, masks, info)
    return masks


def rewrite_golden(tests_data: Path) -> None:
    """Recompute both golden files' candidates, features (and the pipeline file's masks, with the shipped
    scorer's SHA-256) from the inputs they store, with the ``ffmask`` on the path and one BLAS thread.
    For a deliberate change of the candidates or features (session 17: the downstream-trimmed hulls and the
    directional features), after which the scorer is retrained."""
    import hashlib

    import cv2
    from threadpoolctl import threadpool_limits

    from ffmask.targets import hull_select as hs
    from ffmask.targets.hull import hull_mask
    from ffmask.targets.mscc import mscc_mask

    def pair(arrays, i):
        return tuple(cv2.imdecode(arrays[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake"))

    with threadpool_limits(1):
        path = tests_data / "hull_golden.npz"
        with np.load(path) as fh:
            arrays = {k: fh[k] for k in fh.files}
        for i in range(3):
            real, fake = pair(arrays, i)
            for tag, lm in (("lm", arrays[f"{i}_landmarks"]), ("nolm", None)):
                _golden_candidates(arrays, f"{i}_{tag}", real, fake, lm, mscc_mask(real, fake))
        np.savez_compressed(path, **arrays)
        path = tests_data / "hull_golden_pipeline.npz"
        with np.load(path) as fh:
            arrays = {k: fh[k] for k in fh.files}
        for i in range(2):
            real, fake = pair(arrays, i)
            pts = arrays[f"{i}_landmarks"]
            mscc = np.unpackbits(arrays[f"{i}_mscc"], count=real.shape[0] * real.shape[1]).reshape(real.shape[:2])
            _golden_candidates(arrays, str(i), real, fake, pts, mscc.astype(bool))
            arrays[f"{i}_mask"] = np.packbits(hull_mask(real, fake, pts, mscc=mscc.astype(bool)))
        digest = hashlib.sha256(hs.WEIGHTS.read_bytes()).hexdigest()
        arrays["weights_sha256"] = np.frombuffer(digest.encode(), np.uint8)
        np.savez_compressed(path, **arrays)


def _flatten(cases: dict) -> dict:
    return {f"{name}|{k}": v for name, arrays in cases.items() for k, v in arrays.items()}


def _unflatten(arrays) -> dict:
    out: dict = {}
    for key in arrays.files:
        name, k = key.rsplit("|", 1)
        out.setdefault(name, {})[k] = arrays[key]
    return out


def compare(ref: dict, new: dict, rtol: float = 1e-6, atol: float = 1e-9) -> dict:
    """Counts of cases whose candidates / features / masks agree, and the worst feature difference."""
    stats = {"cases": 0, "candidates_equal": 0, "features_close": 0, "features_bitwise": 0, "masks_equal": 0,
             "max_rel_diff": 0.0, "candidates": 0, "differ": []}
    missing = sorted(set(new) - set(ref))
    if missing:
        raise SystemExit(f"the reference has no {missing[0]} ({len(missing)} cases missing): another --work folder?")
    for name, n in new.items():
        r = ref[name]
        stats["cases"] += 1
        stats["candidates"] += int(r["shape"][0])
        same_cands = (np.array_equal(r["shape"], n["shape"]) and np.array_equal(r["masks"], n["masks"])
                      and np.array_equal(r["info"], n["info"]))
        stats["candidates_equal"] += same_cands
        fx, gx = r["features"].astype(np.float64), n["features"].astype(np.float64)
        if fx.shape == gx.shape:
            err = np.abs(fx - gx)
            ok = bool(np.all(err <= np.maximum(rtol * np.abs(fx), atol)))
            stats["features_bitwise"] += bool(np.array_equal(r["features"], n["features"]))
            if err.size:
                stats["max_rel_diff"] = max(stats["max_rel_diff"],
                                            float(np.max(err / np.maximum(np.abs(fx), atol / rtol))))
        else:
            ok = False
        stats["features_close"] += ok
        same_mask = np.array_equal(r["mask"], n["mask"]) and np.array_equal(r["mask_shape"], n["mask_shape"])
        stats["masks_equal"] += same_mask
        if not (same_cands and ok and same_mask):
            stats["differ"].append(name)
    return stats


def _build_default(folder: Path) -> list[Path]:
    from ffmask.synth.pairs import build_pairs

    out = []
    for seed, size, n in DEFAULT_SETS:
        target = folder / f"seed{seed}_{size}"
        if not (target / "pairs.json").is_file():
            build_pairs(target, seed=seed, n=n, size=size, compressions=("c23", "c40"), overwrite=True)
        out.append(target)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="db0707f", help="reference commit (default db0707f)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default a temporary one)")
    ap.add_argument("--pairs", type=Path, nargs="*", default=None, help="pair folders (default: built, tuning seeds)")
    ap.add_argument("--dump", type=Path, default=None, help=argparse.SUPPRESS)  # internal: reference subprocess
    ap.add_argument("--golden", type=Path, default=None,
                    help="also write the golden test data (tests/test_hull_golden.py) from the reference code here")
    ap.add_argument("--rewrite-golden", action="store_true",
                    help="recompute tests/data/hull_golden*.npz from their stored inputs with this checkout, then exit")
    args = ap.parse_args(argv)
    if args.rewrite_golden:
        rewrite_golden(ROOT / "tests" / "data")
        return 0
    if args.dump is not None:
        import ffmask

        _pin_magnitude()
        print(f"reference code: {Path(ffmask.__file__).parent}", file=sys.stderr)
        if args.golden is not None:
            write_golden(Path(args.pairs[0]).parent, args.golden)
        np.savez_compressed(args.dump, **_flatten(compute(args.pairs)))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="hull_exact_"))
    work.mkdir(parents=True, exist_ok=True)
    folders = args.pairs or _build_default(work / "pairs")
    ref_src, ref_file = work / f"ref-{args.ref}", work / f"ref-{args.ref}.npz"
    if not ref_file.is_file() or args.golden is not None:
        if not (ref_src / "ffmask").is_dir():
            ref_src.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, "ffmask"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(ref_src)], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=str(ref_src), OMP_NUM_THREADS="1")
        golden = ["--golden", str(args.golden.resolve())] if args.golden is not None else []
        subprocess.run([sys.executable, __file__, "--dump", str(ref_file), *golden, "--pairs", *map(str, folders)],
                       check=True, env=env, cwd=str(ref_src))
    with np.load(ref_file) as fh:
        ref = _unflatten(fh)
    stats = compare(ref, compute(folders))
    differ = stats.pop("differ")
    print(json.dumps(stats, indent=1))
    for name in differ[:20]:
        print("differs:", name)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
