"""The per-video job: sample → decode pair → detect → crop → targets → records.

A *group* is one original and the fakes made from it (or one unpaired video).
Detections on an original are computed once and reused by all of its fakes,
and the same crop box is applied to the original, each fake and each fake's
mask-video frame.

Everything here is a pure function of a :class:`VideoItem` group and a
:class:`JobSpec`; it decodes, detects and computes, and returns records and
manifest entries. Writing shards and deciding what to resume live in
:mod:`ffmask.annotate`.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ffmask.datasets.base import VideoItem
from ffmask.errors import VideoError


def method_spec(name: str):
    """The :class:`ffmask.targets.MethodSpec` of a CLI method name.

    Raises ValueError listing the valid names for an unknown one.
    """
    from ffmask import targets

    return targets.get_method(name)


def parse_checkpoints(value, methods: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--checkpoint`` -> sorted ((method, path), ...) pairs; OptionError for a bad value.

    value : None or ``()`` (none given); a path, which goes to the one
        model-backed method among ``methods`` (several: ambiguous, name
        them); ``"METHOD=PATH[,METHOD=PATH...]"``; a mapping {method: path};
        or pairs as this function returns them. Every named method must be
        a requested model-backed method.
    """
    from ffmask.errors import OptionError

    model_methods = [n for n in methods if method_spec(n).batched]
    if value is None or (isinstance(value, (tuple, list, dict)) and not value):
        return ()
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        text = str(value).strip()
        parts = [p.strip() for p in text.split(",")]
        named = [p.partition("=") for p in parts]
        if all(eq and _is_method(name.strip()) for name, eq, _ in named):
            pairs = [(name.strip(), path.strip()) for name, _, path in named]
        elif any(eq and _is_method(name.strip()) for name, eq, _ in named):
            raise OptionError(f"--checkpoint {text!r}: give one PATH, or METHOD=PATH for every entry")
        else:  # one bare path (it may itself hold ',' or '=')
            if not model_methods:
                raise OptionError("--checkpoint is for model-backed methods "
                                  f"({', '.join(_model_method_names())}); none is requested")
            if len(model_methods) > 1:
                raise OptionError(f"--checkpoint {text!r} is ambiguous with several model-backed methods "
                                  f"({', '.join(model_methods)}): write "
                                  + ",".join(f"{n}=PATH" for n in model_methods))
            pairs = [(model_methods[0], text)]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        try:
            pairs = [tuple(p) for p in value]
        except TypeError:
            raise OptionError(f"checkpoints must be a path, METHOD=PATH or a mapping, got {value!r}") from None
    out = {}
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], str) and \
                not hasattr(pair[1], "__fspath__"):
            raise OptionError(f"checkpoints must map method names to paths, got {pair!r}")
        name, path = pair[0], str(pair[1])
        if not path:
            raise OptionError(f"--checkpoint {name}=: the path is empty")
        if name not in model_methods:
            raise OptionError(f"--checkpoint names {name!r}, which is not a requested model-backed method "
                              f"(requested: {', '.join(model_methods) or 'none'})")
        if name in out:
            raise OptionError(f"--checkpoint gives {name!r} twice")
        out[name] = path
    return tuple(sorted(out.items()))


def _model_method_names() -> list[str]:
    from ffmask import targets

    return [n for n in targets.available_methods() if "@" not in n and targets.get_method(n).batched]


def _is_method(name: str) -> bool:
    from ffmask import targets

    return name in targets.available_methods()


#: Largest crop side ``--size`` accepts (pixels). A typo such as 100000 once
#: ran until the first shard dataset (h5py: a chunk over 4 GB) or an
#: out-of-memory error, with a traceback and ``--out`` already made; a
#: 4096 px face crop is 48 MiB, far beyond any detector's input.
MAX_CROP_SIZE = 4096


