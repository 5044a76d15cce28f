"""Session 16, third pass, M10: ``bench masks --manipulations`` naming a manipulation the tree has no masks of.

At 87b139d the benchmark scored the manipulations it found and wrote its report (tables, means "over
manipulations", plots) without a word about the one asked for and absent: ``--manipulations Deepfakes,FaceSwap``
on a tree without FaceSwap masks read as a benchmark of both. Now such a selection is refused before any video is
decoded, in one line naming what is absent and what was found.
"""

from __future__ import annotations

import pytest

from _cli import ffmask_cli
from ffmask.errors import FFMaskError
from ffmask.fidelity import bench_masks


def test_a_manipulation_asked_for_but_absent_is_refused(small_ff_root, tmp_path):
    out = tmp_path / "bench"
    with pytest.raises(FFMaskError, match=r"no fake video with a mask video for --manipulations FaceSwap "
                                          r"\(found: Deepfakes\)"):
        bench_masks(small_ff_root, out, methods=["mscc"], manipulations="Deepfakes,FaceSwap", frames=1, size=64)
    assert not out.exists()
    code, stdout, stderr = ffmask_cli("bench", "masks", small_ff_root, "--out", out, "-m", "mscc", "--frames", "1",
                                      "--size", "64", "--manipulations", "Deepfakes,FS")
    text = (stdout + stderr).strip()
    assert code == 1 and len(text.splitlines()) == 1 and "FaceSwap (found: Deepfakes)" in text, text
    assert not out.exists()


def test_the_manipulations_present_are_scored(small_ff_root, tmp_path):
    result, paths = bench_masks(small_ff_root, tmp_path / "bench", methods=["mscc"], manipulations="DF", frames=1,
                                size=64)
    assert {face.manipulation for face in result.faces} == {"Deepfakes"} and paths


def test_manipulations_on_a_pairs_folder_are_refused_not_ignored(tmp_path):
    # at 87b139d a pairs folder (`ffmask synth --pairs`) was scored whole under `--manipulations FaceSwap`: the
    # report read as FaceSwap's
    from ffmask.synth.pairs import build_pairs

    pairs = tmp_path / "pairs"
    build_pairs(pairs, n=2, seed=104)
    with pytest.raises(FFMaskError, match=r"is a pairs folder .*--manipulations selects fakes of an FF\+\+ tree"):
        bench_masks(pairs, tmp_path / "bench", methods=["mscc"], manipulations="FaceSwap")
    assert not (tmp_path / "bench").exists()
    result, _ = bench_masks(pairs, tmp_path / "bench", methods=["mscc"])  # without it, scored as before
    assert len(result.faces) == 4  # 2 samples x 2 compressions
