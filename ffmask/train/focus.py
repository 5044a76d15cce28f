"""Training loop of the FoCus map generator.

Input: any map-style dataset whose items follow ``ffmask.ShardDataset``'s
format: ``{"image": uint8 (3, S, S), "label": int64 scalar, "meta":
{"video_id", "original_id", "split", ...}, "maps": {...}}``. Faces of
unknown label (-1) and of the "test" split are not used.

What a run does (:func:`train_focus`):

- splits train/validation by video: the items whose meta split is "val" when
  there are any, else a deterministic held-out fraction of the videos
  (grouped by ``original_id`` so a fake and its source fall on the same side);
- trains with Adam and a cosine learning-rate decay to zero over ``iters``
  steps, optional horizontal flips and random sub-crops
  (:func:`jitter_crops`), bf16 autocast on CUDA;
- validates every ``val_every`` steps (frame AUC of the fused classifier,
  plus each branch's) and keeps the best weights in ``out/best.*``;
- checkpoints ``out/last.*`` every ``save_every`` steps, at the end and on
  Ctrl-C, and resumes from it when run again with the same configuration.

Batches and crop jitter are pure functions of (seed, step), and the random
generators are saved with the optimizer, so a resumed run takes the very
steps the uninterrupted run would have taken.

Files in ``out`` (all but the log rewritten atomically):
``last.safetensors``/``last.json`` (weights + description),
``last.optim.safetensors`` (optimizer tensors and RNG states),
``best.safetensors``/``best.json``, ``train_log.jsonl`` (one line per validation),
and with ``cache_features`` ``features.safetensors`` (the feature cache, reused
on resume when it still matches the model and the data).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from ffmask.devices import resolve_device
from ffmask.errors import CheckpointError, FFMaskError
from ffmask.models.checkpoint import read_description
from ffmask.outdir import ensure_out_dir
from ffmask.models.focus import (
    MODEL_NAME,
    FocusConfig,
    FocusNet,
    autocast_for,
    load_pretrained_backbone,
    prepare_images,
)
from ffmask.train.focus_cache import load_or_build
from ffmask.train.log import mean_losses
from ffmask.train.loop import TrainingRun, TrainResult, config_differences, warn_if_being_written
from ffmask.train.losses import focus_dense_loss, focus_loss
from ffmask.train.metrics import accuracy, roc_auc

log = logging.getLogger("ffmask.train")

PathLike = Union[str, Path]

CACHE_FILE = "features.safetensors"  # --cache-features: the frozen stages' features of the training faces
# Training arguments that change the trajectory of a run: a checkpoint is
# resumed only when they are equal.
# (Not cache_features: a cached run takes the same steps as an uncached one.)
RESUME_KEYS = ("iters", "batch_size", "lr", "weight_decay", "fus_weight", "val_fraction", "hflip", "crop_scale",
               "seed", "frozen_stages", "color_jitter", "backbone_lr_scale", "loss", "dense_top")
# Arguments that change what best.* means (not the trajectory): a resume must not pick it on two measures.
SELECTION_KEYS = ("val_mask",)
# The training objectives (FocusTrainArgs.loss): name -> loss(out, labels, args) -> (total, parts).
FOCUS_LOSSES: dict[str, Callable[..., Any]] = {
    "paper": lambda out, y, args: focus_loss(out, y, args.fus_weight),
    "dense": lambda out, y, args: focus_dense_loss(out, y, args.fus_weight, top_fraction=args.dense_top),
}


@dataclass(frozen=True)
class FocusTrainArgs:
    """How to train (the paper: Adam 1e-4, cosine decay, batch 128, 30k steps).

    iters : optimizer steps in the whole run (the cosine schedule spans them).
    batch_size : faces per step.
    lr, weight_decay : Adam's.
    fus_weight : weight of the fused classifier's loss (paper: 0.1).
    val_every : validate every this many steps (0: only at the end).
    save_every : checkpoint every this many steps (None: same as val_every,
        or every 1000 when val_every is 0).
    val_fraction : share of videos held out when no item has split "val".
    val_max : at most this many validation faces (evenly spaced subset).
    hflip : random horizontal flips.
    crop_scale : smallest side of the random sub-crop, as a fraction of the
        face crop's side, in (0, 1]; 1.0 (default, the paper's recipe): no
        crop jitter. Below 1 every training face is a random sub-crop (side
        uniform in [crop_scale, 1], position uniform), resized to ``img_size``
        (:func:`jitter_crops`), so a forgery's position in the aligned crop is
        no longer a free cue; validation and inference see the whole crop.
    seed : seeds the weights, the batch order, the flips, the crops and Gumbel noise.
    workers : DataLoader worker processes.
    device : "auto", "cpu", "cuda", "cuda:1", ...
    pretrained : local timm/ImageNet weights of the backbone, for both branches (fresh runs only).
    frozen_stages : freeze the stem and the first this many blocks of both
        backbones (no gradient, BatchNorm statistics kept): cheap fine-tuning of
        pretrained branches. 0 (default, the paper): everything trains.
    color_jitter : strength s of a random photometric change of every
        training face (after the crop jitter): brightness x b, contrast
        around the face's mean grey x c, saturation x a, each factor uniform
        in [1 - s, 1 + s], a pure function of (seed, step)
        (:func:`jitter_colors`). Global per face, so a local forgery's
        inconsistency survives it. 0 (default, the paper): off.
    backbone_lr_scale : the two backbones learn at ``lr * backbone_lr_scale``,
        everything else (CARP heads, Complementary Learning, fusion) at
        ``lr``; e.g. 0.1 to fine-tune pretrained branches gently while the
        new heads move fast. 1 (default, the paper): one learning rate.
    val_mask : name of the true-mask map of the validation faces (e.g.
        "official"). When set, the best checkpoint is the one whose a'_fus
        (the map ``annotate folder`` writes) ranks the true mask pixels best
        (mean pixel AUC over the fake validation faces); otherwise, or when
        no validation fake has a usable mask, the best frame AUC of ŷ_fus.
    cache_features : compute the frozen backbone stages' output of every
        training face once (and of its mirror image with ``hflip``) and train
        only what follows on those cached features
        (:mod:`ffmask.train.focus_cache`): the same steps, batches, flips and
        noise as without the cache, far cheaper per step. Needs
        ``frozen_stages >= 1``, a CNN backbone, and no crop or colour jitter
        (they change the image at every step).
    loss : the training objective, a key of :data:`FOCUS_LOSSES`: "paper"
        (default: CE of both CARP heads + fus_weight x CE of the fused
        classifier) or "dense" (that plus a token-level multiple-instance
        term: every token of a real face towards "not fake", the top
        ``dense_top`` share of a fake face's tokens towards "fake";
        :func:`ffmask.train.losses.focus_dense_loss`).
    dense_top : with ``loss="dense"``, the share of a fake face's tokens pushed towards "fake", in (0, 1].
    """

    iters: int = 30_000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.0
    fus_weight: float = 0.1
    val_every: int = 1000
    save_every: Optional[int] = None
    val_fraction: float = 0.1
    val_max: int = 4096
    hflip: bool = True
    crop_scale: float = 1.0
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    pretrained: Optional[str] = None
    val_mask: Optional[str] = None
    frozen_stages: int = 0
    color_jitter: float = 0.0
    backbone_lr_scale: float = 1.0
    cache_features: bool = False
    loss: str = "paper"
    dense_top: float = 0.1

    def __post_init__(self) -> None:
        def positive(name, allow_zero=False):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
                raise ValueError(f"{name} must be an integer >= {0 if allow_zero else 1}, got {v!r}")

        for name in ("iters", "batch_size", "val_max"):
            positive(name)
        for name in ("val_every", "workers", "seed", "frozen_stages"):
            positive(name, allow_zero=True)
        if self.save_every is not None:
            positive("save_every")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0 or not self.fus_weight >= 0:
            raise ValueError("weight_decay and fus_weight must be >= 0")
        if isinstance(self.crop_scale, bool) or not isinstance(self.crop_scale, (int, float)) \
                or not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be in (0, 1], got {self.crop_scale!r}")
        object.__setattr__(self, "crop_scale", float(self.crop_scale))
        if isinstance(self.color_jitter, bool) or not isinstance(self.color_jitter, (int, float)) \
                or not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter!r}")
        object.__setattr__(self, "color_jitter", float(self.color_jitter))
        if isinstance(self.backbone_lr_scale, bool) or not isinstance(self.backbone_lr_scale, (int, float)) \
                or not self.backbone_lr_scale > 0:
            raise ValueError(f"backbone_lr_scale must be > 0, got {self.backbone_lr_scale!r}")
        object.__setattr__(self, "backbone_lr_scale", float(self.backbone_lr_scale))
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.pretrained is not None:
            object.__setattr__(self, "pretrained", str(self.pretrained))
        if self.loss not in FOCUS_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(FOCUS_LOSSES)}, got {self.loss!r}")
        if isinstance(self.dense_top, bool) or not isinstance(self.dense_top, (int, float)) \
                or not 0.0 < self.dense_top <= 1.0:
            raise ValueError(f"dense_top must be in (0, 1], got {self.dense_top!r}")
        object.__setattr__(self, "dense_top", float(self.dense_top))
        if self.cache_features:
            if self.frozen_stages < 1:
                raise ValueError("cache_features needs frozen backbone stages (frozen_stages >= 1): "
                                 "only frozen stages give the same features at every step")
            if self.crop_scale != 1.0 or self.color_jitter != 0.0:
                raise ValueError("cache_features cannot be combined with crop_scale < 1 or color_jitter > 0 "
                                 "(they change every training image at every step)")

    @property
    def checkpoint_every(self) -> int:
        return self.save_every or self.val_every or 1000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- data


@dataclass
class Split:
    """Train/validation indices into the dataset, disjoint by video.

    train, val : int64 index arrays. how : "meta split", "held-out people: ..." or "held-out videos...",
        in words (see :func:`split_by_video`).
    skipped : faces not used (unknown label or "test" split).
    """

    train: np.ndarray
    val: np.ndarray
    how: str
    skipped: int
    fingerprint: str

    def describe(self) -> dict[str, Any]:
        return {"n_train": int(self.train.size), "n_val": int(self.val.size), "split": self.how,
                "skipped": int(self.skipped), "fingerprint": self.fingerprint}


def _group_hash(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode("utf-8")).hexdigest()


def _people(metas: Sequence[Mapping[str, Any]], indices) -> set:
    """The people (:func:`ffmask.datasets.registry.identities`) the faces at ``indices`` show."""
    from ffmask.datasets.registry import identities

    seen, out = set(), set()
    for i in indices:
        m = metas[int(i)]
        key = (m.get("dataset"), m.get("video_id"))
        if key not in seen:
            seen.add(key)
            out.update(identities(*key) if key[1] else ())
    return out


def _person_groups(keys: list, metas: Sequence[Mapping[str, Any]], usable: np.ndarray) -> tuple[list, str]:
    """(one group name per face, how) for :func:`split_by_video`: the ``keys`` (originals) joined
    where their videos show a common person; the keys alone when one group would hold most videos."""
    from ffmask.datasets.registry import identities

    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        a, b = find(a), find(b)
        if a != b:
            parent[max(a, b)] = min(a, b)  # the smaller name represents the group: independent of order

    done = set()
    for i, m in enumerate(metas):
        key = (keys[i], m.get("dataset"), m.get("video_id"))
        if not usable[i] or key in done:
            continue
        done.add(key)
        find("video:" + keys[i])
        for person in identities(m.get("dataset"), m.get("video_id") or ""):
            union("video:" + keys[i], "person:" + person)
    originals = {keys[i] for i in np.flatnonzero(usable)}
    sizes: dict = {}
    for k in originals:
        sizes[find("video:" + k)] = sizes.get(find("video:" + k), 0) + 1
    if not sizes or len(sizes) == len(originals):
        return keys, "held-out videos"
    largest = max(sizes.values())
    if largest * 2 > len(originals):
        return keys, (f"held-out videos (grouped by original only: joining the videos that show a common person "
                      f"would leave {largest} of {len(originals)} originals in one group; training and validation "
                      "videos may show the same people)")
    groups = [find("video:" + k) if k else k for k in keys]
    return groups, (f"held-out people: the {len(originals)} originals' videos in {len(sizes)} groups that share "
                    "no person (FF++'s 000_003 joins 000 and 003)")


def split_by_video(labels: Sequence[int], metas: Sequence[Mapping[str, Any]], val_fraction: float = 0.1,
                   seed: int = 0, val_max: Optional[int] = None) -> Split:
    """Split faces into train and validation so no video is on both sides.

    labels : (N,) ints, 1 fake / 0 real / -1 unknown (unknown faces are skipped).
    metas : N dicts with "video_id" and optionally "original_id", "split"
        and "dataset" (the dataset the shard was annotated from, which says
        what people a video's name gives: :func:`ffmask.datasets.registry.identities`).

    If any usable face has split "val", those faces are the validation set
    and every other non-"test" face is training data. Otherwise the videos
    are grouped by ``original_id`` (else ``video_id``), groups that show the
    same person are joined (FF++'s fake ``000_003`` shows 000 and 003, so
    ``000``'s and ``003``'s videos form one group; Celeb-DF names its people
    alike), and the ``round(val_fraction * groups)`` groups (at least one
    when val_fraction > 0) with the smallest hash of (seed, group) are held
    out: deterministic and independent of the order of the faces. Without
    the join, a fake made with person B's face could train while B's own
    videos validate: a validation of people the model has seen. When the
    join leaves one group holding more than half of the videos (people
    linked by many swaps), the videos are held out by original alone and
    ``how`` says that validation shares people with training. ``val_max``
    caps the validation set with an evenly spaced subset. When every usable
    face belongs to one group, nothing is held out (the training would have
    no faces) and ``how`` says so.
    ``how`` says which of these was done.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(metas) != labels.shape[0]:
        raise ValueError(f"need one meta per label, got {len(metas)} metas for labels of shape {labels.shape}")
    split = np.array([str(m.get("split") or "") for m in metas], dtype=object)
    usable = (labels >= 0) & (split != "test")
    if np.any(usable & (split == "val")):
        val_mask = usable & (split == "val")
        how = "meta split"
        shared = _people(metas, np.flatnonzero(usable & ~val_mask)) & _people(metas, np.flatnonzero(val_mask))
        if shared:
            how += f" ({len(shared)} people in both training and validation videos)"
    else:
        keys = []
        for i, m in enumerate(metas):
            key = str(m.get("original_id") or m.get("video_id") or "")
            if not key and usable[i] and val_fraction > 0:
                raise ValueError(f"face {i} has no video_id; cannot hold out whole videos for validation")
            keys.append(key)
        groups, how = _person_groups(keys, metas, usable)
        groups = np.array(groups, dtype=object)
        unique = sorted(set(groups[usable].tolist()), key=lambda g: _group_hash(seed, g))
        k = int(round(val_fraction * len(unique)))
        if val_fraction > 0 and len(unique) >= 2:
            k = min(max(k, 1), len(unique) - 1)
        elif val_fraction > 0 and unique:  # holding out the only group would leave nothing to train on
            how += f"; nothing held out: all {int(usable.sum())} usable faces are one group of videos"
        held = set(unique[:k])
        val_mask = usable & np.array([g in held for g in groups], dtype=bool)
    train = np.flatnonzero(usable & ~val_mask).astype(np.int64)
    val = np.flatnonzero(val_mask).astype(np.int64)
    if val_max is not None and val.size > val_max:
        val = val[np.unique(np.linspace(0, val.size - 1, val_max).round().astype(np.int64))]
    ids = lambda idx: sorted({str(metas[i].get("video_id") or "") for i in idx})  # noqa: E731
    fingerprint = hashlib.sha1(json.dumps([ids(train), ids(val), int(train.size), int(val.size)]).encode()).hexdigest()
    return Split(train, val, how, int((~usable).sum()), fingerprint)


def dataset_index(dataset: Dataset) -> tuple[np.ndarray, list[dict]]:
    """Labels (N,) and metas of every item, by reading each item once."""
    labels, metas = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        labels.append(int(item["label"]))
        metas.append(dict(item.get("meta") or {}))
    return np.asarray(labels, dtype=np.int64), metas


def shard_index(dataset) -> tuple[np.ndarray, list[dict]]:
    """Labels and metas of a ``ShardDataset`` from its column index, without reading images.

    Each meta also names the dataset its shard was annotated from (the
    ``run.json`` beside it; None when there is none), which says what people
    a video shows (:func:`split_by_video`).
    """
    from ffmask.evaluate import FACE_KEY, face_datasets, face_sources, warn_repeated_faces

    labels = np.asarray(dataset.labels, dtype=np.int64)
    datasets = face_datasets(dataset.index)
    sources = face_sources(dataset.index)
    metas, columns = [], {k: [] for k in FACE_KEY}
    for i in range(len(dataset)):
        face = dataset.index.read(i, image=False)
        metas.append({**{k: face[k] for k in ("video_id", "original_id", "split")}, "dataset": datasets[i]})
        for k in FACE_KEY:
            columns[k].append(face[k])
    columns["source"] = sources
    # a shard read with its copy counts its faces twice (said, as train evaluator says it)
    warn_repeated_faces(columns, dataset.index, "FoCus training")
    return labels, metas


class _Faces(Dataset):
    """(image uint8 (3, S, S), label int64[, true mask bool (S, S)]) of a subset of a ShardDataset-style dataset.

    With ``mask_name`` each item also carries ``item["maps"][mask_name] > 0.5``
    (of the float32 map: a ``maps_as="stored"`` dataset's map is widened first).
    :meth:`batch` gives ``collate_faces([self[i] for i in positions])``, read
    as one batch where the dataset has :meth:`ffmask.ShardDataset.batch`.
    """

    def __init__(self, dataset: Dataset, indices: np.ndarray, mask_name: Optional[str] = None) -> None:
        self.dataset = dataset
        self.indices = indices
        self.mask_name = mask_name

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int):
        item = self.dataset[int(self.indices[i])]
        if self.mask_name is None:
            return item["image"], item["label"]
        maps = item.get("maps") or {}
        if self.mask_name not in maps:
            raise FFMaskError(f"validation face {int(self.indices[i])} has no {self.mask_name!r} map "
                              f"(it has {sorted(maps)})")
        return item["image"], item["label"], self._mask(maps[self.mask_name])

    def _mask(self, values) -> torch.Tensor:
        """bool: ``values`` (one map or a batch's) > 0.5, widened to float32 first where they are stored compact."""
        values = torch.as_tensor(values)
        forms = getattr(self.dataset, "map_forms", None)
        if forms is not None:
            from ffmask.shards import maps_to_float32

            values = maps_to_float32({self.mask_name: values}, {self.mask_name: forms[self.mask_name]})[self.mask_name]
        return values > 0.5

    def batch(self, positions: Sequence[int]):
        """``collate_faces([self[i] for i in positions])``: uint8 (B, 3, S, S), int64 (B,)[, bool (B, S, S)]."""
        read = getattr(self.dataset, "batch", None)
        if read is None:
            return collate_faces([self[i] for i in positions])
        # of the maps only the mask (training faces: none) is read
        faces = read([int(self.indices[i]) for i in positions], maps=[self.mask_name] if self.mask_name else [])
        out = (faces["image"], faces["label"])
        if self.mask_name is not None:
            out += (self._mask(faces["maps"][self.mask_name]),)
        return out


