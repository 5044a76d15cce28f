"""``ffmask evaluate``: score a trained evaluator on shards, by manipulation and compression.

:func:`evaluate_checkpoint` loads a checkpoint (safetensors + JSON; a torch
file only through ``weights_only``; its config must rebuild the very
weights), runs it over the faces of the shards and computes with
:mod:`ffmask.metrics`:

- frame level: ACC (threshold 0.5), AUC, EER, AP; video AUC (mean frame
  score per video: ``video_id`` within one compression, :func:`video_keys`);
- pixel level, against each map named in ``against`` (e.g. ``official`` or
  ``hull``; fakes *and* reals, the reals' target all zero): F1, IoU, mIoU,
  precision, recall of the predicted map called at 0.5, and the pooled pixel
  AUC. Both maps are compared at the evaluator's map resolution (the target
  resized like a training target; a continuous target is called at 0.5 too).
  An evaluator that predicts no map (its registry entry says
  ``map_head=False``) gets frame and video scores only: ``against`` is then
  ignored, with a log line, and the report says so.

Groups: ``all``; ``fakes`` (for the pixel scores); per compression; per manipulation (its fakes plus *every*
real face of the same compressions, so a frame AUC exists); per
manipulation x compression. :func:`write_report` writes ``metrics.json``,
``metrics.md``, ``roc.png`` and ``contact_sheet.png`` (face | target map |
predicted map).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ffmask.errors import CheckpointError, FFMaskError
from ffmask.metrics import frame_metrics, pixel_metrics, video_auc
from ffmask.shards.manifest import being_written_line, missing_shards, shards_being_written
from ffmask.shards.runconfig import by_shard, run_dataset

PathLike = Union[str, Path]
log = logging.getLogger("ffmask.evaluate")

MASK_THRESHOLD = 0.5


@dataclass
class Evaluation:
    """Predictions of one checkpoint on one set of shards, with their face table.

    table : per-face columns (see :func:`ffmask.train.evaluator.face_table`), labelled faces only.
    score : float64 (N,) fake probability. pred_map : float32 (N, M, M) in [0, 1], or None for
        a model that predicts no map.
    targets : {map name: float32 (N, M, M)} the compared maps (zero for reals).
    images : a few faces kept for the contact sheet, {index: uint8 (S, S, 3)}.
    """

    checkpoint: str
    model: str
    config: dict
    shards: list[str]
    table: dict[str, np.ndarray]
    score: np.ndarray
    pred_map: Optional[np.ndarray]
    targets: dict[str, np.ndarray]
    metrics: dict[str, Any] = field(default_factory=dict)
    images: dict[int, np.ndarray] = field(default_factory=dict)


def _groups(table: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(name, bool mask) of the faces of each reported group."""
    labels, manip, comp = table["label"], table["manipulation"], table["compression"]
    n = labels.size
    # "fakes": pixel scores of the manipulated faces alone (frame AUC undefined there).
    groups = [("all", np.ones(n, bool)), ("fakes", labels == 1)]
    comps = sorted(set(comp.tolist()))
    for c in comps:
        groups.append((f"compression={c}", comp == c))
    for m in sorted(set(manip[labels == 1].tolist())):
        groups.append((f"manipulation={m}", (labels == 0) | (manip == m)))
        if len(comps) > 1:
            for c in comps:
                groups.append((f"manipulation={m},compression={c}", (comp == c) & ((labels == 0) | (manip == m))))
    return groups


def video_keys(table: dict[str, np.ndarray]) -> np.ndarray:
    """object (N,): what makes a face's video one video for the video AUC: its source, compression and id.

    FF++ names a video alike in every compression (``youtube/000`` at c23
    and c40): scored together, its two encodings are two test videos, not
    one whose frame scores are averaged across them. The source (the
    table's ``"source"`` column, :func:`face_sources`) keeps apart two folder
    datasets' videos of one name (``001`` of ``real/`` and of ``fake/``).
    """
    sources = table["source"] if "source" in table else [None] * len(table["video_id"])
    return np.asarray([f"{s}\x00{c}\x00{v}" for s, c, v in zip(sources, table["compression"], table["video_id"])],
                      dtype=object)


