"""Session 13 (rel11), H3 and H4: synth sizes that run for hours, bench model options that change nothing.

At c2a93bc ``ffmask synth -n 100000`` ran for days and ``--frames 100000`` held a whole video
in memory until it died of it (about 4.4 bytes per pixel per frame: 34 GB at 320x240), and
``bench masks --checkpoint X`` / ``--device D`` with pair methods alone were accepted and
changed nothing, without a word. Each is one line now, naming its option, before anything is
written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _cli import ffmask_cli
from ffmask import fidelity
from ffmask.synth import tree

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"


def _one_line(stdout: str, stderr: str) -> str:
    return " ".join((stdout + stderr).replace("│", " ").split())


@pytest.mark.parametrize("args, said", [
    (("-n", "100000"), "Invalid value for --identities: at most 1000 (FaceForensics++'s count of originals), got 100000"),
    (("--frames", "100000"), "Invalid value for --frames: at most 6990 at 320x240 (a video is held in memory, "
                             "at most 2 GiB), got 100000"),
    (("--frames", "1748", "--size", "640x480"), "Invalid value for --frames: at most 1747 at 640x480"),
])
def test_synth_refuses_a_tree_that_would_run_for_hours_or_out_of_memory(tmp_path, args, said):
    out = tmp_path / "tree"
    code, stdout, stderr = ffmask_cli("synth", out, *args)
    text = _one_line(stdout, stderr)
    assert code == 2 and "Traceback" not in text, text[-2000:]
    assert said in text, text[-2000:]
    assert not out.exists()


def test_synth_library_bounds_match_the_cli(tmp_path):
    assert tree.max_frames((320, 240)) == 6990 and tree.max_frames((8192, 8192)) == 8
    with pytest.raises(ValueError, match="identities must be at most 1000"):
        tree.build_synth(tmp_path / "a", identities=1001)
    with pytest.raises(ValueError, match="frames must be at most 8 at 8192x8192"):
        tree.build_synth(tmp_path / "b", frames=9, size=(8192, 8192))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("option, value", [("--checkpoint", "/nonexistent/ckpt"), ("--device", "cpu")])
def test_bench_masks_refuses_model_options_no_requested_method_reads(tmp_path, option, value):
    out = tmp_path / "bench"
    code, stdout, stderr = ffmask_cli("bench", "masks", SAMPLE, "--out", out, "-m", "mscc,diff,uniform", "--frames",
                                      "1", "-c", "c23", option, value, timeout=180)
    text = _one_line(stdout, stderr)
    # c2a93bc: accepted, the benchmark ran and wrote its report; the option changed nothing
    assert code == 2 and "Traceback" not in text, text[-2000:]
    assert f"Invalid value for {option}: no method of mscc,diff,uniform runs a model (focus, fam)" in text, text
    assert not out.exists()


def test_unused_model_options_reads_the_methods():
    assert fidelity.unused_model_options(["mscc", "oracle"], checkpoint="x", device="cpu") == ["checkpoint", "device"]
    assert fidelity.unused_model_options(["mscc", "focus"], checkpoint="x", device="cpu") == []
    assert fidelity.unused_model_options(["fam"], device="cuda") == []
    assert fidelity.unused_model_options(["mscc"]) == []
    with pytest.raises(ValueError):
        fidelity.unused_model_options(["nope"], device="cpu")
