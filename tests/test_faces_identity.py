"""K5: the face track's identity check (dlib's face recognition ResNet), on real faces of sample_data.

Where it runs (``VideoItem.may_cut``, ``JobSpec.person_check``), what it costs (descriptors counted by
wrapping :func:`ffmask.faces.identity.face_descriptor`, never timed) and what it records.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ffmask import video
from ffmask.annotate import annotate
from ffmask.datasets import get_dataset
from ffmask.errors import OptionError
from ffmask.faces import get_detector, identity
from ffmask.pipeline import Group, JobSpec, annotate_group
from tests.test_faults_rel13_video import _cut_video

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "sample_data/ff++/original_sequences/youtube/c23/videos"


def _face(path: Path, index: int):
    (frame,) = (f for _, f in video.iter_frames(path, [index]))
    (face,) = get_detector("dlib", landmarks=True).detect(frame)
    return frame, face


def test_one_person_is_near_and_two_people_are_far():
    frames = {(name, i): _face(VIDEOS / f"{name}.mp4", i) for name, i in (("000", 0), ("000", 47), ("002", 0))}
    desc = {key: identity.face_descriptor(frame, face.box, face.landmarks) for key, (frame, face) in frames.items()}
    assert all(d.shape == (128,) and d.dtype == np.float32 for d in desc.values())
    assert identity.person_distance(desc["000", 0], desc["000", 47]) < identity.SAME_PERSON  # measured 0.10
    assert identity.person_distance(desc["000", 0], desc["002", 0]) > identity.SAME_PERSON  # measured 0.87
    # without the detector's landmarks dlib's predictor finds the same shape in the box
    frame, face = frames["000", 0]
    assert np.allclose(identity.face_descriptor(frame, face.box), desc["000", 0], atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        identity.face_descriptor(frame.astype(np.float32), face.box)


def test_bisection_finds_each_change_with_few_descriptors():
    people = np.eye(3, 128, dtype=np.float32)  # three people 1.41 apart
    track = [0] * 7 + [1] * 6 + [2] * 7  # changes at faces 7 and 13 of 20
    asked = []

    def descriptor(i):
        asked.append(i)
        return people[track[i]]

    assert identity.person_changes(len(track), descriptor) == [7, 13]
    assert len(asked) == len(set(asked)) <= 2 + 2 * 5  # each face once, O(log n) per change, not 20
    asked.clear()
    assert identity.person_changes(20, lambda i: asked.append(i) or people[0]) == []
    assert sorted(asked) == [0, 5, 10, 14, 19]  # one person: the five probes only
    assert identity.person_changes(1, lambda i: people[0]) == []
    asked.clear()
    assert identity.person_changes(3, lambda i: asked.append(i) or people[0]) == [] and sorted(asked) == [0, 1, 2]
    with pytest.raises(ValueError, match="probes"):
        identity.person_changes(5, lambda i: people[0], probes=1)


def test_a_track_that_leaves_a_person_and_comes_back_is_found():
    # the interview's cut-away: A, then B, then A again; the track's ends are one person
    people = np.eye(2, 128, dtype=np.float32)
    track = [0] * 8 + [1] * 4 + [0] * 8
    asked = []

    def descriptor(i):
        asked.append(i)
        return people[track[i]]

    assert identity.person_changes(len(track), descriptor) == [8, 12]
    assert len(asked) == len(set(asked)) < len(track)
    # a visit shorter than the probes' spacing, between two probes: missed (as documented); with more probes, found
    short = [0] * 6 + [1] * 2 + [0] * 12  # faces 6-7; the probes are 0, 5, 10, 14, 19
    assert identity.person_changes(len(short), lambda i: people[short[i]]) == []
    assert identity.person_changes(len(short), lambda i: people[short[i]], probes=10) == [6, 8]


class _Counted:
    """``identity.face_descriptor`` wrapped: the faces (frame shapes) it was called for."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = identity.face_descriptor

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(identity, "face_descriptor", counted)


def _folder_item(tmp_path, name):
    (item,) = (i for i in get_dataset("folder", tmp_path / "clips").items if i.video_id == name)
    return item


def test_a_video_of_one_person_costs_five_descriptors_and_a_cut_one_more(tmp_path, monkeypatch):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "one.mp4").write_bytes((VIDEOS / "000.mp4").read_bytes())
    _cut_video(tmp_path / "clips" / "cut.mp4")
    spec = JobSpec(methods=("noise",), frames=6, size=32)
    counted = _Counted(monkeypatch)
    one = _folder_item(tmp_path, "one")
    assert one.may_cut  # a folder's videos may be edited
    (entry,) = annotate_group(Group(None, [one]), spec).entries
    assert entry["status"] == "ok" and entry["faces"] == 6 and "person_changes" not in entry
    assert counted.calls == 5  # the five probes (faces 0, 1, 2, 4, 5 of 6)
    counted.calls = 0
    (entry,) = annotate_group(Group(None, [_folder_item(tmp_path, "cut")]), spec).entries
    assert entry["status"] == "ok" and entry["person_changes"] == [28]  # sampled 0 9 19 28 38 47, cut at 24
    assert counted.calls == 6  # the probes 0, 1, 2, 4, 5, then face 3 between the two that differ
    # --no-person-check: nothing computed, nothing recorded
    counted.calls = 0
    off = JobSpec(methods=("noise",), frames=6, size=32, person_check=False)
    (entry,) = annotate_group(Group(None, [_folder_item(tmp_path, "cut")]), off).entries
    assert "person_changes" not in entry and counted.calls == 0