def score_groups(ev: Evaluation) -> dict[str, Any]:
    """Metrics of every group: {"groups": {name: {"frame", "video_auc", "pixel": {map: ...}}}}."""
    out = {}
    videos = video_keys(ev.table)
    for name, mask in _groups(ev.table):
        labels = ev.table["label"][mask]
        entry = {"frame": frame_metrics(labels, ev.score[mask]),
                 "video_auc": video_auc(labels, ev.score[mask], videos[mask]),
                 "pixel": {}}
        for map_name, target in ev.targets.items():
            entry["pixel"][map_name] = pixel_metrics(ev.pred_map[mask], target[mask] > MASK_THRESHOLD,
                                                     MASK_THRESHOLD)
        out[name] = entry
    return out


def load_evaluator_checkpoint(path: PathLike, device=None):
    """``(model, description)`` of an evaluator checkpoint; one-line CheckpointError otherwise.

    Accepts a run directory (``best`` preferred, then ``last``), a stem, the
    ``.json`` or the weights file. Refuses weights that are neither
    safetensors nor loadable with ``torch.load(weights_only=True)``, configs
    that do not rebuild the weights exactly, and checkpoints of models that
    are not evaluators.
    """
    from ffmask.devices import resolve_device
    from ffmask.models.checkpoint import load_checkpoint, read_description, resolve_checkpoint
    from ffmask.models.evaluators import is_evaluator, list_evaluators

    _, description = resolve_checkpoint(path)
    doc = read_description(description)
    if not is_evaluator(doc["model"]):
        raise CheckpointError(f"{description} is a {doc['model']!r} checkpoint, not an evaluator "
                              f"({', '.join(list_evaluators())})")
    return load_checkpoint(path, map_location=resolve_device(device))


def evaluate_checkpoint(checkpoint: PathLike, shards, *, against: Sequence[str] = (),
                        manipulations: Optional[Sequence[str]] = None, batch_size: int = 64,
                        device=None, workers: int = 0, keep_images: int = 12) -> Evaluation:
    """Predict with ``checkpoint`` on ``shards`` and score it (see the module docstring).

    against : map names in the shards to score the predicted map against.
    manipulations : keep only fakes of these (all reals kept), like training.
    keep_images : faces kept for the contact sheet (spread over the groups).
    """
    from ffmask import ShardDataset
    from ffmask.train.evaluator import face_table, predict, select_faces

    from ffmask.models.evaluators import evaluator_entry

    model, doc = load_evaluator_checkpoint(checkpoint, device)
    against = list(dict.fromkeys(against))
    has_map = evaluator_entry(doc["model"]).map_head
    if not has_map and against:
        log.warning("%s predicts no map: no pixel scores against %s", doc["model"], ", ".join(against))
        against = []
    # Maps in their stored form, widened just before use (the same float32 values as the default).
    dataset = ShardDataset(shards, maps=against, return_meta=False, maps_as="stored")
    for name in against:
        if dataset.maps[name] == "noise":
            raise FFMaskError(f"map {name!r} is a noise residual; the predicted map can only be scored against "
                              "masks or continuous maps")
    full = face_table(dataset)
    warn_repeated_faces(full, dataset.index, "scored")
    idx = select_faces(full, manipulations)
    if idx.size == 0:
        raise FFMaskError(f"no labelled faces to evaluate in {', '.join(str(p) for p in dataset.paths)}")
    # The scoring pass reads images only (the compared maps are read below, without images).
    images = ShardDataset(dataset.paths, return_meta=False) if against else dataset
    pred = predict(model, images, idx, batch_size=batch_size, workers=workers)
    bad = int((~np.isfinite(pred["score"])).sum())
    if bad:
        raise FFMaskError(f"{checkpoint} predicts no score (NaN or infinite) for {bad} of {idx.size} faces: its "
                          "weights are broken (a diverged training?); nothing is scored")
    targets = {}
    for name in against:
        targets[name] = predict_targets(dataset, idx, name, model.map_size)
    table = {k: v[idx] for k, v in full.items()}
    unlabelled = unlabelled_faces(full)
    seen = training_videos_scored(doc, table["video_id"], table["source"])
    ev = Evaluation(checkpoint=str(checkpoint), model=doc["model"], config=doc["config"],
                    shards=[str(p) for p in dataset.paths], table=table, score=pred["score"],
                    pred_map=pred.get("map"), targets=targets)
    ev.metrics = {"groups": score_groups(ev), "n": int(idx.size), "against": against, "map": has_map,
                  "threshold": MASK_THRESHOLD, "map_size": int(model.map_size) if has_map else None,
                  "scored_training_shards": training_shards_scored(doc, dataset.paths),
                  "scored_training_videos": seen,
                  "crop_mismatch": crop_mismatch(doc, dataset.paths),
                  "unlabelled_faces": unlabelled,
                  "missing_shards": [str(p) for p in missing_shards(dataset.paths)],
                  "shards_being_written": {str(d): pid for d, pid in shards_being_written(dataset.paths).items()}}
    # Warnings about what metrics.json records (``extra``: the key), which ``ffmask evaluate`` prints from
    # the metrics itself, in colour after its table; it shows any other warning as logged.
    if ev.metrics["scored_training_shards"]:
        log.warning("%d of the scored shards trained this checkpoint: their scores are not held out",
                    len(ev.metrics["scored_training_shards"]), extra={"metric": "scored_training_shards"})
    for line in training_video_lines(seen):
        log.warning("%s", line, extra={"metric": "scored_training_videos"})
    if ev.metrics["crop_mismatch"]:
        log.warning("%s", crop_mismatch_line(ev.metrics["crop_mismatch"]), extra={"metric": "crop_mismatch"})
    if unlabelled["faces"]:
        log.warning("%s", unlabelled_line(unlabelled), extra={"metric": "unlabelled_faces"})
    if ev.metrics["missing_shards"]:
        log.warning("the manifest names %d shard(s) that are missing: their videos are not scored",
                    len(ev.metrics["missing_shards"]), extra={"metric": "missing_shards"})
    for folder, pid in ev.metrics["shards_being_written"].items():
        log.warning("%s", being_written_line(folder, pid, "evaluation"), extra={"metric": "shards_being_written"})
    ev.images = _sample_images(dataset, idx, table, keep_images)
    return ev


