"""FaceForensics++ (and DeepFakeDetection) as downloaded by the official script.

Layout under ROOT::

    original_sequences/youtube/<c>/videos/000.mp4
    original_sequences/actors/<c>/videos/01__exit_phone_room.mp4          (DFD)
    manipulated_sequences/<Method>/<c>/videos/<target>_<source>.mp4
    manipulated_sequences/DeepFakeDetection/<c>/videos/01_02__exit_phone_room__YVGY8LOK.mp4
    manipulated_sequences/<Method>/masks/videos/<same name>.mp4
    splits/{train,val,test}.json   (or ROOT/{train,val,test}.json)

``<c>`` is raw, c23 or c40. A fake ``a_b`` shows target ``a``'s video with
``b``'s face or expression, so its original is youtube ``a``. The official
split files are lists of ``[a, b]`` pairs; each pair puts originals ``a`` and
``b`` and fakes ``a_b`` and ``b_a`` in that split.

Decisions worth knowing:

- A fake whose original video is missing is still returned, with
  ``original=None``, and a problem is recorded: the pipeline then skips it
  with "missing original" in the manifest when a paired method needs it, and
  still annotates it with single-image methods (noise, focus, fam).
- FF++ ships mask videos for every method except FaceShifter. A missing
  masks folder (or one mask file) is a problem and leaves ``mask_path=None``
  for exactly those videos; FaceShifter never has masks, so it is not a problem.
- DeepFakeDetection has no official split: with ``split="all"`` its items
  get split "", with a specific split they are left out (one problem says so).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence, Union

from ffmask.datasets.base import VideoItem
from ffmask.datasets.registry import VIDEO_EXTENSIONS, DatasetError, DatasetScan, listdir_videos
from ffmask.errors import FFMaskError

# "Families": the family forgeries of `ffmask synth -m Families` (not an FF++ method)
MANIPULATIONS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection",
                 "Families")
WITHOUT_MASKS = frozenset({"FaceShifter"})
COMPRESSIONS = ("raw", "c23", "c40")
SPLITS = ("train", "val", "test", "all")
DFD = "DeepFakeDetection"
ALIASES = {
    "df": "Deepfakes", "deepfakes": "Deepfakes",
    "f2f": "Face2Face", "face2face": "Face2Face",
    "fs": "FaceSwap", "faceswap": "FaceSwap",
    "nt": "NeuralTextures", "neuraltextures": "NeuralTextures",
    "fsh": "FaceShifter", "faceshifter": "FaceShifter",
    "dfd": DFD, "deepfakedetection": DFD,
    "fam": "Families", "families": "Families",
}

_FAKE_NAME = re.compile(r"^(\d+)_(\d+)$")
_DFD_FAKE_NAME = re.compile(r"^(\d+)_(\d+)__(.+)__([A-Za-z0-9]+)$")
_DFD_ORIGINAL_NAME = re.compile(r"^(\d+)__(.+)$")


def scan_ffpp(
    root: Union[str, Path],
    *,
    manipulations: Optional[Union[str, Sequence[str]]] = None,
    compression: str = "c23",
    split: str = "all",
    include_originals: bool = True,
) -> DatasetScan:
    """Items of an FF++ download.

    manipulations : method names (or DF, F2F, FS, NT, FSh, DFD), a
        comma-separated string, or None for every method present.
    compression : "raw", "c23" or "c40".
    split : "train", "val", "test" or "all". "all" fills ``VideoItem.split``
        from the split files when they exist ("" otherwise); a specific split
        without split files raises FFMaskError.
    include_originals : also return the real videos (label 0, manipulation
        "original", video_id "youtube/<NNN>" or "actors/<name>").

    Items are ordered: originals by name, then each method in the order of
    ``MANIPULATIONS`` (or as requested), fakes by name. Fakes have video_id
    "<Method>/<name>", label 1, ``original`` the original's VideoItem (the
    same object returned among the originals) and ``mask_path``.
    """
    root = Path(root)
    if compression not in COMPRESSIONS:
        raise DatasetError(f"ff++ compression must be one of {COMPRESSIONS}, got {compression!r}")
    if split not in SPLITS:
        raise DatasetError(f"ff++ split must be one of {SPLITS}, got {split!r}")
    requested = parse_manipulations(manipulations)
    scan = DatasetScan(paired=True)
    manip_root = root / "manipulated_sequences"
    orig_root = root / "original_sequences"
    if not manip_root.is_dir() and not orig_root.is_dir():
        raise FFMaskError(f"{root} does not look like FaceForensics++: neither original_sequences/ "
                          "nor manipulated_sequences/ is there")

    if not manip_root.is_dir():
        # A real-only run is legal (noise, focus, fam), but never a silent one.
        scan.problem("manipulated_sequences", "folder missing: no fake videos, only originals are annotated")
    if requested is None:
        methods = [m for m in MANIPULATIONS if (manip_root / m).is_dir()]
        if manip_root.is_dir():  # a renamed or misspelt method folder ("Face2face") must not vanish
            for folder in sorted(p for p in manip_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if folder.name not in MANIPULATIONS:
                    scan.problem(_rel(folder, root), "not a manipulation ffmask knows (names are case-sensitive: "
                                 f"{', '.join(MANIPULATIONS)}); not annotated")
    else:
        methods = []
        for m in requested:
            if (manip_root / m).is_dir():
                methods.append(m)
            else:
                scan.problem(f"manipulated_sequences/{m}", "requested manipulation folder not found")

    pair_split, id_split = _load_splits(root, split, scan)

    def split_of_original(vid: str) -> str:
        return id_split.get(vid, "")

    def keep(item_split: str) -> bool:
        return split == "all" or item_split == split

    # Originals: youtube always, actors when DeepFakeDetection is asked for.
    originals: dict[tuple[str, str], VideoItem] = {}
    sources = [("youtube", _FF_ORIGINAL_CHECK)] + ([("actors", _DFD_ORIGINAL_CHECK)] if DFD in methods else [])
    for source, check in sources:
        folder = orig_root / source / compression / "videos"
        if not folder.is_dir():
            scan.problem(_rel(folder, root), _missing_folder_reason(folder, compression, "original videos"))
            continue
        for path in listdir_videos(folder, VIDEO_EXTENSIONS, scan, root):
            stem = path.stem
            if not check(stem):
                scan.problem(_rel(path, root), f"file name does not match {source} original naming; skipped")
                continue
            item_split = split_of_original(stem) if source == "youtube" else ""
            originals[(source, stem)] = VideoItem(
                video_id=f"{source}/{stem}", path=path, label=0, manipulation="original",
                compression=compression, split=item_split,
            )
    if include_originals:
        for (source, stem), item in originals.items():
            if keep(item.split):
                scan.items.append(item)

    for method in methods:
        _scan_method(root, method, compression, split, pair_split, originals, keep, scan)

    if split != "all" and DFD in methods:
        scan.problem(f"manipulated_sequences/{DFD}",
                     f"DeepFakeDetection has no official split; its videos are left out of split {split!r}")
    return scan


def _scan_method(root, method, compression, split, pair_split, originals, keep, scan: DatasetScan) -> None:
    method_dir = root / "manipulated_sequences" / method
    videos = method_dir / compression / "videos"
    if not videos.is_dir():
        scan.problem(_rel(videos, root), _missing_folder_reason(videos, compression, f"{method} videos"))
        return
    mask_dir = method_dir / "masks" / "videos"
    has_masks = mask_dir.is_dir()
    files = listdir_videos(videos, VIDEO_EXTENSIONS, scan, root)
    if not has_masks and method not in WITHOUT_MASKS:
        scan.problem(_rel(mask_dir, root),
                     f"masks folder missing: mask_path is None for all {len(files)} {method} videos")
    mask_files = {p.stem: p for p in listdir_videos(mask_dir, VIDEO_EXTENSIONS, scan, root)} if has_masks else {}

    for path in files:
        stem = path.stem
        video_id = f"{method}/{stem}"
        if method == DFD:
            m = _DFD_FAKE_NAME.match(stem)
            if not m:
                scan.problem(_rel(path, root), "file name does not match <target>_<source>__<scene>__<tag>; skipped")
                continue
            target, source, scene, tag = m.groups()
            original = originals.get(("actors", f"{target}__{scene}"))
            original_rel = f"original_sequences/actors/{compression}/videos/{target}__{scene}.mp4"
            extra = {"target": target, "source": source, "scene": scene, "tag": tag}
            item_split = ""
        else:
            m = _FAKE_NAME.match(stem)
            if not m:
                scan.problem(_rel(path, root), "file name does not match <target>_<source>; skipped")
                continue
            target, source = m.groups()
            original = originals.get(("youtube", target))
            original_rel = f"original_sequences/youtube/{compression}/videos/{target}.mp4"
            extra = {"target": target, "source": source}
            item_split = pair_split.get((target, source), "")
        if not keep(item_split):
            continue
        if original is None:
            scan.problem(video_id, f"original video not found ({original_rel}); kept with original=None")
        mask_path = mask_files.get(stem)
        if has_masks and mask_path is None:
            scan.problem(video_id, f"mask video not found in {_rel(mask_dir, root)}; mask_path is None")
        scan.items.append(VideoItem(
            video_id=video_id, path=path, label=1, manipulation=method, compression=compression,
            split=item_split, original=original, mask_path=mask_path, extra=extra,
        ))


def identities(video_id: str) -> tuple[str, ...]:
    """The people a FF++ video shows, by the ids its name gives (for splits that keep a person on one side).

    ``youtube/000`` -> ``("youtube/000",)``; a fake ``Deepfakes/000_003`` made
    from ``000`` with the face of ``003`` -> ``("youtube/000", "youtube/003")``
    (a swap shows 003's face in 000's video; a reenactment, 000's face moved
    like 003's); ``actors/01__scene`` -> ``("actors/01",)`` and a
    DeepFakeDetection fake ``01_02__scene__tag`` -> ``("actors/01",
    "actors/02")``. Any other name: ``()`` (nothing known).
    """
    folder, _, stem = str(video_id).rpartition("/")
    if folder == "youtube" and _FF_ORIGINAL_CHECK(stem):
        return (f"youtube/{stem}",)
    if folder == "actors":
        m = _DFD_ORIGINAL_NAME.match(stem)
        return (f"actors/{m.group(1)}",) if m else ()
    if folder == DFD:
        m = _DFD_FAKE_NAME.match(stem)
        return (f"actors/{m.group(1)}", f"actors/{m.group(2)}") if m else ()
    m = _FAKE_NAME.match(stem)
    return (f"youtube/{m.group(1)}", f"youtube/{m.group(2)}") if m and folder else ()


def _FF_ORIGINAL_CHECK(stem: str) -> bool:
    return stem.isdigit()


def _DFD_ORIGINAL_CHECK(stem: str) -> bool:
    return _DFD_ORIGINAL_NAME.match(stem) is not None


def parse_manipulations(manipulations) -> Optional[list[str]]:
    """FF++ manipulation names (a list, or one comma-separated string; aliases such as DF accepted) as
    canonical folder names, each once; None stays None. Raises DatasetError for an unknown name."""
    if manipulations is None:
        return None
    if isinstance(manipulations, str):
        manipulations = [m for m in (s.strip() for s in manipulations.split(",")) if m]
    out = []
    for name in manipulations:
        if not isinstance(name, str):
            raise DatasetError(f"ff++ manipulation names must be strings, got {name!r}")
        canonical = ALIASES.get(name.strip().lower())
        if canonical is None:
            raise DatasetError(f"unknown ff++ manipulation {name!r}; choose from {', '.join(MANIPULATIONS)} "
                               "(or DF, F2F, FS, NT, FSh, DFD)")
        if canonical not in out:
            out.append(canonical)
    return out


def find_split_files(root: Path) -> dict[str, Path]:
    """split name -> JSON file, from ROOT/splits/ first, then ROOT/."""
    found = {}
    for name in ("train", "val", "test"):
        for candidate in (root / "splits" / f"{name}.json", root / f"{name}.json"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def _load_splits(root: Path, split: str, scan: DatasetScan):
    """((target, source) -> split for fakes, id -> split for originals)."""
    files = find_split_files(root)
    if split != "all" and split not in files:
        raise FFMaskError(
            f"split {split!r} requested but no split file found: looked for "
            f"{root / 'splits' / (split + '.json')} and {root / (split + '.json')} "
            "(the official FF++ lists of [a, b] pairs)"
        )
    pair_split: dict[tuple[str, str], str] = {}
    id_split: dict[str, str] = {}
    for name, path in files.items():
        for a, b in _read_pairs(path):
            for vid in (a, b):
                previous = id_split.setdefault(vid, name)
                if previous != name:
                    scan.problem(_rel(path, root), f"video {vid} is in both {previous} and {name}; kept in {previous}")
            pair_split.setdefault((a, b), id_split[a])
            pair_split.setdefault((b, a), id_split[a])
    return pair_split, id_split


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        pairs = json.loads(path.read_text(encoding="utf-8-sig"))  # utf-8-sig: a BOM (a Windows editor) is no error
    except (OSError, ValueError) as exc:
        raise FFMaskError(f"cannot read split file {path}: {exc}") from exc
    if not isinstance(pairs, list):
        raise FFMaskError(f"split file {path} must hold a list of [a, b] pairs, got {type(pairs).__name__}")
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise FFMaskError(f"split file {path}: entry {i} must be a pair [a, b], got {pair!r}")
        ids = []
        for v in pair:
            if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v.isdigit()):
                raise FFMaskError(f"split file {path}: entry {i} must hold video numbers like \"000\", got {pair!r}")
            ids.append(v if isinstance(v, str) else f"{v:03d}")
        out.append((ids[0], ids[1]))
    return out


def _missing_folder_reason(folder: Path, compression: str, what: str) -> str:
    # Point at the compressions that are there: the usual cause is a partial download.
    parent = folder.parent.parent
    present = sorted(c for c in COMPRESSIONS if (parent / c / "videos").is_dir()) if parent.is_dir() else []
    found = f" (found: {', '.join(present)})" if present else ""
    return f"no {compression} {what} folder{found}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