def test_ffpp_never_computes_a_descriptor(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("FF++ clips are single shots: no identity check")

    monkeypatch.setattr(identity, "face_descriptor", refuse)
    monkeypatch.setattr(identity, "_model", refuse)  # nor is the model loaded (prepare_worker included)
    scan = get_dataset("ff++", ROOT / "sample_data/ff++", compression="c23")
    assert scan.items and not any(item.may_cut for item in scan.items)
    report = annotate("ff++", ROOT / "sample_data/ff++", tmp_path / "out",
                      JobSpec(methods=("mscc", "official"), frames=2, size=32), dataset_options={"compression": "c23"},
                      jobs=1, limit=10)
    assert report.videos["ok"] == 10 and report.person_changes == []
    assert "person_changes" not in (tmp_path / "out" / "manifest.jsonl").read_text()


def test_person_check_is_validated_and_an_older_run_resumes(tmp_path):
    with pytest.raises(OptionError, match="person_check"):
        JobSpec(methods=("noise",), person_check="yes")
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "one.mp4").write_bytes((VIDEOS / "000.mp4").read_bytes())
    spec = JobSpec(methods=("noise",), frames=2, size=32)
    annotate("folder", tmp_path / "clips", tmp_path / "out", spec, jobs=1)
    # a run.json written before --person-check existed: its resume is the same run, not "different options"
    run = tmp_path / "out" / "run.json"
    doc = json.loads(run.read_text())
    del doc["job"]["person_check"]
    run.write_text(json.dumps(doc))
    report = annotate("folder", tmp_path / "clips", tmp_path / "out", spec, jobs=1)
    assert report.videos_done_before == 1 and report.videos_todo == 0


def test_which_videos_may_cut_is_the_scanners_word(tmp_path):
    # Celeb-DF: the YouTube-real clips were downloaded as they are; a Celeb-real clip is one subject's shot
    # (its fakes swap that face through it)
    for folder, name in (("Celeb-real", "id0_0000"), ("YouTube-real", "00000"), ("Celeb-synthesis", "id0_id1_0000")):
        (tmp_path / "cdf" / folder).mkdir(parents=True)
        (tmp_path / "cdf" / folder / f"{name}.mp4").write_bytes((VIDEOS / "000.mp4").read_bytes())
    scan = get_dataset("celeb-df", tmp_path / "cdf")
    assert {i.video_id: i.may_cut for i in scan.items} == {
        "Celeb-real/id0_0000": False, "YouTube-real/00000": True, "Celeb-synthesis/id0_id1_0000": False}


def test_person_check_on_forces_it_on_a_pair_and_its_fakes(tmp_path, monkeypatch):
    counted = _Counted(monkeypatch)
    scan = get_dataset("ff++", ROOT / "sample_data/ff++", compression="c23", manipulations=["Deepfakes"])
    fake = next(i for i in scan.items if i.original is not None)
    spec = JobSpec(methods=("mscc",), frames=4, size=32, person_check=True)
    entries = annotate_group(Group(fake.original, [fake], write_original=True), spec).entries
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert counted.calls == 4  # on the original's track (4 faces, all probes), whose boxes the fake is cropped with
    assert not any("person_changes" in e for e in entries)


def test_an_interview_cut_away_and_back_is_recorded(tmp_path):
    # sample 000, a cut to sample 002 framed alike, and back to 000: both ends of the track are 000, so comparing
    # the ends alone (before session 18) recorded one person, without a word
    from tests._video_files import write_h264

    frames = ([f for _, f in video.iter_frames(VIDEOS / "000.mp4", range(16))]
              + [f for _, f in video.iter_frames(VIDEOS / "002.mp4", range(16, 32))]
              + [f for _, f in video.iter_frames(VIDEOS / "000.mp4", range(32, 48))])
    (tmp_path / "clips").mkdir()
    write_h264(tmp_path / "clips" / "away.mp4", frames)
    spec = JobSpec(methods=("noise",), frames=6, size=32)
    (entry,) = annotate_group(Group(None, [_folder_item(tmp_path, "away")]), spec).entries
    sampled = [int(i) for i in video.sample_indices(48, frames=6)]  # 0, 9, 19, 28, 38, 47
    assert entry["status"] == "ok" and entry["faces"] == 6
    assert entry["person_changes"] == [19, 38]  # 002 first seen at 19 (cut at 16), 000 again at 38 (cut at 32)
    assert [s for s in sampled if 16 <= s < 32] == [19, 28]
