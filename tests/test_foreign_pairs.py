"""The out-of-generator forgeries of ``benchmarks/foreign_pairs.py`` (a second generator, apart from ffmask.synth)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ffmask import fidelity
from ffmask.synth.motion import random_motion, render_frame, transform_points
from ffmask.synth.portraits import load_portrait
from tests._scripts import load_script


@pytest.fixture(scope="module")
def fp():
    return load_script("benchmarks/foreign_pairs.py")


@pytest.fixture(scope="module")
def face():
    """A framed report-half portrait (Obama) and its 68 landmarks in frame pixels."""
    p = load_portrait("obama")
    rng = np.random.default_rng(5)
    motion = random_motion(rng, p.image.shape[1::-1], p.box, (480, 360))
    frame = render_frame(p.image, motion, 1.0)
    return frame, transform_points(p.landmarks, motion.affine(1.0))


def test_no_operation_is_one_of_synths(fp):
    from ffmask.synth.families import BLENDS, OPERATIONS

    assert not set(fp.OPERATIONS) & set(OPERATIONS)
    assert not set(fp.BLENDS) - {"hard"} & set(BLENDS)
    assert set(fp.IDENTITIES) == {"obama", "obama2", "obama3"}  # the report half's person only


@pytest.mark.parametrize("op", ["inpaint", "smooth", "bulge", "swirl", "morph", "mirror", "relight", "recolor"])
def test_every_operation_changes_its_region_and_nothing_far_from_it(fp, face, op):
    frame, lms = face
    src = load_portrait("biden")
    rng = np.random.default_rng(3)
    region = fp.region(lms, frame.shape[:2], fp._OP_REGIONS.get(op, fp.REGIONS)[0], rng)
    layer = fp.operate(frame, lms, region, op, 0.8, rng, src.image, src.landmarks)
    for kind in fp.BLENDS:
        fake = fp.blend(frame, layer, region, kind, 0.8, np.random.default_rng(4))
        changed = np.any(fake != frame, axis=-1)
        grown = cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
        assert changed[region].mean() > 0.2, (op, kind)  # a strong edit changes much of its region
        assert not np.any(changed & ~grown), (op, kind)  # and never reaches beyond the blend's 4 px


def test_a_folder_is_deterministic_and_scored_like_synth_pairs(fp, tmp_path):
    a = fp.build(tmp_path / "a", seed=3, n=2, size=96, compressions=("c23",))
    b = fp.build(tmp_path / "b", seed=3, n=2, size=96, compressions=("c23",))
    for name in ("masks/00000.png", "c23/00001_fake.png", "c23/00001_real.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    faces = fidelity.collect(a, compressions=("c23",))
    assert len(faces) == 2
    for f in faces:
        assert f.real.shape == f.fake.shape == (96, 96, 3) and f.truth.any()
        assert f.tags["operation"] in fp.OPERATIONS and f.tags["person"] == "Barack Obama"


def test_the_tuning_people_and_an_operation_subset_make_training_data_apart_from_the_report(fp, tmp_path):
    ops = ("inpaint", "relight")
    out = fp.build(tmp_path / "t", seed=2101, n=3, size=64, compressions=("c30",), people="tuning", operations=ops)
    meta = json.loads((out / "pairs.json").read_text())
    assert meta["options"] == {"people": "tuning", "operations": list(ops)}
    for rec in meta["samples"]:
        assert rec["params"]["operation"] in ops
        assert rec["person"] != "Barack Obama" and "obama" not in rec["source"]
        assert rec["identity"].split("-")[0] in ("biden", "astronaut") and rec["source"] != rec["identity"].split("-")[0]
    # the report default draws what it always drew: the first two faces of the seed-2000 report folder
    for i, (family, strength) in enumerate((("nose/inpaint/ramp", 0.252322), ("mouth/inpaint/hard", 0.250358))):
        rec = fp.sample(2000, i)[0]
        assert rec["person"] == "Barack Obama" and rec["family"] == family
        assert round(rec["params"]["strength"], 6) == strength


@pytest.mark.parametrize("people,ops,seed,msg", [("tuning", ("inpaint",), 2001, "report seed"),
                                                  ("report", ("blur",), 5, "unknown operation"),
                                                  ("others", ("inpaint",), 5, "unknown people"),
                                                  ("tuning", (), 5, "unknown operation")])
def test_bad_options_are_refused(fp, tmp_path, people, ops, seed, msg):
    with pytest.raises(ValueError, match=msg):
        fp.build(tmp_path / "x", seed=seed, n=1, size=64, people=people, operations=ops)
    assert not (tmp_path / "x").exists()
