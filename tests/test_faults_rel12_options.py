"""Session 14 (rel12), A3: ``synth --pairs N`` and ``--crop`` had no upper bound.

At 06d4739 ``--pairs 10000000`` ran for days (0.13 CPU-seconds and 375 kB a sample) and
``--crop 40000`` wrote OUT/c23, c40, masks and then died in OpenCV (``Insufficient memory``
traceback). Both are now one line before anything is written, as ``-n`` / ``--frames`` (H3).
"""

from __future__ import annotations

import pytest

from _cli import ffmask_cli as cli

from ffmask.synth.pairs import MAX_PAIRS, build_pairs


@pytest.mark.parametrize("args, words", [
    (("--pairs", str(MAX_PAIRS + 1)), f"Invalid value for --pairs: at most {MAX_PAIRS} "),
    (("--pairs", "1", "--crop", "40000"), "Invalid value for --crop: at most 4096 pixels, got 40000"),
])
def test_synth_pairs_refuses_a_count_or_crop_no_one_means(tmp_path, args, words):
    out = tmp_path / "pairs"
    rc, text, err = cli("synth", out, *args)
    assert rc == 2 and "Traceback" not in text + err
    assert words in " ".join(err.replace("│", " ").split()), err
    assert not out.exists()


def test_build_pairs_refuses_them_too(tmp_path):
    with pytest.raises(ValueError, match="n must be from 1 to 100000"):
        build_pairs(tmp_path / "p", n=MAX_PAIRS + 1)
    with pytest.raises(ValueError, match="size must be from 32 to 4096 pixels"):
        build_pairs(tmp_path / "p", n=1, size=40000)
    assert not (tmp_path / "p").exists()
