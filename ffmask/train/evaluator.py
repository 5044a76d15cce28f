"""Training loop of the evaluators (``ffmask train evaluator``).

One loop serves every registered evaluator: the model comes from
:func:`ffmask.models.evaluators.create_evaluator`; its objective, the extra
batch fields it needs (``noise``, ``domain``), its optimizer and schedule,
its training-batch augmentation, whether it predicts a map and the config
keys it derives from the training data come from its registry entry
(:class:`~ffmask.models.evaluators.EvaluatorEntry`), so nothing here knows a
model by name.

What a run does (:func:`train_evaluator`):

- reads the training shards (and optional validation shards) with
  ``ShardDataset``; ``map`` names the supervising map in them, ``None``
  trains the classifier alone, and ``map_mean=True`` replaces every fake's
  map by the mean target of all training fakes (a *fixed-map control*: same
  loss, no per-face information);
- samples balanced batches, half real and half fake
  (:class:`BalancedStepSampler`; FF++ is 1:4), a pure function of
  (seed, step), so a resumed run takes exactly the steps an uninterrupted
  run would have taken;
- builds each batch as a dict (image, label, and when used target, noise,
  domain: :data:`ffmask.models.evaluators.registry.BATCH_FIELDS`);
- flips each face horizontally with probability 1/2, *and its map and noise
  residual with it*; then runs the entry's ``augment`` (seeded from
  (seed, step));
- trains with the entry's optimizer (AdamW, Adam or SGD) and schedule (cosine
  decay to zero or poly), bf16 autocast on CUDA, float32 on CPU;
- validates every ``val_every`` steps (frame AUC / ACC / loss) and keeps the
  best weights (by validation AUC) in ``out/best.*``;
- checkpoints ``out/last.*`` every ``save_every`` steps, at the end and on
  Ctrl-C, and resumes from it when run again with the same settings.

Files in ``out``: ``last.safetensors``/``last.json`` (weights + description:
model name, config, training arguments, data, metrics),
``last.optim.safetensors`` (optimizer tensors and RNG states),
``best.safetensors``/``best.json``, ``train_log.jsonl`` (one line per
validation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ffmask.devices import resolve_device
from ffmask.errors import FFMaskError
from ffmask.metrics import accuracy, roc_auc
from ffmask.outdir import ensure_out_dir
from ffmask.models.evaluators import create_evaluator, evaluator_entry, map_targets
from ffmask.models.focus import autocast_for, prepare_images
# The FoCus loop's step sampler and schedule serve here too; the run's bookkeeping is ffmask.train.loop's.
from ffmask.train.focus import StepBatchSampler, batch_loader, consecutive_batches, cosine_decay
from ffmask.train.log import mean_losses as _mean_parts
from ffmask.train.loop import TrainingRun, TrainResult, config_differences, warn_if_being_written

log = logging.getLogger("ffmask.train")

PathLike = Union[str, Path]

# Training arguments that change a run's trajectory: a checkpoint is resumed only when they are equal.
RESUME_KEYS = ("iters", "batch_size", "lr", "weight_decay", "hflip", "seed", "map", "map_mean", "pretrained",
               "manipulations", "noise_map")


@dataclass(frozen=True)
class EvaluatorTrainArgs:
    """How to train an evaluator.

    map : name of the supervising map in the shards, or None (classification only).
    map_mean : supervise every fake with the mean training target instead of
        its own map (the fixed-map control); needs ``map``.
    iters : optimizer steps of the whole run (the schedule spans them).
    batch_size : faces per step, half real and half fake (an odd one is fake).
    lr, weight_decay : the optimizer's; None takes the evaluator entry's
        (:class:`~ffmask.models.evaluators.OptimizerSpec`). A run stores the
        values it used.
    val_every : validate every this many steps (0: only at the end).
    save_every : checkpoint every this many steps (None: as val_every, or the end).
    val_max : at most this many validation faces (evenly spaced subset).
    hflip : random horizontal flips of face and map together.
    manipulations : keep only fakes of these manipulations (reals are all
        kept); None keeps every face. E.g. train on three, test on the fourth.
    seed : seeds the weights, the batches and the flips.
    workers : DataLoader worker processes.
    device : "auto", "cpu", "cuda", "cuda:1", ...
    pretrained : ImageNet weights for the backbone, "lite0" or a local file
        (fresh runs only).
    noise_map : the shards' noise residual fed as ``batch["noise"]`` to
        evaluators that take one; None: ``"noise"`` for those, unused otherwise.
    """

    map: Optional[str] = None
    map_mean: bool = False
    iters: int = 2000
    batch_size: int = 32
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    val_every: int = 200
    save_every: Optional[int] = None
    val_max: int = 4096
    hflip: bool = True
    manipulations: Optional[tuple[str, ...]] = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    pretrained: Optional[str] = None
    noise_map: Optional[str] = None

    def __post_init__(self) -> None:
        for name, low in (("iters", 1), ("batch_size", 2), ("val_max", 1), ("val_every", 0), ("workers", 0),
                          ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.save_every is not None and (not isinstance(self.save_every, int) or self.save_every < 1):
            raise ValueError(f"save_every must be a positive integer, got {self.save_every!r}")
        if self.lr is not None and (isinstance(self.lr, bool) or not self.lr > 0):
            raise ValueError(f"lr must be > 0 (or None for the evaluator's), got {self.lr!r}")
        if self.weight_decay is not None and (isinstance(self.weight_decay, bool) or not self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0 (or None for the evaluator's), got {self.weight_decay!r}")
        if self.noise_map is not None and (not isinstance(self.noise_map, str) or not self.noise_map):
            raise ValueError(f"noise_map must be a map name or None, got {self.noise_map!r}")
        if self.map is not None and (not isinstance(self.map, str) or not self.map):
            raise ValueError(f"map must be a map name or None, got {self.map!r}")
        if self.map_mean and self.map is None:
            raise ValueError("map_mean needs a map to average")
        if self.manipulations is not None:
            names = tuple(str(m) for m in self.manipulations)
            if not names:
                raise ValueError("manipulations must name at least one manipulation, or be None for all")
            object.__setattr__(self, "manipulations", names)
        if self.pretrained is not None:
            object.__setattr__(self, "pretrained", str(self.pretrained))

    @property
    def checkpoint_every(self) -> int:
        return self.save_every or self.val_every or self.iters

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["manipulations"] = list(self.manipulations) if self.manipulations else None
        return d


# ---------------------------------------------------------------- data


def parse_map_spec(spec: Optional[str]) -> tuple[Optional[str], bool]:
    """``--map`` value -> (map name or None, mean control?): ``none``, ``NAME`` or ``mean:NAME``."""
    if spec is None or str(spec).strip().lower() in ("", "none"):
        return None, False
    spec = str(spec).strip()
    if spec.startswith("mean:"):
        name = spec[len("mean:"):]
        if not name:
            raise ValueError("mean:NAME needs a map name, e.g. mean:official")
        return name, True
    return spec, False


def parse_config_options(options: Sequence[str], reserved: Sequence[str] = ()) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> {KEY: VALUE}, VALUE parsed as JSON when it is JSON, else kept as a string.

    ``reserved`` keys (set by their own options) and repeated keys are a ValueError.
    """
    out: dict[str, Any] = {}
    for option in options:
        key, sep, raw = str(option).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"model options are KEY=VALUE, got {option!r}")
        if key in reserved:
            raise ValueError(f"set {key} with its own option, not --option {key}=...")
        if key in out:
            raise ValueError(f"model option {key!r} given twice")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def face_table(dataset) -> dict[str, np.ndarray]:
    """Per-face columns of a ShardDataset without reading images or maps.

    Returns {"label": int64 (N,), "video_id", "original_id", "manipulation",
    "compression", "split": object (N,) strings, "frame_index": int64 (N,),
    "source": object (N,), what each video id is unique within
    (:func:`ffmask.evaluate.face_sources`: the dataset, a folder dataset's
    root; None without run.json)}.
    """
    from ffmask.evaluate import face_sources
    from ffmask.shards.schema import STRING_FIELDS

    # the open dataset's own index (a second ShardIndex would open and check every shard again); no image,
    # no map: the columns it caches per shard
    index = dataset.index
    rows: list = [None] * len(index)
    faces = index.iter_many(range(len(index)), image=False, maps=())
    with closing(faces):
        for k, face in faces:
            rows[k] = face
    table = {name: np.asarray([r[name] for r in rows], dtype=object) for name in STRING_FIELDS}
    table["label"] = np.asarray([r["label"] for r in rows], dtype=np.int64)
    table["frame_index"] = np.asarray([r["frame_index"] for r in rows], dtype=np.int64)
    table["source"] = np.asarray(face_sources(index), dtype=object)
    return table


