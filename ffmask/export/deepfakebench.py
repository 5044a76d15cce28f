"""Shards → the folders and dataset JSON files DeepfakeBench's training loaders read.

What its loaders expect (SCLBD/DeepfakeBench, ``training/dataset/abstract_dataset.py``
and ``preprocessing/rearrange.py``; read, not copied):

- A dataset JSON ``<dataset_json_folder>/<Name>.json`` holding
  ``{Name: {label_key: {"train"|"val"|"test": {comp: {video: entry}}}}}`` for
  the FaceForensics++ family (the loader picks the ``comp`` level from its
  ``compression`` setting) and ``{Name: {label_key: {split: {video: entry}}}}``
  for the others, with ``entry = {"label": label_key, "frames": [png paths]}``
  (plus ``"masks"``). Label keys are those of its ``train_config.yaml``
  ``label_dict`` (``FF-real``, ``FF-DF``, ``CelebDFv2_fake``, ``DFDC_Real``...).
  FaceForensics++ also gets one file per method (``FF-DF.json`` holds
  ``FF-real`` and ``FF-DF``), ``FaceShifter.json`` and ``DeepFakeDetection.json``.
- Frames ``<base>/frames/<video>/<N>.png`` (it sorts by ``int(N)``); for each
  frame the loader opens ``path.replace("frames", "masks")`` (a grayscale PNG,
  /255) and ``path.replace("frames", "landmarks").replace(".png", ".npy")``.
  Those replacements act on the *whole* path, so no other part of an export
  path may contain ``frames`` (checked: such an ``--out`` is refused).
- Landmarks: an ``(81, 2)`` array in the pixels of the frame PNG, ``np.float32``
  of the file (zeros when the file is missing); its LMDB variant reads the
  raw bytes as ``uint32 (81, 2)``.

Our choices, each a property of this module rather than of the caller:

- ``<N>`` is the source frame index, zero-padded to 3 digits as its
  preprocessing names frames.
- Landmarks (:func:`landmarks81`): rows 0–67 are our dlib 68 points (the
  81-point model's first 68 points are the same iBUG-68 points), mapped into
  crop pixels; rows 68–80 are 13 forehead points estimated from the jaw line
  mirrored above the brows (``FOREHEAD_HEIGHT`` of the brow-to-chin distance at
  the chin's mirror), stored in the 81-point model's own index order
  (``FOREHEAD_ORDER``), so hulls over all 81 points cover the forehead instead
  of reaching for (0, 0). Values are rounded and clipped into the crop and
  stored as ``int32``: integer pixels as its preprocessing writes them, and
  bytes its LMDB reader decodes to the same numbers. A face without
  landmarks gets all zeros, which is what its loader substitutes for a
  missing file.
- Masks: the chosen mask map as 0/255 single-channel PNGs, for every face
  (real faces: all zeros).
- A video without a split (``""``) is listed under train, val and test, as
  rearrange.py does for DeepFakeDetection; the report counts such videos.
- ``out/ffmask-export.jsonl`` records what the export writes (each video's
  folder before its first file, each dataset JSON before it is written), so
  that ``overwrite`` removes exactly an earlier export's outputs first
  (:func:`remove_earlier_export`): a dataset JSON or a video folder the new
  export does not write would otherwise stay, and DeepfakeBench opens a JSON
  by its name. Files the record does not name are never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Sequence

import numpy as np

from ffmask.errors import FFMaskError
from ffmask.outdir import RunLock, ensure_out_dir
from ffmask.shards.manifest import missing_shards, shards_being_written

__all__ = ["export_deepfakebench", "ExportReport", "LAYOUTS", "landmarks81", "missing_shards", "DatasetFile", "Layout",
           "RECORD_FILE", "remove_earlier_export"]

SPLITS = ("train", "val", "test")
JSON_FOLDER = "dataset_json"
#: what an export wrote in its --out: one JSON object a line (see :func:`remove_earlier_export`)
RECORD_FILE = "ffmask-export.jsonl"
KINDS = ("frames", "masks", "landmarks")
#: --mask-map when none is given: the first of these the shards hold.
MASK_PREFERENCE = ("official", "hull", "mscc")
N_LANDMARKS = 81
#: Raw index in the 81-point model of the k-th forehead point, k left to right in the image
#: (the inverse of the reordering SBI applies to that model's output).
FOREHEAD_ORDER = (77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78)
#: Forehead height above the brows, as a share of the brow-to-chin distance (the
#: hairline–brow, brow–nose, nose–chin thirds make it one half).
FOREHEAD_HEIGHT = 0.5


class Skip(Exception):
    """A face DeepfakeBench cannot take; the message is the reason counted in the report."""


# -- landmarks ---------------------------------------------------------------


def landmarks81(points68, box, size: int) -> np.ndarray:
    """DeepfakeBench's 81 landmarks of one face, in the pixels of its ``size`` crop.

    Parameters
    ----------
    points68 : array-like, float (68, 2)
        dlib's 68 points ``x, y`` in the source frame (as the shards store
        them); NaN anywhere means "no landmarks".
    box : array-like, (4,)
        The crop box ``x0, y0, x1, y1`` in the source frame.
    size : int
        Side of the crop (the exported frame).

    Returns
    -------
    ndarray, int32 (81, 2)
        Rows 0–67: the 68 points in crop pixels; rows 68–80: the estimated
        forehead points in ``FOREHEAD_ORDER``; rounded and clipped to
        ``[0, size - 1]``. All zeros when ``points68`` has NaNs.
    """
    from ffmask.faces import points_to_crop

    pts = np.asarray(points68, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"points68 must have shape (68, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        return np.zeros((N_LANDMARKS, 2), np.int32)
    crop = points_to_crop(pts, box, size).astype(np.float64)
    out = np.zeros((N_LANDMARKS, 2), np.float64)
    out[:68] = crop
    out[list(FOREHEAD_ORDER)] = _forehead(crop)
    return np.clip(np.rint(out), 0, size - 1).astype(np.int32)


def _forehead(points: np.ndarray) -> np.ndarray:
    """13 forehead points, left to right: the jaw line (0–16) mirrored across the brows, flattened."""
    brows = points[17:27].mean(axis=0)
    up = brows - points[8]
    length = float(np.hypot(*up))
    if length == 0:
        return np.repeat(brows[None], 13, axis=0)
    up /= length
    jaw = np.stack([np.interp(np.linspace(0, 16, 13), np.arange(17), points[:17, k]) for k in (0, 1)], axis=1)
    below = (jaw - brows) @ up  # <= 0 under the brows
    return jaw - np.outer((1 + FOREHEAD_HEIGHT) * below, up)


# -- where each video goes ---------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One video's place: ``base/{frames,masks,landmarks}/video``, its label key and JSON level."""

    base: PurePosixPath
    video: str
    label_key: str
    compression: Optional[str] = None