@dataclass(frozen=True)
class JobSpec:
    """What to compute for every face; picklable, the same for every task of a run."""

    methods: tuple[str, ...]
    frames: Optional[int] = 20
    every: Optional[int] = None
    detector: str = "dlib"
    scale: float = 1.3
    size: int = 224
    noise_sigma: Optional[float] = None
    #: checkpoints of model-backed methods (``--checkpoint``): ``"PATH"`` for
    #: the one model-backed method requested, ``"A=PATH,B=PATH"`` naming
    #: methods, or a mapping {method: path}; normalised to sorted ((method,
    #: path), ...) pairs. A method given none uses its own default, or its
    #: ``check`` refuses the run. See :meth:`checkpoint_for`.
    checkpoints: Union[str, Mapping[str, str], tuple, None] = ()
    device: Optional[str] = None
    #: store the 68 landmarks of every face even when no method needs them
    #: (e.g. for ``ffmask export deepfakebench``); otherwise the predictor
    #: runs only for methods that take landmarks.
    landmarks: bool = False
    #: check that each video's face track stays one person (dlib's face
    #: recognition ResNet, :mod:`ffmask.faces.identity`) and record where it
    #: changes (``person_changes`` in the manifest): None, the dataset says
    #: which videos may cut to another person (:attr:`VideoItem.may_cut`:
    #: ``folder``, Celeb-DF's YouTube-real); True every video; False none.
    person_check: Optional[bool] = None

    def __post_init__(self):
        # Every value is checked here, where the spec is made, so a bad one
        # fails before a run touches --out, never later inside a worker.
        from ffmask.errors import OptionError
        from ffmask.options import positive_float, positive_int

        methods = (self.methods,) if isinstance(self.methods, str) else self.methods
        try:
            methods = tuple(methods)
        except TypeError:
            raise OptionError(f"methods must be a sequence of method names, got {self.methods!r}") from None
        if not methods:
            raise OptionError("no --method given")
        for name in methods:
            if not isinstance(name, str):
                raise OptionError(f"--method names must be strings, got {name!r}")
            try:
                method_spec(name)
            except ValueError as exc:
                raise OptionError(str(exc)) from None
        if len(set(methods)) != len(methods):
            raise OptionError(f"--method lists a method twice: {','.join(methods)}")
        seen: dict = {}
        for name in methods:
            other = seen.setdefault(method_spec(name).key, name)
            if other != name:
                raise OptionError(f"--method lists one map twice: {other} and {name} are the same method")
        object.__setattr__(self, "methods", methods)
        if self.every is not None:
            # --every replaces --frames (whose default is always set).
            object.__setattr__(self, "every", positive_int(self.every, "--every"))
            object.__setattr__(self, "frames", None)
        elif self.frames is None:
            raise OptionError("give --frames N or --every K")
        else:
            object.__setattr__(self, "frames", positive_int(self.frames, "--frames"))
        from ffmask.faces import DETECTORS

        if self.detector not in DETECTORS:
            raise OptionError(f"unknown --detector {self.detector!r}; choose one of {', '.join(DETECTORS)}")
        size = positive_int(self.size, "--size")
        if size < 8:
            raise OptionError(f"--size must be >= 8 pixels, got {size}")
        if size > MAX_CROP_SIZE:
            raise OptionError(f"--size must be at most {MAX_CROP_SIZE} pixels, got {size}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "scale", positive_float(self.scale, "--scale"))
        if self.noise_sigma is not None:
            object.__setattr__(self, "noise_sigma", positive_float(self.noise_sigma, "--noise-sigma"))
        object.__setattr__(self, "checkpoints", parse_checkpoints(self.checkpoints, methods))
        if self.device is not None and not isinstance(self.device, str):
            raise OptionError(f"device must be a str or None, got {self.device!r}")
        if not isinstance(self.landmarks, bool):
            raise OptionError(f"landmarks must be True or False, got {self.landmarks!r}")
        if self.person_check is not None and not isinstance(self.person_check, bool):
            raise OptionError(f"person_check must be True, False or None (the dataset's choice), "
                              f"got {self.person_check!r}")

    def checkpoint_for(self, method: str) -> Optional[str]:
        """The ``--checkpoint`` given for model-backed method ``method``, or None (its default)."""
        return dict(self.checkpoints).get(method)

    @property
    def uses_device(self) -> bool:
        """True when something of this run runs on ``device``: MTCNN or a model-backed method."""
        return self.detector_device is not None or any(method_spec(n).batched for n in self.methods)

    @property
    def detector_device(self) -> Optional[str]:
        """The device handed to the face detector: ``device`` for detectors
        that run on torch (MTCNN), None for CPU-only ones (dlib). ``device``
        is for MTCNN and model-backed methods; it never reaches dlib."""
        import inspect

        from ffmask.faces import DETECTORS

        takes_device = "device" in inspect.signature(DETECTORS[self.detector]).parameters
        return self.device if takes_device else None


@dataclass
class Group:
    """An original (possibly not itself written) and the items to annotate with it."""

    original: Optional[VideoItem]
    items: list[VideoItem]
    write_original: bool = False

    @property
    def anchor(self) -> VideoItem:
        """The video that supplies the group's frames and boxes: the original when there is one, else
        its one item (an unpaired group holds exactly one)."""
        return self.original if self.original is not None else self.items[0]


@dataclass
class GroupResult:
    records: list = field(default_factory=list)  # list[ffmask.shards.FaceRecord]
    entries: list[dict] = field(default_factory=list)  # manifest entries
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class _Timer:
    def __init__(self, seconds: dict, stage: str):
        self.seconds, self.stage = seconds, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.stage] += time.perf_counter() - self.t0


def _entry(item: VideoItem, status: str, reason: str = "", **extra) -> dict:
    return {
        "video_id": item.video_id,
        "status": status,
        "reason": reason,
        "label": item.label,
        "manipulation": item.manipulation,
        **extra,
    }


def _decode(item: VideoItem, indices=None, frames=None, every=None, *, around: bool = False):
    """(indices, {index: frame}, n_frames, {index: Thumbnail}) for one video, opened once; raises VideoError.

    With ``around``, the last item holds the thumbnails of the frames
    :func:`ffmask.pair_checks.time_mismatch` compares each fake's frames
    with (the sampled checkpoints' neighbours, :func:`~ffmask.pair_checks.alignment_window`),
    decoded in the same pass; else it is empty.
    """
    from ffmask import video
    from ffmask.pair_checks import alignment_checkpoints, alignment_window, thumbnail

    with video.VideoReader(item.path) as reader:
        if indices is None:
            indices = video.sample_indices(reader.n_frames, frames=frames, every=every)
        sampled = {int(i) for i in indices}
        window = alignment_window(alignment_checkpoints(sampled), reader.n_frames) if around else set()
        decoded, thumbs = {}, {}
        for index, frame in reader.frames(sorted(sampled | window)):
            if index in window:
                thumbs[index] = thumbnail(frame)
            if index in sampled:
                decoded[index] = frame
    return np.asarray(indices), decoded, reader.n_frames, thumbs