def select_faces(table: Mapping[str, np.ndarray], manipulations: Optional[Sequence[str]] = None) -> np.ndarray:
    """Indices of the labelled faces to use, from a :func:`face_table`.

    Faces of unknown label (-1) are dropped. With ``manipulations``, fakes of
    other manipulations are dropped too (real faces are always kept); naming
    a manipulation no fake has is a ValueError listing the ones present.
    """
    labels = table["label"]
    keep = labels >= 0
    if manipulations is not None:
        present = table["manipulation"]
        fake_kinds = sorted(set(present[labels == 1].tolist()))
        unknown = sorted(set(manipulations) - set(fake_kinds))
        if unknown:
            raise ValueError(f"no fake faces of manipulation(s) {', '.join(unknown)}; the shards hold "
                             f"{', '.join(fake_kinds) or 'no fakes'}")
        keep &= (labels == 0) | np.isin(present, list(manipulations))
    return np.flatnonzero(keep).astype(np.int64)


class SupervisedFaces(Dataset):
    """Training items (dicts) of chosen faces; see :data:`~ffmask.models.evaluators.registry.BATCH_FIELDS`.

    dataset : a ShardDataset opened with the maps needed (``map_name``,
        ``noise_map``), with ``maps_as="stored"`` (what the loops open: the
        compact maps cross the DataLoader's shared memory and are widened
        after the copy to the device) or the default float32.
    indices : which of its faces.
    map_name : the supervising map, or None (then items have no "target").
    map_size : M, the evaluator's predicted map side (needed with ``map_name``).
    fixed_map : float32 (1, M, M) given to every fake instead of its own map
        (the mean-map control), or None.
    noise_map : the noise residual to return as "noise" float32 (3, S, S), or None.
    domains : int64 (len(dataset),) domain of every face of ``dataset`` (0 real,
        k >= 1 the k-th forgery domain) to return as "domain", or None.

    Two ways to read, with the same batches (bit for bit):

    - per item: ``self[i]`` is {"image": uint8 (3, S, S), "label": int64
      scalar[, "target": float32 (1, M, M)][, "noise": float32 (3, S, S)][,
      "domain": int64 scalar]}, stacked by :func:`collate_supervised`;
    - per batch (what the loops use): :meth:`batch` reads and collates a
      batch of positions in a DataLoader worker (maps in the dataset's form,
      one shared block, see :meth:`ffmask.ShardDataset.batch`), then
      :meth:`to_device` moves it and makes the float32 "target" / "noise"
      there: the collated items on ``device``.
    """

    def __init__(self, dataset, indices: np.ndarray, map_name: Optional[str], map_size: Optional[int],
                 fixed_map: Optional[torch.Tensor] = None, noise_map: Optional[str] = None,
                 domains: Optional[np.ndarray] = None) -> None:
        if map_name is not None and map_size is None:
            raise ValueError("a supervising map needs the predicted map's size")
        self.dataset, self.indices, self.map_name, self.map_size = dataset, np.asarray(indices), map_name, map_size
        self.fixed_map, self.noise_map = fixed_map, noise_map
        self.domains = None if domains is None else np.asarray(domains, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.indices[i])
        face = self.dataset.to_float32(self.dataset[index])
        label = torch.as_tensor(face["label"]).long()
        item = {"image": face["image"], "label": label}
        if self.map_name is not None:
            if self.fixed_map is not None:
                item["target"] = self.fixed_map * float(label == 1)
            else:
                item["target"] = map_targets(face["maps"][self.map_name][None], label.view(1), self.map_size)[0]
        if self.noise_map is not None:
            item["noise"] = torch.as_tensor(face["maps"][self.noise_map]).float()
        if self.domains is not None:
            item["domain"] = torch.tensor(int(self.domains[index]), dtype=torch.int64)
        return item

    def batch(self, positions: Sequence[int]) -> dict[str, Any]:
        """Items ``positions`` read as one batch, maps not widened: {"image": uint8 (B, 3, S, S), "label":
        int64 (B,), "maps": {name: the dataset's form (B, ...)}[, "domain": int64 (B,)]}; see :meth:`to_device`."""
        index = self.indices[np.asarray(positions, dtype=np.int64)]
        needed = [name for name in (self.map_name if self.fixed_map is None else None, self.noise_map) if name]
        read = self.dataset.batch(index.tolist(), maps=needed)  # a map the batch would drop is not read
        out = {"image": read["image"], "label": read["label"], "maps": read["maps"]}
        if self.domains is not None:
            out["domain"] = torch.from_numpy(self.domains[index])
        return out

    def to_device(self, batch: Mapping[str, Any], device) -> dict[str, torch.Tensor]:
        """A :meth:`batch` on ``device`` as :func:`collate_supervised` stacks the items: "image", "label"[,
        "target" float32 (B, 1, M, M)][, "noise" float32 (B, 3, S, S)][, "domain"]; the maps are
        widened (:func:`ffmask.shards.maps_to_float32`) and the targets made after the copy, on ``device``."""
        from ffmask.shards import maps_to_float32

        forms = self.dataset.map_forms
        maps = {name: values.to(device, non_blocking=True) for name, values in batch["maps"].items()}
        maps = maps_to_float32(maps, {name: forms[name] for name in maps})
        out = {"image": batch["image"].to(device, non_blocking=True),
               "label": batch["label"].to(device, non_blocking=True)}
        if self.map_name is not None:
            if self.fixed_map is not None:
                fake = (out["label"] == 1).to(torch.float32).view(-1, 1, 1, 1)
                out["target"] = self.fixed_map.to(device)[None] * fake
            else:
                out["target"] = map_targets(maps[self.map_name], out["label"], self.map_size)
        if self.noise_map is not None:
            out["noise"] = maps[self.noise_map]
        if "domain" in batch:
            out["domain"] = batch["domain"].to(device, non_blocking=True)
        return out


