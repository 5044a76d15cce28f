"""Mask fidelity on held-out manipulation families, identities and seeds (leave-families-out).

    python benchmarks/bench_masks.py --out /tmp/bench_masks

Builds (or reuses, under ``--work``) single-frame family pairs with
``ffmask synth --pairs`` -- real portrait frames forged, each image of a
pair compressed independently by x264 (CRF 23 / 40), 256 px face crops,
dlib landmarks on the real crop -- in two disjoint halves:

- the **tuning** half (seed 11): regions hull, nose, cheek, forehead;
  operations resample, blur, color, noise, expression; Biden and Collins
  (and their mirror images). ``hull-rules`` was chosen on it; ``hull-net``'s
  refinement net and ``hull``'s candidate scorer were trained on its
  families and people only (more seeds of them: ``ffmask.targets.hull_train``,
  ``ffmask.targets.hull_select_train``).
- the **report** half (seed 30, session 17's fresh report, scored once
  after its ship rule was written; 29 session 10's; 28 session 9's; 26
  session 7's scorer's report; 27 session 8's check of an evidence
  change, which was not kept; 25 and 24 the earlier selectors', 23 the
  rules' and hull-net's, 21 and 22 the rules' first version; 32-39 stay
  reserved for later reports, 31 is the annotate benchmarks' synth
  tree): regions inner,
  mouth, eyes, blob; operations swap, sharpen, warp, jpeg; Obama's three
  photos (mirrored too). Nothing here was looked at while tuning.

The report half is scored with ``--tuned-on`` the tuning half (so a face
sharing a region, operation or person with it could never count), by
region, operation, blend and strength x compression, with the per-face
best-threshold ceilings (``oracle``, ``oracle+hull``). Pass ``--root`` to
score an existing folder or tree instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ffmask  # noqa: F401  (installs the torchvision shim first)
from ffmask import fidelity
from ffmask.synth.pairs import PAIRS_FILE, build_pairs

TUNING = dict(seed=11, regions=("hull", "nose", "cheek", "forehead"),
              operations=("resample", "blur", "color", "noise", "expression"),
              identities=("biden", "biden-mirrored", "astronaut", "astronaut-mirrored"))
REPORT = dict(regions=("inner", "mouth", "eyes", "blob"), operations=("swap", "sharpen", "warp", "jpeg"),
              identities=("obama", "obama-mirrored", "obama2", "obama2-mirrored", "obama3", "obama3-mirrored"))
METHODS = ("mscc", "ssim", "diff@0.1", "hull", "hull-nolm", "hull-rules", "hull-rules-nolm", "hull-net",
           "hull-net-nolm", "uniform", "oracle", "oracle+hull")


def _pairs(folder: Path, n: int, **options) -> Path:
    if not (folder / PAIRS_FILE).is_file():
        t0 = time.perf_counter()
        build_pairs(folder, n=n, overwrite=True, **options)
        print(f"built {folder} ({n} pairs) in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="score this pairs folder or synth tree instead")
    ap.add_argument("--seeds", default="30",
                    help="report seeds (default 30, session 17's fresh report; 29 session 10's; 28 session 9's; "
                         "26 session 7's scorer's; "
                         "27 session 8's "
                         "evidence check; 25 and 24 the earlier selectors', "
                         "23 the rules' and hull-net's, 21,22 the rules' first version; the tuning seed is 11)")
    ap.add_argument("--n", type=int, default=300, help="pairs per seed")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffmask_bench_masks"))
    ap.add_argument("--out", type=Path, default=Path("bench_masks_out"))
    args = ap.parse_args()

    methods = args.methods.split(",")
    t0 = time.perf_counter()
    if args.root:
        faces = fidelity.collect(args.root)
    else:
        tuning = _pairs(args.work / "tune11", args.n, **TUNING)
        held = fidelity.tuned_on(tuning)
        faces = []
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = _pairs(args.work / f"report{seed}", args.n, seed=seed, **REPORT)
            faces += fidelity.exclude_tuned(fidelity.collect(folder), held)
    t1 = time.perf_counter()
    result = fidelity.evaluate(faces, methods)
    paths = fidelity.write_report(result, args.out, worst_method="hull",
                                  title="Mask fidelity on held-out families, identities and seeds")
    print(f"{len(faces)} faces; collect {t1 - t0:.1f} s, methods {time.perf_counter() - t1:.1f} s")
    print("ms per face (contaminated by other load): "
          + ", ".join(f"{k} {v * 1000:.1f}" for k, v in result.seconds.items()))
    print(fidelity.to_markdown(result))
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