@dataclass
class _Crops:
    """What one fake (or mask) video gave at the sampled frames, without its frames.

    shapes : {index: frame shape} of every sampled frame that decoded.
    crops : {index: (crop, box, landmarks)} where the anchor has a box and the
        frame is the anchor's picture at some scale: the crop, and the box and
        landmarks carried to this video's pixels.
    n_frames : the video's frame count (a mask video's as :func:`ffmask.video.probe` gives it).
    thumbnail : :class:`ffmask.pair_checks.Thumbnail` of the frame at the
        ``thumbnail_at`` index, for the orientation check (None when not asked
        for or that frame did not decode).
    thumbnails : {index: Thumbnail} of the frames at ``thumbnails_at`` that
        decoded, for the alignment check.
    turn : what the video's display matrix does (:func:`ffmask.video.display_turn`; a
        fake's from the frames it gave, a mask video's read only when one is used).
    """

    shapes: dict
    crops: dict
    n_frames: Optional[int] = None
    thumbnail: Any = None
    thumbnails: dict = field(default_factory=dict)
    turn: Optional[str] = None


def _read_crops(frames, boxes: dict, anchor_shapes: dict, size: int, seconds: dict, *,
                interpolation: str = "auto", landmarks: bool = True,
                thumbnail_at: Optional[int] = None, thumbnails_at=frozenset()) -> _Crops:
    """Crop each decoded frame of ``frames`` as it comes.

    ``frames`` yields ``(index, frame)``, or ``(index, plane, table)`` as
    :func:`ffmask.video.stream_gray_planes` does (the frame is
    ``cv2.LUT(plane, table)``; with ``interpolation="nearest"`` the table
    is applied to the crop, which picks pixels, so to fewer of them). Only
    one full frame is alive at a time. Time spent cropping goes to
    ``seconds["crop"]``; the caller times the whole (decode included).
    """
    import cv2

    from ffmask.faces import crop_resize, same_aspect
    from ffmask.pair_checks import thumbnail

    shapes, crops, thumb, thumbs = {}, {}, None, {}
    for index, frame, *table in frames:
        table = table[0] if table else None
        if table is not None and (interpolation != "nearest" or index == thumbnail_at or index in thumbnails_at):
            frame, table = cv2.LUT(frame, table), None
        shapes[index] = frame.shape
        if index == thumbnail_at:
            thumb = thumbnail(frame)
        if index in thumbnails_at:
            thumbs[index] = thumb if index == thumbnail_at else thumbnail(frame)
        if index not in boxes or not same_aspect(anchor_shapes[index], frame.shape):
            continue  # no face there, or a size mismatch the caller reports
        box, lms = boxes[index]
        own_box, own_lms = _carry(box, lms if landmarks else None, anchor_shapes[index], frame.shape)
        with _Timer(seconds, "crop"):
            crop = crop_resize(frame, own_box, size, interpolation=interpolation)
            if table is not None:
                crop = cv2.LUT(crop, table)
            crops[index] = (crop, own_box, own_lms)
    return _Crops(shapes, crops, thumbnail=thumb, thumbnails=thumbs)


def _read_fake(item: VideoItem, indices, boxes, anchor_shapes, spec: JobSpec, ann, seconds,
               checkpoints=frozenset()) -> tuple:
    """(fake :class:`_Crops`, mask :class:`_Crops` or None) of one fake; raises VideoError.

    checkpoints : indices whose thumbnails the fake's crops keep (the alignment check)."""
    from ffmask import video

    with video.VideoReader(item.path) as reader:
        fake = _read_crops(reader.frames(indices), boxes, anchor_shapes, spec.size, seconds,
                           thumbnail_at=min(boxes, default=None), thumbnails_at=frozenset(checkpoints))
        fake.n_frames = reader.n_frames
        fake.turn = reader.display_turn  # of the frames just decoded
    mask = None
    if ann.needs_mask_video:
        # opened once for its frame count and its frames (was twice: a probe, then the frames)
        with video.VideoReader(item.mask_path) as reader:
            # grey masks: the luma-to-grey table is applied to each crop, not to the whole frame
            frames = reader.gray_planes(indices) if ann.gray_masks else reader.frames(indices)
            mask = _read_crops(frames, boxes,
                               anchor_shapes, spec.size, seconds, interpolation="nearest", landmarks=False)
            # the header's count (a download cut short keeps it: its missing frames are frames without a mask)
            mask.n_frames = reader.n_frames
            # both read as displayed: a display matrix on one only turns the mask against its fake
            # (read from the mask frames just decoded, as the fake's)
            mask.turn = reader.display_turn
    return fake, mask