def collate_supervised(items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items of :class:`SupervisedFaces` field by field: "image" uint8 (B,3,S,S), "label" int64 (B,), ..."""
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) != 1:
        raise FFMaskError(f"one run needs face crops of one size, got {sorted(shapes)}")
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def domain_labels(table: Mapping[str, np.ndarray], indices: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Forgery domains of a face table: (int64 (N,) per face of the table, the domain names).

    Domain 0 is real; the k-th name (k >= 1) of the sorted manipulation names of
    the fakes among ``indices`` is domain k. Faces outside ``indices`` (and fakes
    of other manipulations) get -1.
    """
    labels, manip = table["label"], table["manipulation"]
    chosen = np.zeros(labels.size, bool)
    chosen[np.asarray(indices, dtype=np.int64)] = True
    names = sorted(set(manip[chosen & (labels == 1)].tolist()))
    domains = np.full(labels.size, -1, np.int64)
    domains[chosen & (labels == 0)] = 0
    for k, name in enumerate(names, start=1):
        domains[chosen & (labels == 1) & (manip == name)] = k
    return domains, names


def mean_target(dataset, indices: np.ndarray, map_name: str, map_size: int) -> torch.Tensor:
    """float32 (1, M, M): the mean map target of the fakes among ``indices`` (the fixed-map control)."""
    labels = np.asarray(dataset.labels, dtype=np.int64)[indices]
    fakes = indices[labels == 1]
    if fakes.size == 0:
        raise FFMaskError("the mean-map control needs fake training faces")
    total = torch.zeros(1, map_size, map_size)
    for i in fakes:
        face = dataset.index.read(int(i), image=False)
        m = torch.from_numpy(np.asarray(face["maps"][map_name], dtype=np.float32))
        total += map_targets(m[None], torch.ones(1, dtype=torch.int64), map_size)[0]
    return total / fakes.size


class BalancedStepSampler(Sampler):
    """Batches of positions for steps ``start + 1 .. stop``: half reals, half fakes (the odd one a fake).

    Each class is an endless stream of per-epoch permutations
    (:class:`ffmask.train.focus.StepBatchSampler` over that class, seeded
    apart), so batch ``s`` is a pure function of (seed, s) and a resumed run
    needs no sampler state. ``real``, ``fake``: the positions of each class.
    """

    def __init__(self, real: np.ndarray, fake: np.ndarray, batch_size: int, seed: int, start: int, stop: int) -> None:
        if real.size == 0 or fake.size == 0:
            raise FFMaskError(f"balanced sampling needs real and fake training faces, got {real.size} real and "
                              f"{fake.size} fake")
        n_real = batch_size // 2
        self.real, self.fake, self.start, self.stop = np.asarray(real), np.asarray(fake), start, stop
        self._real = StepBatchSampler(real.size, n_real, 2 * seed, start, stop)
        self._fake = StepBatchSampler(fake.size, batch_size - n_real, 2 * seed + 1, start, stop)

    def batch(self, step: int) -> list[int]:
        return ([int(self.real[i]) for i in self._real.batch(step)]
                + [int(self.fake[i]) for i in self._fake.batch(step)])

    def __iter__(self):
        for step in range(self.start + 1, self.stop + 1):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def step_generator(purpose: str, seed: int, step: int) -> torch.Generator:
    """A CPU torch.Generator seeded from (purpose, seed, step): a resumed run draws the same numbers."""
    digest = hashlib.sha1(f"{purpose}:{seed}:{step}".encode("utf-8")).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def flip_batch(images: torch.Tensor, *others: torch.Tensor, seed: int, step: int) -> tuple[torch.Tensor, ...]:
    """Flip each face *and its maps* left-right with probability 1/2, a pure function of (seed, step).

    images : (B, 3, H, W); others : tensors (B, C, h, w) flipped with their
    face (map targets (B, 1, M, M), noise residuals (B, 3, H, W)). Returns
    (images, *others). Kong et al.'s public code flips only the image,
    teaching the map head a mirrored target; here all always move together.
    """
    g = step_generator("flip", seed, step)
    flip = torch.rand(images.shape[0], generator=g) < 0.5
    out = []
    for t in (images, *others):
        if t.ndim != 4 or t.shape[0] != images.shape[0]:
            raise ValueError(f"flip_batch needs (B, C, H, W) tensors of B = {images.shape[0]}, got {tuple(t.shape)}")
        f = flip.to(t.device)[:, None, None, None]
        out.append(torch.where(f, t.flip(-1), t))
    return tuple(out)


def poly_decay(total: int, power: float = 0.9) -> Callable[[int], float]:
    """LR multiplier (1 - t / total) ** power: 1 at step 0, 0 at ``total`` (the "poly" schedule)."""

    def factor(t: int) -> float:
        return max(1.0 - min(t, total) / total, 0.0) ** power

    return factor


def make_optimizer(params, spec, lr: float, weight_decay: float, iters: int):
    """(optimizer, LambdaLR scheduler) of an :class:`~ffmask.models.evaluators.OptimizerSpec` over ``iters`` steps."""
    if spec.name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=weight_decay)
    elif spec.name == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    factor = cosine_decay(iters) if spec.schedule == "cosine" else poly_decay(iters, spec.power)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def data_fingerprint(table: Mapping[str, np.ndarray], indices: np.ndarray) -> str:
    """sha1 of the chosen faces' (video id, frame, label): identifies the training data for resuming."""
    video, frames, labels = (table[k][indices] for k in ("video_id", "frame_index", "label"))
    payload = json.dumps([[str(v), int(f), int(l)] for v, f, l in zip(video, frames, labels)])
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- prediction


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset, indices: np.ndarray, *, batch_size: int = 64,
            device: Union[str, torch.device, None] = None, workers: int = 0,
            map_name: Optional[str] = None) -> dict[str, np.ndarray]:
    """Run an evaluator over ``dataset[indices]`` (eval mode).

    Returns {"label": int64 (N,), "score": float64 (N,) fake probability,
    "map": float32 (N, M, M) predicted map in [0, 1] (only for a model whose
    outputs have a "map"), "target": float32 (N, M, M) map target (only with
    ``map_name``, which needs a model with a map)}.
    """
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    m = getattr(model, "map_size", None)
    if map_name is not None and m is None:
        raise ValueError(f"{type(model).__name__} predicts no map: it has no map target to compare")
    was_training = model.training
    model.eval()
    faces = SupervisedFaces(dataset, indices, map_name, m)
    loader = batch_loader(faces, consecutive_batches(len(faces), batch_size), workers=workers,
                          generator=torch.Generator())
    labels, scores, maps, targets = [], [], [], []
    has_map = m is not None
    try:
        for batch in loader:
            labels.append(batch["label"].numpy())
            batch = faces.to_device(batch, device)
            x = prepare_images(batch["image"], model.img_size)
            with autocast_for(device):
                out = model(x)
            scores.append(out["logit"].float().softmax(-1)[:, 1].cpu().numpy().astype(np.float64))
            has_map = "map" in out
            if has_map:
                maps.append(torch.sigmoid(out["map"].float())[:, 0].cpu().numpy())
            if map_name is not None:
                targets.append(batch["target"][:, 0].cpu().numpy())
    finally:
        model.train(was_training)
    out = {
        "label": np.concatenate(labels) if labels else np.zeros(0, np.int64),
        "score": np.concatenate(scores) if scores else np.zeros(0),
    }
    if has_map:
        out["map"] = np.concatenate(maps) if maps else np.zeros((0, m, m), np.float32)
    if map_name is not None:
        if not has_map:
            raise ValueError(f"{type(model).__name__} returned no map: it has no map target to compare")
        out["target"] = np.concatenate(targets) if targets else np.zeros((0, m, m), np.float32)
    return out


