"""Session 12 (rel10), part B: options a typo makes huge, and options blamed by the wrong name.

At 55c7967 ``annotate --size 100000`` wrote ``--out`` and died in h5py with a traceback (a chunk
over 4 GB); ``bench masks --size 100000`` died in OpenCV (out of memory); ``bench masks`` read
every ValueError of the pipeline as a bad ``--method`` (``--scale inf``, ``--manipulations
Nope``, ``--detector nope`` all said "Invalid value for --method"). Each is one line now,
naming its option, before anything is read or written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _cli import ffmask_cli

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


def test_annotate_refuses_a_giant_crop_size_before_writing_anything(tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = ffmask_cli("annotate", "ff++", SAMPLE, "--out", out, "-m", "mscc", "--frames", "1",
                                      "--size", "100000", "--manipulations", "Deepfakes", "--jobs", "1")
    text = stdout + stderr
    assert code != 0 and "Traceback" not in text, text[-2000:]
    assert "--size must be at most 4096 pixels, got 100000" in text
    assert not out.exists()


@pytest.mark.parametrize("option, value, said", [
    ("--size", "100000", "Invalid value for --size: must be at most 4096 pixels, got 100000"),
    ("--scale", "inf", "Invalid value for --scale: must be a finite number, got inf"),
    ("--manipulations", "Nope", "Invalid value for --manipulations: unknown ff++ manipulation 'Nope'"),
    ("--detector", "nope", "Invalid value for --detector: unknown detector 'nope'"),
])
def test_bench_masks_blames_the_option_that_is_wrong(tmp_path, option, value, said):
    out = tmp_path / "bench"
    code, stdout, stderr = ffmask_cli("bench", "masks", SAMPLE, "--out", out, "-m", "mscc", "--frames", "1",
                                      "-c", "c23", option, value, timeout=180)
    text = " ".join((stdout + stderr).replace("│", " ").split())
    assert code == 2 and "Traceback" not in text, text[-2000:]
    assert said in text, text[-2000:]
    assert not out.exists()


def test_export_refuses_a_giant_frame_size(tmp_path):
    code, stdout, stderr = ffmask_cli("export", "deepfakebench", tmp_path / "nothing", "--out", tmp_path / "exp",
                                      "--size", "100000")
    text = stdout + stderr
    assert code != 0 and "Traceback" not in text, text[-2000:]
    assert "--size must be an integer from 8 to 4096 pixels, got 100000" in text