def _mask_turn_mismatch(mask_turn: str, fake_turn: str) -> str:
    """Why a mask video whose display matrix turns it otherwise than its fake's is not used.

    Frames are read as displayed, so a display matrix on the mask video alone
    (a tool that re-encoded it and added one) turns every mask against its
    fake, and on the fake alone (a baked-in mask) the other way. A mask shares
    no picture with its fake, so nothing in the frames says which is right
    (session 12 measured a picture score finding only two thirds of turned
    masks), and FF++'s masks were made from frames decoded by tools that did
    or did not apply the matrix, depending on their version.
    """
    return (f"mask video is displayed {mask_turn}, its fake {fake_turn} (display matrices in the files): "
            "which way the mask fits its fake cannot be told from the pictures; re-encode the mask video with "
            "its fake's display matrix")


def _mask_count_mismatch(mask_frames: int, fake_frames: int, original_frames: int) -> str:
    """Why a mask video with another frame count than its fake and its original is not used.

    A mask video is its fake's frame-for-frame mask (FF++'s ``masks/videos``),
    so the two have one frame count, or the original's when the fake is cut
    short at its end (the fake's start is checked to be aligned with the
    original's, :func:`ffmask.pair_checks.time_mismatch`). Another count says
    it is not: frames
    missing or extra at its start (a cut, another encoding, another method's
    or another fake's mask) would give every face the mask of another moment,
    and no picture check can see that: a mask shares no picture with the fake
    to compare, and how it covers where the fake differs from its original
    was measured not to tell a mask shifted by 2-10 frames (nor another
    method's mask of the same pair) from the right one (session 12,
    ``docs/reliability_audit.md``). A mask video whose header gives the
    fake's count but that is cut short (an interrupted download) is still
    used: its frames past the cut are ``frames_without_mask``.
    """
    also = "" if original_frames == fake_frames else f" and its original {original_frames}"
    return (f"mask video has {mask_frames} frames, its fake {fake_frames}{also}: not the fake's frame-for-frame mask "
            "(frames missing or extra at its start would give each face the mask of another moment, which no "
            "picture check can tell); the wrong mask video, or cut or re-encoded?")


def _detect(frames: dict, detector, spec: JobSpec):
    """({index: (box int32 (4,), landmarks float32 (68,2) or None)} for frames with
    the tracked face, most faces seen in one frame, {index: tracked Face}); see
    :mod:`ffmask.faces.track`."""
    from ffmask.faces import crop_box
    from ffmask.faces.track import track_faces

    order = sorted(frames)
    track = track_faces(detector.detect_batch([frames[i] for i in order]))
    boxes, faces = {}, {}
    for index, face in zip(order, track.faces):
        if face is None:
            continue
        boxes[index] = (crop_box(face.box, frames[index].shape, spec.scale), face.landmarks)
        faces[index] = face
    return boxes, track.faces_seen, faces


def checks_person(anchor: VideoItem, spec: JobSpec) -> bool:
    """Whether the face track of ``anchor`` (the video whose boxes a group uses) is checked to be one person:
    ``spec.person_check`` when given (``--person-check`` / ``--no-person-check``), else what the dataset
    says of the video (:attr:`VideoItem.may_cut`)."""
    return anchor.may_cut if spec.person_check is None else spec.person_check


def _person_changes(frames: dict, faces: dict) -> list[int]:
    """Frame indices where the tracked face is another person than at the sampled frame before.

    frames : {index: uint8 (H, W, 3) frame}; faces : {index: tracked :class:`ffmask.faces.Face`}.
    Descriptors are computed only for the faces :func:`ffmask.faces.identity.person_changes` asks for
    (its five probes for a track of one person).
    """
    from ffmask.faces import identity

    order = sorted(faces)

    def descriptor(i: int):
        face = faces[order[i]]
        return identity.face_descriptor(frames[order[i]], face.box, face.landmarks)

    return [int(order[i]) for i in identity.person_changes(len(order), descriptor)]