def validate(model, dataset, indices, *, batch_size, device, workers) -> dict[str, float]:
    """{"n", "auc", "acc"} of the frame scores on the validation faces."""
    pred = predict(model, dataset, indices, batch_size=batch_size, device=device, workers=workers)
    if pred["label"].size == 0:
        return {"n": 0, "auc": math.nan, "acc": math.nan}
    return {"n": int(pred["label"].size), "auc": roc_auc(pred["label"], pred["score"]),
            "acc": accuracy(pred["label"], pred["score"])}


# ---------------------------------------------------------------- training


@dataclass(kw_only=True)
class EvaluatorTrainResult(TrainResult):
    """Outcome of :func:`train_evaluator` (the fields of :class:`~ffmask.train.loop.TrainResult` and these).

    model : the evaluator's registry name. losses and first_losses (the
    mean of the first 10 steps): of its loss parts ({"total", "cls"[, "map"]}).
    """

    model: str
    first_losses: dict[str, float]


def _resume_differences(doc: Mapping[str, Any], model_name: str, config: dict, args: EvaluatorTrainArgs,
                        fingerprint: str, optimizer: Mapping[str, Any], val: tuple[Optional[str], int]) -> list[str]:
    diffs = []
    if doc.get("model") != model_name:
        diffs.append(f"model: checkpoint {doc.get('model')!r}, now {model_name!r}")
    diffs += config_differences(doc.get("config", {}), config)
    saved_args, now = doc.get("train", {}), args.to_dict()
    for key in RESUME_KEYS:
        if saved_args.get(key) != now.get(key):
            diffs.append(f"{key}: checkpoint {saved_args.get(key)!r}, now {now.get(key)!r}")
    if doc.get("data", {}).get("fingerprint") != fingerprint:
        diffs.append("the training faces differ")
    # best.* is the step of the best validation AUC so far: scores on other --val faces must not compete with it
    # (a checkpoint older than val_fingerprint, or without --val, is compared by its count of faces)
    saved_print, saved_n = doc.get("data", {}).get("val_fingerprint"), int(doc.get("data", {}).get("n_val", 0))
    if (saved_print != val[0]) if saved_print is not None else (saved_n != val[1]):
        diffs.append(f"the validation faces differ ({saved_n} in the checkpoint, {val[1]} now"
                     f"{', other ones' if saved_n == val[1] else ''}; best.* was chosen on the checkpoint's)")
    saved_opt = doc.get("optimizer")  # absent in checkpoints older than optimizer specs (AdamW + cosine)
    if saved_opt is not None:
        for key in sorted(set(saved_opt) | set(optimizer)):
            if saved_opt.get(key) != optimizer.get(key):
                diffs.append(f"optimizer {key}: checkpoint {saved_opt.get(key)!r}, now {optimizer.get(key)!r}")
    return diffs


