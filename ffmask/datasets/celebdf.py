"""Celeb-DF (v1/v2).

Layout under ROOT::

    Celeb-real/id0_0000.mp4          real (celebrity interviews)
    YouTube-real/00000.mp4           real (extra YouTube clips, unpaired)
    Celeb-synthesis/id0_id16_0000.mp4   fake: id0_0000 with id16's face
    List_of_testing_videos.txt       lines "1 YouTube-real/00170.mp4", 1 = REAL, 0 = fake

Listed videos are split "test", the others "train". A fake
``id<t>_id<s>_<n>`` is paired with ``Celeb-real/id<t>_<n>``.

Decisions worth knowing:

- A test video never reaches ``split="train"``: every path named on a
  list line counts as test, even when its label is not 0/1 (a problem says
  so); a line with no path at all cannot be trusted to keep anything out of
  train, so it is an error.
- Without the list, ``split="all"`` still runs (items get split "", and a
  problem says the splits are unknown); a specific split is an error. A
  list naming none of the videos (another tree's, another layout) counts as
  no list: otherwise every test video would be split "train". A line
  written from above ROOT (``1 Celeb-DF-v2/YouTube-real/00170.mp4``) names
  the video from its Celeb-DF folder on.
- A train fake may be compared with an original that is a test video; the
  original's own faces are then not written (it is not a train item).
- YouTube-real clips are ``may_cut`` (:data:`CUT_FOLDERS`): annotate checks
  that each one's face track stays one person; Celeb-real clips are not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

from ffmask.datasets.base import VideoItem
from ffmask.datasets.registry import VIDEO_EXTENSIONS, DatasetError, DatasetScan, listdir_videos
from ffmask.errors import FFMaskError

REAL_FOLDERS = ("Celeb-real", "YouTube-real")
#: Real folders whose clips may cut to another person (``VideoItem.may_cut``). YouTube-real's were
#: downloaded as they are and no fake was made from them; a Celeb-real clip is the source of fakes
#: that swap one subject's face through the whole clip, so it is one person's shot.
CUT_FOLDERS = ("YouTube-real",)
FAKE_FOLDER = "Celeb-synthesis"
TEST_LIST = "List_of_testing_videos.txt"
SPLITS = ("train", "test", "all")
_FAKE_NAME = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


def scan_celebdf(root: Union[str, Path], *, split: str = "all") -> DatasetScan:
    """Items of a Celeb-DF download.

    split : "train", "test" or "all". Without ``List_of_testing_videos.txt``
        every item has split "" and a specific split raises FFMaskError.

    Reals have manipulation "original"; fakes "Celeb-synthesis" with
    ``original`` set when ``Celeb-real/id<t>_<n>`` exists (otherwise
    ``original=None`` and a problem). video_id is the path relative to ROOT
    without extension, e.g. "Celeb-synthesis/id0_id16_0000".
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"celeb-df split must be one of {SPLITS}, got {split!r}")
    if not any((root / d).is_dir() for d in (*REAL_FOLDERS, FAKE_FOLDER)):
        raise FFMaskError(f"{root} does not look like Celeb-DF: none of "
                          f"{', '.join((*REAL_FOLDERS, FAKE_FOLDER))} is there")
    scan = DatasetScan(paired=True)
    listed = _read_test_list(root / TEST_LIST, scan)
    if listed is None and split != "all":
        raise FFMaskError(f"split {split!r} requested but {root / TEST_LIST} is missing")
    if listed is None:
        scan.problem(TEST_LIST, "missing: train/test splits unknown (split left empty)")
    for folder in (*REAL_FOLDERS, FAKE_FOLDER):
        if not (root / folder).is_dir():
            scan.problem(folder, "folder missing")
    _unknown_folders(root, scan)
    files = {folder: listdir_videos(root / folder, VIDEO_EXTENSIONS, scan, root)
             for folder in (*REAL_FOLDERS, FAKE_FOLDER)}
    every_id = {f"{folder}/{path.stem}" for folder, paths in files.items() for path in paths}
    if listed and every_id and not set(listed) & every_id:
        # a list of another tree or layout: every test video would be split "train" (trained on), each line
        # only a "missing" problem
        example = next(iter(listed))
        if split != "all":
            raise FFMaskError(f"{root / TEST_LIST} names none of the videos under {root} (e.g. {example!r}): it "
                              "does not fit this tree, so the test videos cannot be told from the train ones")
        scan.problem(TEST_LIST, f"names none of the videos under {root} (e.g. {example!r}): train/test splits "
                     "unknown (split left empty)")
        listed = None

    def split_of(video_id: str) -> str:
        if listed is None:
            return ""
        return "test" if video_id in listed else "train"

    def check_listed_label(video_id: str, label: int) -> None:
        if listed is not None and listed.get(video_id, label) not in (label, None):
            scan.problem(video_id, f"{TEST_LIST} says label {listed[video_id]} but the folder says {label}; "
                         "the folder wins")

    reals: dict[str, VideoItem] = {}
    found: set[str] = set()  # every video file, whatever its split
    for folder in REAL_FOLDERS:
        for path in files[folder]:
            video_id = f"{folder}/{path.stem}"
            found.add(video_id)
            check_listed_label(video_id, 0)
            item = VideoItem(video_id=video_id, path=path, label=0, manipulation="original", split=split_of(video_id),
                             may_cut=folder in CUT_FOLDERS)
            reals[video_id] = item
            if split in ("all", item.split):
                scan.items.append(item)
    for path in files[FAKE_FOLDER]:
        video_id = f"{FAKE_FOLDER}/{path.stem}"
        found.add(video_id)
        m = _FAKE_NAME.match(path.stem)
        if not m:
            scan.problem(video_id, "file name does not match id<target>_id<source>_<n>; skipped")
            continue
        target, source, number = m.groups()
        item_split = split_of(video_id)
        if split not in ("all", item_split):
            continue
        check_listed_label(video_id, 1)
        original = reals.get(f"Celeb-real/{target}_{number}")
        if original is None:
            scan.problem(video_id, f"original Celeb-real/{target}_{number} not found; kept with original=None")
        scan.items.append(VideoItem(
            video_id=video_id, path=path, label=1, manipulation=FAKE_FOLDER, split=item_split,
            original=original, extra={"target": target, "source": source},
        ))
    if listed is not None:
        for video_id in sorted(set(listed) - found):
            scan.problem(video_id, f"listed in {TEST_LIST} but the video is missing")
    return scan


