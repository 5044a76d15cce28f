"""``hull``'s Otsu threshold (:func:`ffmask.targets.hull.otsu_threshold`) against scikit-image's
:func:`skimage.filters.threshold_otsu`, bit for bit, and without importing SciPy's ``ndimage`` in the
process (the reason it is written out: ~0.3-0.55 s of CPU in every worker of a run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.targets import hull as H
from ffmask.targets import hull_candidates as hc

GOLDEN = Path(__file__).parent / "data" / "hull_golden.npz"


def _samples():
    rng = np.random.default_rng(15)
    yield "lognormal", rng.lognormal(0.0, 1.0, 5000)
    yield "bimodal", np.concatenate([rng.normal(1, 0.2, 3000), rng.normal(4, 0.5, 400)])
    yield "two values", np.array([0.25, 3.0, 0.25, 0.25])
    yield "ties", np.repeat(rng.uniform(0, 2, 7), 50)
    yield "tiny range", 1.0 + rng.uniform(0, 1e-6, 300)
    yield "one outlier", np.concatenate([np.zeros(999), [1e6]])
    yield "negative", rng.normal(-3, 1, 777)
    for i in range(40):
        n = int(rng.integers(2, 20000))
        yield f"random {i}", np.log1p(rng.gamma(rng.uniform(0.3, 3), rng.uniform(0.1, 10), n))


@pytest.mark.parametrize("nbins", [128, 256, 7])
def test_same_threshold_as_scikit_image(nbins):
    from skimage.filters import threshold_otsu

    for name, values in _samples():
        assert H.otsu_threshold(values, nbins=nbins) == float(threshold_otsu(values, nbins=nbins)), name


def test_hull_otsu_of_real_evidence_as_before():
    """``_otsu`` on the golden pairs' face residuals, at the working size and at the crop size."""
    from skimage.filters import threshold_otsu

    with np.load(GOLDEN) as fh:
        g = {k: fh[k] for k in fh.files}
    seen = 0
    for i in range(3):
        real, fake = (cv2.imdecode(g[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake"))
        for pts, res in ((g[f"{i}_landmarks"], hc.RES), (None, hc.RES), (g[f"{i}_landmarks"], 10 ** 6)):
            ev = hc.pair_evidence(real, fake, pts, res=res)
            vals = ev.d[ev.face]
            logs = np.log1p(vals.astype(np.float64))
            assert H._otsu(vals) == float(np.expm1(threshold_otsu(logs, nbins=128)))
            assert ev.otsu == H._otsu(vals)
            seen += 1
    assert seen == 9


def test_hull_does_not_import_scipy_ndimage():
    code = ("import sys, numpy as np\n"
            "from ffmask.targets.hull import _otsu\n"
            "_otsu(np.random.default_rng(0).random(500))\n"
            "print(sorted(m for m in ('scipy.ndimage', 'skimage.filters') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