@dataclass(frozen=True)
class DatasetFile:
    """One dataset JSON: ``name`` (file stem and top-level key) lists ``label_keys``;
    written when the export has a video under any of ``requires``."""

    name: str
    label_keys: tuple[str, ...]
    requires: tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """How DeepfakeBench lays out one of our datasets.

    place(face) -> Placement, or raises Skip. by_compression: the JSON has a
    compression level under each split (FaceForensics++ family).
    """

    dataset: str
    place: Callable[[dict], Placement]
    files: tuple[DatasetFile, ...]
    by_compression: bool = False


def _parts(video_id: str) -> list[str]:
    parts = [p for p in video_id.split("/") if p]
    if not parts:
        raise Skip("empty video id")
    return parts


FF_LABELS = {
    "Deepfakes": "FF-DF", "Face2Face": "FF-F2F", "FaceSwap": "FF-FS", "NeuralTextures": "FF-NT",
    "FaceShifter": "FF-FH", "DeepFakeDetection": "DFD_fake",
}
FF_REAL_LABELS = {"youtube": "FF-real", "actors": "DFD_real"}


def _place_ffpp(face: dict) -> Placement:
    parts, comp = _parts(face["video_id"]), face["compression"]
    if comp not in ("raw", "c23", "c40"):
        raise Skip(f"FaceForensics++ compression must be raw, c23 or c40 (got {comp!r})")
    if face["label"] == 0:
        source = parts[0] if len(parts) > 1 else "youtube"
        if source not in FF_REAL_LABELS:
            raise Skip(f"unknown FaceForensics++ original source {source!r}")
        return Placement(PurePosixPath("FaceForensics++", "original_sequences", source, comp), parts[-1],
                         FF_REAL_LABELS[source], comp)
    method = face["manipulation"]
    if method not in FF_LABELS:
        raise Skip(f"FaceForensics++ manipulation {method!r} has no DeepfakeBench label")
    return Placement(PurePosixPath("FaceForensics++", "manipulated_sequences", method, comp), parts[-1],
                     FF_LABELS[method], comp)


