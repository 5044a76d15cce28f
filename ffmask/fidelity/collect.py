"""Collection: the (real crop, fake crop, true mask, landmarks) faces a mask benchmark scores.

Two sources, one :class:`FaceSample` each:

- :func:`collect_faces`: an FF++-style tree with mask videos (``ffmask
  synth``, or FF++ itself), through the annotate pipeline;
- :func:`collect_pairs`: a single-frame pairs folder (``ffmask synth
  --pairs``), already compressed and cropped.

:func:`collect` picks by what the folder holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ffmask.errors import FFMaskError

__all__ = ["FaceSample", "collect_faces", "collect_pairs", "collect", "is_pairs_folder", "tuned_on", "exclude_tuned"]

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class FaceSample:
    """One fake face crop with its original and its true mask.

    real, fake : uint8 (S, S, 3) RGB crops with the same box.
    truth : bool (S, S), True where the fake was manipulated.
    landmarks : float32 (68, 2) in crop pixels, or None.
    tags : what the face may be grouped by besides manipulation and
        compression: ``region``, ``operation``, ``blend``, ``identity``
        for family forgeries.
    """

    video_id: str
    manipulation: str
    compression: str
    frame_index: int
    real: np.ndarray
    fake: np.ndarray
    truth: np.ndarray
    landmarks: Optional[np.ndarray] = None
    tags: dict = field(default_factory=dict)

    def key(self, by: str) -> str:
        """The face's value of a grouping axis: ``manipulation``, ``compression`` or a tag."""
        if by in ("manipulation", "compression"):
            return getattr(self, by)
        return str(self.tags.get(by, "-"))


def _family_tags(params: dict, identity: Optional[str] = None) -> dict:
    tags = {k: params[k] for k in ("region", "operation", "blend") if k in params}
    if identity is not None:
        # a portrait key (obama2-mirrored); mirrored copies and several photos
        # of one person are one person: held-out identities are held out by person
        from ffmask.synth.portraits import portrait_info

        name = identity.split("-")[0]
        try:
            tags["person"] = portrait_info(name)["person"]
        except FFMaskError:  # not a bundled portrait: the name is all we know
            tags["person"] = name
    if "strength" in params:
        tags["strength"] = ("weak" if params["strength"] < 1 / 3 else "medium" if params["strength"] < 2 / 3
                            else "strong")
    if identity is not None:
        tags["identity"] = identity
    return tags


def _check_asked_manipulations(root, manipulations, groups) -> None:
    """Refuse manipulations asked for by name that have no fake with a mask video under ``root``.

    The report's tables and means cover the manipulations it found: one asked for but absent would be
    left out of them without a word (``--manipulations Deepfakes,FaceSwap`` on a tree without FaceSwap
    masks reads as a benchmark of both).
    """
    from ffmask.datasets.ffpp import parse_manipulations

    asked = parse_manipulations(manipulations)
    if asked is None:
        return
    found = {item.manipulation for group in groups for item in group.items if item.label == 1}
    absent = [m for m in asked if m not in found]
    if absent:
        raise FFMaskError(f"{root}: no fake video with a mask video for --manipulations {', '.join(absent)} "
                          f"(found: {', '.join(sorted(found))}); leave them out or add their videos and masks")


def collect_faces(
    root,
    *,
    compressions: Sequence[str] = ("c23", "c40"),
    manipulations: Optional[Sequence[str] | str] = None,
    frames: int = 8,
    size: int = 224,
    scale: float = 1.3,
    detector: str = "dlib",
    videos: Optional[Callable[[str], bool]] = None,
    progress: Optional[Progress] = None,
) -> list[FaceSample]:
    """Decode, detect and crop every fake face of an FF++-style tree with masks.

    Exactly what ``ffmask annotate ff++ --method official`` does, for each
    compression and each fake that has a mask video: ``frames`` evenly
    spaced frame indices of its original (the same for fake and mask),
    face detected on the original frame (largest face; frames without one
    are skipped), crop box ``crop_box(face, scale)`` applied to all three,
    resized to ``size``; the landmarks are mapped into the crop.
    ``videos`` filters fakes by video id (e.g. ``"Deepfakes/000_001"``).
    ``progress(done, total, original_id)`` is called after each original.
    Family fakes of a synth tree are tagged with their region, operation,
    blend and strength from ``ground_truth.json``.

    Raises FFMaskError when the tree has no fake with a mask video.
    """
    from ffmask.datasets.ffpp import scan_ffpp
    from ffmask.faces import get_detector, points_to_crop
    from ffmask.pipeline import JobSpec, annotate_group, plan_groups

    # The annotate path itself (the original's detections and box for every
    # fake, the mask video cropped alike), so the benchmark measures what
    # users get; "official" turns the mask crop into the true mask.
    spec = JobSpec(methods=("official",), frames=frames, size=size, scale=scale, detector=detector)
    groups = []
    for comp in compressions:
        scan = scan_ffpp(root, compression=comp, manipulations=manipulations, include_originals=False)
        items = [
            item for item in scan.items
            if item.original is not None and item.mask_path is not None and Path(item.mask_path).is_file()
            and (videos is None or videos(item.video_id))
        ]
        groups += plan_groups(items, paired=True)
    if not groups:
        raise FFMaskError(f"{root}: no fake video with a mask video found for compressions {list(compressions)}"
                          + (f" and manipulations {manipulations}" if manipulations is not None else ""))
    _check_asked_manipulations(root, manipulations, groups)
    tags = {}
    gt = Path(root) / "ground_truth.json"
    if gt.is_file():
        truth = json.loads(gt.read_text("utf-8"))
        portraits = {vid: o.get("portrait", vid) + ("-mirrored" if o.get("mirrored") else "")
                     for vid, o in truth.get("originals", {}).items()}
        for f in truth.get("fakes", []):
            tags[f"{f['method']}/{f['name']}"] = _family_tags(f.get("params", {}), portraits.get(f.get("target")))

    det = get_detector(detector, landmarks=True)
    out: list[FaceSample] = []
    for done, group in enumerate(groups, 1):
        group.write_original = True  # its records carry the real crops
        records = annotate_group(group, spec, det).records
        reals = {r.frame_index: r.image for r in records if r.label == 0}
        for rec in records:
            if rec.label != 1 or rec.frame_index not in reals:
                continue
            lms = None if rec.landmarks is None else points_to_crop(rec.landmarks, rec.box, size)
            out.append(FaceSample(rec.video_id, rec.manipulation, rec.compression, rec.frame_index,
                                  reals[rec.frame_index], rec.image, np.asarray(rec.maps["official"], bool), lms,
                                  tags.get(rec.video_id, {})))
        if progress:
            progress(done, len(groups), group.original.video_id)
    return out