def collate_faces(batch):
    """Stack (image, label[, mask]) tuples into uint8 (B, 3, S, S), int64 (B,)[, bool (B, S, S)]."""
    images = [torch.as_tensor(item[0]) for item in batch]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) != 1:
        raise FFMaskError(f"one training run needs face crops of one size, got {sorted(shapes)}")
    out = (torch.stack(images), torch.as_tensor([int(item[1]) for item in batch], dtype=torch.int64))
    if len(batch[0]) > 2:
        out += (torch.stack([torch.as_tensor(item[2]) for item in batch]),)
    return out


def batch_loader(faces, sampler, *, workers: int, pin_memory: bool = False,
                 generator: Optional[torch.Generator] = None) -> DataLoader:
    """A DataLoader of ``faces.batch(positions)`` for every list of positions ``sampler`` yields.

    Each worker reads and collates its whole batch (``batch_size=None``: the
    DataLoader does not stack it again); ``faces``: anything with
    ``batch(positions)`` and ``len()``, a :class:`_Faces` here, the
    evaluators' ``SupervisedFaces`` in :mod:`ffmask.train.evaluator`.
    """
    from ffmask.shards import BatchedShards

    return DataLoader(BatchedShards(faces), batch_size=None, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, generator=generator)


def consecutive_batches(n: int, batch_size: int) -> list[list[int]]:
    """Positions 0..n-1 in consecutive batches of ``batch_size`` (the last may be shorter)."""
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