def _place_celebdf(face: dict) -> Placement:
    parts = _parts(face["video_id"])
    real = face["label"] == 0
    folder = parts[0] if len(parts) > 1 else ("Celeb-real" if real else "Celeb-synthesis")
    return Placement(PurePosixPath("Celeb-DF-v2", folder), parts[-1], "CelebDFv2_real" if real else "CelebDFv2_fake")


def _place_dfdc(face: dict) -> Placement:
    parts = _parts(face["video_id"])
    if face["split"] == "test":
        base = PurePosixPath("DFDC", "test")
    else:
        base = PurePosixPath("DFDC", "train", parts[0] if len(parts) > 1 else "dfdc_train_part_0")
    return Placement(base, parts[-1], "DFDC_Real" if face["label"] == 0 else "DFDC_Fake")


DFDCP_FAKES = {"method_A": "DFDCP_FakeA", "method_B": "DFDCP_FakeB"}


def _place_dfdcp(face: dict) -> Placement:
    parts = _parts(face["video_id"])
    folder = parts[0] if len(parts) > 1 else ("original_videos" if face["label"] == 0 else face["manipulation"])
    if face["label"] == 0:
        key = "DFDCP_Real"
    elif folder in DFDCP_FAKES:
        key = DFDCP_FAKES[folder]
    else:
        raise Skip(f"DFDCP fake outside method_A/ and method_B/ ({face['video_id']!r})")
    return Placement(PurePosixPath("DFDCP", folder), parts[-1], key)


_FF_METHOD_FILES = tuple(DatasetFile(key, ("FF-real", key), (key,)) for key in ("FF-DF", "FF-F2F", "FF-FS", "FF-NT"))
_FF_MAIN = ("FF-real", "FF-DF", "FF-F2F", "FF-FS", "FF-NT")

#: our dataset name -> its DeepfakeBench layout
LAYOUTS: dict[str, Layout] = {
    "ff++": Layout("FaceForensics++", _place_ffpp, (
        DatasetFile("FaceForensics++", _FF_MAIN, _FF_MAIN),
        *_FF_METHOD_FILES,
        DatasetFile("FaceShifter", ("FF-real", "FF-FH"), ("FF-FH",)),
        DatasetFile("DeepFakeDetection", ("DFD_real", "DFD_fake"), ("DFD_real", "DFD_fake")),
    ), by_compression=True),
    "celeb-df": Layout("Celeb-DF-v2", _place_celebdf, (
        DatasetFile("Celeb-DF-v2", ("CelebDFv2_real", "CelebDFv2_fake"), ("CelebDFv2_real", "CelebDFv2_fake")),)),
    "dfdc": Layout("DFDC", _place_dfdc, (DatasetFile("DFDC", ("DFDC_Real", "DFDC_Fake"), ("DFDC_Real", "DFDC_Fake")),)),
    "dfdcp": Layout("DFDCP", _place_dfdcp, (
        DatasetFile("DFDCP", ("DFDCP_Real", "DFDCP_FakeA", "DFDCP_FakeB"),
                    ("DFDCP_Real", "DFDCP_FakeA", "DFDCP_FakeB")),)),
}


# -- the export --------------------------------------------------------------