def _resolve_args(args: EvaluatorTrainArgs, entry) -> EvaluatorTrainArgs:
    """``args`` with the entry's optimizer defaults filled in and the noise map named (or refused)."""
    if not entry.map_head and args.map is not None:
        raise ValueError(f"evaluator {entry.name!r} predicts no map: train it with --map none, not {args.map!r}")
    if "noise" in entry.inputs:
        noise_map = args.noise_map or "noise"
    elif args.noise_map is not None:
        raise ValueError(f"evaluator {entry.name!r} takes no noise input (noise_map {args.noise_map!r})")
    else:
        noise_map = None
    spec = entry.optimizer
    return dataclasses.replace(args, lr=spec.lr if args.lr is None else float(args.lr),
                               weight_decay=spec.weight_decay if args.weight_decay is None else float(args.weight_decay),
                               noise_map=noise_map)


def _configure(entry, config: Optional[Mapping[str, Any]], table, train_idx: np.ndarray) -> dict[str, Any]:
    """The model config: ``config`` plus the keys the entry derives from the training data (no conflicts)."""
    cfg = dict(config or {})
    if entry.configure is None:
        return cfg
    derived = entry.configure(table, train_idx)
    plain = lambda v: json.loads(json.dumps(v))  # noqa: E731  (tuples and lists compare equal)
    for key, value in derived.items():
        if key in cfg and plain(cfg[key]) != plain(value):
            raise ValueError(f"evaluator {entry.name!r} derives {key}={value!r} from the training data; "
                             f"the given config says {cfg[key]!r}")
        cfg[key] = value
    return cfg


