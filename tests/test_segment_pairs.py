"""The third, training-only forgery generator ``scripts/segment_pairs.py`` (apart from ffmask.synth and foreign_pairs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffmask.synth.motion import random_motion, render_frame, transform_points
from ffmask.synth.portraits import load_portrait
from tests._scripts import load_script


@pytest.fixture(scope="module")
def sp():
    return load_script("scripts/segment_pairs.py")


def _framed(name: str, seed: int):
    p = load_portrait(name)
    rng = np.random.default_rng(seed)
    motion = random_motion(rng, p.image.shape[1::-1], p.box, (480, 360))
    return render_frame(p.image, motion, 1.0), transform_points(p.landmarks, motion.affine(1.0))


@pytest.fixture(scope="module")
def face():
    """A framed tuning-half portrait (Biden) and its landmarks, and a donor face (Collins)."""
    return _framed("biden", 5), _framed("astronaut", 6)


def test_no_region_operation_or_blend_is_one_of_the_other_generators(sp):
    from ffmask.synth import families

    fp = load_script("benchmarks/foreign_pairs.py")
    for axis, theirs in (("REGIONS", families.REGIONS + fp.REGIONS), ("OPERATIONS", families.OPERATIONS + fp.OPERATIONS),
                         ("BLENDS", families.BLENDS + fp.BLENDS)):
        assert not (set(getattr(sp, axis)) - {"hard"}) & set(theirs), axis
    assert set(sp.PEOPLE) == {"biden", "astronaut"}  # the tuning half only, never Obama


@pytest.mark.parametrize("name", ["superpixels", "triangles", "polygon", "strokes"])
def test_regions_lie_in_the_face_and_come_in_many_sizes(sp, face, name):
    (frame, lms), _ = face
    area = sp.face_area(lms, frame.shape[:2])
    fracs = []
    for k in range(6):
        m = sp.region(frame, lms, name, np.random.default_rng(k))
        assert m.dtype == bool and m.shape == frame.shape[:2] and m.any()
        assert not np.any(m & ~area)
        fracs.append(m.sum() / area.sum())
    assert max(fracs) > 3 * min(fracs)  # small to large, not one size


@pytest.mark.parametrize("op", ["denoise", "tone", "histmatch", "posterize", "median", "chroma", "pattern", "paste",
                                "elastic"])
def test_the_true_mask_is_exactly_the_support_of_the_change(sp, face, op):
    (frame, lms), (dframe, dlms) = face
    for blend in sp.BLENDS:
        params = {"region": "polygon", "operation": op, "blend": blend, "strength": 0.9}
        rng = np.random.default_rng(11)
        fake, truth = sp.forge(frame, lms, params, rng, (dframe, dlms))
        # the same draw again, to find the region and matte it used
        rng = np.random.default_rng(11)
        reg = sp.region(frame, lms, "polygon", rng)
        alpha = sp.matte(reg, blend, rng)
        changed = np.any(fake.astype(int) != frame, axis=-1)
        assert np.array_equal(truth, changed), (op, blend)
        assert not np.any(changed & (alpha == 0)), (op, blend)  # nothing changes outside the matte
        assert changed[reg].mean() > 0.3, (op, blend)  # a strong edit changes much of its region
    # the hard blend changes pixels inside the region only
    fake, truth = sp.forge(frame, lms, {"region": "polygon", "operation": op, "blend": "hard", "strength": 0.9},
                           np.random.default_rng(11), (dframe, dlms))
    assert not np.any(truth & ~sp.region(frame, lms, "polygon", np.random.default_rng(11)))


def test_a_weak_edit_is_subtler_than_a_strong_one(sp, face):
    (frame, lms), donor = face
    err = []
    for s in (0.05, 0.95):
        p = {"region": "triangles", "operation": "tone", "blend": "hard", "strength": s}
        fake, truth = sp.forge(frame, lms, p, np.random.default_rng(2), donor)
        err.append(np.abs(fake.astype(int) - frame)[truth].mean())
    assert err[0] < 0.5 * err[1]


def test_a_folder_is_deterministic_uses_tuning_people_and_extract_reads_it(sp, tmp_path):
    from ffmask.targets import hull_select_train as T

    a = sp.build(tmp_path / "a", seed=3199, n=2, size=96, compressions=("c30",))
    b = sp.build(tmp_path / "b", seed=3199, n=2, size=96, compressions=("c30",))
    for name in ("masks/00000.png", "masks/00001.png", "c30/00001_fake.png", "c30/00000_real.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    c = sp.build(tmp_path / "c", seed=3198, n=2, size=96, compressions=("c30",))
    assert (a / "c30/00000_fake.png").read_bytes() != (c / "c30/00000_fake.png").read_bytes()
    meta = json.loads((a / "pairs.json").read_text())
    assert meta["generator"] == "scripts/segment_pairs.py" and len(meta["samples"]) == 2
    for rec in meta["samples"]:
        assert rec["person"] != "Barack Obama" and "obama" not in rec["source"] and rec["mask_area"] > 0
    d = T.extract([a], log=lambda _: None)
    assert len(d["region"]) == 4  # two pairs, each with and without landmarks
    assert set(d["operation"]) <= set(sp.OPERATIONS) and set(d["region"]) <= set(sp.REGIONS)
    assert d["x"].shape[0] == d["y"].shape[0] > 0 and np.all((d["y"] >= 0) & (d["y"] <= 1))


@pytest.mark.parametrize("seed", [21, 29, 30, 2000, 2002, 2003])
def test_held_out_report_seeds_are_refused(sp, tmp_path, seed):
    with pytest.raises(ValueError, match="held-out"):
        sp.build(tmp_path / "x", seed=seed, n=1)
    assert not (tmp_path / "x").exists()