@dataclass
class ExportReport:
    out: Path
    dataset: str
    mask_map: Optional[str]
    faces: int = 0
    videos: int = 0
    counts: Counter = field(default_factory=Counter)  # (label_key, split) -> frames
    video_counts: Counter = field(default_factory=Counter)  # (label_key, split) -> videos
    skipped: Counter = field(default_factory=Counter)  # reason -> faces
    unsplit_videos: int = 0
    no_landmarks: int = 0
    json_files: list[Path] = field(default_factory=list)
    #: shards a manifest beside the exported ones names for ``ok`` videos but
    #: that are not on disk: an unfinished or damaged annotate run, whose
    #: videos are missing from this export (rerun annotate, then export again)
    missing_shards: list[Path] = field(default_factory=list)
    being_written: dict = field(default_factory=dict)  # shard folder -> pid of the run writing there
    #: (videos, dataset JSON files) of an earlier export whose files ``overwrite`` deleted first
    replaced: tuple = (0, 0)


def _dataset_of(shards: Sequence[Path], dataset: Optional[str]) -> str:
    """``dataset``, or the one the annotate run that wrote ``shards`` recorded (the ``run.json`` beside them,
    else the run config each shard carries: :func:`ffmask.shards.runconfig.by_shard`)."""
    if dataset is None:
        from ffmask.shards.runconfig import RUN_NAME, by_shard, run_dataset

        names = by_shard(shards, run_dataset)
        unknown = [str(p) for p, name in zip(shards, names) if name is None]
        if unknown:
            raise FFMaskError(f"cannot tell which dataset {unknown[0]} holds (no readable {RUN_NAME} beside it and "
                              "no run config naming a dataset in the shard); pass --dataset")
        found = set(names)
        if len(found) != 1:
            raise FFMaskError(f"the shards come from different datasets ({', '.join(sorted(found))}); "
                              "export them one dataset at a time")
        dataset = found.pop()
    if dataset not in LAYOUTS:
        raise FFMaskError(f"DeepfakeBench has no layout for dataset {dataset!r}; exportable: {', '.join(LAYOUTS)}")
    return dataset


def _open_index(shards, mask_map: Optional[str]):
    """The shard index with the mask map, and the map's name (None: no mask map in the shards)."""
    from ffmask.shards import ShardIndex

    if mask_map is None:
        for name in MASK_PREFERENCE:
            try:
                index = ShardIndex(shards, [name])
            except FFMaskError:
                continue
            if index.map_kinds[name] == "mask":
                return index, name
        return ShardIndex(shards), None
    index = ShardIndex(shards, [mask_map])  # a missing map names the ones available
    if index.map_kinds[mask_map] != "mask":
        raise FFMaskError(f"--mask-map {mask_map} is a {index.map_kinds[mask_map]} map; DeepfakeBench masks are "
                          f"binary: use a mask map such as {', '.join(MASK_PREFERENCE)} or diff@T")
    return index, mask_map


def _one_crop_size(index) -> None:
    """Refuse shards holding face crops of several sides when no ``--size`` makes them one.

    DeepfakeBench's loaders take one resolution for a dataset, and its landmarks are
    pixels of the written frame: frames of two sides in one export would give it
    landmarks in two scales, which it resizes frames but not landmarks to undo. As
    ``train`` refuses such shards, the export does, before anything is written; with
    ``--size`` every frame, mask and its landmarks are written at that side.
    """
    faces: Counter = Counter()  # crop side -> faces
    shards: Counter = Counter()  # crop side -> shards
    for side, n in zip(index.shard_sizes, index.counts.tolist()):
        if side is not None:
            faces[side] += n
            shards[side] += 1
    if len(faces) > 1:
        sizes = ", ".join(f"{side} px ({faces[side]} faces in {shards[side]} shard(s))" for side in sorted(faces))
        raise FFMaskError(f"the shards hold face crops of {len(faces)} sizes ({sizes}); DeepfakeBench reads one "
                          "resolution and its landmarks are in frame pixels: pass --size (e.g. --size 256, its "
                          "default resolution) to write every face at one side")