def evaluate_to(checkpoint: PathLike, shards, out: PathLike, **options) -> tuple[Evaluation, dict[str, Path]]:
    """:func:`evaluate_checkpoint`, then :func:`write_report` into ``out``, holding ``out``'s run lock throughout.

    Two evaluations into one ``out`` would interleave their report files
    (metrics.json of one, roc.png of the other): the second is refused at
    once with RunLockedError naming the first one's pid, as a training or an
    export into a folder in use is. The lock file goes when the evaluation
    ends (``out`` is created for it; when the evaluation fails, an ``out``
    it created is removed again if still empty).

    options : the keyword arguments of :func:`evaluate_checkpoint`.
    """
    from ffmask.outdir import RunLock, ensure_out_dir

    out = Path(out)
    created = not out.exists()
    ensure_out_dir(out)
    try:
        with RunLock(out, cleanup="created"):
            ev = evaluate_checkpoint(checkpoint, shards, **options)
            return ev, write_report(ev, out)
    except BaseException:
        if created:
            try:
                out.rmdir()  # only when empty: nothing of a report, no other run's files
            except OSError:
                pass
        raise


def training_video_lines(seen: dict) -> list[str]:
    """The warnings :func:`training_videos_scored`'s counts call for (none when the scored videos are new)."""
    lines = []
    if seen.get("videos"):
        lines.append(f"{seen['videos']} of the {seen['videos_scored']} scored videos ({seen['faces']} faces) trained "
                     "this checkpoint (the same video, in this or another shard file or compression): their scores "
                     "are not held out")
    if seen.get("people_videos"):
        lines.append(f"{seen['people_videos']} of the {seen['videos_scored']} scored videos show people this "
                     "checkpoint trained on (as their dataset names them, e.g. FF++'s 000_003 shows 000 and 003): "
                     "not held-out people")
    if seen.get("unread"):
        lines.append(f"{seen['unread']} of the checkpoint's training shard files could not be read (moved or "
                     "broken): the scored videos were compared with the rest only")
    return lines


def _source_of(doc: dict) -> Optional[str]:
    """What a video id of the annotate run whose config is ``doc`` (its run.json, or the ``config`` a shard
    carries) is unique within: the dataset's name (``"ff++"``: its ids name one video in any copy of it), or
    for a folder dataset, whose ids are paths under its ROOT, ``"folder:ROOT"`` (``001`` of ``real/`` and
    ``001`` of ``fake/`` are two videos); None when it names no dataset."""
    name = doc.get("dataset")
    if not isinstance(name, str):
        return None
    return f"folder:{doc.get('root')}" if name == "folder" else name


