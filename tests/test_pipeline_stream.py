"""The annotate pipeline's decoding: streamed crops, fakes read one ahead, grey masks.

Every test runs on a real synth FF++ tree of PyAV-made H.264 videos (mask
videos included). The references decode whole frames with ``read_frames``
(RGB) and crop them with the record's own box, the way the pipeline did
before it cropped frames as they decode.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ffmask import pipeline
from ffmask.datasets import get_dataset
from ffmask.faces import crop_resize
from ffmask.pipeline import JobSpec, annotate_groups, plan_groups
from ffmask.synth.tree import build_synth
from ffmask.targets import mscc_mask
from ffmask.targets.official import official_mask
from ffmask.video import read_frames

SPEC = JobSpec(methods=("mscc", "official"), frames=4, size=64)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "ff++"
    build_synth(root, seed=7, identities=2, frames=8, compressions=("c23",),
                manipulations=("Deepfakes", "Face2Face", "FaceSwap"))
    return root


def _groups(root):
    return plan_groups(get_dataset("ff++", root).items, paired=True)


def _run(groups, prefetch: bool, monkeypatch) -> list:
    monkeypatch.setattr(pipeline, "PREFETCH", prefetch)
    return list(annotate_groups(groups, SPEC))


def _by_key(results) -> dict:
    return {(r.video_id, r.frame_index): r for res in results for r in res.records}


def test_records_equal_crops_of_whole_decoded_frames(root, monkeypatch):
    """Streamed fake and mask crops, and the original's crops made before its frames
    are dropped, are the crops of the whole frames at the records' boxes."""
    groups = _groups(root)
    items = {item.video_id: item for g in groups for item in [g.original, *g.items]}
    records = _by_key(_run(groups, True, monkeypatch))
    fakes = [r for r in records.values() if r.label == 1]
    assert len(fakes) >= 12 and any(r.label == 0 for r in records.values())
    for (video_id, index), rec in records.items():
        item = items[video_id]
        frame = read_frames(item.path, [index])[index]
        np.testing.assert_array_equal(rec.image, crop_resize(frame, rec.box, SPEC.size))
        if rec.label == 0:
            assert not rec.maps["official"].any()
            continue
        real = records[(rec.original_id, index)].image
        np.testing.assert_array_equal(rec.maps["mscc"], mscc_mask(real, rec.image))
        mask_rgb = read_frames(item.mask_path, [index])[index]  # (H, W, 3): official's RGB path
        mask_crop = crop_resize(mask_rgb, rec.box, SPEC.size, interpolation="nearest")
        np.testing.assert_array_equal(rec.maps["official"], official_mask(mask_crop))
    assert any(r.maps["official"].any() for r in fakes)


def test_reading_fakes_ahead_gives_the_serial_records(root, monkeypatch):
    groups = _groups(root)
    ahead, serial = _run(groups, True, monkeypatch), _run(groups, False, monkeypatch)
    assert [res.entries for res in ahead] == [res.entries for res in serial]
    a, b = _by_key(ahead), _by_key(serial)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        np.testing.assert_array_equal(a[key].image, b[key].image)
        np.testing.assert_array_equal(a[key].box, b[key].box)
        for name in SPEC.methods:
            np.testing.assert_array_equal(a[key].maps[name], b[key].maps[name])


@pytest.mark.parametrize("damaged", ["video", "mask"])
def test_a_corrupt_fake_read_ahead_is_skipped_as_in_the_serial_path(root, tmp_path, monkeypatch, damaged):
    """The second fake of a group (read in the background while the first is
    annotated) is corrupt: it is skipped with the serial path's reason, and the
    fakes after it still get their records."""
    copy = tmp_path / "ff++"
    shutil.copytree(root, copy)
    group = _groups(copy)[0]
    assert len(group.items) == 3
    victim = group.items[1]
    path = victim.path if damaged == "video" else victim.mask_path
    path.write_bytes(b"\x00not an mp4\x00" * 64)
    results = {}
    for prefetch in (True, False):
        results[prefetch] = _run([group], prefetch, monkeypatch)[0]
    ahead, serial = results[True], results[False]
    assert ahead.entries == serial.entries
    status = {e["video_id"]: e for e in ahead.entries}
    assert status[victim.video_id]["status"] == "skipped"
    assert status[victim.video_id]["reason"].startswith("unreadable video:")
    assert str(path) in status[victim.video_id]["reason"]
    for other in (group.items[0], group.items[2]):
        assert status[other.video_id]["status"] == "ok"
    assert {r.video_id for r in ahead.records} == {group.original.video_id, group.items[0].video_id,
                                                    group.items[2].video_id}
    assert len(ahead.records) == len(serial.records)
    for a, b in zip(ahead.records, serial.records):
        np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.parametrize("prefetch", [True, False])
def test_ahead_hands_each_exception_to_its_own_item(prefetch):
    calls = []

    def fn(x):
        calls.append(x)
        if x == 2:
            raise ValueError("two is bad")
        if x == 4:
            raise KeyError(x)
        return x * 10

    got = []
    for outcome in pipeline._ahead(fn, [1, 2, 3, 4, 5], prefetch):
        try:
            got.append(outcome.get())
        except (ValueError, KeyError) as exc:
            got.append(type(exc).__name__)
    assert got == [10, "ValueError", 30, "KeyError", 50]
    assert calls == [1, 2, 3, 4, 5]


def test_ahead_runs_at_most_one_call_ahead():
    import threading

    started, one_started, release = [], threading.Event(), threading.Event()

    def fn(x):
        started.append(x)
        if x == 1:
            one_started.set()
            release.wait(30)
        return x

    outcomes = pipeline._ahead(fn, [0, 1, 2, 3], True)
    assert next(outcomes).get() == 0
    assert one_started.wait(30)  # item 1 is being read ahead, and blocks
    assert started == [0, 1]  # item 2 has not started
    release.set()
    assert [o.get() for o in outcomes] == [1, 2, 3]