def _check_out(out: Path) -> Path:
    """``out`` resolved and created, after the checks that need no lock."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise FFMaskError(f"--out {out} exists and is not a directory")
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        # The dataset JSON lists every frame under out: bytes that are not UTF-8 become lone surrogates
        # ("\udcff") there, which no JSON reader but Python's can map back, and cv2.imread (DeepfakeBench's
        # frame reader) crashes the process on such a path.
        shown = os.fsencode(out).decode("utf-8", "backslashreplace")
        raise FFMaskError(f"--out {shown} is not valid UTF-8: the dataset JSON lists frame paths under it, "
                          "which DeepfakeBench cannot open; pick a UTF-8 path (rename it, e.g. with convmv)") from None
    # DeepfakeBench derives mask and landmark paths with str.replace on the whole frame path.
    for word in ("frames", "masks", "landmarks", ".png"):
        if word in str(out):
            raise FFMaskError(f"--out {out} contains {word!r}: DeepfakeBench finds masks and landmarks by "
                              "replacing 'frames' in the whole frame path; pick a path without it")
    return ensure_out_dir(out)  # under a regular file, read-only: one line before any face is read


def _check_empty(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` holding anything but the lock of this export (checked with the lock held)."""
    from ffmask.outdir import LOCK_FILE

    if not overwrite and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise FFMaskError(f"--out {out} is not empty; pick a new directory or pass --overwrite (which replaces "
                          "an earlier export there)")


# -- what an export wrote: its record, and removing it -----------------------


def _record_line(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True) + "\n"


def _relative(out: Path, text, what: str) -> PurePosixPath:
    """A path the record names, relative to ``out`` and inside it (FFMaskError otherwise)."""
    rel = PurePosixPath(text) if isinstance(text, str) else None
    if rel is None or rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise FFMaskError(f"{out / RECORD_FILE} is corrupt (a {what} {text!r} outside the export); remove the "
                          "earlier export by hand or pick a new --out")
    return rel


def read_record(out: Path) -> tuple[set[PurePosixPath], set[str]]:
    """What an earlier export into ``out`` recorded.

    Returns
    -------
    (folders, json_names) : (set of PurePosixPath, set of str)
        ``folders``: each video's folders relative to ``out``
        (``<base>/frames/<video>``, ``masks``, ``landmarks``);
        ``json_names``: the dataset JSON file names under ``dataset_json/``.
        Both empty when ``out`` holds no record. A last line cut short (an
        export killed while writing it) is ignored: its folder or JSON was
        not made yet. Any other unreadable line is one FFMaskError.
    """
    path = out / RECORD_FILE
    if not path.exists():
        return set(), set()
    lines = path.read_text(errors="replace").split("\n")
    folders, names = set(), set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write was cut short
                continue
            raise FFMaskError(f"{path} is corrupt (line {number} is not JSON); remove the earlier export by hand "
                              "or pick a new --out") from None
        if not isinstance(entry, dict):
            raise FFMaskError(f"{path} is corrupt (line {number} is not a JSON object); remove the earlier export "
                              "by hand or pick a new --out")
        if "video" in entry:
            base = _relative(out, entry.get("base"), "folder")
            video = _relative(out, entry["video"], "video")
            folders.update(base / kind / video for kind in KINDS)
        if "json" in entry:
            name = entry["json"]
            if not isinstance(name, str) or PurePosixPath(name).name != name or not name.endswith(".json"):
                raise FFMaskError(f"{path} is corrupt (a dataset JSON {name!r}); remove the earlier export by hand "
                                  "or pick a new --out")
            names.add(name)
    return folders, names


def _unrecorded_file(top: Path, out: Path, folders: set[PurePosixPath]) -> Optional[Path]:
    """The first file under ``top`` outside the recorded ``folders`` (None: there is none)."""
    for root, dirs, files in os.walk(top):
        here = PurePosixPath(Path(root).relative_to(out).as_posix())
        dirs[:] = sorted(d for d in dirs if here / d not in folders)
        if files:
            return Path(root) / sorted(files)[0]
    return None


def _prune_empty(top: Path) -> None:
    """Remove the empty folders under ``top`` (and ``top`` when it ends empty), deepest first."""
    for root, _, _ in sorted(os.walk(top), key=lambda entry: -len(Path(entry[0]).parts)):
        try:
            Path(root).rmdir()
        except OSError:
            pass  # not empty: a file the record does not name, or another folder's