class _Annotator:
    """Computes every requested map of one face crop (or real/fake crop pair).

    Everything a method needs is read from its registry entry (inputs,
    landmarks, parameters from the item, a model run in batches); nothing
    here tests a method's name.
    """

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.methods = [method_spec(name) for name in spec.methods]
        self.kinds = {m.name: m.kind for m in self.methods}
        # Model-backed methods run over batches of faces, see add_model_maps.
        self.batched = [m for m in self.methods if m.batched]
        self.per_face = [m for m in self.methods if not m.batched]
        # a method that uses another's result (MethodSpec.uses) runs after it when both are requested
        from ffmask.targets.registry import dependency_order

        self.per_face_order = dependency_order(self.per_face)

    @property
    def needs_original(self) -> bool:
        # official crops the mask video with the original's box, like the comparisons
        return any(m.paired or m.input == "mask_video" for m in self.methods)

    @property
    def needs_mask_video(self) -> bool:
        return any(m.input == "mask_video" for m in self.methods)

    @property
    def gray_masks(self) -> bool:
        """Every mask-video method reads grey frames: decode mask videos to grey."""
        return all(m.gray for m in self.methods if m.input == "mask_video")

    @property
    def needs_landmarks(self) -> bool:
        return any(m.landmarks for m in self.methods)

    @property
    def extras(self) -> tuple[str, ...]:
        """Per-face scalars the requested methods add to every record."""
        return tuple(e for m in self.methods for e in m.extras)

    def params(self, item: VideoItem) -> dict:
        """map name -> the parameters taken from ``item`` (recorded with the face, e.g. noise σ)."""
        return {m.name: m.item_kwargs(item, self.spec) for m in self.per_face if m.item_kwargs is not None}

    def zeros(self, kind: str, size: int) -> np.ndarray:
        if kind == "noise":
            return np.zeros((size, size, 3), np.float32)
        return np.zeros((size, size), np.bool_ if kind == "mask" else np.float32)

    def maps(self, crop, *, item: VideoItem, real_crop=None, mask_crop=None, landmarks=None,
             is_real: bool) -> dict:
        """Every per-face map of one crop; ``landmarks`` are in crop pixels (or None)."""
        out = {}
        size = crop.shape[0]
        params = self.params(item)
        for m in self.per_face_order:
            kwargs = params.get(m.name, {})
            if m.uses and not is_real:
                kwargs = {**kwargs, **{u: out[u] for u in m.uses if u in out}}
            if m.input == "mask_video":
                out[m.name] = self.zeros(m.kind, size) if is_real else m.fn(mask_crop, **kwargs)
            elif m.paired:
                # A real face compared with itself: nothing was manipulated.
                if is_real:
                    out[m.name] = self.zeros(m.kind, size)
                elif m.landmarks:
                    out[m.name] = m.fn(real_crop, crop, landmarks=landmarks, **kwargs)
                else:
                    out[m.name] = m.fn(real_crop, crop, **kwargs)
            else:
                out[m.name] = m.fn(crop, **kwargs)
        return {m.name: out[m.name] for m in self.per_face}

    def add_model_maps(self, records) -> None:
        """Run every model-backed method once over ``records`` (any number of videos)."""
        if not records or not self.batched:
            return
        images = np.stack([r.image for r in records])
        labels = np.array([r.label for r in records], np.int64)
        for m in self.batched:
            maps, extras = m.fn(worker_model(m.name, self.spec), images, labels)
            for i, r in enumerate(records):
                r.maps[m.name] = maps[i]
                for name in m.extras:
                    r.extras[name] = float(extras[name][i])


def _make_record(item, crop, maps, index, box, landmarks, label, map_params=None):
    from ffmask.shards import FaceRecord

    return FaceRecord(
        image=crop,
        maps=maps,
        label=label,
        video_id=item.video_id,
        original_id=item.original_id,
        manipulation=item.manipulation,
        compression=item.compression,
        split=item.split,
        frame_index=int(index),
        box=np.asarray(box, np.int32),
        landmarks=landmarks,
        map_params=dict(map_params or {}),
    )


@functools.lru_cache(maxsize=4)
def worker_model(name: str, spec: JobSpec):
    """The model of model-backed method ``name`` for a run, loaded once per worker process."""
    return method_spec(name).model(spec)


# Faces gathered before model-backed methods run: one batch spans videos.
MODEL_BATCH = 64


def annotate_groups(groups: Sequence[Group], spec: JobSpec, detector=None, *,
                    batch: int = MODEL_BATCH, prefetch: Optional[bool] = None) -> Iterator[GroupResult]:
    """Annotate ``groups`` in order, yielding one :class:`GroupResult` each.

    Per-face maps are computed video by video; model-backed methods run over
    batches of about ``batch`` faces gathered across groups (results are held
    back until their batch is done), so a task of short videos still fills
    the model's batches. ``prefetch``: decode each group's next fake in a
    background thread (None: :data:`PREFETCH`); the records are the same.
    """
    ann = _Annotator(spec)
    if detector is None:
        detector = _task_detector(spec, ann)
    held: list[GroupResult] = []

    def release():
        t0 = time.perf_counter()
        ann.add_model_maps([r for res in held for r in res.records])
        if held:
            held[0].seconds["targets"] += time.perf_counter() - t0
        out = list(held)
        held.clear()
        return out

    for group in groups:
        held.append(_annotate_one(group, spec, detector, ann, PREFETCH if prefetch is None else prefetch))
        # Without a model-backed method there is nothing to batch: release at once.
        if not ann.batched or sum(len(res.records) for res in held) >= batch:
            yield from release()
    yield from release()


def _task_detector(spec: JobSpec, ann: _Annotator):
    """The face detector every task of ``spec`` uses (built once per process, see ``get_detector``)."""
    from ffmask.faces import get_detector

    return get_detector(spec.detector, device=spec.detector_device,
                        landmarks=ann.needs_landmarks or spec.landmarks, video=True)


