"""Speed of ffmask.targets next to the straightforward formulation.

Times each method on a real 256x256 face crop pair (the astronaut portrait,
a warped/recoloured fake, both through libx264 CRF 23) on one thread, and
prints milliseconds per call for ffmask and for the slow reference of
tests/_target_refs.py (scikit-image SSIM, per-channel PyWavelets with
scipy.ndimage, the MSCCNet authors' script), plus how far the outputs are
apart. Figures are the best of several repeats, which is the stable number
on a shared machine. ``ssim`` and ``mscc`` drop the SSIM window sums that
ffmask keeps for the last pair before every call (each call a new pair);
``mscc+ssim`` is both maps of one pair, as ``annotate`` computes them, the
sums computed once.

    python benchmarks/bench_targets.py [--size 256] [--repeat 7]
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy/OpenCV load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import timeit  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _target_refs as refs  # noqa: E402

from ffmask import targets  # noqa: E402
from ffmask.targets import comparison  # noqa: E402


def fresh(fn):
    """``fn`` with SSIM's kept window sums dropped first: each call computes them, as for a new pair."""
    def call():
        comparison._LAST_TERMS.clear()
        return fn()
    return call


def best_ms(fn, repeat: int) -> float:
    """Best per-call time in ms over `repeat` rounds of ~0.2 s each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, number)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e3


def compare(ours: np.ndarray, ref: np.ndarray) -> str:
    if ours.dtype == bool:
        if np.array_equal(ours, ref):
            return "identical"
        return f"{int((ours != ref).sum())} px differ"
    err = float(np.abs(ours.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max()) or 1.0
    return f"max abs err {err:.1e} (rel {err / scale:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    real, fake = refs.compressed_pair(23, size=args.size)
    cases = [
        ("ssim", fresh(lambda: targets.ssim_map(real, fake)), lambda: refs.ref_ssim_map(real, fake)),
        ("diff", lambda: targets.diff_map(real, fake), lambda: refs.ref_diff_map(real, fake)),
        ("mscc", fresh(lambda: targets.mscc_mask(real, fake)), lambda: refs.ref_mscc_mask(real, fake)),
        ("noise", lambda: targets.noise_map(fake, 5.0), lambda: refs.ref_noise_map(fake, 5.0)),
        ("mscc+ssim", fresh(lambda: (targets.mscc_mask(real, fake), targets.ssim_map(real, fake))),
         lambda: (refs.ref_mscc_mask(real, fake), refs.ref_ssim_map(real, fake))),
    ]
    print(f"ffmask.targets on a {args.size}x{args.size} RGB face crop (H.264 CRF 23), 1 thread, "
          f"best of {args.repeat}")
    print(f"{'method':<10}{'ffmask ms':>11}{'reference ms':>14}{'speed-up':>10}   agreement")
    for name, ours, ref in cases:
        t_ours = best_ms(ours, args.repeat)
        t_ref = best_ms(ref, args.repeat)
        got, want = ours(), ref()
        agreement = "; ".join(compare(o, r) for o, r in zip(got, want)) if isinstance(got, tuple) \
            else compare(got, want)
        print(f"{name:<10}{t_ours:>11.2f}{t_ref:>14.2f}{t_ref / t_ours:>9.1f}x   {agreement}")


if __name__ == "__main__":
    main()