def is_pairs_folder(root) -> bool:
    """Whether ``root`` was written by ``ffmask synth --pairs``."""
    from ffmask.synth.pairs import PAIRS_FILE

    return (Path(root) / PAIRS_FILE).is_file()


def collect_pairs(
    root,
    *,
    compressions: Sequence[str] = ("c23", "c40"),
    keep: Optional[Callable[[dict], bool]] = None,
    progress: Optional[Progress] = None,
) -> list[FaceSample]:
    """Every crop pair of a pairs folder as a :class:`FaceSample`.

    manipulation is ``region/operation/blend``; tags hold each axis, the
    strength band (weak < 1/3 <= medium < 2/3 <= strong) and the identity.
    ``keep(record)`` filters samples by their ``pairs.json`` record.
    """
    from ffmask.synth.pairs import read_pairs

    out = []
    for ps in read_pairs(root, compressions):
        if keep is not None and not keep(ps.record):
            continue
        out.append(FaceSample(f"{Path(root).name}/{ps.id}", ps.record["family"], ps.compression, 0, ps.real,
                              ps.fake, ps.truth, ps.landmarks,
                              _family_tags(ps.record["params"], ps.record["identity"])))
        if progress:
            progress(len(out), None, ps.id)
    if not out:
        raise FFMaskError(f"{root}: no pair left for compressions {list(compressions)}")
    return out


def collect(root, *, compressions: Sequence[str] = ("c23", "c40"), **tree_options) -> list[FaceSample]:
    """:func:`collect_pairs` for a pairs folder, else :func:`collect_faces` with ``tree_options``."""
    if is_pairs_folder(root):
        if tree_options.get("manipulations") is not None:
            # a pairs folder's samples have no FF++ manipulation: the selection would be ignored
            raise FFMaskError(f"{root} is a pairs folder (ffmask synth --pairs), whose samples have no FF++ "
                              "manipulation: --manipulations selects fakes of an FF++ tree; leave it out")
        return collect_pairs(root, compressions=compressions, keep=tree_options.get("keep"),
                             progress=tree_options.get("progress"))
    tree_options.pop("keep", None)
    return collect_faces(root, compressions=compressions, **tree_options)


#: The family axes a leave-families-out protocol keeps apart, and the identity.
HELD_AXES = ("region", "operation", "person")


def tuned_on(root) -> dict[str, set]:
    """What a pairs folder used for tuning covers: ``{axis: values}`` for :data:`HELD_AXES`."""
    faces_tags = [_family_tags(rec["params"], rec["identity"]) for rec in _pairs_records(root)]
    return {axis: {t[axis] for t in faces_tags if axis in t} for axis in HELD_AXES}


def _pairs_records(root) -> list[dict]:
    from ffmask.synth.pairs import PAIRS_FILE

    path = Path(root) / PAIRS_FILE
    if not path.is_file():
        raise FFMaskError(f"{root}: no {PAIRS_FILE}; the tuning set must be a folder written by `ffmask synth --pairs`")
    return json.loads(path.read_text("utf-8"))["samples"]


def exclude_tuned(faces: Sequence[FaceSample], tuned: dict[str, set]) -> list[FaceSample]:
    """The faces that share no region, no operation and no person with the tuning set ``tuned``
    (:func:`tuned_on`): the leave-families-out report set."""
    return [f for f in faces if all(f.tags.get(axis) not in tuned.get(axis, ()) for axis in HELD_AXES)]
