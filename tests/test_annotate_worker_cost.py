"""What a worker pays besides the faces: imports, the detector, summary statistics.

A ``--method mscc,official`` worker task must not import torch, timm,
scikit-image or PyWavelets (start-up and memory per worker that it never
uses), and the per-face coverage statistic must keep its value while
skipping the float32 copy of every mask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffmask.annotate import _coverage_value

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "ff++"

WORKER = r"""
import json, sys, tempfile
from ffmask.annotate import chunk_groups, run_task
from ffmask.datasets import get_dataset
from ffmask.pipeline import JobSpec, plan_groups

scan = get_dataset("ff++", sys.argv[1])
tasks = chunk_groups(plan_groups(scan.items, paired=True), 2)
spec = JobSpec(methods=("mscc", "official"), frames=2)
with tempfile.TemporaryDirectory() as out:
    result = run_task(tasks[0], spec, out, {}, 1)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "timm", "skimage", "torchvision", "sklearn", "pywt"})
print(json.dumps({"faces": result.faces, "heavy": heavy}))
"""


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="sample_data is not in this checkout")
def test_mscc_official_worker_imports_no_torch():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", WORKER, str(SAMPLE)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["faces"] > 0  # the task really annotated faces
    assert report["heavy"] == [], report


def test_mask_coverage_equals_the_float32_mean():
    rng = np.random.default_rng(5)
    for share in (0.0, 1e-4, 0.3, 0.77, 1.0):
        mask = rng.random((224, 224)) < share
        assert _coverage_value("mask", mask) == float(np.asarray(mask, np.float32).mean())
    # non-bool maps keep the plain float32 mean
    values = rng.random((224, 224)).astype(np.float32)
    assert _coverage_value("continuous", values) == float(values.mean())
    assert _coverage_value("noise", values - 0.5) == float(np.abs(values - 0.5).mean())


PREPARE = r"""
import json, sys
from ffmask.faces.detect import _cached_detector
from ffmask.faces.landmarks import _predictor
from ffmask.pipeline import JobSpec, prepare_worker

prepare_worker(JobSpec(methods=tuple(sys.argv[1].split(",")), detector=sys.argv[2]))
print(json.dumps({"detectors": _cached_detector.cache_info().currsize, "predictor": _predictor.cache_info().currsize,
                  "av": "av.video.reformatter" in sys.modules, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("methods, detector, want", [
    ("mscc,official", "dlib", {"detectors": 1, "predictor": 0, "av": True, "torch": False}),
    ("mscc,hull", "dlib", {"detectors": 1, "predictor": 1, "av": True, "torch": False}),  # hull takes landmarks
    ("mscc,hull", "mtcnn", {"detectors": 0, "predictor": 0, "av": True, "torch": False}),  # torch: left to workers
])
def test_prepare_worker_loads_what_tasks_load_first_and_never_torch(methods, detector, want):
    """What a forked worker inherits (see ``ffmask.backends.dispatch``): PyAV and
    the CPU detector, the landmark model only when a method takes landmarks."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PREPARE, methods, detector], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == want
