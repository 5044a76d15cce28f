"""Session 14 (rel12), A1: two list entries naming one file with different labels or originals.

At 06d4739 the generic same-file guard (``registry._unique_ids``, by device and inode) kept
the FIRST item of a file and skipped the later ones, whatever they said: a symlink labelled
fake beside its real target kept "real" only because of the list's order, and the reverse
order kept "fake". Now every item of such a file is skipped with a problem naming what
differs; items that agree keep the first, as before.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ffmask.datasets.registry import get_dataset

from tests._dataset_trees import FAKE, REAL, REAL2, dfdcp_tree


def _scan(name, root, **options):
    scan = get_dataset(name, root, **options)
    return ({i.video_id: (i.label, i.split, i.original_id) for i in scan.items},
            {p.where: p.reason for p in scan.problems})


def _folder(root: Path, labels: str) -> Path:
    (root / "sub").mkdir(parents=True)
    shutil.copy(REAL, root / "a.mp4")
    shutil.copy(FAKE, root / "b.mp4")
    (root / "sub" / "copy.mp4").symlink_to(root / "a.mp4")
    os.link(root / "b.mp4", root / "sub" / "hard.mp4")
    (root / "labels.csv").write_text(labels)
    return root


def test_a_link_labelled_otherwise_than_its_target_skips_both(tmp_path):
    root = _folder(tmp_path / "clips", "a.mp4,0\nb.mp4,1\nsub/copy.mp4,1\nsub/hard.mp4,1\n")
    items, problems = _scan("folder", root)
    # 06d4739: {"a": (0, ...), "b": ...}: a kept as real because a.mp4 comes first in the scan,
    # sub/copy (the same file, labelled fake) skipped as "the same file as a"
    assert items == {"b": (1, "", "")}, items
    assert problems["a"].startswith("the same file as sub/copy (") and \
        "with another label (real here, fake there): which is right cannot be told; skipped" in problems["a"]
    assert "with another label (fake here, real there)" in problems["sub/copy"]
    assert problems["sub/hard"].startswith("the same file as b (") and problems["sub/hard"].endswith("); skipped")


def test_a_file_listed_twice_with_two_originals_is_skipped(tmp_path):
    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    shutil.copy(REAL, part / "aaa.mp4")
    shutil.copy(REAL2, part / "ddd.mp4")
    shutil.copy(FAKE, part / "bbb.mp4")
    os.link(part / "bbb.mp4", part / "ccc.mp4")  # a hand-merged part: one fake under two names
    meta = {"aaa.mp4": {"label": "REAL", "split": "train", "original": None},
            "ddd.mp4": {"label": "REAL", "split": "train", "original": None},
            "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
            "ccc.mp4": {"label": "FAKE", "split": "train", "original": "ddd.mp4"}}
    (part / "metadata.json").write_text(json.dumps(meta))
    items, problems = _scan("dfdc", tmp_path / "dfdc")
    # 06d4739: bbb kept, compared with aaa (ccc "the same file as ..."): which original made it?
    assert items == {"dfdc_train_part_0/aaa": (0, "train", ""), "dfdc_train_part_0/ddd": (0, "train", "")}, items
    assert ("with another original (dfdc_train_part_0/aaa here, dfdc_train_part_0/ddd there)"
            in problems["dfdc_train_part_0/bbb"]), problems


def test_one_file_in_train_and_in_test_is_skipped_whichever_split_is_asked(tmp_path):
    root = dfdcp_tree(tmp_path / "dfdcp")
    (root / "dataset.json").write_text(json.dumps({
        "original_videos/1/a.mp4": {"label": "real", "set": "train"},
        "original_videos/1/./a.mp4": {"label": "real", "set": "test"},
        "method_A/1/x/f.mp4": {"label": "fake", "set": "train"},
    }))
    for split in ("all", "train", "test"):
        items, problems = _scan("dfdcp", root, split=split)
        # DFDCP's own check reads the entries before the split filter (the generic guard sees only
        # the asked split's items): the train spelling alone must not pass as a train video
        assert "original_videos/1/a" not in items, (split, items)
        assert "with another entry" in problems["original_videos/1/./a.mp4"], (split, problems)


def test_thumbnails_beside_videos_are_not_a_video_of_their_own(tmp_path):
    root = tmp_path / "yt"
    root.mkdir()
    portraits = Path(__file__).resolve().parents[1] / "ffmask" / "synth" / "portraits"
    for name, face in (("Talk one [abc123]", "biden.jpg"), ("Talk two [def456]", "obama.jpg")):
        shutil.copy(REAL, root / f"{name}.mp4")
        shutil.copy(portraits / face, root / f"{name}.jpg")  # what yt-dlp --write-thumbnail leaves
    (root / "frames").mkdir()
    shutil.copy(portraits / "biden.jpg", root / "frames" / "0001.jpg")  # a folder of frames alone: a video
    items, problems = _scan("folder", root)
    # 06d4739: a third video "yt" made of the two thumbnails (two people), annotated as one video
    assert set(items) == {"Talk one [abc123]", "Talk two [def456]", "frames"}, items
    assert problems == {"yt/": "2 image(s) beside 2 video file(s) (thumbnails?): not read as a folder of frames "
                               "(a folder of frames holds images only); skipped"}, problems


def test_downloaded_video_formats_are_videos(tmp_path):
    import av

    from ffmask import video

    root = tmp_path / "clips"
    root.mkdir()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(3)]
    for ext, fmt, codec in (("flv", "flv", "flv"), ("mpg", "mpeg", "mpeg1video"), ("wmv", "asf", "wmv2"),
                            ("ts", "mpegts", "libx264")):
        with av.open(str(root / f"v_{ext}.{ext}"), "w", format=fmt) as c:
            s = c.add_stream(codec, rate=25)
            s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    for ext in ("m4v", "3gp", "MTS"):
        shutil.copy(REAL, root / f"v_{ext}.{ext}")
    scan = get_dataset("folder", root)
    # 06d4739: only the mp4-like five suffixes were videos; these seven were skipped without a word
    assert sorted(i.video_id for i in scan.items) == sorted(f"v_{e}" for e in ("flv", "mpg", "wmv", "ts", "m4v",
                                                                                "3gp", "MTS")), scan.problems
    for item in scan.items:
        assert len(list(video.iter_frames(item.path))) in (3, 48), item.path