def remove_earlier_export(out: Path, layout: "Layout") -> tuple[int, int]:
    """Delete what an earlier export into ``out`` wrote, before an ``overwrite`` writes there.

    Deleted: the folders and dataset JSON files ``out``'s record
    (``RECORD_FILE``) names, the empty folders under the top folders it
    names and ``dataset_json/``, and the record.
    Refused first (FFMaskError, nothing deleted) when ``out`` holds export
    outputs no record names, since they cannot be told from the user's own
    files: a dataset JSON DeepfakeBench would open (any layout's name), or a
    file under the folder this export writes into (``layout.dataset``, e.g.
    an export made before exports kept a record, or DeepfakeBench's own
    preprocessing). Anything else in ``out`` is left alone.

    Returns
    -------
    (videos, json_files) : (int, int)
        How many videos' folders and dataset JSON files were deleted.
    """
    folders, names = read_record(out)
    known = {f"{spec.name}.json" for each in LAYOUTS.values() for spec in each.files}
    stale = sorted(p.name for p in (out / JSON_FOLDER).glob("*.json") if p.name in known - names)
    top = out / layout.dataset
    other = _unrecorded_file(top, out, folders) if top.is_dir() else None
    unrecorded = f"{JSON_FOLDER}/{stale[0]}" if stale else other.relative_to(out) if other is not None else None
    if unrecorded is not None:
        raise FFMaskError(f"--out {out} holds {unrecorded} that no ffmask export recorded there (an "
                          "export made before exports kept a record, or not ffmask's): remove that export by hand "
                          "or pick a new --out; --overwrite deletes only what an export recorded in " + RECORD_FILE)
    videos, json_files = set(), 0
    for rel in sorted(folders):
        folder = out / Path(rel)
        if folder.is_dir() and not folder.is_symlink():
            with _writing(folder):
                shutil.rmtree(folder)
            videos.add((rel.parent.parent, rel.name))  # base/kind/video: one video's three folders
    # the folders above the videos' (a killed export's may hold no video): only empty ones go
    for name in sorted({rel.parts[0] for rel in folders}):
        if (out / name).is_dir() and not (out / name).is_symlink():
            _prune_empty(out / name)
    for name in sorted(names):
        for path in (out / JSON_FOLDER / name, out / JSON_FOLDER / f"{name}.tmp"):
            if path.exists():
                with _writing(path):
                    path.unlink()
                json_files += path.suffix == ".json"
    if (out / JSON_FOLDER).is_dir():
        _prune_empty(out / JSON_FOLDER)
    (out / RECORD_FILE).unlink(missing_ok=True)
    return len(videos), json_files


class _Record:
    """Appends to ``out``'s record what the export is about to write (each line flushed before it)."""

    def __init__(self, out: Path, dataset: str):
        self.path = out / RECORD_FILE
        with _writing(self.path):
            self.file = open(self.path, "a")
        self.videos: set[tuple] = set()
        self.add({"export": "deepfakebench", "dataset": dataset})

    def add(self, entry: dict) -> None:
        with _writing(self.path):
            self.file.write(_record_line(entry))
            self.file.flush()

    def video(self, base: PurePosixPath, video: str) -> None:
        if (base, video) not in self.videos:
            self.videos.add((base, video))
            self.add({"base": str(base), "video": video})

    def close(self) -> None:
        self.file.close()


def _paths(out: Path, place: Placement, frame: str) -> tuple[Path, Path, Path]:
    where = out / place.base
    return (where / "frames" / place.video / f"{frame}.png",
            where / "masks" / place.video / f"{frame}.png",
            where / "landmarks" / place.video / f"{frame}.npy")


def _loader_paths(frame_path: str) -> tuple[str, str]:
    """The mask and landmark paths DeepfakeBench's loader derives from a frame path."""
    return frame_path.replace("frames", "masks"), frame_path.replace("frames", "landmarks").replace(".png", ".npy")


def _resized(image: np.ndarray, side: int, interpolation: str) -> np.ndarray:
    import cv2

    if image.shape[0] == side and image.shape[1] == side:
        return image
    flag = {"cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}[interpolation]
    if interpolation == "cubic" and side < image.shape[0]:
        flag = cv2.INTER_AREA  # shrinking: area averaging does not alias
    return cv2.resize(image, (side, side), interpolation=flag)


def _writing(path: Path):
    """A failed write of ``path`` (disk full, read-only, a file where a folder
    goes) is one OutputError line naming the file and the reason."""
    from ffmask.outdir import RERUN, writing

    return writing(path, then=RERUN)


def _write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise FFMaskError(f"cannot encode {path} as PNG")
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.tobytes())