class StepBatchSampler(Sampler):
    """Index batches for steps ``start + 1 .. stop``, a pure function of (seed, step).

    The faces form an endless stream of per-epoch permutations (epoch ``e``
    shuffled with seed ``seed * 1_000_003 + e``); step ``s`` takes positions
    ``(s - 1) * B .. s * B - 1``. Resuming at any step needs no sampler state.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int) -> None:
        if n < 1:
            raise ValueError("no training faces")
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self._perm_epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g).numpy(), epoch
        return self._perm

    def batch(self, step: int) -> list[int]:
        out = []
        for pos in range((step - 1) * self.batch_size, step * self.batch_size):
            epoch, offset = divmod(pos, self.n)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def __iter__(self):
        for step in range(self.start + 1, self.stop + 1):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


# ---------------------------------------------------------------- augmentation


def _step_seed(seed: int, step: int, what: str) -> int:
    """A 60-bit seed derived from (what, seed, step), independent of any global generator."""
    return int(hashlib.sha1(f"{what}:{seed}:{step}".encode("utf-8")).hexdigest()[:15], 16)


def random_crop_boxes(n: int, height: int, width: int, min_scale: float, seed: int, step: int) -> np.ndarray:
    """Random sub-crop boxes for the ``n`` faces of training step ``step``.

    Each box keeps the crop's aspect: its sides are ``round(s * height)`` and
    ``round(s * width)`` with ``s`` uniform in ``[min_scale, 1]``, and its
    top-left corner is uniform over the positions that keep it inside the
    crop. A pure function of (seed, step).

    Returns int64 (n, 4): y0, x0, box height, box width (pixels, >= 1).
    """
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
    if n < 0 or height < 1 or width < 1:
        raise ValueError(f"need n >= 0 and a positive crop size, got n={n}, {height}x{width}")
    rng = np.random.default_rng(_step_seed(seed, step, "crop"))
    scale = rng.uniform(min_scale, 1.0, n)
    h = np.clip(np.round(scale * height), 1, height).astype(np.int64)
    w = np.clip(np.round(scale * width), 1, width).astype(np.int64)
    # Uniform integer corners: floor(u * (free + 1)) with u in [0, 1).
    y0 = np.floor(rng.random(n) * (height - h + 1)).astype(np.int64)
    x0 = np.floor(rng.random(n) * (width - w + 1)).astype(np.int64)
    return np.stack([y0, x0, h, w], axis=1)


def jitter_crops(images: torch.Tensor, size: int, min_scale: float, seed: int, step: int) -> torch.Tensor:
    """Random sub-crops of a training batch, resized to the model input.

    images : uint8 (N, 3, H, W) face crops.
    size : output side (the model's ``img_size``).
    min_scale : smallest box side as a fraction of the crop's side, in (0, 1];
        1.0 returns ``prepare_images(images, size)`` unchanged.
    seed, step : the boxes are :func:`random_crop_boxes` of (seed, step), so a
        resumed run crops exactly as the uninterrupted one.

    Returns float32 (N, 3, size, size) in [0, 1], on the images' device. Each
    box is cut from the full-resolution crop and then resized with the same
    antialiased bilinear resize as :func:`ffmask.models.focus.prepare_images`,
    so a jittered face differs from an inference input only in framing, not
    in resampling artefacts (which may be the very forgery cues).
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if min_scale == 1.0:
        return prepare_images(images, size)
    boxes = random_crop_boxes(images.shape[0], images.shape[2], images.shape[3], min_scale, seed, step)
    return torch.cat([prepare_images(images[i:i + 1, :, y0:y0 + h, x0:x0 + w], size)
                      for i, (y0, x0, h, w) in enumerate(boxes.tolist())])


def jitter_colors(x: torch.Tensor, strength: float, seed: int, step: int) -> torch.Tensor:
    """A random global photometric change of each face of training step ``step``.

    x : float (N, 3, H, W) RGB in [0, 1]. strength : s in [0, 1); 0 returns ``x``.
    Per face, factors uniform in [1 - s, 1 + s] drawn from (seed, step): the
    brightness ``b`` scales every value, the contrast ``c`` scales the
    distance to the face's mean grey, the saturation ``a`` the distance of
    each pixel to its own grey (Rec. 601 weights); then clipped to [0, 1].
    Returns a new float tensor of the same shape, device and dtype.
    """
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected float images (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength!r}")
    if strength == 0.0:
        return x
    rng = np.random.default_rng(_step_seed(seed, step, "color"))
    b, c, a = (torch.from_numpy(rng.uniform(1.0 - strength, 1.0 + strength, x.shape[0])).to(x)
               .view(-1, 1, 1, 1) for _ in range(3))
    weights = torch.tensor([0.299, 0.587, 0.114]).to(x).view(1, 3, 1, 1)
    y = x * b
    grey = (y * weights).sum(dim=1, keepdim=True)
    y = grey + a * (y - grey)
    y = grey.mean(dim=(2, 3), keepdim=True) + c * (y - grey.mean(dim=(2, 3), keepdim=True))
    return y.clamp(0.0, 1.0)


def parameter_groups(model: FocusNet, lr: float, backbone_lr_scale: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the two backbones at ``lr * backbone_lr_scale``, the rest at ``lr``.

    Only parameters that require gradient (frozen stages are left out); the
    backbone group comes first. With ``backbone_lr_scale == 1`` one group
    holds everything (as before the option existed, so older runs resume).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr_scale == 1.0:
        return [{"params": trainable, "lr": lr}]
    backbone = {id(p) for branch in (model.rgb_branch, model.sobel_branch) for p in branch.backbone.parameters()}
    groups = [{"params": [p for p in trainable if id(p) in backbone], "lr": lr * backbone_lr_scale},
              {"params": [p for p in trainable if id(p) not in backbone], "lr": lr}]
    return [g for g in groups if g["params"]]


# ---------------------------------------------------------------- training


def cosine_decay(total: int) -> Callable[[int], float]:
    """LR multiplier 0.5 (1 + cos(pi t / total)): 1 at step 0, 0 at ``total``."""

    def factor(t: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))

    return factor


def map_pixel_auc(maps: np.ndarray, masks: np.ndarray) -> tuple[float, int]:
    """Mean per-face pixel AUC of ``maps`` against true ``masks``, and the faces it is over.

    maps : float (N, H, W); masks : bool/0-1 (N, H, W). Faces whose mask is
    empty or full (AUC undefined) are left out. Returns (NaN, 0) when none is left.
    """
    maps, masks = np.asarray(maps), np.asarray(masks).astype(bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must be the same (N, H, W)")
    aucs = [roc_auc(t.ravel(), m.ravel()) for m, t in zip(maps, masks) if t.any() and not t.all()]
    return (float(np.mean(aucs)), len(aucs)) if aucs else (math.nan, 0)


def unknown_label_maps(out, size: tuple[int, int]) -> torch.Tensor:
    """a'_fus of a FocusOutput as ``annotate folder`` writes it: bilinear to ``size``, clamped to [0, 1]; (N, H, W)."""
    up = F.interpolate(out.a_fus_fake[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return up[:, 0].clamp_(0.0, 1.0)


@torch.inference_mode()
def evaluate_focus(model: FocusNet, dataset: Dataset, indices: np.ndarray, *, batch_size: int = 64,
                   device: Union[str, torch.device, None] = None, workers: int = 0,
                   mask_name: Optional[str] = None) -> dict[str, float]:
    """Scores of ``model`` on ``dataset[indices]`` (eval mode, no Gumbel noise).

    Returns {"auc", "acc", "loss"} of the fused classifier, "auc_rgb",
    "auc_sobel" of the branch classifiers, "rgb_share" (fraction of tokens
    Complementary Learning takes from the RGB branch, all faces), "n", and
    "map_auc"/"map_faces": the mean pixel AUC of a'_fus (the map of a face of
    unknown label, upsampled to the crop as ``annotate`` writes it) against
    the true mask ``maps[mask_name]`` over the fake faces (NaN/0 without
    ``mask_name``). AUCs are NaN when undefined.
    """
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels, fus, rgb, sob, losses, shares, map_aucs = [], [], [], [], [], [], []
    faces = _Faces(dataset, indices, mask_name)
    loader = batch_loader(faces, consecutive_batches(len(faces), batch_size), workers=workers,
                          generator=torch.Generator())
    try:
        for batch in loader:
            images, y = batch[0], batch[1]
            x = prepare_images(images.to(device, non_blocking=True), model.img_size)
            with autocast_for(device):
                out = model(x)
            y = y.to(device)
            losses.append(float(F.cross_entropy(out.logits_fus.float(), y, reduction="sum")))
            labels.append(y.cpu().numpy())
            fus.append(out.prob_fus.float().cpu().numpy())
            rgb.append(out.logits_rgb.float().softmax(-1)[:, 1].cpu().numpy())
            sob.append(out.logits_sobel.float().softmax(-1)[:, 1].cpu().numpy())
            shares.append(out.rgb_share.cpu().numpy())
            if mask_name is not None:
                fake = (y == 1).cpu().numpy()
                if fake.any():
                    maps = unknown_label_maps(out, tuple(images.shape[-2:])).cpu().numpy()
                    map_aucs.append((maps[fake], batch[2].numpy()[fake]))
    finally:
        model.train(was_training)
    if not labels:
        return {"n": 0, "auc": math.nan, "acc": math.nan, "loss": math.nan, "auc_rgb": math.nan,
                "auc_sobel": math.nan, "rgb_share": math.nan, "map_auc": math.nan, "map_faces": 0}
    labels = np.concatenate(labels)
    fus, rgb, sob, shares = (np.concatenate(v) for v in (fus, rgb, sob, shares))
    map_auc, map_faces = math.nan, 0
    if map_aucs:
        per_batch = [map_pixel_auc(m, t) for m, t in map_aucs]
        map_faces = sum(k for _, k in per_batch)
        if map_faces:
            map_auc = float(sum(a * k for a, k in per_batch if k) / map_faces)
    return {"n": int(labels.size), "auc": roc_auc(labels, fus), "acc": accuracy(labels, fus),
            "loss": sum(losses) / labels.size, "auc_rgb": roc_auc(labels, rgb), "auc_sobel": roc_auc(labels, sob),
            "rgb_share": float(shares.mean()), "map_auc": map_auc, "map_faces": int(map_faces)}


@dataclass(kw_only=True)
class FocusTrainResult(TrainResult):
    """Outcome of :func:`train_focus` (the fields of :class:`~ffmask.train.loop.TrainResult` and these).

    losses : of {"total", "rgb", "sobel", "fus", "rgb_share"} (rgb_share:
        fraction of tokens Complementary Learning took from RGB, with training noise).
    best_metric : what picked the best checkpoint: "map_auc" (pixel AUC of a'_fus
        against the validation masks) or "auc" (frame AUC of ŷ_fus).
    best_score / best_step : its best value and step (NaN/None without validation).
    best_val_auc : frame AUC of ŷ_fus at the best step.
    last_val : the last validation's scores (see :func:`evaluate_focus`).
    """

    best_metric: str = "auc"
    best_score: float = math.nan


def _resume_differences(doc: Mapping[str, Any], config: dict, args: FocusTrainArgs, split: Split) -> list[str]:
    diffs = config_differences(doc.get("config", {}), config)
    saved_args = doc.get("train", {})
    defaults = FocusTrainArgs()
    for key in RESUME_KEYS + SELECTION_KEYS:
        # A key the checkpoint lacks was added later; the run used its default.
        saved = saved_args.get(key, getattr(defaults, key))
        if saved != getattr(args, key):
            diffs.append(f"{key}: checkpoint {saved!r}, now {getattr(args, key)!r}")
    saved_data = doc.get("data", {})
    if saved_data.get("fingerprint") != split.fingerprint:
        diffs.append(f"training data: checkpoint {saved_data.get('n_train')} train / {saved_data.get('n_val')} val "
                     f"faces, now {split.train.size} / {split.val.size} (or other videos)")
    return diffs


def train_focus(
    dataset: Dataset,
    out_dir: PathLike,
    *,
    config: Optional[FocusConfig] = None,
    args: Optional[FocusTrainArgs] = None,
    index: Optional[tuple[Sequence[int], Sequence[Mapping[str, Any]]]] = None,
    progress: bool = False,
    callback: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> FocusTrainResult:
    """Train (or resume training) a FocusNet on ``dataset``; checkpoints go to ``out_dir``.

    dataset : items in ``ShardDataset`` format (see module docstring).
    config, args : model and training configuration (defaults: the paper's).
    index : precomputed ``(labels, metas)`` of every item; None reads every
        item once (see :func:`shard_index` for shards).
    progress : show a rich progress bar.
    callback : ``callback(step, {"total", "rgb", "sobel", "fus", "lr"})`` after every step.

    Resumes from ``out_dir/last.*`` when it exists; raises CheckpointError when
    that checkpoint was made with another model config, other
    trajectory-relevant arguments (:data:`RESUME_KEYS`) or other data.
    """
    config = config if config is not None else FocusConfig()
    args = args if args is not None else FocusTrainArgs()
    out = ensure_out_dir(Path(out_dir))  # a file or read-only path: one line, before any work
    device = resolve_device(args.device)
    started = time.perf_counter()

    labels, metas = index if index is not None else dataset_index(dataset)
    labels = np.asarray(labels)
    if labels.shape[0] != len(dataset):
        raise ValueError(f"index has {labels.shape[0]} faces but the dataset has {len(dataset)}")
    split = split_by_video(labels, metas, args.val_fraction, args.seed, args.val_max)
    log.info("validation split: %s; %d training / %d validation faces", split.how, split.train.size, split.val.size)
    if args.val_fraction > 0 and split.val.size == 0:
        log.warning("no validation faces (%s): no validation metric and no best.* checkpoint; last.* is the model",
                    split.how)
    present = set(labels[split.train].tolist())
    if present != {0, 1}:
        raise FFMaskError(f"FoCus needs real and fake training faces; the training split holds labels {sorted(present)} "
                          f"({split.train.size} faces)")

    if split.val.size and len(set(labels[split.val].tolist())) < 2:
        log.warning("the validation faces hold one class only; validation AUC is undefined (NaN)")

    torch.manual_seed(args.seed)
    model = FocusNet(config).to(device)
    if args.frozen_stages:
        log.info("froze %d backbone parameters (stem and %d stages per branch)",
                 model.freeze_stages(args.frozen_stages), args.frozen_stages)
    optimizer = torch.optim.Adam(parameter_groups(model, args.lr, args.backbone_lr_scale), lr=args.lr,
                                 weight_decay=args.weight_decay,
                                 fused=True if device.type == "cuda" else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(args.iters))
    cfg = model.config.to_dict()

    selection = "map_auc" if args.val_mask else "auc"
    pretrained_summary = None

    def describe(run: TrainingRun) -> dict[str, Any]:
        return {
            "train": args.to_dict(),
            "data": split.describe(),
            "pretrained": pretrained_summary,
            "metrics": {"losses": mean_losses(list(run.window)), "best_val_auc": run.best_auc,
                        "best_step": run.best_step, "best_metric": selection, "best_score": run.best_score,
                        "last_val": run.last_val, "train_seconds": run.train_seconds()},
        }

    def validate() -> dict[str, float]:
        if cache is not None:
            cache.check(model)
        return evaluate_focus(model, dataset, split.val, batch_size=args.batch_size, device=device,
                              workers=args.workers, mask_name=args.val_mask)

    with TrainingRun(out, model, model_name=MODEL_NAME, config=cfg, optimizer=optimizer, scheduler=scheduler,
                     title="FoCus", iters=args.iters, val_every=args.val_every,
                     checkpoint_every=args.checkpoint_every, validate=validate if split.val.size else None,
                     describe=describe, select=selection) as run:
        # the run lock resume() takes is released however this block ends (session() releases it too)
        doc = run.resume(lambda d: _resume_differences(d, cfg, args, split), MODEL_NAME)
        if doc is not None:
            pretrained_summary = doc.get("pretrained")
        elif args.pretrained:
            pretrained_summary = load_pretrained_backbone(model, args.pretrained).summary()
            log.info("%s", pretrained_summary)
        step = run.step

        sampler = StepBatchSampler(split.train.size, args.batch_size, args.seed, step, args.iters)
        cache = None
        if args.cache_features:
            cache_start = time.perf_counter()
            cache, built = load_or_build(model, dataset, split.train, out / CACHE_FILE, flips=args.hflip,
                                         batch_size=args.batch_size, device=device)
            log.info("%s the frozen stages' features of %d training faces (%s, %.0f MB) in %.0f s",
                     "computed" if built else f"reused {out / CACHE_FILE}:", len(cache),
                     "and their mirror images" if cache.flips else "no flips", cache.nbytes / 2 ** 20,
                     time.perf_counter() - cache_start)
            train_labels = torch.as_tensor(labels[split.train], dtype=torch.int64)
            # Batches of positions into the cache (= positions into split.train, as the loader's).
            batches = ((s, torch.as_tensor(b), train_labels[b]) for s, b in
                       zip(range(step + 1, args.iters + 1), iter(sampler)))
        else:
            # Each worker reads and collates a whole batch; a private generator: creating the
            # iterator must not consume the global RNG.
            loader = batch_loader(_Faces(dataset, split.train), sampler, workers=args.workers,
                                  pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(args.seed))
            batches = ((s, images, y) for s, (images, y) in enumerate(loader, start=step + 1))
        model.train()
        with run.session(progress):
            for step, batch, y in batches:
                y = y.to(device, non_blocking=True)
                if cache is not None:
                    # Same draw as below: the flips, then the Gumbel noise, consume the global RNG alike.
                    flip = (torch.rand(y.shape[0]) < 0.5) if args.hflip else None
                    with autocast_for(device):
                        out_ = model.forward_features(*cache.take(batch, flip))
                else:
                    x = jitter_crops(batch.to(device, non_blocking=True), model.img_size, args.crop_scale,
                                     args.seed, step)
                    x = jitter_colors(x, args.color_jitter, args.seed, step)
                    if args.hflip:
                        flip = (torch.rand(x.shape[0]) < 0.5).to(device)
                        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                    with autocast_for(device):
                        out_ = model(x)
                loss, parts = FOCUS_LOSSES[args.loss](out_, y, args)
                run.optimize(step, loss)
                record = run.record_losses(step, {**parts, "rgb_share": out_.rgb_share.mean()})
                record["lr"] = optimizer.param_groups[-1]["lr"]
                run.end_step(step, record["lr"],
                             f"loss {record['total']:.3f} (rgb {record['rgb']:.3f} sobel {record['sobel']:.3f} "
                             f"fus {record['fus']:.3f}) RGB tokens {record['rgb_share']:.0%}")
                if callback is not None:
                    callback(step, record)

    return FocusTrainResult(
        out_dir=out, step=run.completed, iters=args.iters, resumed_from=run.resumed_from,
        losses=mean_losses(list(run.window)) or (_doc_losses(run.last_json) if run.resumed_from is not None else {}),
        best_val_auc=run.best_auc, best_step=run.best_step, last_val=run.last_val,
        seconds=time.perf_counter() - started, train_seconds=run.train_seconds(),
        n_train=int(split.train.size), n_val=int(split.val.size), pretrained=pretrained_summary, history=run.history,
        best_metric=selection, best_score=run.best_score,
    )


def _doc_losses(path: Path) -> dict[str, float]:
    """The mean recent losses stored in a checkpoint description (for a run already complete)."""
    try:
        return dict(read_description(path).get("metrics", {}).get("losses", {}))
    except CheckpointError:
        return {}


def train_focus_from_shards(paths, out_dir: PathLike, *, config: Optional[FocusConfig] = None,
                            args: Optional[FocusTrainArgs] = None, progress: bool = False) -> FocusTrainResult:
    """:func:`train_focus` on HDF5 shards: files, directories of ``*.h5``, or a list of these.

    With ``args.val_mask`` every shard must carry that map (FFMaskError naming
    the shard otherwise), and it must not be a noise residual; it is read only
    for validation.
    """
    from ffmask import ShardDataset

    args = args if args is not None else FocusTrainArgs()
    dataset = ShardDataset(paths, maps=(args.val_mask,) if args.val_mask else (), return_meta=False, maps_as="stored")
    warn_if_being_written(dataset.paths)
    if args.val_mask and dataset.maps[args.val_mask] == "noise":
        # found before training, not at the first validation as a shape error
        raise FFMaskError(f"--val-mask {args.val_mask} is a noise residual (3 channels), not a true mask; "
                          "use a mask map such as official")
    return train_focus(dataset, out_dir, config=config, args=args, index=shard_index(dataset), progress=progress)