def prepare_worker(spec: JobSpec, person_check: bool = False) -> None:
    """Load in this process what every task of ``spec`` loads before its first face.

    That is PyAV (with its frame converter), threadpoolctl, the per-face
    methods' registry entries and, for a detector that runs on the CPU
    (dlib, none), the detector with its 68-point landmark model when a
    method needs landmarks. A backend whose workers are forked from this
    process (``--backend fork``, see :func:`ffmask.backends.dispatch`) calls
    it once before forking, so the workers share these instead of each
    loading them: measured at load ~5 on 2 cores, importing PyAV ~0.08 s of
    CPU, dlib's detector ~0.03 s, the landmark model ~0.9 s and ~30 MB
    (``hull``). With ``person_check`` (some video of the run has its face
    track checked to be one person, see :func:`checks_person`) also dlib's
    face recognition ResNet and the landmark model, whatever the detector.
    Nothing here starts a thread or imports torch: a detector on
    a torch device (MTCNN) and model-backed methods are left to the workers.
    Calling it changes no record.
    """
    import inspect

    import threadpoolctl  # noqa: F401  (run_task sizes the BLAS pools with it)
    import av.video.reformatter  # noqa: F401  (FrameConverter)

    import ffmask.faces.track  # noqa: F401
    import ffmask.pair_checks  # noqa: F401

    from ffmask import video
    from ffmask.faces import DETECTORS

    video._av()
    if person_check:
        # the track's identity check: the ResNet (~0.3 s of CPU, 22 MB) and the landmark model it takes
        # its face shapes from (computed only for the faces described when no method needs landmarks)
        from ffmask.faces.identity import _model
        from ffmask.faces.landmarks import _predictor

        _model()
        _predictor()
    ann = _Annotator(spec)
    if "device" in inspect.signature(DETECTORS[spec.detector]).parameters:
        return  # MTCNN: torch, which a forked worker must not inherit
    detector = _task_detector(spec, ann)
    if getattr(detector, "landmarks", False):
        from ffmask.faces.landmarks import _predictor

        _predictor()


def annotate_group(group: Group, spec: JobSpec, detector=None) -> GroupResult:
    """Annotate one original and its fakes (or one unpaired video).

    Returns the face records in a deterministic order and one manifest entry
    per item: ``ok`` with frame/face counts, or ``skipped`` with the reason.
    Bad videos never raise; they become skipped entries.
    """
    return next(annotate_groups([group], spec, detector))


