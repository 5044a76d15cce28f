"""Frame sequences (folders / tar archives of images), the "none" detector and face tracking."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import cv2
import numpy as np
import pytest

from ffmask import video
from ffmask.errors import VideoError
from ffmask.faces import Face, FaceDetector, crop_box, get_detector
from ffmask.faces.track import box_iou, track_faces
from ffmask.sequences import FrameSequence, archive_sequences, folder_sequence, frame_order


def frames(n: int, h: int = 24, w: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def png(frame: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_frame_order_is_numeric():
    assert frame_order(["10.png", "2.png", "1.png", "frame_11.jpg", "frame_9.jpg"]) == [
        "1.png", "2.png", "10.png", "frame_9.jpg", "frame_11.jpg"]


@pytest.mark.parametrize("suffix, mode", [(".tar.gz", "w:gz"), (".tar", "w")])
def test_archive_sequences_read_back_exactly(tmp_path, suffix, mode):
    a, b = frames(11), frames(3, 16, 16)
    path = tmp_path / f"1{suffix}"
    with tarfile.open(path, mode) as tar:
        for i in (5, 10, 0, 1, 2, 3, 4, 6, 7, 8, 9):  # stored out of order
            add(tar, f"1/seq_a/{i}.png", png(a[i]))
        for i, f in enumerate(b):
            add(tar, f"1/seq_b/{i}.png", png(f))
        add(tar, "1/seq_b/notes.txt", b"not a frame")
    seqs = archive_sequences(path)
    assert list(seqs) == ["1/seq_a", "1/seq_b"]
    seq = pickle.loads(pickle.dumps(seqs["1/seq_a"]))  # it travels to worker processes
    assert video.probe(seq) == video.VideoInfo(n_frames=11, fps=0.0, width=32, height=24)
    got = video.read_frames(seq, [10, 2, 0, 99])
    assert list(got) == [0, 2, 10]  # past the end: absent
    for i in got:
        np.testing.assert_array_equal(got[i], a[i])  # PNG is lossless: bit-exact
    np.testing.assert_array_equal(video.read_frames(seqs["1/seq_b"], [2])[2], b[2])


def test_damaged_sequences_keep_what_decodes(tmp_path):
    a = frames(4)
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w") as tar:
        add(tar, "s/0.png", b"garbage, not a png")
        for i in (1, 2, 3):
            add(tar, f"s/{i}.png", png(a[i]))
    seq = archive_sequences(path)["s"]
    assert video.probe(seq).n_frames == 4  # probing skips the bad first frame
    assert list(video.read_frames(seq, [0, 1, 3])) == [1, 3]
    with pytest.raises(VideoError, match="no image could be decoded"):
        video.read_frames(seq, [0])
    (tmp_path / "bad.tar.gz").write_bytes(gzip.compress(b"\0" * 10) + b"junk")
    with pytest.raises(VideoError, match="cannot be read as a tar archive"):
        archive_sequences(tmp_path / "bad.tar.gz")
    path.unlink()
    with pytest.raises(VideoError, match="no such archive"):
        video.read_frames(seq, [1])


def test_folder_sequence(tmp_path):
    a = frames(3)
    for i, f in enumerate(a):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / ".hidden.png").write_bytes(b"x")
    seq = folder_sequence(tmp_path)
    assert seq.frames == ("img0.png", "img1.png", "img2.png") and str(seq).endswith("/")
    np.testing.assert_array_equal(video.read_frames(seq, [1])[1], a[1])
    (tmp_path / "empty").mkdir()
    assert folder_sequence(tmp_path / "empty") is None
    with pytest.raises(VideoError, match="no such folder"):
        video.read_frames(FrameSequence(tmp_path / "gone", ("0.png",)), [0])


def test_none_detector_is_the_whole_frame():
    det = get_detector("none")
    assert isinstance(det, FaceDetector) and det.name == "none" and get_detector("none") is det
    frame = np.zeros((96, 80, 3), np.uint8)
    (face,) = det.detect(frame)
    assert face.box.tolist() == [0, 0, 80, 96] and face.landmarks is None
    assert crop_box(face.box, frame.shape, 1.3).tolist() == [0, 0, 80, 96]  # clamped: the whole frame
    assert det.detect_batch([frame, frame[:10]])[1][0].box.tolist() == [0, 0, 80, 10]
    with pytest.raises(ValueError, match="unknown option"):
        get_detector("none", upsample=1)


def face(x0, y0, x1, y1) -> Face:
    return Face(np.array([x0, y0, x1, y1], np.float32), 1.0)


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_track_follows_the_first_largest_face():
    left = [face(10 + i, 10, 60 + i, 60) for i in range(4)]      # 50 px, drifting right
    right = [face(200, 10, 240 + 20 * i, 70 + 20 * i) for i in range(4)]  # grows past 50 px
    track = track_faces([[left[0], right[0]], [right[1], left[1]], [right[2]], [left[3], right[3]]])
    assert track.faces == (left[0], left[1], None, left[3])  # frame 2: only the other person
    assert track.faces_seen == 2 and track.lost == 1
    # one face per frame, no jumps: the per-frame largest face
    assert track_faces([[f] for f in left]).faces == tuple(left)
    empty = track_faces([[], [left[1]], []])
    assert empty.faces == (None, left[1], None) and empty.faces_seen == 1 and empty.lost == 0
    with pytest.raises(ValueError, match="min_iou"):
        track_faces([], min_iou=0)
