"""Session 11 (rel9), part B: a fake whose frames are not its original's at the same index.

Comparison maps pair frame i of a fake with frame i of its original. A fake that lacks
its original's first frames, has extra ones, or repeats one on the way shows another
moment at the same index; fb14211 compared such pairs like true ones (status ok, the
mscc mask of 000_001 at IoU 0.45-0.48 with the aligned pair's on a 24-frame synth pair)
and noted at most a frame count difference in the manifest. A fake that is only cut
short, re-encoded, or at another frame rate is aligned and stays ok; the sampled
frames past its end are counted as missing, not as undecodable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ffmask import video
from ffmask.annotate import annotate
from ffmask.pipeline import JobSpec
from ffmask.synth.tree import build_synth

FAKE = "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"
MASK = "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("align") / "ff++"
    build_synth(root, seed=7, identities=2, frames=16, compressions=("c23",), manipulations=("Deepfakes",), jobs=1)
    return root


def frames_of(path):
    return [f for _, f in video.iter_frames(path)]


def variant(tree: Path, where: Path, fake, mask=None, fps=25) -> Path:
    """A copy of ``tree`` whose 000_001 fake (and mask video) are ``fake(frames)`` (``mask(frames)``)."""
    root = where / "ff++"
    shutil.copytree(tree, root)
    video.write_video(root / FAKE, fake(frames_of(tree / FAKE)), fps=fps, crf=23)
    if mask is not None:
        video.write_video(root / MASK, [m[..., 0] for m in mask(frames_of(tree / MASK))], lossless=True)
    return root


def entry_of(root: Path, out: Path) -> dict:
    annotate("ff++", root, out, JobSpec(methods=("mscc", "official"), frames=8, size=64), jobs=1)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    others = [e for e in lines if e["video_id"] != "Deepfakes/000_001"]
    assert others and all(e["status"] == "ok" for e in others), others  # the untouched pair is never skipped
    return next(e for e in lines if e["video_id"] == "Deepfakes/000_001")


@pytest.mark.parametrize("name, fake, shift", [
    ("first 3 frames missing", lambda f: f[3:], "3 frame(s) later"),
    ("3 extra frames at the start", lambda f: f[:1] * 3 + f, "3 frame(s) earlier"),
    # (one frame repeated: a 1-frame shift in this slow pan is within the re-encoding's noise, not found)
    ("one frame shown three times mid-video", lambda f: f[:8] + [f[7]] * 2 + f[8:14], "2 frame(s) earlier"),
])
def test_a_fake_shifted_in_time_is_skipped_not_compared(tree, tmp_path, name, fake, shift):
    root = variant(tree, tmp_path, fake, mask=fake)
    entry = entry_of(root, tmp_path / "out")
    # fb14211: status ok, every comparison map of another moment
    assert entry["status"] == "skipped", entry
    assert entry["reason"].startswith("fake is not aligned in time with its original: its frame "), entry
    assert shift in entry["reason"], entry


@pytest.mark.parametrize("name, fake, fps", [
    ("re-encoded", lambda f: f, 25),
    ("another frame rate", lambda f: f, 30),
])
def test_a_fake_aligned_with_its_original_is_compared(tree, tmp_path, name, fake, fps):
    entry = entry_of(variant(tree, tmp_path, fake, fps=fps), tmp_path / "out")
    assert entry["status"] == "ok" and entry["faces"] == 8 and "frames_undecodable" not in entry, entry


def test_frames_past_a_short_fakes_end_are_missing_not_undecodable(tree, tmp_path):
    entry = entry_of(variant(tree, tmp_path, lambda f: f[:12], mask=lambda f: f[:12]), tmp_path / "out")
    # sampled 0, 2, 4, 6, 9, 11, 13, 15 of 16: the fake ends after frame 11
    assert entry["status"] == "ok" and entry["faces"] == 6, entry
    assert entry["frames_missing_in_fake"] == 2 and "frames_undecodable" not in entry, entry  # fb14211: undecodable
    assert entry["frame_count_mismatch"] == {"fake": 12, "original": 16}


def moving(n: int, side: int = 64, speed: float = 2.0, seed: int = 0) -> list:
    """Thumbnails of a textured picture panning ``speed`` px per frame."""
    import cv2

    from ffmask.pair_checks import Thumbnail

    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (side, side * 4)).astype(np.float32), (0, 0), 2.0)
    return [Thumbnail(np.ascontiguousarray(big[:, int(i * speed):int(i * speed) + side]), True) for i in range(n)]


def test_time_mismatch_on_thumbnails():
    from ffmask.pair_checks import alignment_checkpoints, alignment_window, thumbnail, time_mismatch

    original = moving(40)
    window = {j: original[j] for j in alignment_window([5, 20, 39], 40)}
    # every frame within 5 of a checkpoint, and the coarse offsets (10, 15, ...) inside the video (session 12)
    assert sorted(window) == [*range(0, 11), 14, *range(15, 26), 29, 30, *range(34, 40)]
    assert time_mismatch(window, {k: original[k] for k in (5, 20, 39)}) is None  # aligned
    late = time_mismatch(window, {k: original[k + 2] for k in (5, 20)})
    assert late is not None and "its frame 5 shows the original's frame 7 (2 frame(s) later" in late
    # a still scene matches every frame alike: never called shifted
    still = {j: original[0] for j in window}
    assert time_mismatch(still, {k: original[0] for k in (5, 20, 39)}) is None
    # a checkpoint the (shorter) fake lacks is not checked
    assert time_mismatch(window, {5: original[5]}) is None
    assert alignment_checkpoints(range(0, 20, 2)) == [0, 8, 18] and alignment_checkpoints([4, 1]) == [1, 4]
    assert thumbnail(np.zeros((48, 64, 3), np.uint8)).grey.shape == (64, 64)