def _annotate_one(group: Group, spec: JobSpec, detector, ann: _Annotator, prefetch: bool = False) -> GroupResult:
    """Per-face maps of one group; model-backed maps are added by the caller."""
    from ffmask.faces import crop_resize, points_to_crop
    from ffmask.pair_checks import (WRONG_PICTURE, alignment_checkpoints, bars_mismatch, orientation_mismatch,
                                    thumbnail, time_mismatch)

    result = GroupResult()
    t = result.seconds

    def skip(item, reason, **extra):
        result.entries.append(_entry(item, "skipped", reason, **extra))

    # Which video supplies frames and boxes: the original when there is one.
    if group.original is None and len(group.items) != 1:
        raise ValueError("an unpaired group holds exactly one item")
    anchor = group.anchor
    if group.original is None:
        if ann.needs_original and anchor.label != 0:
            return _skip_all(result, group, "missing original (needed by " + _paired_names(ann) + ")")

    # A group with fakes checks that each shows its original's frames at the same indices: the
    # original's frames around a few sampled ones are kept as thumbnails (pair_checks.time_mismatch).
    paired = group.original is not None and bool(group.items)
    try:
        with _Timer(t, "decode"):
            indices, anchor_frames, anchor_n, anchor_window = _decode(anchor, frames=spec.frames, every=spec.every,
                                                                      around=paired)
    except VideoError as exc:
        if group.original is None:
            return _skip_all(result, group, f"unreadable video: {exc}")
        if group.write_original:
            skip(group.original, f"unreadable video: {exc}")
        for item in group.items:
            skip(item, f"unreadable original: {exc}")
        return result
    if not anchor_frames:
        return _skip_all(result, group, "no frames decoded")

    with _Timer(t, "detect"):
        boxes, faces_seen, tracked = _detect(anchor_frames, detector, spec)
    # The track follows a place: an edited video cutting to another person framed alike continues it with
    # that person. Where the dataset says a video may cut, where the track changes person is recorded in
    # the entry of every item cropped with its boxes (the faces themselves are fine: status stays ok).
    seen = {"faces_seen": faces_seen}
    if checks_person(anchor, spec):
        with _Timer(t, "identity"):
            changes = _person_changes(anchor_frames, tracked)
        if changes:
            seen["person_changes"] = changes
    del tracked
    sampled = len(indices)
    anchor_shapes = {index: frame.shape for index, frame in anchor_frames.items()}
    # The first boxed frame, kept small, to check each fake's orientation against
    # (only a group with fakes compares; an unpaired video has nothing to check).
    anchor_thumbnail = thumbnail(anchor_frames[min(boxes)]) if boxes and paired else None
    # One crop (and crop-space landmarks) per anchor frame, shared by the
    # original's records and every fake compared with it; made now, so the
    # full frames go before the fakes are decoded.
    anchor_crops: dict = {}
    if group.original is None or group.write_original or ann.needs_original:
        with _Timer(t, "crop"):
            for index in sorted(boxes):
                box, lms = boxes[index]
                crop = crop_resize(anchor_frames[index], box, spec.size)
                crop_lms = points_to_crop(lms, box, spec.size) if lms is not None and ann.needs_landmarks else None
                anchor_crops[index] = (crop, crop_lms)
    n_anchor = len(anchor_frames)
    del anchor_frames

    def anchor_records(item, label):
        records = []
        for index in sorted(boxes):
            box, lms = boxes[index]
            crop, _ = anchor_crops[index]
            with _Timer(t, "targets"):
                maps = ann.maps(crop, item=item, real_crop=crop, is_real=label == 0)
            records.append(_make_record(item, crop, maps, index, box, lms, label, ann.params(item)))
        return records

    if group.original is None:
        item = group.items[0]
        recs = anchor_records(item, item.label)
        _finish(result, item, recs, sampled, n_anchor, spec, **seen)
        return result

    if group.write_original:
        recs = anchor_records(group.original, 0)
        _finish(result, group.original, recs, sampled, n_anchor, spec, **seen)

    readable = [item for item in group.items if not (ann.needs_mask_video and item.mask_path is None)]

    def read(item):
        seconds: dict = defaultdict(float)
        t0 = time.perf_counter()
        try:
            return _read_fake(item, indices, boxes, anchor_shapes, spec, ann, seconds, checkpoints)
        finally:
            # cropping was timed on its own; the rest was decoding
            seconds["decode"] += time.perf_counter() - t0 - seconds["crop"]
            seconds_of[item.video_id] = seconds

    checkpoints = alignment_checkpoints(indices) if anchor_window else []
    seconds_of: dict = {}
    reads = _ahead(read, readable, prefetch)
    for item in group.items:
        if ann.needs_mask_video and item.mask_path is None:
            skip(item, "no mask video (needed by official)")
            continue
        outcome = next(reads)
        for stage, value in seconds_of.pop(item.video_id).items():
            t[stage] += value
        try:
            fake, mask = outcome.get()
        except VideoError as exc:
            skip(item, f"unreadable video: {exc}")
            continue
        mask_shapes = mask.shapes if mask is not None else {}
        extra = dict(seen)  # in the original, whose box the fake is cropped with
        if fake.n_frames != anchor_n:
            extra["frame_count_mismatch"] = {"fake": int(fake.n_frames), "original": int(anchor_n)}
        shared = [i for i in sorted(boxes) if i in fake.shapes]
        mismatch = _size_mismatch(anchor_shapes, fake.shapes, shared, "")
        if mismatch is None and ann.needs_mask_video:
            mismatch = _size_mismatch(anchor_shapes, mask_shapes, [i for i in shared if i in mask_shapes], "mask ")
        wrong_picture = False
        if mismatch is None and fake.thumbnail is not None:
            mismatch = bars_mismatch(anchor_thumbnail, fake.thumbnail)
            if mismatch is None:
                turned = orientation_mismatch(anchor_thumbnail, fake.thumbnail)
                if turned is not None:
                    mismatch, wrong_picture = turned.message, turned.code == WRONG_PICTURE
        if anchor_window and (mismatch is None or wrong_picture):
            # a fake shifted far in time does not show its original's picture at the same index
            # either: when another moment of the original matches, that is the better reason
            mismatch = time_mismatch(anchor_window, fake.thumbnails) or mismatch
        if mismatch is None and mask is not None and None not in (mask.turn, fake.turn) and mask.turn != fake.turn:
            mismatch = _mask_turn_mismatch(mask.turn, fake.turn)
            extra["mask_display_mismatch"] = {"mask": mask.turn, "fake": fake.turn}
        if mismatch is None and mask is not None and mask.n_frames not in (fake.n_frames, anchor_n):
            mismatch = _mask_count_mismatch(mask.n_frames, fake.n_frames, anchor_n)
            extra["mask_frame_count_mismatch"] = {"mask": int(mask.n_frames), "fake": int(fake.n_frames)}
        if mismatch is not None:
            skip(item, mismatch, **extra)
            continue
        recs = []
        missing_mask = 0
        for index in shared:
            if ann.needs_mask_video and index not in mask_shapes:
                missing_mask += 1
                continue
            real_crop, crop_lms = anchor_crops[index] if ann.needs_original else (None, None)
            # A fake (or mask video) encoded at another resolution gets the
            # original's box carried to its own pixels; its record stores that box.
            fake_crop, fake_box, fake_lms = fake.crops[index]
            mask_crop = mask.crops[index][0] if ann.needs_mask_video else None
            with _Timer(t, "targets"):
                maps = ann.maps(fake_crop, item=item, real_crop=real_crop, mask_crop=mask_crop,
                                landmarks=crop_lms, is_real=item.label == 0)
            recs.append(_make_record(item, fake_crop, maps, index, fake_box, fake_lms, item.label,
                                     ann.params(item)))
        # sampled frames past the fake's last one: missing from the fake, not undecodable
        beyond = sum(1 for i in indices if int(i) not in fake.shapes and int(i) >= fake.n_frames)
        if beyond:
            extra["frames_missing_in_fake"] = beyond
        sizes = _frame_sizes(anchor_shapes, fake.shapes, mask_shapes, shared)
        if sizes:
            extra["frame_sizes"] = sizes
        if missing_mask:
            extra["frames_without_mask"] = missing_mask
        _finish(result, item, recs, sampled, len(fake.shapes), spec, **extra)
    # the read-ahead thread ends now, in this thread: left to the garbage collector, its shutdown could run
    # inside another thread's start and wait there for good
    reads.close()
    return result


#: Decode (and crop) the next fake of a group in a background thread while
#: the current one's maps are computed (PyAV and OpenCV release the GIL), when
#: annotate_groups is not told otherwise. ``ffmask annotate`` does it only for
#: workers that have more than one core to themselves: with every core busy a
#: second thread cannot add CPU.
PREFETCH = True


