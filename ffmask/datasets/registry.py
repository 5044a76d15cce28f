"""Dataset names -> scanners, and what a scan returns."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from ffmask.datasets.base import DatasetProblem, VideoItem
from ffmask.errors import FFMaskError


#: File suffixes read as videos (any case). Beyond the research datasets' mp4 and avi, what downloaded
#: and recorded videos come as (FFmpeg reads them all): a folder of internet videos lost every .flv,
#: .ts or .m4v without a word when only the first five were listed.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
                    ".flv", ".wmv", ".asf", ".3gp", ".ogv")


class DatasetError(FFMaskError, ValueError):
    """A bad dataset name or option: a user error (FFMaskError) and a bad value (ValueError)."""


@dataclass
class DatasetScan:
    """What a dataset scan found: the items to annotate, in a deterministic
    order, and the problems to report (each also skipped or degraded, never fatal)."""

    items: list[VideoItem] = field(default_factory=list)
    problems: list[DatasetProblem] = field(default_factory=list)
    #: the dataset pairs fakes with their originals (FF++, Celeb-DF, DFDC), so
    #: real videos are planned as originals of their fakes' groups even when a
    #: scan happens to hold no fake.
    paired: bool = False

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(DatasetProblem(where=where, reason=reason))


def _scanners() -> dict[str, Callable[..., DatasetScan]]:
    from ffmask.datasets import celebdf, dfdc, dfdcp, ffpp, folder, wdf

    return {
        "ff++": ffpp.scan_ffpp,
        "folder": folder.scan_folder,
        "celeb-df": celebdf.scan_celebdf,
        "dfdc": dfdc.scan_dfdc,
        "dfdcp": dfdcp.scan_dfdcp,
        "wdf": wdf.scan_wdf,
    }


def _identity_rules() -> dict[str, Callable[[str], tuple]]:
    from ffmask.datasets import celebdf, ffpp

    return {"ff++": ffpp.identities, "celeb-df": celebdf.identities}


def identities(dataset: Optional[str], video_id: str) -> tuple[str, ...]:
    """The people video ``video_id`` of ``dataset`` shows, as its dataset names them (``()``: not known).

    FF++ and Celeb-DF name them in their file names (a fake names both the
    person of its original and the one whose face it took); the other
    datasets do not, and give ``()``. Keys are prefixed with the dataset, so
    two datasets' ids never meet. Used to keep a person on one side of a
    train/validation split (:func:`ffmask.train.focus.split_by_video`).
    """
    key = ALIASES.get(str(dataset or "").strip().lower(), str(dataset or "").strip().lower())
    rule = _identity_rules().get(key)
    return tuple(f"{key}:{i}" for i in rule(video_id)) if rule is not None else ()


DATASETS: tuple[str, ...] = ("ff++", "folder", "celeb-df", "dfdc", "dfdcp", "wdf")
ALIASES = {"ffpp": "ff++", "faceforensics": "ff++", "faceforensics++": "ff++", "celebdf": "celeb-df",
           "celeb-df-v2": "celeb-df", "dfdc-preview": "dfdcp", "wilddeepfake": "wdf",
           "deepfake-in-the-wild": "wdf"}


def get_dataset(name: str, root: Union[str, Path], **options) -> DatasetScan:
    """Scan the dataset ``name`` (one of ``DATASETS``) at ``root``.

    ``options`` are the scanner's keyword options (see each scanner:
    :func:`ffmask.datasets.ffpp.scan_ffpp`, ``folder.scan_folder``,
    ``celebdf.scan_celebdf``, ``dfdc.scan_dfdc``, ``dfdcp.scan_dfdcp``,
    ``wdf.scan_wdf``). An unknown name or option
    raises :class:`DatasetError` (a ValueError and an FFMaskError) listing
    the valid ones; a missing root raises FFMaskError.
    """
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a str, got {name!r}")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    scanners = _scanners()
    if key not in scanners:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    if not root.exists():
        raise FFMaskError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise FFMaskError(f"dataset root is not a directory: {root}")
    scanner = scanners[key]
    params = inspect.signature(scanner).parameters
    accepted = [p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(f"dataset {key!r} has no option(s) {unknown}; its options are: {', '.join(accepted)}")
    return _unique_ids(scanner(root, **options))


def _unique_ids(scan: DatasetScan) -> DatasetScan:
    """Keep the first item of each video_id; every later one is a problem.

    A video_id names a video's records and manifest line, so two items with
    one id would write two videos' faces under one name (and a resume would
    count one of them done). Each scanner avoids it for its own layout; this
    is the guard for what a layout does not foresee (``a.mp4`` and ``a.avi``
    in one Celeb-DF folder, a list file naming a video twice). So is a
    second item of one file (a symlink, a hard link, ``a//b.mp4``): one
    video under two ids. When the items of one file say different things of
    it (label, original or split: :func:`_said`), which is right cannot be
    told, so every item of that file is a problem; when they agree the first
    is kept (an item repeating the first one's id as well is the same entry
    listed twice, read once without a word). An id that is not valid UTF-8
    (a file name in another encoding) is a problem too."""
    first: dict[str, VideoItem] = {}
    files: dict[tuple, VideoItem] = {}  # (device, inode) of a video file -> its first item
    keys = {id(item): _file_key(item) for item in scan.items}
    said: dict[tuple, dict[tuple, VideoItem]] = {}  # file -> what its items say of it -> the first saying so
    for item in scan.items:
        if keys[id(item)] is not None:
            said.setdefault(keys[id(item)], {}).setdefault(_said(item), item)
    kept = []
    for item in scan.items:
        if not _utf8(item.video_id):
            # a Latin-1 name from an old archive: shards and manifests store ids as UTF-8 text, and one such
            # name used to end the whole run with a UnicodeEncodeError at the first shard write
            scan.problem(_shown(item.video_id), "its file name is not valid UTF-8; skipped (rename it, e.g. with convmv)")
            continue
        if item.original is not None and not _utf8(item.original.video_id):
            scan.problem(item.video_id, "its original's file name is not valid UTF-8; skipped")
            continue
        same = keys[id(item)]
        if same is not None and len(said[same]) > 1:
            # a link labelled otherwise than its target, two list entries of one file with two labels:
            # keeping the first would be a label chosen by the order of the list
            other = next(o for s, o in said[same].items() if s != _said(item))
            scan.problem(item.video_id, f"the same file as {other.video_id} ({_where(item)}) with another "
                         f"{_difference(item, other)}: which is right cannot be told; skipped")
            continue
        if item.video_id in first:
            if same is None or _file_key(first[item.video_id]) != same:
                scan.problem(item.video_id, f"a second video with this id ({_where(item)}; the first: "
                             f"{_where(first[item.video_id])}); skipped")
            continue  # else: one entry listed twice alike (the same file, id and entry): read once
        if same is not None and same in files:
            # a symlink, a hard link or a second spelling of one path, saying the same of it: the same
            # video under two ids (annotated twice: a train video scored as a test one)
            scan.problem(item.video_id, f"the same file as {files[same].video_id} ({_where(item)}); skipped")
            continue
        if same is not None:
            files[same] = item
        first[item.video_id] = item
        kept.append(item)
    scan.items[:] = kept
    # problems are written as UTF-8 JSON too: a name in another encoding is shown escaped
    scan.problems[:] = [p if _utf8(p.where + p.reason) else DatasetProblem(_shown(p.where), _shown(p.reason))
                        for p in scan.problems]
    return scan


def _said(item: VideoItem) -> tuple:
    """What an item says of its video file: (label, original, split); the original by its file where it has one."""
    original = None
    if item.original is not None:
        original = _file_key(item.original) or item.original.video_id
    return (item.label, original, item.split)


def _difference(item: VideoItem, other: VideoItem) -> str:
    """``label (real here, fake there)``: what two items of one file say differently of it."""
    def word(label):
        return {0: "real", 1: "fake"}.get(label, "unlabelled")

    parts = []
    if item.label != other.label:
        parts.append(f"label ({word(item.label)} here, {word(other.label)} there)")
    if _said(item)[1] != _said(other)[1]:
        parts.append(f"original ({item.original_id or 'none'} here, {other.original_id or 'none'} there)")
    if item.split != other.split:
        parts.append(f"split ({item.split or 'none'} here, {other.split or 'none'} there)")
    return " and ".join(parts)


def _file_key(item: VideoItem) -> Optional[tuple]:
    """(device, inode) of the item's video file; None for frames in a folder or an archive, or a missing file."""
    if not isinstance(item.path, Path):
        return None
    try:
        st = item.path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _shown(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(item: VideoItem) -> str:
    return str(getattr(item.path, "source", item.path))


def listdir_videos(directory: Path, extensions=VIDEO_EXTENSIONS, scan: Optional[DatasetScan] = None,
                   root: Optional[Path] = None) -> list[Path]:
    """Video files directly in ``directory`` (sorted by name; hidden files skipped).

    A *directory* named like a video (``017.mp4/``, e.g. a half-finished
    extraction) is not a video: with ``scan`` it is recorded as a problem,
    named relative to ``root``, instead of vanishing from the run.
    """
    if not directory.is_dir():
        return []
    found = []
    for p in sorted(directory.iterdir()):
        if p.suffix.lower() not in extensions or p.name.startswith("."):
            continue
        if p.is_file():
            found.append(p)
        elif scan is not None and p.is_dir():
            scan.problem(relative_name(p, root), VIDEO_LIKE_DIRECTORY)
    return found


VIDEO_LIKE_DIRECTORY = "a directory named like a video, not a video file; skipped"


def listed_but_absent(listing: str, name: str, path: Path) -> str:
    """The problem of a video a list file names but that is not a video file at ``path``."""
    what = "a directory, not a video file" if path.is_dir() else "missing"
    return f"listed in {listing} but {name} is {what}; skipped"


def relative_name(path: Path, root: Optional[Path]) -> str:
    """``path`` relative to ``root`` with '/' separators (the full path when outside it or no root)."""
    try:
        return path.relative_to(root).as_posix() if root is not None else str(path)
    except ValueError:
        return str(path)
