"""Session 13 (rel11), part B: ``train evaluator --val`` shards of one class.

At c2a93bc validation shards holding only fakes (or only reals) validated at every step with
AUC NaN: no ``best.*`` was ever kept and nothing said why (``best val AUC -`` in the final
table only). ``train focus`` already warned about it; the evaluator does now.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

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


def test_train_evaluator_says_when_its_validation_faces_hold_one_class(shards, tmp_path, caplog):
    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    both, fakes = shards
    with caplog.at_level(logging.WARNING, logger="ffmask.train"):
        result = train_evaluator(both, tmp_path / "ckpt", model="efb4-fpn", val_shards=fakes,
                                 config={"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8,
                                         "fpn_channels": 8},
                                 args=EvaluatorTrainArgs(map="official", iters=1, batch_size=2, val_every=0,
                                                         device="cpu", pretrained=None))
    assert result.step == 1 and not (tmp_path / "ckpt" / "best.json").exists()
    # c2a93bc: no word; the run ended with "best val AUC -" and no best.*
    said = [r.getMessage() for r in caplog.records if "validation shards hold" in r.getMessage()]
    assert said == ["the validation shards hold 0 real and 6 fake faces: validation AUC is undefined, so no best "
                    "checkpoint (best.*) is kept; give --val shards with real and fake faces"], caplog.text
