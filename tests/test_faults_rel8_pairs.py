"""The wrong-original check against true pairs whose forged face fills a large share of the frame.

Session 10 (rel8), item 1: ``pair_checks`` compared whole-frame mean grey
differences, so a true pair whose forged face covered 30 % or more of the
frame with a strong change (a swap between people of very different skin
tone, a relit face) was skipped as "paired with the wrong original": data
lost. These tests fail at 589437d.
"""

from __future__ import annotations

import io
import shutil
from importlib import resources

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from ffmask import video
from ffmask.annotate import annotate
from ffmask.pair_checks import NOT_ITS_PICTURE, WRONG_PICTURE, orientation_mismatch, picture_difference, thumbnail
from ffmask.pipeline import JobSpec
from ffmask.shards import Manifest
from ffmask.synth.portraits import portrait_info

W, H = 640, 480
ORIG = "original_sequences/youtube/c23/videos"
FAKES = "manipulated_sequences/Deepfakes/c23/videos"


def portrait(name: str) -> tuple[np.ndarray, tuple]:
    info = portrait_info(name)
    data = resources.files("ffmask.synth").joinpath("portraits", info["file"]).read_bytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), tuple(info["face_box_xyxy"])


def close_up(name: str, share: float, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A W x H frame of a bundled portrait where a feathered ellipse over the face covers ``share`` of it."""
    image, (x0, y0, x1, y1) = portrait(name)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0)
    ew, eh = 1.5 * (x1 - x0), 1.9 * (y1 - y0)
    scale = np.sqrt(share * W * H / (np.pi / 4 * ew * eh))
    big = cv2.copyMakeBorder(image, 1500, 1500, 1500, 1500, cv2.BORDER_REFLECT)
    cx, cy = cx + 1500 + shift * W / scale, cy + 1500
    m = np.float32([[scale, 0, W / 2 - scale * cx], [0, scale, H / 2 - scale * cy]])
    frame = cv2.warpAffine(big, m, (W, H), flags=cv2.INTER_LINEAR)
    mask = np.zeros((H, W), np.float32)
    cv2.ellipse(mask, (W // 2, H // 2), (int(ew * scale / 2), int(eh * scale / 2)), 0, 0, 360, 1.0, -1)
    return frame, cv2.GaussianBlur(mask, (0, 0), 0.05 * ew * scale)


def forged(frame: np.ndarray, mask: np.ndarray, new_face: np.ndarray) -> np.ndarray:
    out = frame * (1 - mask[..., None]) + new_face * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg(frame: np.ndarray, quality: int = 25) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


@pytest.mark.parametrize("share", [0.3, 0.5, 0.6])
def test_a_true_pair_whose_forged_face_fills_much_of_the_frame_is_not_called_a_wrong_pair(share):
    for name in ("obama", "biden", "astronaut"):
        frame, mask = close_up(name, share)
        other, _ = close_up("obama3" if name != "obama3" else "biden", share)
        darker = forged(frame, mask, frame * 0.4)  # a light face swapped for a much darker one
        lighter = forged(frame, mask, frame * 0.6 + 110)  # and the other way (or a relit face)
        swapped = forged(frame, mask, other.astype(np.float32))  # another person's face pasted in
        for fake in (darker, lighter, swapped):
            assert orientation_mismatch(jpeg(frame), jpeg(fake)) is None, (name, share)
        # the orientation check still sees the same true pair turned by metadata on one side
        assert "rotated 180 degrees" in orientation_mismatch(jpeg(frame), jpeg(darker[::-1, ::-1])).message
        assert "flipped upside down" in orientation_mismatch(jpeg(frame), jpeg(darker[::-1])).message


@pytest.mark.parametrize("share", [0.1, 0.5, 0.7])
def test_a_fake_of_another_original_framed_alike_is_still_called_a_wrong_pair(share):
    # other people and the same person in another photo (obama / obama2 / obama3), framed the
    # same way (the hardest wrong pairs: a face at the same place and size), forged or not
    for a, b in (("obama", "biden"), ("obama", "obama2"), ("obama3", "obama"), ("astronaut", "obama2")):
        fa, _ = close_up(a, share)
        fb, mb = close_up(b, share)
        for fake in (fb, forged(fb, mb, fb * 0.4)):
            reason = orientation_mismatch(jpeg(fa), jpeg(fake))
            assert reason is not None and reason.code == WRONG_PICTURE and NOT_ITS_PICTURE in reason.message, (a, b, share)
    # the same scene with the camera moved a fifth of the frame: not its picture either
    fa, _ = close_up("biden", 0.3)
    fb, _ = close_up("biden", 0.3, shift=0.2)
    assert "does not show its original's picture" in orientation_mismatch(jpeg(fa), jpeg(fb)).message


def test_picture_difference_reads_the_best_agreeing_fifth_of_the_textured_patches():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (64, 64)).astype(np.float32)
    b = a.copy()
    b[:, :40] = 255 - b[:, :40]  # 5 of 8 patch columns changed completely: 3/8 of the frame agrees
    assert picture_difference(a, b) == 0.0
    b[:, :56] = 255 - a[:, :56]  # only 1/8 agrees: the fifth quantile falls in the changed patches
    assert picture_difference(a, b) > 40
    assert picture_difference(a, a + 3) == pytest.approx(3.0)
    # a plain background agrees between any two pictures of it: flat patches say nothing
    c = np.full((64, 64), 120, np.float32)
    d = c.copy()
    c[:, :24] = rng.uniform(0, 255, (64, 24))  # someone on the left, in front of a plain wall
    d[:, :24] = rng.uniform(0, 255, (64, 24))  # someone else there
    assert picture_difference(c, d) > 40  # 5 of 8 patch columns are the same wall
    assert picture_difference(c, c + rng.normal(0, 1, c.shape).astype(np.float32)) < 2
    with pytest.raises(ValueError, match="multiple of 8"):
        picture_difference(a[:60, :60], b[:60, :60])
    with pytest.raises(ValueError, match="multiple of 8"):
        thumbnail(np.zeros((32, 32, 3), np.uint8), side=60)


def test_annotate_compares_a_true_pair_whose_forged_face_fills_half_the_frame(small_ff_root, tmp_path):
    # the fake 000_001 rewritten as its original with a darkened ellipse over half the frame:
    # a true pair (a close-up swap to a much darker face); 589437d skipped it as the wrong pair
    root = tmp_path / "ff++"
    shutil.copytree(small_ff_root, root)
    with av.open(str(root / ORIG / "000.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    h, w = frames[0].shape[:2]
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.40), int(h * 0.40)), 0, 0, 360, 1.0, -1)
    assert 0.45 < mask.mean() < 0.55
    mask = cv2.GaussianBlur(mask, (0, 0), 4)
    video.write_video(root / FAKES / "000_001.mp4", [forged(f, mask, f * 0.35) for f in frames])
    out = tmp_path / "out"
    annotate("ff++", root, out, JobSpec(methods=("mscc",), frames=2, size=64))
    entries = Manifest(out / "manifest.jsonl").load()
    assert entries["Deepfakes/000_001"]["status"] == "ok", entries["Deepfakes/000_001"]
    assert entries["Deepfakes/001_000"]["status"] == "ok"


def on_plain_background(name: str, x_center: float) -> np.ndarray:
    """The portrait's head and shoulders, 35 % of the frame wide, on a plain grey 640x480 frame."""
    image, (x0, y0, x1, y1) = portrait(name)
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 2.2 * (x1 - x0)
    a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2.4))
    crop = image[b:int(b + 1.1 * side), a:int(a + side)]
    w = int(0.35 * W)
    h = min(H, int(w * crop.shape[0] / crop.shape[1]))
    frame = np.full((H, W, 3), 110, np.uint8)
    x = int(x_center * W - w / 2)
    frame[H - h:, x:x + w] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def test_on_a_plain_background_a_flip_and_another_person_are_still_found():
    # a statistic that only asks "does some share of the frame agree" finds the plain wall
    # agreeing: flat patches are left out (a first version of session 10's check missed both)
    frame = on_plain_background("obama", 0.3)
    assert orientation_mismatch(jpeg(frame), jpeg(frame)) is None
    assert "flipped left-right" in orientation_mismatch(jpeg(frame), jpeg(np.ascontiguousarray(frame[:, ::-1]))).message
    other = on_plain_background("biden", 0.3)
    assert "does not show its original's picture" in orientation_mismatch(jpeg(frame), jpeg(other)).message
