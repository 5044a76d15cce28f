"""Session 12 (rel10), part A: mask videos and fakes shifted in time beyond session 11's reach.

1. A FF++ mask video is its fake's frame-for-frame mask. One encoded with another frame count
   (its first frames missing, extra ones, another cut) gave every face the mask of another
   moment, written as ok at 55c7967 (at most ``frames_without_mask``). No picture check can see
   it (measured: how a mask covers where the fake differs from its original does not tell a mask
   shifted by 2-10 frames, nor another method's mask of the pair, from the right one), so the
   count decides: skipped with the reason. A mask video cut short by an interrupted download
   keeps its header's count and stays ok, its missing frames counted.
2. Session 11's alignment check compared each checkpoint with the original's frames within 5:
   a fake with 25 extra frames was written as ok, and one with 6 or 10 was reported as shifted
   by 5 (once in the wrong direction). Coarse offsets up to 60 frames find them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
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
    root = tmp_path_factory.mktemp("align10") / "ff++"
    build_synth(root, seed=111, identities=2, frames=48, compressions=("c23",), manipulations=("Deepfakes",), jobs=1)
    return root


def frames_of(path):
    return [f for _, f in video.iter_frames(path)]


def variant(tree: Path, where: Path, fake=None, mask=None) -> Path:
    """A copy of ``tree`` whose 000_001 fake and/or mask video are ``fake(frames)`` / ``mask(frames)``."""
    root = where / "ff++"
    shutil.copytree(tree, root)
    if fake is not None:
        video.write_video(root / FAKE, fake(frames_of(tree / FAKE)), crf=23)
    if mask is not None:
        video.write_video(root / MASK, [m[..., 0] for m in mask(frames_of(tree / MASK))], lossless=True)
    return root


def entry_of(root: Path, out: Path, methods=("mscc", "official")) -> dict:
    annotate("ff++", root, out, JobSpec(methods=methods, frames=8, size=64), jobs=1)
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    others = [e for e in lines if e["video_id"] != "Deepfakes/000_001"]
    assert others and all(e["status"] == "ok" for e in others), others  # the untouched pair is never skipped
    return next(e for e in lines if e["video_id"] == "Deepfakes/000_001")


@pytest.mark.parametrize("name, mask, counts", [
    ("first 3 frames missing", lambda f: f[3:], (45, 48)),
    ("3 extra frames at the start", lambda f: f[:1] * 3 + f, (51, 48)),
    ("only its first 25 frames", lambda f: f[:25], (25, 48)),
])
def test_a_mask_video_with_another_frame_count_than_its_fake_is_skipped(tree, tmp_path, name, mask, counts):
    entry = entry_of(variant(tree, tmp_path, mask=mask), tmp_path / "out")
    # 55c7967: status ok, each face given the mask of another moment
    assert entry["status"] == "skipped", entry
    assert entry["reason"].startswith(f"mask video has {counts[0]} frames, its fake {counts[1]}: "), entry
    assert entry["mask_frame_count_mismatch"] == {"mask": counts[0], "fake": counts[1]}


def test_a_mask_count_is_not_checked_without_a_mask_map(tree, tmp_path):
    entry = entry_of(variant(tree, tmp_path, mask=lambda f: f[3:]), tmp_path / "out", methods=("mscc",))
    assert entry["status"] == "ok" and "mask_frame_count_mismatch" not in entry, entry


def test_a_mask_video_cut_short_by_a_download_is_used_up_to_the_cut(tree, tmp_path):
    root = variant(tree, tmp_path)
    path = root / MASK
    with av.open(str(path)) as c:
        packets = sorted((p.pos, p.size) for p in c.demux(video=0) if p.size)
    pos, size = packets[30]
    path.write_bytes(path.read_bytes()[: pos + size // 2])  # faststart: the header still says 48 frames
    entry = entry_of(root, tmp_path / "out")
    assert entry["status"] == "ok", entry
    assert entry["frames_without_mask"] >= 1 and entry["faces"] == 8 - entry["frames_without_mask"], entry


@pytest.mark.parametrize("name, fake, said", [
    # 55c7967: reported as "5 frame(s) earlier" (the window's edge) / written as ok
    ("10 extra frames at the start", lambda f: f[:1] * 10 + f, "(about 10 frame(s) earlier"),
    ("25 extra frames at the start", lambda f: f[:1] * 25 + f, "(about 25 frame(s) earlier"),
    ("first 25 frames missing", lambda f: f[25:], "(about 25 frame(s) later"),
])
def test_a_fake_shifted_by_more_than_the_window_is_skipped_with_the_shift(tree, tmp_path, name, fake, said):
    entry = entry_of(variant(tree, tmp_path, fake=fake, mask=fake), tmp_path / "out")
    assert entry["status"] == "skipped", entry
    assert entry["reason"].startswith("fake is not aligned in time with its original: "), entry
    assert said in entry["reason"], entry


def test_time_mismatch_finds_a_far_shift_on_thumbnails():
    import cv2

    from ffmask.pair_checks import Thumbnail, alignment_window, time_mismatch

    # a slow pan (1 px a frame) over a smooth texture: the nearer two moments, the more alike
    rng = np.random.default_rng(5)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (64, 256)).astype(np.float32), (0, 0), 6.0)
    big = (big - big.mean()) * (60 / big.std()) + 128
    original = [Thumbnail(np.ascontiguousarray(big[:, i:i + 64]), True) for i in range(100)]
    window = {j: original[j] for j in alignment_window([0, 50, 99], 100)}
    assert time_mismatch(window, {k: original[k] for k in (0, 50, 99)}) is None  # aligned
    far = time_mismatch(window, {k: original[k + 22] for k in (0, 50)})  # 22 frames late: nearest offset 20
    assert far is not None and "its frame 0 shows about the original's frame 20 (about 20 frame(s) later" in far
    near = time_mismatch(window, {k: original[k + 3] for k in (0, 50)})
    assert near is not None and "its frame 0 shows the original's frame 3 (3 frame(s) later" in near


def test_a_mask_video_turned_by_metadata_of_its_own_is_not_compared(tree, tmp_path):
    root = variant(tree, tmp_path)
    frames = frames_of(tree / MASK)
    with av.open(str(root / MASK), "w") as c:  # stored upright, displayed upside down
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"qp": "0"}
        s.set_display_rotation(180)
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode(None))
    entry = entry_of(root, tmp_path / "out")
    # c2a93bc (G7): status ok, each official mask the mirrored region (coverage 0.15-0.18 against 0.28-0.31);
    # session 13 (H1): the display matrices of the mask video and its fake are compared
    assert entry["status"] == "skipped", entry
    assert entry["reason"].startswith("mask video is displayed turned 180 degrees, its fake as stored"), entry
    assert entry["mask_display_mismatch"] == {"mask": "turned 180 degrees", "fake": "as stored"}, entry


def _boxed(frame: np.ndarray, *, pillar: bool = False) -> np.ndarray:
    """``frame`` scaled into black bars at its own size: 320x180 between bars (letterbox), or 240x240 (pillarbox)."""
    import cv2

    h, w = frame.shape[:2]
    out = np.zeros_like(frame)
    if pillar:
        out[:, (w - h) // 2:(w - h) // 2 + h] = cv2.resize(frame, (h, h), interpolation=cv2.INTER_AREA)
    else:
        inner = h * 3 // 4
        out[(h - inner) // 2:(h - inner) // 2 + inner] = cv2.resize(frame, (w, inner), interpolation=cv2.INTER_AREA)
    return out


@pytest.mark.parametrize("pillar, said", [(False, "fake is letterboxed (black bars at its top and bottom"),
                                          (True, "fake is pillarboxed (black bars at its left and right")])
def test_a_fake_padded_into_black_bars_is_skipped_not_compared(tree, tmp_path, pillar, said):
    root = variant(tree, tmp_path, fake=lambda frames: [_boxed(f, pillar=pillar) for f in frames])
    entry = entry_of(root, tmp_path / "out")
    # 55c7967: status ok (the letterboxed fake), comparison maps of different places
    assert entry["status"] == "skipped", entry
    assert entry["reason"].startswith(said), entry


def test_bars_mismatch_leaves_alike_bars_and_dark_scenes_alone():
    from ffmask.pair_checks import bars_mismatch

    rng = np.random.default_rng(0)
    frame = rng.integers(40, 220, (240, 320, 3), dtype=np.uint8)
    boxed = _boxed(frame)
    assert bars_mismatch(frame, boxed) is not None
    assert bars_mismatch(boxed, boxed) is None  # an original with the same bars
    assert bars_mismatch(boxed, frame) is None  # bars only on the original: not the fake's padding
    dark = frame.copy()
    dark[:30] = 10  # a dark ceiling in both
    assert bars_mismatch(dark, dark) is None
    top_only = frame.copy()
    top_only[:30] = 0  # one edge only: not padding
    assert bars_mismatch(frame, top_only) is None