def export_deepfakebench(
    shards,
    out,
    *,
    mask_map: Optional[str] = None,
    dataset: Optional[str] = None,
    size: Optional[int] = None,
    overwrite: bool = False,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> ExportReport:
    """Write ``shards`` as a DeepfakeBench dataset under ``out``.

    Parameters
    ----------
    shards : directory, shard file, or a list of them (see ``find_shards``).
    out : new (or empty) directory; gets ``<Name>/...`` folders and
        ``dataset_json/<Name>.json`` files (point DeepfakeBench's
        ``dataset_json_folder`` there), and ``RECORD_FILE`` listing them.
    mask_map : the mask map written as ``masks/``; None: the first of
        ``MASK_PREFERENCE`` the shards hold (no masks when none).
    dataset : our dataset name (``ff++``, ``celeb-df``, ``dfdc``, ``dfdcp``);
        None: the one the annotate run recorded (the ``run.json`` beside the
        shards, else the run config each shard carries: a copy of the shards
        without run.json exports alike).
    size : side of the written frames, masks and landmark space; None: the
        shards' crop size (shards of several crop sizes are then refused with
        FFMaskError naming them: pass a size). DeepfakeBench resizes frames to its
        ``resolution`` but not landmarks, so match it (256 by default) when a
        detector uses landmarks.
    overwrite : write into a non-empty ``out``: an earlier export there is
        replaced (:func:`remove_earlier_export` deletes what it recorded
        first; other files stay). False: a non-empty ``out`` is refused.
    on_progress : called as ``on_progress(faces_done, faces_total)``.

    Faces DeepfakeBench cannot take (unlabelled, a frame written twice, a
    name outside its layout) are skipped and counted by reason, never fatal.
    The export holds ``out``'s run lock (``run.lock``, deleted when it is
    done unless another command made it, such as annotate's when ``out`` is
    the shard folder): a second export into the same ``out`` meanwhile is refused with
    RunLockedError naming the first one's pid.
    Shards the annotate run's manifest names but that are gone are listed in
    ``report.missing_shards`` (their videos are not exported); shard folders
    an annotate run is still writing, in ``report.being_written``.
    """
    from ffmask.shards import find_shards

    from ffmask.pipeline import MAX_CROP_SIZE

    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_CROP_SIZE):
        raise FFMaskError(f"--size must be an integer from 8 to {MAX_CROP_SIZE} pixels, got {size!r}")
    files = find_shards(shards)
    dataset = _dataset_of(files, dataset)
    layout = LAYOUTS[dataset]
    index, mask_map = _open_index(files, mask_map)
    if size is None:
        _one_crop_size(index)
    out = _check_out(Path(out))
    # Two exports into one --out would mix their files under one JSON: the second is refused.
    # Its lock file goes when it is done, unless another command's (annotate's, in the shard folder).
    with RunLock(out, cleanup="own", kind="export"):
        _check_empty(out, overwrite)
        replaced = remove_earlier_export(out, layout) if overwrite else (0, 0)
        record = _Record(out, dataset)
        try:
            report = _export(index, files, out, dataset, layout, mask_map, size, on_progress, record)
        finally:
            record.close()
        report.replaced = replaced
        return report


