"""Session 13 (rel11), H1: the display matrices of a FF++ mask video and its fake.

Frames are read as displayed. A display matrix on the mask video alone (G7: a tool that
re-encoded it and added one) turned every ``official`` mask against its fake, written as ok
at c2a93bc; the pictures cannot say which way is right (a mask shares no picture with its
fake), so such a fake is skipped with the reason and ``mask_display_mismatch``. A pair stored
turned and played upright as a phone does, fake, original and mask alike, is annotated as
the upright files are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from ffmask import video
from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec
from ffmask.synth.tree import build_synth

ORIGINAL = "original_sequences/youtube/c23/videos/000.mp4"
FAKE = "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"
MASK = "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("turn11") / "ff++"
    build_synth(root, seed=111, identities=2, frames=12, compressions=("c23",), manipulations=("Deepfakes",), jobs=1)
    return root


def _rewrite_turned(path: Path, degrees: int) -> None:
    """Store ``path``'s frames turned by ``degrees`` (counter-clockwise) with a display matrix
    turning them back (as a phone stores a sideways video): displayed, the file is unchanged."""
    frames = [f for _, f in video.iter_frames(path)]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        stored = [np.ascontiguousarray(np.rot90(f, -degrees // 90)) for f in frames]
        s.width, s.height, s.pix_fmt = stored[0].shape[1], stored[0].shape[0], "yuv420p"
        s.options = {"qp": "0"}
        s.set_display_rotation(degrees)
        for f in stored:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))


def _run(root: Path, out: Path):
    annotate("ff++", root, out, JobSpec(methods=("official",), frames=4, size=64), jobs=1)
    entries = {e["video_id"]: e for e in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    masks = {}
    for shard in sorted(out.glob("shard-*.h5")):
        with h5py.File(shard, "r") as f:
            ids = [v.decode() if isinstance(v, bytes) else v for v in f["video_id"][:]]
            for i, vid in enumerate(ids):
                if vid == "Deepfakes/000_001":
                    masks[int(f["frame_index"][i])] = f["maps/official"][i]
    return entries, masks


@pytest.mark.parametrize("degrees", [90, 180])
def test_a_pair_and_its_mask_turned_alike_are_annotated_as_upright_files(tree, tmp_path, degrees):
    _, upright = _run(tree, tmp_path / "upright")
    root = tmp_path / "ff++"
    shutil.copytree(tree, root)
    for name in (ORIGINAL, FAKE, MASK):
        _rewrite_turned(root / name, degrees)
    assert video.display_turn(root / MASK) == video.display_turn(root / FAKE) != "as stored"
    entries, turned = _run(root, tmp_path / "turned")
    assert entries["Deepfakes/000_001"]["status"] == "ok", entries["Deepfakes/000_001"]
    assert "mask_display_mismatch" not in entries["Deepfakes/000_001"]
    assert turned.keys() == upright.keys() and len(upright) >= 2
    for index in upright:  # lossless files: the same masks, give or take a face box a pixel off
        agree = np.mean((turned[index] > 0) == (upright[index] > 0))
        assert agree > 0.97, (index, agree)


def test_a_mask_baked_upright_for_a_fake_with_a_display_matrix_is_skipped_with_both_turns(tree, tmp_path):
    root = tmp_path / "ff++"
    shutil.copytree(tree, root)
    for name in (ORIGINAL, FAKE):  # the mask video stays as it is: upright, no matrix
        _rewrite_turned(root / name, 180)
    entries, _ = _run(root, tmp_path / "out")
    entry = entries["Deepfakes/000_001"]
    # c2a93bc: status ok (here the masks happen to fit: the pictures cannot tell this case from G7's)
    assert entry["status"] == "skipped", entry
    assert entry["reason"].startswith("mask video is displayed as stored, its fake turned 180 degrees"), entry
    assert entry["mask_display_mismatch"] == {"mask": "as stored", "fake": "turned 180 degrees"}
    assert entries["Deepfakes/001_000"]["status"] == "ok"


def test_display_turn_names_what_the_matrix_does(tmp_path):
    frame = np.zeros((32, 48, 3), np.uint8)
    for degrees, said in [(0, "as stored"), (90, "turned 90 degrees counter-clockwise"),
                          (-90, "turned 90 degrees clockwise"), (180, "turned 180 degrees")]:
        path = tmp_path / f"r{degrees}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
            if degrees:
                s.set_display_rotation(degrees)
            c.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            c.mux(s.encode(None))
        assert video.display_turn(path) == said
    with pytest.raises(video.VideoError):
        video.display_turn(tmp_path / "nope.mp4")