def _crop_of(doc: dict) -> Optional[tuple[int, float]]:
    """``(size, scale)`` an annotate run's config ``doc`` asked for (``job.size``, ``job.scale``), or None."""
    try:
        return int(doc["job"]["size"]), float(doc["job"]["scale"])
    except (KeyError, TypeError, ValueError):
        return None


def run_crops(shards) -> list[tuple[int, float]]:
    """The distinct crops (``(size, scale)``: side in pixels, face box scale) the annotate runs that wrote
    ``shards`` (shard files) asked for, from the ``run.json`` beside them (``job.size``, ``job.scale``), else
    from the run config a shard carries (a copy without run.json), sorted; shards whose run says neither
    say nothing."""
    return sorted({c for c in by_shard(list(shards), _crop_of) if c is not None})


def crop_mismatch(doc: dict, shards) -> dict[str, list]:
    """``{"trained": [[size, scale], ...], "scored": [...]}`` when the scored ``shards`` hold crops of
    another size or face framing than the checkpoint's training shards (``data.train_shards``), else ``{}``
    (also when either side's crops are unknown: no run.json and no run config in the shards). The model
    resizes every crop to its input size, so such faces are scored, but blurred or framed otherwise than
    it learnt."""
    trained = [p for p in ((doc.get("data") or {}).get("train_shards") or []) if isinstance(p, str)]
    before = run_crops(trained)
    now = run_crops(shards)
    if not before or not now or set(now) <= set(before):
        return {}
    return {"trained": [list(c) for c in before], "scored": [list(c) for c in now]}


def crop_mismatch_line(found: dict) -> Optional[str]:
    """The warning :func:`crop_mismatch`'s answer calls for (None when the crops agree)."""
    if not found:
        return None
    name = lambda crops: " and ".join(f"{size} px at scale {scale:g}" for size, scale in crops)  # noqa: E731
    return (f"the scored shards hold crops of {name(found['scored'])}, the checkpoint trained on crops of "
            f"{name(found['trained'])}: their faces are resized or framed otherwise than in training "
            "(annotate them with the training run's --size and --scale to compare like with like)")


def unlabelled_faces(table: Mapping[str, np.ndarray]) -> dict[str, int]:
    """``{"faces", "videos"}``: the faces of unknown label (-1) among the read ones, and their videos (by
    :func:`video_keys`). They are not scored (a folder dataset's videos its labels file does not cover:
    the scores are then of part of the dataset)."""
    unknown = np.asarray(table["label"]) < 0
    return {"faces": int(unknown.sum()), "videos": int(len(set(video_keys(table)[unknown].tolist())))}


def unlabelled_line(found: Mapping[str, int]) -> Optional[str]:
    """The warning :func:`unlabelled_faces`'s answer calls for (None when every face has a label)."""
    if not found or not found.get("faces"):
        return None
    return (f"{found['faces']} faces of {found['videos']} video(s) have no label (-1: videos a folder dataset's "
            "labels file does not cover) and are not scored: the scores are of the labelled faces only")


def face_sources(index) -> list[Optional[str]]:
    """:func:`_source_of` the run of each face of an open :class:`ffmask.shards.ShardIndex`, in index order
    (run.json read once per folder; for a shard whose folder has none, a copy, the run config the shard
    carries; None when neither says)."""
    names = np.asarray(by_shard(index.paths, _source_of), dtype=object)
    return np.repeat(names, index.counts).tolist()


def face_datasets(index) -> list[Optional[str]]:
    """The dataset each face of an open :class:`ffmask.shards.ShardIndex` was annotated from, in index order
    (the ``run.json`` beside its shard, read once per folder, else the run config the shard carries;
    None where neither says)."""
    names = np.asarray(by_shard(index.paths, run_dataset), dtype=object)
    return np.repeat(names, index.counts).tolist()