def _export(index, files, out: Path, dataset: str, layout: "Layout", mask_map: Optional[str], size: Optional[int],
            on_progress, record: "_Record") -> ExportReport:
    """:func:`export_deepfakebench` once ``out`` is checked and locked."""
    report = ExportReport(out=out, dataset=dataset, mask_map=mask_map, missing_shards=missing_shards(files),
                          being_written=shards_being_written(files))

    # label_key -> split -> (comp or None) -> video -> entry
    table: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    owners: dict[tuple, str] = {}  # (base, video) -> the video_id exported there
    # (label key, compression, video) -> the video_id listed under that name: the JSON keys a video by its
    # name alone, so two videos of one label in two folders (FaceSwap/000_001 and Deepfakes/000_001 under
    # --dataset dfdc) would become one video holding both videos' frames
    listed: dict[tuple, str] = {}
    frames_seen: set[tuple] = set()
    total = len(index)
    for i in range(total):
        face = index.read(i, geometry=True)
        try:
            if face["label"] not in (0, 1):
                raise Skip("unlabelled face (DeepfakeBench needs real or fake)")
            place = layout.place(face)
            owner = owners.setdefault((place.base, place.video), face["video_id"])
            if owner != face["video_id"]:
                raise Skip(f"two videos map to one DeepfakeBench folder ({owner}, {face['video_id']})")
            named = listed.setdefault((place.label_key, place.compression, place.video), face["video_id"])
            if named != face["video_id"]:
                raise Skip(f"two {place.label_key} videos would be one video {place.video!r} of the dataset JSON "
                           f"({named}, {face['video_id']})")
            frame = f"{face['frame_index']:03d}"
            if (place.base, place.video, frame) in frames_seen:
                raise Skip("frame already exported (a second face of one frame, or shards given twice)")
            frame_path, mask_path, landmark_path = _paths(out, place, frame)
            if _loader_paths(str(frame_path)) != (str(mask_path), str(landmark_path)):
                # one video's name must not stop the whole export half-way (a DFDC name may hold "frames")
                raise Skip("its name contains 'frames' (DeepfakeBench would look for its masks and landmarks "
                           "elsewhere)")
        except Skip as why:
            report.skipped[str(why)] += 1
            if on_progress:
                on_progress(i + 1, total)
            continue
        frames_seen.add((place.base, place.video, frame))
        record.video(place.base, place.video)
        side = size or face["image"].shape[0]
        mask = face["maps"][mask_map] if mask_map else np.zeros(face["image"].shape[:2], np.uint8)
        _write_png(frame_path, _resized(face["image"], side, "cubic"))
        _write_png(mask_path, _resized(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), side, "nearest"))
        # the crop box maps frame points to any crop side, so landmarks need no resizing step
        points = landmarks81(face["landmarks"], face["box"], side)
        report.no_landmarks += int(not points.any())
        with _writing(landmark_path):
            landmark_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(landmark_path, points)

        splits = (face["split"],) if face["split"] in SPLITS else SPLITS
        for split in splits:
            videos = table[place.label_key][split][place.compression if layout.by_compression else None]
            entry = videos.setdefault(place.video, {"label": place.label_key, "frames": [], "masks": []})
            if not entry["frames"]:
                report.video_counts[(place.label_key, split)] += 1
                if len(splits) > 1 and split == SPLITS[0]:
                    report.unsplit_videos += 1
            entry["frames"].append(str(frame_path))
            entry["masks"].append(str(mask_path))
            report.counts[(place.label_key, split)] += 1
        report.faces += 1
        if on_progress:
            on_progress(i + 1, total)

    report.videos = len({(base, video) for base, video, _ in frames_seen})
    report.json_files = _write_json(out, layout, table, record)
    return report


def _sorted_entry(entry: dict) -> dict:
    order = sorted(range(len(entry["frames"])), key=lambda j: int(Path(entry["frames"][j]).stem))
    return {"label": entry["label"], "frames": [entry["frames"][j] for j in order],
            "masks": [entry["masks"][j] for j in order]}


def _write_json(out: Path, layout: Layout, table: dict, record: "_Record") -> list[Path]:
    folder = out / JSON_FOLDER
    with _writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in layout.files:
        if not any(key in table for key in spec.requires):
            continue
        comps = sorted({c for key in spec.label_keys for split in table.get(key, {}).values() for c in split})
        body = {}
        for key in spec.label_keys:
            body[key] = {}
            for split in SPLITS:
                levels = table.get(key, {}).get(split, {})
                if layout.by_compression:
                    # every compression level in every split: the loader indexes [split][comp] blindly
                    body[key][split] = {c: {v: _sorted_entry(e) for v, e in sorted(levels.get(c, {}).items())}
                                        for c in comps}
                else:
                    body[key][split] = {v: _sorted_entry(e) for v, e in sorted(levels.get(None, {}).items())}
        path = folder / f"{spec.name}.json"
        record.add({"json": path.name})
        tmp = path.with_suffix(".json.tmp")
        try:
            with _writing(path):
                tmp.write_text(json.dumps({spec.name: body}))
                tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written
