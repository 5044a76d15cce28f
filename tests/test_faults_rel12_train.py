"""Session 14 (rel12), B: a training resumed with another measure of its best checkpoint.

``best.*`` is the step whose validation scored best so far. At 06d4739 a rerun into the
same ``--out`` with other ``train evaluator --val`` shards (or none), or with another
``train focus --val-mask``, was resumed: the restored best score, measured on the old
validation faces (or the old mask), competed with scores of the new ones, and a finished
run reported its old figures under the new option. Such a rerun is now refused, naming
the difference, as a rerun with another learning rate is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ffmask.annotate import annotate
from ffmask.errors import FFMaskError
from ffmask.pipeline import JobSpec

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
TINY = {"backbone": "tf_efficientnet_lite0", "img_size": 32, "map_size": 8, "fpn_channels": 8}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    df = tmp_path_factory.mktemp("train12") / "df"
    annotate("ff++", SAMPLE, df, JobSpec(methods=("official", "mscc"), frames=1, size=32),
             dataset_options={"manipulations": ("Deepfakes",)}, jobs=1)
    return df


def test_train_evaluator_resumed_with_other_validation_faces_is_refused(shards, tmp_path):
    import json

    from ffmask.train.evaluator import EvaluatorTrainArgs, train_evaluator

    df = shards
    args = EvaluatorTrainArgs(map="official", iters=1, batch_size=4, val_every=1, val_max=4, device="cpu",
                              pretrained=None)
    train_evaluator(df, tmp_path / "ckpt", model="efb4-fpn", val_shards=df, config=TINY, args=args)
    # 06d4739: resumed (here: already done, reporting the validation of the first faces)
    with pytest.raises(FFMaskError, match=r"holds a checkpoint of a different run \(the validation faces differ "
                                          r"\(4 in the checkpoint, 3 now; best\.\* was chosen on "
                                          r"the checkpoint's\)\)"):
        train_evaluator(df, tmp_path / "ckpt", model="efb4-fpn", val_shards=df, config=TINY,
                        args=dataclasses.replace(args, val_max=3))
    # without --val (a checkpoint of an older ffmask, without val_fingerprint, is compared by its count)
    doc = json.loads((tmp_path / "ckpt" / "last.json").read_text())
    assert doc["data"]["val_fingerprint"]
    with pytest.raises(FFMaskError, match=r"\(4 in the checkpoint, 0 now; best"):
        train_evaluator(df, tmp_path / "ckpt", model="efb4-fpn", config=TINY, args=args)


def test_train_focus_resumed_with_another_val_mask_is_refused(shards, tmp_path):
    from ffmask.models.focus import FocusConfig
    from ffmask.train.focus import FocusTrainArgs, train_focus_from_shards

    df = shards
    config = FocusConfig(backbone="tf_efficientnet_lite0", img_size=32, maps_per_class=4)
    args = FocusTrainArgs(iters=1, batch_size=2, val_every=1, device="cpu", workers=0, val_mask="official")
    train_focus_from_shards([df], tmp_path / "focus", config=config, args=args)
    # 06d4739: resumed, the best map AUC measured against official masks reported as against mscc
    with pytest.raises(FFMaskError, match=r"val_mask: checkpoint 'official', now 'mscc'"):
        train_focus_from_shards([df], tmp_path / "focus", config=config,
                                args=FocusTrainArgs(iters=1, batch_size=2, val_every=1, device="cpu", workers=0,
                                                    val_mask="mscc"))