def _warn_one_class_validation(labels: np.ndarray) -> None:
    """Say when the validation faces (their labels, int (N,)) lack reals or fakes.

    Validation AUC then is undefined at every step, so no ``best.*`` is ever
    kept (the best checkpoint is the best AUC); without a word the run looked
    validated (``best val AUC -`` at the end only).
    """
    labels = np.asarray(labels)
    n_real, n_fake = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    if n_real and n_fake:
        return
    held = "no face" if not labels.size else f"{n_real} real and {n_fake} fake faces"
    log.warning("the validation shards hold %s: validation AUC is undefined, so no best checkpoint (best.*) "
                "is kept; give --val shards with real and fake faces", held)


def _validation_overlap(table, train_idx, val_table, val_idx) -> dict[str, int]:
    """Validation videos that are training videos, or show their people (logged: validation then
    is not held out); :func:`ffmask.evaluate.video_overlap` of the two sides (``table`` and
    ``val_table``: their :func:`face_table`)."""
    from ffmask.evaluate import video_overlap

    # the tables' sources (a folder dataset's root too: two folders' "001" are two videos)
    train_names, val_names = table["source"][train_idx], val_table["source"][val_idx]
    overlap = video_overlap(zip(train_names, table["video_id"][train_idx]), zip(val_names, val_table["video_id"][val_idx]))
    if overlap["videos"]:
        log.warning("%d of the %d validation videos (%d faces) are training videos (the same video of the same "
                    "dataset, in other shard files): validation scores are not held out",
                    overlap["videos"], overlap["videos_scored"], overlap["faces"])
    if overlap["people_videos"]:
        log.warning("%d of the %d validation videos show people the training videos show (as their dataset names "
                    "them): validation is not of held-out people", overlap["people_videos"], overlap["videos_scored"])
    return overlap


