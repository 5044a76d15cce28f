"""dlib's video mode: detect on a copy where the face is ~100 px (scanning only the pyramid
levels near it), map boxes back.

Frames are real photographs (the Obama portrait of tests/data and skimage's
astronaut) enlarged to HD-like sizes and moved a little per frame, as a face
moves in a video; the reference is dlib at full resolution.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from ffmask.faces import get_detector, largest_face
from ffmask.faces.detect import DlibDetector

DATA = Path(__file__).parent / "data"


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def moving_frames(photo: np.ndarray, scale: float, n: int = 6) -> list[np.ndarray]:
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    h, w = big.shape[:2]
    frames = []
    for i in range(n):
        shift = np.float32([[1, 0, 7 * i], [0, 1, -4 * i]])  # a face drifting across the frame
        frames.append(cv2.warpAffine(big, shift, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return frames


@pytest.fixture(scope="module")
def videos():
    obama = cv2.cvtColor(cv2.imread(str(DATA / "faces_obama.jpg")), cv2.COLOR_BGR2RGB)
    return {"obama x2.5": moving_frames(obama, 2.5), "astronaut x1.6": moving_frames(data.astronaut(), 1.6)}


def test_video_mode_boxes_match_full_resolution(videos, monkeypatch):
    full = DlibDetector(landmarks=False, max_side=None)
    fast = DlibDetector(landmarks=False, max_side=None, face_px=100)
    shrunk_sizes = []
    original = DlibDetector._detect_pyramid

    def spy(self, frame, levels):
        shrunk_sizes.append(levels)
        return original(self, frame, levels)

    monkeypatch.setattr(DlibDetector, "_detect_pyramid", spy)
    ious = []
    for name, frames in videos.items():
        ref = full.detect_batch(frames)
        shrunk_sizes.clear()
        got = fast.detect_batch(frames)
        # after the first frame, detection ran on a copy shrunk by at least two pyramid levels
        assert len(shrunk_sizes) == len(frames) - 1 and min(shrunk_sizes) >= 2, (name, shrunk_sizes)
        for ref_faces, got_faces in zip(ref, got):
            assert ref_faces and len(got_faces) == len(ref_faces), name  # nothing lost, nothing added
            # every full-resolution face has its video-mode box
            ious += [max(iou(r.box, g.box) for g in got_faces) for r in ref_faces]
    assert np.mean(ious) >= 0.95 and min(ious) > 0.8, ious


def test_frame_without_face_at_the_small_scale_falls_back(videos):
    frames = videos["obama x2.5"][:2]
    blank = np.zeros_like(frames[0])
    fast = DlibDetector(landmarks=False, face_px=100)
    found = fast.detect_batch([frames[0], blank, frames[1]])
    assert len(found[0]) >= 1 and found[1] == [] and len(found[2]) >= 1


def test_video_option_comes_from_get_detector():
    assert get_detector("dlib", landmarks=False, video=True).face_px == 100
    assert get_detector("dlib", landmarks=False).face_px is None
    assert get_detector("dlib", landmarks=False, video=True, face_px=120).face_px == 120
    with pytest.raises(ValueError, match="face_px"):
        DlibDetector(face_px=10)


def test_shrunk_copies_scan_only_the_levels_near_the_face():
    from ffmask.faces import detect

    full = detect._dlib_frontal().__getstate__()[0]
    near = detect._dlib_frontal_levels(detect.VIDEO_PYRAMID_LEVELS).__getstate__()[0]
    # the same model; only the scanner's max_pyramid_levels (1000 -> 4) differs
    assert full[:16] == near[:16] and full[19:] == near[18:]
    assert full[16:19] == bytes([2, 0xE8, 0x03]) and near[16:18] == bytes([1, detect.VIDEO_PYRAMID_LEVELS])


def test_fewer_pyramid_levels_find_the_same_faces_near_face_px(videos):
    """On copies where the face is ~face_px wide, 4 levels give dlib's full answer, faster."""
    import time

    from ffmask.faces import detect
    from ffmask.faces.detect import _pyramid_down, _pyramid_levels

    full, near = detect._dlib_frontal(), detect._dlib_frontal_levels(detect.VIDEO_PYRAMID_LEVELS)
    down = _pyramid_down()
    seconds = {"full": 0.0, "near": 0.0}
    for frames in videos.values():
        box = largest_face(DlibDetector(landmarks=False, max_side=None).detect(frames[0])).box
        levels = _pyramid_levels(float(box[2] - box[0]), 100, frames[0].shape, None)
        for frame in frames:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            for _ in range(levels):
                gray = down(gray)
            t0 = time.process_time()
            want = full.run(gray, 0, 0.0)
            t1 = time.process_time()
            got = near.run(gray, 0, 0.0)
            seconds["full"] += t1 - t0
            seconds["near"] += time.process_time() - t1
            assert len(want[0]) >= 1
            assert [(r.left(), r.top(), r.right(), r.bottom()) for r in got[0]] == \
                   [(r.left(), r.top(), r.right(), r.bottom()) for r in want[0]]
            assert list(got[1]) == list(want[1])
    assert seconds["near"] < 0.95 * seconds["full"], seconds  # measured: ~0.75


def test_face_grown_past_the_scanned_levels_is_found_by_the_full_search(videos):
    """A face 2.5x wider than in the frame before is beyond the 4 levels: the whole frame is searched."""
    small = videos["obama x2.5"][0]
    h, w = small.shape[:2]
    big = cv2.resize(small, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    # keep the face in view: cut the enlarged frame around its face, at the small frame's size
    face = largest_face(DlibDetector(landmarks=False, max_side=None).detect(big)).box
    cx, cy = int((face[0] + face[2]) / 2), int((face[1] + face[3]) / 2)
    x0 = min(max(0, cx - w // 2), big.shape[1] - w)
    y0 = min(max(0, cy - h // 2), big.shape[0] - h)
    grown = np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w])
    fast = DlibDetector(landmarks=False, max_side=None, face_px=100)
    ref = DlibDetector(landmarks=False, max_side=None)
    calls = []
    original = DlibDetector.detect

    def spy(self, frame):
        calls.append(frame.shape)
        return original(self, frame)

    found = fast.detect_batch([small, grown])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DlibDetector, "detect", spy)
        again = fast.detect_batch([small, grown])
    assert len(calls) == 2  # the first frame, and the grown one after the shrunk copy showed nothing
    want = largest_face(ref.detect(grown)).box
    got = largest_face(found[1]).box
    assert iou(got, want) > 0.95 and np.array_equal(largest_face(again[1]).box, got)


def test_unknown_serialisation_keeps_every_level(monkeypatch):
    from ffmask.faces import detect

    class Other:
        def __getstate__(self):
            return (b"\x01\x03 some other layout",)

    other = Other()
    monkeypatch.setattr(detect, "_dlib_frontal", lambda: other)
    detect._dlib_frontal_levels.cache_clear()
    try:
        assert detect._dlib_frontal_levels(4) is other  # the full detector, not a guess at the bytes
    finally:
        detect._dlib_frontal_levels.cache_clear()