class _Outcome:
    """What a call gave: ``get()`` returns its value or raises its exception."""

    __slots__ = ("value", "exc")

    def __init__(self, fn, item):
        try:
            self.value, self.exc = fn(item), None
        except BaseException as exc:  # handed to the caller at its turn
            self.value, self.exc = None, exc

    def get(self):
        if self.exc is not None:
            raise self.exc
        return self.value


def _ahead(fn, items, prefetch: bool) -> Iterator[_Outcome]:
    """Yield the :class:`_Outcome` of ``fn(item)`` for each of ``items``, in order.

    With ``prefetch`` the call for item ``i + 1`` runs in one background
    thread while the caller works on item ``i`` (at most one call ahead, so
    at most one extra video's crops are held). An exception raised by
    ``fn(item)`` is raised by that item's ``outcome.get()``, where the serial
    loop would raise it, and the caller may catch it and go on. Without
    ``prefetch`` each call runs when its outcome is asked for.
    """
    items = list(items)
    if not prefetch or len(items) < 2:
        for item in items:
            yield _Outcome(fn, item)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ffmask-decode")
    future = pool.submit(_Outcome, fn, items[0])
    try:
        for nxt in items[1:] + [None]:
            outcome = future.result()
            future = pool.submit(_Outcome, fn, nxt) if nxt is not None else None
            yield outcome
    finally:
        if future is not None:
            future.cancel()
        # no join: a generator dropped unfinished is closed by the garbage collector, in whatever thread
        # runs it; there a join (``with``'s shutdown) could wait for good (its thread ends by itself)
        pool.shutdown(wait=False)


def _size_text(shape) -> str:
    return f"{shape[1]}x{shape[0]}"


def _size_mismatch(anchor_shapes: dict, shapes: dict, indices, what: str) -> Optional[str]:
    """The skip reason when a frame (given by its shape) is not the anchor's picture at some scale."""
    from ffmask.faces import same_aspect

    for index in indices:
        shape, anchor_shape = shapes[index], anchor_shapes[index]
        if not same_aspect(anchor_shape, shape):
            return f"{what}frame size mismatch {_size_text(shape)} vs {_size_text(anchor_shape)}"
    return None


def _carry(box, landmarks, from_shape, to_shape):
    """An anchor frame's box (and landmarks) in the pixels of a frame of ``to_shape``."""
    from ffmask.faces import scale_box, scale_points

    if tuple(from_shape[:2]) == tuple(to_shape[:2]):
        return box, landmarks
    if landmarks is not None:
        landmarks = scale_points(landmarks, from_shape, to_shape)
    return scale_box(box, from_shape, to_shape), landmarks


def _frame_sizes(anchor_shapes: dict, fake_shapes: dict, mask_shapes: dict, indices) -> dict:
    """``{"original": [W, H], "fake": [W, H], "mask": [W, H]}`` when the sizes differ, else {}.

    Taken at the first frame the item was cropped at (``mask`` only with a
    mask video); the arguments map frame indices to frame shapes.
    """
    for index in indices:
        sizes = {"original": anchor_shapes[index], "fake": fake_shapes[index]}
        if index in mask_shapes:
            sizes["mask"] = mask_shapes[index]
        if len({shape[:2] for shape in sizes.values()}) == 1:
            return {}
        return {name: [int(shape[1]), int(shape[0])] for name, shape in sizes.items()}
    return {}


def _paired_names(ann: _Annotator) -> str:
    return ",".join(m.name for m in ann.methods if m.paired or m.input == "mask_video")


def _skip_all(result: GroupResult, group: Group, reason: str) -> GroupResult:
    items = list(group.items)
    if group.original is not None and group.write_original and group.original not in items:
        items.insert(0, group.original)
    for item in items:
        result.entries.append(_entry(item, "skipped", reason))
    return result


def _finish(result, item, records, sampled, decoded, spec, **extra):
    counts = {"frames_sampled": int(sampled), "frames_decoded": int(decoded), "faces": len(records)}
    counts["frames_without_face"] = int(decoded - len(records) - extra.get("frames_without_mask", 0))
    undecodable = sampled - decoded - extra.get("frames_missing_in_fake", 0)
    if undecodable > 0:
        extra["frames_undecodable"] = int(undecodable)
    if not records:
        reason = "no frames decoded" if decoded == 0 else "no face detected in any sampled frame"
        result.entries.append(_entry(item, "skipped", reason, **counts, **extra))
        return
    result.records.extend(records)
    result.entries.append(_entry(item, "ok", "", **counts, **extra))


def plan_groups(items: Sequence[VideoItem], *, paired: bool) -> list[Group]:
    """Group items by original so each original is decoded and detected once.

    Originals that appear as items are written as real faces of their group.
    Fakes whose original is missing, and every item of an unpaired dataset,
    form single-item groups. Order is deterministic (the items' order).
    """
    groups: dict[str, Group] = {}
    order: list[str] = []
    for item in items:
        if paired and item.original is not None:
            key = item.original.video_id
            if key not in groups:
                groups[key] = Group(original=item.original, items=[])
                order.append(key)
            groups[key].items.append(item)
        elif paired and item.label == 0 and item.original is None:
            key = item.video_id
            if key not in groups:
                groups[key] = Group(original=item, items=[])
                order.append(key)
            groups[key].write_original = True
        else:
            key = "solo:" + item.video_id
            groups[key] = Group(original=None, items=[item])
            order.append(key)
    return [groups[k] for k in order]
