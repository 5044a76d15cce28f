"""noise_map against the straightforward per-channel PyWavelets + SciPy formulation.

The straightforward version decomposes each colour channel separately in
float64 and filters every band with ``scipy.ndimage.uniform_filter`` per
window (tests/_target_refs.py's ``ref_noise_map``, the independent reference
the tests compare with). Prints min-of-repeats times (the machine is shared,
so medians are noisy), the speed-up and the largest difference.

    python benchmarks/bench_noise.py [--size 224] [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffmask.targets import noise_map  # noqa: E402
from tests._target_refs import face_crop, ref_noise_map  # noqa: E402


def best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    image = face_crop(args.size)
    ours = best_ms(lambda: noise_map(image), args.repeats)
    ref = best_ms(lambda: ref_noise_map(image), max(3, args.repeats // 3))
    diff = float(np.abs(noise_map(image) - ref_noise_map(image)).max())
    print(f"noise_map on a {args.size} px face, 1 thread, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (min of repeats)")
    print(f"  ffmask noise_map          {ours:7.2f} ms")
    print(f"  per-channel pywt + scipy  {ref:7.2f} ms   ({ref / ours:.2f}x slower)")
    print(f"  max |difference|          {diff:.2e} (0..255 units)")


if __name__ == "__main__":
    main()
