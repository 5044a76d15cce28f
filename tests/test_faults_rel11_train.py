"""Session 13 (rel11), part B: ``train evaluator --val`` shards of one class.

At c2a93bc validation shards holding only fakes (or only reals) validated at every step with
AUC NaN: no ``best.*`` was ever kept and nothing said why (``best val AUC -`` in the final
table only). ``train focus`` already warned about it; the evaluator does now.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _cli import ffmask_cli
from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("train11")
    spec = JobSpec(methods=("official",), frames=1, size=32)
    both, fakes = base / "both", base / "fakes"
    annotate("ff++", SAMPLE, both, spec, dataset_options={"manipulations": ("Deepfakes",)}, jobs=1)
    annotate("ff++", SAMPLE, fakes, spec, dataset_options={"manipulations": ("Face2Face",), "include_originals": False},
             jobs=1)
    return both, fakes


def test_train_evaluator_says_when_its_validation_faces_hold_one_class(shards, tmp_path):
    both, fakes = shards
    code, stdout, stderr = ffmask_cli(
        "train", "evaluator", "--map", "official", "--train", both, "--val", fakes, "--out", tmp_path / "ckpt",
        "--backbone", "tf_efficientnet_lite0", "--img-size", "32", "--iters", "1", "--batch-size", "2",
        "--workers", "0", "--device", "cpu", timeout=300)
    text = " ".join((stdout + stderr).replace("│", " ").split())
    assert code == 0 and "Traceback" not in text, text[-3000:]
    # c2a93bc: no word; the run ended with "best val AUC -" and no best.*
    assert "the validation shards hold 0 real and 6 fake faces: validation AUC is undefined, so no best " \
           "checkpoint (best.*) is kept" in text, text[-3000:]
