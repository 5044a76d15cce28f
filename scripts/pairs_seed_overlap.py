"""How many samples two ``ffmask synth --pairs`` sets of one seed share, for two option lists.

    python scripts/pairs_seed_overlap.py SEED [N]

Compares the FoCus training lists of ``scripts/train_default_focus.sh`` with the hull
report lists of ``benchmarks/bench_masks.py`` (docs/focus.md, "Seed 30 is also the hull's
next fresh report seed"): samples ``i < N`` drawn by ``synth.pairs._sample`` with each,
counting equal real frames, fakes and masks (before compression and cropping). Never
run it on a held-out report seed (21-30, 2000-2003): it draws that seed's samples.
"""

from __future__ import annotations

import sys

import numpy as np

import ffmask  # noqa: F401
from ffmask.synth.pairs import _FRAME_SIZES, _sample

FOCUS = (("obama", "obama-mirrored", "biden", "biden-mirrored", "obama2", "obama2-mirrored"),
         {"regions": None, "operations": ("swap", "resample", "blur", "color", "warp", "noise", "expression"),
          "blends": None, "strength": None})
REPORT = (("obama", "obama-mirrored", "obama2", "obama2-mirrored", "obama3", "obama3-mirrored"),
          {"regions": ("inner", "mouth", "eyes", "blob"), "operations": ("swap", "sharpen", "warp", "jpeg"),
           "blends": None, "strength": None})


def main() -> None:
    seed, n = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 60
    if 21 <= seed <= 30 or 2000 <= seed <= 2003:
        sys.exit(f"seed {seed} is a held-out report seed: pick another")
    same = np.zeros(3, int)
    for i in range(n):
        _, real_a, fake_a, mask_a, *_ = _sample(seed, i, *FOCUS, _FRAME_SIZES)
        _, real_b, fake_b, mask_b, *_ = _sample(seed, i, *REPORT, _FRAME_SIZES)
        same += [a.shape == b.shape and np.array_equal(a, b)
                 for a, b in ((real_a, real_b), (fake_a, fake_b), (mask_a, mask_b))]
    print(f"seed {seed}, {n} samples: the same real frame {same[0]}, fake {same[1]}, mask {same[2]}")


if __name__ == "__main__":
    main()