def training_videos_scored(doc: dict, video_ids: Sequence[str], datasets: Sequence[Optional[str]]) -> dict[str, Any]:
    """What of the scored faces the checkpoint saw in training, by video and by person, in any shard file.

    :func:`training_shards_scored` finds the very shard files; the same
    videos annotated again (another compression, another ``--out``, a
    ``--split all`` run) are other files. The training shards the checkpoint
    names (``data.train_shards``) are read again (their columns only) and
    compared by (source, video id) (the dataset; a folder dataset's root too); the people a video shows are those its
    dataset names (:func:`ffmask.datasets.registry.identities`: FF++,
    Celeb-DF).

    video_ids, datasets : (N,) the scored faces' video ids and sources (:func:`face_sources`: the dataset,
        or a folder dataset's root).

    Returns ``{"videos", "faces", "people_videos", "videos_scored", "unread"}``:
    scored videos (and their faces) that trained the checkpoint; other scored
    videos that show a person some training video shows; scored videos in
    all; training shard files that could not be read (gone or broken: the
    counts cover the rest).
    """
    from ffmask.shards import ShardIndex

    trained = [p for p in ((doc.get("data") or {}).get("train_shards") or []) if isinstance(p, str)]
    seen, unread = [], 0
    # every face of one shard is of its run: run.json read once per folder
    for path, name in zip(trained, by_shard(trained, _source_of)):
        try:
            index = ShardIndex([path])
            try:
                ids = [str(index.read(i, image=False)["video_id"]) for i in range(len(index))]
            finally:
                index.close()
        except (OSError, FFMaskError, ValueError, KeyError):
            unread += 1
            continue
        seen.extend((name, video_id) for video_id in ids)
    return dict(video_overlap(seen, zip(datasets, video_ids)), unread=unread)


def video_overlap(seen, faces) -> dict[str, int]:
    """How many of the videos of ``faces`` are, or show a person of, the videos of ``seen``.

    seen, faces : iterables of (dataset or None, video id), one per face. A source of None (a shard
        folder without run.json: shards copied without it) may be any source, as in
        :func:`repeated_faces`: it is read as each source known on either side, so a copy of the
        training shards is still the training videos.

    Returns ``{"videos", "faces", "people_videos", "videos_scored"}``: videos
    of ``faces`` among ``seen`` (and their faces), other videos of ``faces``
    showing a person a video of ``seen`` shows
    (:func:`ffmask.datasets.registry.identities`), and the videos of ``faces``.
    """
    from ffmask.datasets.registry import identities

    seen_videos = {(d, str(v)) for d, v in seen}
    keys = [(d, str(v)) for d, v in faces]
    videos = set(keys)
    known = {d for d, _ in seen_videos | videos if d is not None}

    def readings(key):
        # an unknown source is read as every known one (and as itself: two unknowns of one id meet)
        return {key} if key[0] is not None else {key} | {(d, key[1]) for d in known}

    seen_any = set().union(*(readings(k) for k in seen_videos))
    seen_people = {p for key in seen_any for p in identities(*key)}
    both = {k for k in videos if readings(k) & seen_any}
    people = {k for k in videos - both if any(set(identities(*r)) & seen_people for r in readings(k))}
    return {"videos": len(both), "faces": int(sum(k in both for k in keys)), "people_videos": len(people),
            "videos_scored": len(videos)}


#: what tells one face from another: a copy of a shard, or the same run's shards passed twice under other
#: folders, repeats all of them (one face per frame of a video is written)
FACE_KEY = ("video_id", "original_id", "manipulation", "compression", "label", "frame_index")


def repeated_faces(table: Mapping[str, np.ndarray], shards: Sequence[str]) -> dict[str, Any]:
    """Faces that appear more than once among the read shards (a shard and its copy read together).

    table : per-face columns (:func:`ffmask.train.evaluator.face_table`), N faces: the ``FACE_KEY``
        columns, and ``"source"`` if known (faces of two sources, e.g. two folder datasets' ``001``, are
        never one face; an unknown source, None, may be any).
    shards : (N,) the shard file of each face.

    Returns ``{"faces", "example"}``: how many faces repeat one read before
    (0 when none), and for the first of them ``(video_id, frame_index,
    first shard, repeating shard)`` (None when none). Readers take every
    shard they are given, so these faces count twice in training and in
    every score.
    """
    first: dict = {}  # key -> {source: the first face of it}
    repeats, example = 0, None
    columns = [table[k] for k in FACE_KEY]
    sources = table["source"] if "source" in table else [None] * len(columns[0])
    for i, (key, source) in enumerate(zip(zip(*columns), sources)):
        key = tuple(str(v) for v in key)
        earlier = first.setdefault(key, {})
        # two folder datasets' videos of one name are two videos; a shard without run.json (a copy
        # elsewhere) may be of any source
        same = [j for s, j in earlier.items() if s == source or s is None or source is None]
        if same:
            repeats += 1
            if example is None:
                example = (key[0], int(key[-1]), str(shards[same[0]]), str(shards[i]))
        else:
            earlier[source] = i
    return {"faces": repeats, "example": example}


