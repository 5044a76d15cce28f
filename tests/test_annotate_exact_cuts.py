"""Session 13 (speed11): cuts in a worker's time per face that change no record.

- ``pair_checks.picture_differences`` compares one thumbnail with many at
  once for the time-alignment check; it must give exactly the floats of
  ``picture_difference``'s definition pair by pair (the check's decisions and the
  numbers in its messages depend on them).
- A mask video is opened once for its frame count and its frames
  (``VideoReader.gray_planes``); it was opened twice (a probe, then the
  frames).
- The "gradient" image codec computes its planes in fewer passes; the
  stored bytes must be its definition's, ``gradient_encode(_rct(planes))``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ffmask import video
from ffmask.annotate import annotate
from ffmask.pair_checks import (AGREEING_SHARE, FLAT_STD, MIN_TEXTURED, alignment_checkpoints, alignment_window,
                                picture_difference, picture_differences, thumbnail)
from ffmask.pipeline import JobSpec

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "ff++"
ORIGINAL = SAMPLE / "original_sequences" / "youtube" / "c23" / "videos" / "000.mp4"
FAKES = [SAMPLE / "manipulated_sequences" / m / "c23" / "videos" / "000_001.mp4"
         for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")]
MASK = SAMPLE / "manipulated_sequences" / "Deepfakes" / "masks" / "videos" / "000_001.mp4"

pytestmark = pytest.mark.skipif(not ORIGINAL.is_file(), reason="sample_data is not in this checkout")


def _window_thumbnails(path: Path) -> dict:
    """{index: Thumbnail} of the frames time_mismatch compares a fake's with, as annotate reads them."""
    n = video.probe(path).n_frames
    window = alignment_window(alignment_checkpoints(video.sample_indices(n, frames=20)), n)
    return {i: thumbnail(f) for i, f in video.read_frames(path, sorted(window)).items()}


def _flattened(grey: np.ndarray, share: float) -> np.ndarray:
    """``grey`` with its first ``share`` of rows made one flat level (a plain wall)."""
    out = grey.copy()
    out[: int(round(share * out.shape[0]))] = 117.0
    return out


def _picture_difference_by_definition(a: np.ndarray, b: np.ndarray) -> float:
    """picture_difference's definition for one pair, unbatched: the AGREEING_SHARE quantile of the mean absolute
    difference over each 8x8 patch textured in either thumbnail (all patches when fewer than MIN_TEXTURED are)."""
    def patches(x):
        return x.reshape(x.shape[0] // 8, 8, x.shape[1] // 8, 8).swapaxes(1, 2).reshape(-1, 64)

    pa, pb = patches(np.asarray(a, np.float32)), patches(np.asarray(b, np.float32))
    diff = np.abs(pa - pb).mean(axis=1)
    textured = (pa.std(axis=1) >= FLAT_STD) | (pb.std(axis=1) >= FLAT_STD)
    if textured.sum() >= MIN_TEXTURED:
        diff = diff[textured]
    return float(np.quantile(diff, AGREEING_SHARE))


def test_picture_differences_are_picture_difference_pair_by_pair_on_decoded_frames():
    originals = _window_thumbnails(ORIGINAL)
    assert len(originals) >= 20
    greys = [t.grey for _, t in sorted(originals.items())]
    # scenes with fewer textured patches, down to fewer than MIN_TEXTURED (the whole frame is compared)
    greys += [_flattened(g, share) for g in greys[:4] for share in (0.5, 0.9, 1.0)]
    checked = 0
    for fake in FAKES:
        for index, frame in video.read_frames(fake, sorted(alignment_checkpoints(originals))).items():
            for f in (thumbnail(frame).grey, _flattened(thumbnail(frame).grey, 0.95)):
                got = picture_differences(greys, f)
                want = [_picture_difference_by_definition(g, f) for g in greys]
                assert got == want  # the same floats, not close ones
                assert [picture_difference(g, f) for g in greys[:3]] == want[:3]  # one pair at a time, too
                assert all(type(v) is float for v in got)
                checked += len(want)
    assert checked > 500
    # the thumbnails keep many different numbers of textured patches (one quantile per number), some
    # fewer than MIN_TEXTURED (the whole frame is compared)
    patches = lambda g: g.reshape(8, 8, 8, 8).swapaxes(1, 2).reshape(64, 64)  # noqa: E731
    counts = {int((patches(g).std(axis=1) >= FLAT_STD).sum()) for g in greys}
    assert len(counts) > 5 and min(counts) < MIN_TEXTURED


def test_picture_differences_refuses_what_picture_difference_refuses():
    grey = np.zeros((64, 64), np.float32)
    assert picture_differences([], grey) == []
    with pytest.raises(ValueError):
        picture_differences([np.zeros((32, 32), np.float32)], grey)
    with pytest.raises(ValueError):
        picture_differences([grey], np.zeros((60, 60), np.float32))


def test_reader_gray_planes_are_stream_gray_planes_and_count_like_probe():
    indices = video.sample_indices(video.probe(MASK).n_frames, frames=20)
    want = list(video.stream_gray_planes(MASK, indices))
    with video.VideoReader(MASK) as reader:
        assert reader.n_frames == video.probe(MASK).n_frames
        got = list(reader.gray_planes(indices))
    assert [i for i, _, _ in got] == [i for i, _, _ in want] and len(got) == len(indices)
    for (_, plane, table), (_, plane0, table0) in zip(got, want):
        assert np.array_equal(plane, plane0)
        assert (table is None) == (table0 is None) and (table is None or np.array_equal(table, table0))


def test_annotate_opens_each_mask_video_once(small_ff_root, tmp_path, monkeypatch):
    opened = Counter()
    real_open = video._open_input

    def counting(path):
        opened[Path(path).name if "masks" not in Path(path).parts else "mask:" + Path(path).name] += 1
        return real_open(path)

    monkeypatch.setattr(video, "_open_input", counting)
    report = annotate("ff++", small_ff_root, tmp_path / "out", JobSpec(methods=("mscc", "official"), frames=4, size=64),
                      jobs=1)
    assert report.videos["ok"] == 4 and report.faces > 0
    masks = {k: v for k, v in opened.items() if k.startswith("mask:")}
    assert len(masks) == 2 and set(masks.values()) == {1}, opened  # 2 before: a probe, then the frames


def test_gradient_images_are_the_codec_definition_on_decoded_crops():
    from ffmask.faces import crop_resize
    from ffmask.shards.codec import _rct, decode_image, encode_image, gradient_encode

    frames = video.read_frames(FAKES[0], [0, 7, 13])
    assert len(frames) == 3
    checked = 0
    for frame in frames.values():
        h, w = frame.shape[:2]
        for image in (crop_resize(frame, (w // 4, h // 6, w // 4 + 200, h // 6 + 200), 224),  # a face crop
                      frame[10:74, 20:84],  # a view into the frame, not contiguous
                      np.asfortranarray(frame[:9, :9])):
            planes = np.ascontiguousarray(image.transpose(2, 0, 1))
            want = gradient_encode(_rct(planes, axis=0), rows=1)  # the codec's definition
            got = encode_image(image, "gradient")
            assert got.dtype == np.uint8 and got.shape == want.shape and np.array_equal(got, want)
            assert np.array_equal(decode_image(got, "gradient"), image)
            checked += 1
    assert checked == 9