_REAL_NAME = re.compile(r"^(id\d+)_(\d+)$")


def identities(video_id: str) -> tuple[str, ...]:
    """The people a Celeb-DF video shows, by the ids its name gives.

    ``Celeb-real/id0_0003`` -> ``("id0",)``; a fake
    ``Celeb-synthesis/id0_id16_0003`` (id16's face swapped into id0_0003) ->
    ``("id0", "id16")``; ``YouTube-real/...`` and any other name: ``()``
    (nothing known).
    """
    folder, _, stem = str(video_id).rpartition("/")
    if folder == "Celeb-real":
        m = _REAL_NAME.match(stem)
        return (m.group(1),) if m else ()
    if folder == FAKE_FOLDER:
        m = _FAKE_NAME.match(stem)
        return (m.group(1), m.group(2)) if m else ()
    return ()


# The list marks REAL with 1; ffmask labels fake with 1.
_LABEL_OF_LIST = {"1": 0, "0": 1}  # the list's label -> ffmask's
_LIST_LABEL = {label: word for word, label in _LABEL_OF_LIST.items()}  # and back


def _unknown_folders(root: Path, scan: DatasetScan) -> None:
    """A problem for each folder of ROOT holding videos that is none of Celeb-DF's: a misspelt or renamed
    ``Celeb-Synthesis/`` must not vanish behind a "folder missing" line."""
    known = (*REAL_FOLDERS, FAKE_FOLDER)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name not in known and listdir_videos(folder, VIDEO_EXTENSIONS):
            scan.problem(folder.name + "/", f"not a Celeb-DF folder (names are case-sensitive: {', '.join(known)}); "
                         "its videos are not read")


def _from_known_folder(video_id: str) -> str:
    """``video_id`` from its Celeb-DF folder on: a list line written from above ROOT
    (``Celeb-DF-v2/YouTube-real/00170``) names ``YouTube-real/00170``."""
    parts = video_id.split("/")
    for k, part in enumerate(parts[:-1]):
        if part in (*REAL_FOLDERS, FAKE_FOLDER):
            return "/".join(parts[k:])
    return video_id


def _read_test_list(path: Path, scan: DatasetScan):
    """video_id -> label (1 real -> 0, 0 fake -> 1; None when the line's label
    is neither), or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FFMaskError(f"cannot read {path}: {exc}") from None
    out = {}
    first_line: dict[str, int] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)  # the path is the rest of the line: it may hold spaces
        if len(parts) != 2:
            raise FFMaskError(f"{path} line {i + 1}: expected '1|0 <path>', got {line!r}")
        rel = parts[1].strip().replace("\\", "/")
        while rel.startswith("./"):
            rel = rel[2:]
        video_id = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
        video_id = _from_known_folder(video_id)
        label = _LABEL_OF_LIST.get(parts[0])
        if video_id in out and out[video_id] != label:
            # neither line can be trusted: the video stays in test, labelled by its folder
            scan.problem(video_id, f"{TEST_LIST} line {i + 1}: listed again with another label ({parts[0]!r}, "
                         f"line {first_line[video_id]}: {_LIST_LABEL.get(out[video_id], '?')!r}); kept in test, "
                         "labelled by its folder")
            out[video_id] = None
            continue
        first_line.setdefault(video_id, i + 1)
        out[video_id] = label
        if out[video_id] is None:
            scan.problem(video_id, f"{TEST_LIST} line {i + 1}: unknown label {parts[0]!r} (1 real, 0 fake); "
                         "kept in test, labelled by its folder")
    return out