def warn_repeated_faces(table: Mapping[str, np.ndarray], index, what: str) -> int:
    """Log a warning when faces of ``index`` (a ShardIndex, :func:`face_table`'s ``table``) repeat; their count."""
    shards = np.repeat(np.asarray([str(p) for p in index.paths], dtype=object), index.counts)
    found = repeated_faces(table, shards)
    if found["faces"]:
        video, frame, a, b = found["example"]
        log.warning("%d %s faces are read twice (e.g. video %s frame %d, in %s and in %s): a shard and its copy? "
                    "they count twice; pass each shard once", found["faces"], what, video, frame, a, b)
    return found["faces"]


def training_shards_scored(doc: dict, paths) -> list[str]:
    """The shards among ``paths`` that the checkpoint described by ``doc`` was trained on
    (its ``data.train_shards``, compared as resolved paths): scores on them are not held out."""
    trained = (doc.get("data") or {}).get("train_shards") or []
    trained = {str(Path(p).resolve()) for p in trained if isinstance(p, str)}
    return sorted(str(Path(p).resolve()) for p in paths if str(Path(p).resolve()) in trained)


def predict_targets(dataset, indices: np.ndarray, map_name: str, size: int, batch_size: int = 64) -> np.ndarray:
    """float32 (N, size, size): the map targets of ``dataset[indices]`` (zeros for reals).

    Read ``batch_size`` faces at a time without their images, the map in the
    dataset's form (``dataset.map_forms``) widened to float32 and resized as
    one batch: the same values as face by face.
    """
    import torch

    from ffmask.models.evaluators import map_targets
    from ffmask.shards import maps_to_float32

    form = {map_name: dataset.map_forms[map_name]}
    compact = form[map_name] != "float32"
    out = np.zeros((indices.size, size, size), np.float32)
    for start in range(0, indices.size, batch_size):
        faces = dataset.index.read_many(indices[start:start + batch_size].tolist(), image=False, meta=False,
                                        float32=not compact, compact=compact)
        maps = maps_to_float32({map_name: torch.from_numpy(np.stack([f["maps"][map_name] for f in faces]))}, form)
        labels = torch.tensor([f["label"] for f in faces], dtype=torch.int64)
        out[start:start + len(faces)] = map_targets(maps[map_name], labels, size)[:, 0].numpy()
    return out