def train_evaluator(
    train_shards,
    out_dir: PathLike,
    *,
    model: str = "efb4-fpn",
    config: Optional[Mapping[str, Any]] = None,
    args: Optional[EvaluatorTrainArgs] = None,
    val_shards=None,
    progress: bool = False,
    callback: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> EvaluatorTrainResult:
    """Train (or resume training) evaluator ``model`` on shards; checkpoints go to ``out_dir``.

    train_shards, val_shards : shard files, directories of ``*.h5``, or lists
        of them (validation is optional).
    config : the evaluator's keyword configuration (e.g. ``{"backbone":
        "tf_efficientnet_lite0", "img_size": 128}``).
    args : :class:`EvaluatorTrainArgs`.
    callback : ``callback(step, parts)`` after every step.

    Resumes from ``out_dir/last.*`` when it exists; raises CheckpointError
    when that checkpoint belongs to another model, config, trajectory
    argument (:data:`RESUME_KEYS`) or other training faces.
    """
    from ffmask import ShardDataset
    from ffmask.evaluate import warn_repeated_faces

    args = args if args is not None else EvaluatorTrainArgs()
    entry = evaluator_entry(model)
    args = _resolve_args(args, entry)
    out = ensure_out_dir(Path(out_dir))  # a file or read-only path: one line, before any work
    device = resolve_device(args.device)
    started = time.perf_counter()

    maps = list(dict.fromkeys(m for m in (args.map, args.noise_map) if m))
    train_ds = ShardDataset(train_shards, maps=maps, return_meta=False, maps_as="stored")
    warn_if_being_written(train_ds.paths)
    if args.map and train_ds.maps[args.map] == "noise":
        raise FFMaskError(f"map {args.map!r} is a noise residual (3 channels), not a map an evaluator can predict")
    if args.noise_map and train_ds.maps[args.noise_map] != "noise":
        raise FFMaskError(f"{model} needs a noise residual; map {args.noise_map!r} of the shards is a "
                          f"{train_ds.maps[args.noise_map]} map")
    table = face_table(train_ds)
    warn_repeated_faces(table, train_ds.index, "training")
    train_idx = select_faces(table, args.manipulations)
    domains, domain_names = domain_labels(table, train_idx) if "domain" in entry.inputs else (None, None)
    labels = table["label"]
    val_ds = ShardDataset(val_shards, return_meta=False, maps_as="stored") if val_shards else None
    val_table = face_table(val_ds) if val_ds is not None else None
    if val_ds is not None:
        warn_repeated_faces(val_table, val_ds.index, "validation")
    val_idx = select_faces(val_table, args.manipulations) if val_ds is not None else np.zeros(0, np.int64)
    if val_idx.size > args.val_max:
        val_idx = val_idx[np.unique(np.linspace(0, val_idx.size - 1, args.val_max).round().astype(np.int64))]
    if val_ds is not None:
        _warn_one_class_validation(val_table["label"][val_idx])
    fingerprint = data_fingerprint(table, train_idx)
    val_fingerprint = data_fingerprint(val_table, val_idx) if val_ds is not None else None
    val_overlap = _validation_overlap(table, train_idx, val_table, val_idx) if val_ds is not None else {}

    torch.manual_seed(args.seed)
    net = create_evaluator(model, **_configure(entry, config, table, train_idx)).to(device)
    cfg = net.config.to_dict()
    map_size = getattr(net, "map_size", None)
    fixed = mean_target(train_ds, train_idx, args.map, map_size) if args.map_mean else None
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, entry.optimizer, args.lr, args.weight_decay, args.iters)
    opt_doc = dict(entry.optimizer.to_dict(), lr=args.lr, weight_decay=args.weight_decay)

    # Positions into train_idx (what SupervisedFaces indexes), per class.
    real = np.flatnonzero(labels[train_idx] == 0)
    fake = np.flatnonzero(labels[train_idx] == 1)
    pretrained_summary, first_losses = None, {}  # set below, read by describe()

    def describe(run: TrainingRun) -> dict[str, Any]:
        return {
            "train": args.to_dict(),
            "optimizer": opt_doc,
            "data": {"n_train": int(train_idx.size), "n_real": int(real.size), "n_fake": int(fake.size),
                     "domains": domain_names,
                     "n_val": int(val_idx.size), "fingerprint": fingerprint, "val_fingerprint": val_fingerprint,
                     "val_overlap": val_overlap,
                     "train_shards": [str(p) for p in train_ds.paths],
                     "val_shards": [str(p) for p in val_ds.paths] if val_ds is not None else []},
            "pretrained": pretrained_summary,
            "metrics": {"losses": _mean_parts(list(run.window)), "first_losses": first_losses,
                        "best_val_auc": run.best_auc, "best_step": run.best_step, "last_val": run.last_val,
                        "train_seconds": run.train_seconds()},
        }

    def validate_now() -> dict[str, float]:
        return validate(net, val_ds, val_idx, batch_size=args.batch_size, device=device, workers=args.workers)

    with TrainingRun(out, net, model_name=model, config=cfg, optimizer=optimizer, scheduler=scheduler, title=model,
                     iters=args.iters, val_every=args.val_every, checkpoint_every=args.checkpoint_every,
                     validate=validate_now if val_idx.size else None, describe=describe) as run:
        # the run lock resume() takes is released however this block ends (session() releases it too)
        doc = run.resume(lambda d: _resume_differences(d, model, cfg, args, fingerprint, opt_doc,
                                                       (val_fingerprint, int(val_idx.size))))
        if doc is not None:
            first_losses = doc.get("metrics", {}).get("first_losses", {})
            pretrained_summary = doc.get("pretrained")
        elif args.pretrained:
            from ffmask.models.pretrained import load_pretrained

            pretrained_summary = load_pretrained(net.backbone, args.pretrained).summary()
            log.info("%s", pretrained_summary)

        faces = SupervisedFaces(train_ds, train_idx, args.map, map_size, fixed, noise_map=args.noise_map,
                                domains=domains)
        loader = batch_loader(faces, BalancedStepSampler(real, fake, args.batch_size, args.seed, run.step, args.iters),
                              workers=args.workers, pin_memory=device.type == "cuda",
                              generator=torch.Generator().manual_seed(args.seed))

        net.train()
        with run.session(progress):
            for step, batch in enumerate(loader, start=run.step + 1):
                batch = faces.to_device(batch, device)
                if args.hflip:
                    keys = [k for k in ("image", "target", "noise") if k in batch]
                    batch.update(zip(keys, flip_batch(*(batch[k] for k in keys), seed=args.seed, step=step)))
                batch["image"] = prepare_images(batch["image"], net.img_size)
                if entry.augment is not None:
                    batch = entry.augment(net, batch, step_generator("augment", args.seed, step))
                with autocast_for(device):
                    outputs = net(batch["image"])
                loss, parts = entry.loss(net, outputs, batch, **entry.loss_kwargs)
                run.optimize(step, loss)
                record = run.record_losses(step, parts)
                if not first_losses and len(run.window) == min(10, args.iters):
                    first_losses = _mean_parts(list(run.window))
                run.end_step(step, optimizer.param_groups[0]["lr"],
                             "loss " + " ".join(f"{k} {v:.3f}" for k, v in record.items()))
                if callback is not None:
                    callback(step, record)

    return EvaluatorTrainResult(
        out_dir=out, model=model, step=run.completed, iters=args.iters, resumed_from=run.resumed_from,
        losses=_mean_parts(list(run.window)), first_losses=first_losses, best_val_auc=run.best_auc,
        best_step=run.best_step, last_val=run.last_val, seconds=time.perf_counter() - started,
        train_seconds=run.train_seconds(), n_train=int(train_idx.size), n_val=int(val_idx.size),
        pretrained=pretrained_summary, history=run.history,
    )