def _sample_images(dataset, idx: np.ndarray, table: dict, n: int) -> dict[int, np.ndarray]:
    """Up to ``n`` rows (positions in ``idx``), round-robin over manipulations, reals included."""
    if n <= 0:
        return {}
    kinds = {}
    for row, (label, manip) in enumerate(zip(table["label"], table["manipulation"])):
        kinds.setdefault("real" if label == 0 else manip, []).append(row)
    rows = []
    while len(rows) < n and any(kinds.values()):
        for key in sorted(kinds):
            if kinds[key] and len(rows) < n:
                bucket = kinds[key]
                rows.append(bucket.pop(len(bucket) // 2))
    return {row: dataset.index.read(int(idx[row]))["image"] for row in rows}


# ---------------------------------------------------------------- report


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def to_markdown(ev: Evaluation) -> str:
    """Markdown tables: frame/video metrics per group, then pixel metrics per compared map."""
    groups = ev.metrics["groups"]
    lines = [f"# Evaluation of `{ev.checkpoint}` ({ev.model}, {ev.config.get('backbone', '')})", "",
             f"{ev.metrics['n']} faces from {len(ev.shards)} shard(s)."
             + ("" if ev.metrics.get("map", True) else " This model predicts no map: no pixel scores.")
             + (f" **{len(ev.metrics['scored_training_shards'])} of them trained this checkpoint: these scores "
                "are not held out.**" if ev.metrics.get("scored_training_shards") else "")
             + "".join(f" **{line}.**" for line in training_video_lines(ev.metrics.get("scored_training_videos", {})))
             + (f" **{_sentence(crop_mismatch_line(ev.metrics['crop_mismatch']))}.**"
                if ev.metrics.get("crop_mismatch") else "")
             + (f" **{_sentence(unlabelled_line(ev.metrics['unlabelled_faces']))}.**"
                if unlabelled_line(ev.metrics.get("unlabelled_faces", {})) else "")
             + (f" **The manifest names {len(ev.metrics['missing_shards'])} more shard(s) that are missing "
                f"({', '.join(Path(p).name for p in ev.metrics['missing_shards'])}): their videos are not "
                "scored.**" if ev.metrics.get("missing_shards") else "")
             + "".join(f" **{being_written_line(folder, pid, 'evaluation')}.**"
                       for folder, pid in ev.metrics.get("shards_being_written", {}).items()), "",
             "| group | faces (real/fake) | ACC | AUC | EER | AP | video AUC |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, g in groups.items():
        f = g["frame"]
        lines.append(f"| {name} | {f['n']} ({f['n_real']}/{f['n_fake']}) | {_fmt(f['acc'])} | {_fmt(f['auc'])} | "
                     f"{_fmt(f['eer'])} | {_fmt(f['ap'])} | {_fmt(g['video_auc'])} |")
    for map_name in ev.metrics["against"]:
        lines += ["", f"Predicted map vs `{map_name}` (at {ev.metrics['map_size']}x{ev.metrics['map_size']}, "
                      f"called at {MASK_THRESHOLD}; per-face means, pixel AUC pooled):", "",
                  "| group | F1 | IoU | mIoU | precision | recall | pixel AUC |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, g in groups.items():
            p = g["pixel"][map_name]
            lines.append(f"| {name} | {_fmt(p['f1'])} | {_fmt(p['iou'])} | {_fmt(p['miou'])} | "
                         f"{_fmt(p['precision'])} | {_fmt(p['recall'])} | {_fmt(p['auc'])} |")
    return "\n".join(lines) + "\n"


def plot_roc(ev: Evaluation, path: PathLike) -> Path:
    """ROC curves of ``all`` and of each manipulation group, AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name, mask in _groups(ev.table):
        if name != "all" and (not name.startswith("manipulation=") or "," in name):
            continue
        labels = ev.table["label"][mask]
        if len(set(labels.tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, ev.score[mask])
        auc = ev.metrics["groups"][name]["frame"]["auc"]
        ax.plot(fpr, tpr, lw=2.2 if name == "all" else 1.2, label=f"{name.split('=')[-1]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title="frame-level ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    from ffmask.outdir import RERUN, writing

    path = Path(path)
    try:
        with writing(path, then=RERUN):
            fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def contact_sheet(ev: Evaluation, cell: int = 128) -> np.ndarray:
    """uint8 sheet: face | target map (first compared map, if any) | predicted map (if any), one row per kept face."""
    import cv2

    from ffmask import viz

    target_name = ev.metrics["against"][0] if ev.metrics["against"] else None
    kinds = ({f"target {target_name}": "continuous"} if target_name else {})
    if ev.pred_map is not None:
        kinds["predicted"] = "continuous"
    faces = []
    for row, image in ev.images.items():
        size = image.shape[:2][::-1]
        maps = {} if ev.pred_map is None else \
            {"predicted": cv2.resize(ev.pred_map[row], size, interpolation=cv2.INTER_LINEAR)}
        if target_name:
            maps[f"target {target_name}"] = cv2.resize(ev.targets[target_name][row], size,
                                                       interpolation=cv2.INTER_LINEAR)
        label = "real" if ev.table["label"][row] == 0 else ev.table["manipulation"][row]
        faces.append({"image": image, "maps": maps,
                      "title": f"{label} {ev.table['compression'][row]} p(fake)={ev.score[row]:.2f}"})
    return viz.contact_sheet(faces, kinds, cell=cell)


def to_json(ev: Evaluation) -> dict:
    return {"checkpoint": ev.checkpoint, "model": ev.model, "config": ev.config, "shards": ev.shards,
            **ev.metrics}


def write_report(ev: Evaluation, out: PathLike) -> dict[str, Path]:
    """Write metrics.json, metrics.md, roc.png and contact_sheet.png into ``out``; returns their paths."""
    from ffmask import viz
    from ffmask.models.checkpoint import write_json

    from ffmask.outdir import RERUN, ensure_out_dir, writing

    out = ensure_out_dir(Path(out))
    paths = {"json": write_json(out / "metrics.json", to_json(ev))}
    with writing(out / "metrics.md", then=RERUN):
        (out / "metrics.md").write_text(to_markdown(ev), encoding="utf-8")
    paths["markdown"] = out / "metrics.md"
    paths["roc"] = plot_roc(ev, out / "roc.png")
    if ev.images:
        paths["sheet"] = viz.write_png(out / "contact_sheet.png", contact_sheet(ev))
    return paths
