"""Training loop of the evaluators (``ffmask train evaluator``).

One loop serves every registered evaluator: the model comes from
:func:`ffmask.models.evaluators.create_evaluator`, its objective from its
registry entry, so nothing here knows a model by name.

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
- flips each face horizontally with probability 1/2, *and its map with it*;
- trains with AdamW and a cosine learning-rate decay to zero, bf16 autocast
  on CUDA, float32 on CPU;
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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ffmask.devices import resolve_device
from ffmask.errors import CheckpointError, FFMaskError
from ffmask.metrics import accuracy, roc_auc
from ffmask.models.checkpoint import match_state_dict, read_description, read_safetensors, save_checkpoint
from ffmask.models.evaluators import create_evaluator, evaluator_entry, map_targets
from ffmask.models.focus import autocast_for, prepare_images
# One loop's helpers serve both loops (same log format, same loss averaging).
from ffmask.train.focus import StepBatchSampler, cosine_decay
from ffmask.train.log import append_log, truncate_log
from ffmask.train.log import mean_losses as _mean_parts
from ffmask.train.state import load_training_state, save_training_state

log = logging.getLogger("ffmask.train")

PathLike = Union[str, Path]

LAST, BEST = "last", "best"
OPTIM_FILE = "last.optim.safetensors"
LOG_FILE = "train_log.jsonl"
# Training arguments that change a run's trajectory: a checkpoint is resumed only when they are equal.
RESUME_KEYS = ("iters", "batch_size", "lr", "weight_decay", "hflip", "seed", "map", "map_mean", "pretrained",
               "manipulations")
_LOSS_WINDOW = 50


@dataclass(frozen=True)
class EvaluatorTrainArgs:
    """How to train an evaluator.

    map : name of the supervising map in the shards, or None (classification only).
    map_mean : supervise every fake with the mean training target instead of
        its own map (the fixed-map control); needs ``map``.
    iters : optimizer steps of the whole run (the cosine schedule spans them).
    batch_size : faces per step, half real and half fake (an odd one is fake).
    lr, weight_decay : AdamW's.
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
    """

    map: Optional[str] = None
    map_mean: bool = False
    iters: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    val_every: int = 200
    save_every: Optional[int] = None
    val_max: int = 4096
    hflip: bool = True
    manipulations: Optional[tuple[str, ...]] = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    pretrained: Optional[str] = None

    def __post_init__(self) -> None:
        for name, low in (("iters", 1), ("batch_size", 2), ("val_max", 1), ("val_every", 0), ("workers", 0),
                          ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.save_every is not None and (not isinstance(self.save_every, int) or self.save_every < 1):
            raise ValueError(f"save_every must be a positive integer, got {self.save_every!r}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr!r}, {self.weight_decay!r}")
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


def face_table(dataset) -> dict[str, np.ndarray]:
    """Per-face columns of a ShardDataset without reading images or maps.

    Returns {"label": int64 (N,), "video_id", "original_id", "manipulation",
    "compression", "split": object (N,) strings, "frame_index": int64 (N,)}.
    """
    from ffmask.shards import ShardIndex
    from ffmask.shards.schema import STRING_FIELDS

    index = ShardIndex(dataset.paths)  # no maps requested: reads the cached columns only
    rows = [index.read(i, image=False) for i in range(len(index))]
    index.close()
    table = {name: np.asarray([r[name] for r in rows], dtype=object) for name in STRING_FIELDS}
    table["label"] = np.asarray([r["label"] for r in rows], dtype=np.int64)
    table["frame_index"] = np.asarray([r["frame_index"] for r in rows], dtype=np.int64)
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
    """(image uint8 (3, S, S), target float32 (1, M, M), label int64) of chosen faces.

    dataset : a ShardDataset opened with ``maps=[map]`` (or none).
    indices : which of its faces.
    map_name : the supervising map, or None (targets are zeros, unused).
    map_size : M, the evaluator's predicted map side.
    fixed_map : float32 (1, M, M) given to every fake instead of its own map
        (the mean-map control), or None.
    """

    def __init__(self, dataset, indices: np.ndarray, map_name: Optional[str], map_size: int,
                 fixed_map: Optional[torch.Tensor] = None) -> None:
        self.dataset, self.indices, self.map_name, self.map_size = dataset, np.asarray(indices), map_name, map_size
        self.fixed_map = fixed_map

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int):
        item = self.dataset[int(self.indices[i])]
        label = item["label"]
        if self.map_name is None:
            target = torch.zeros(1, self.map_size, self.map_size)
        elif self.fixed_map is not None:
            target = self.fixed_map * float(label == 1)
        else:
            target = map_targets(item["maps"][self.map_name][None], label.view(1), self.map_size)[0]
        return item["image"], target, label


def collate_supervised(batch):
    """Stack (image, target, label) triples into uint8 (B,3,S,S), float32 (B,1,M,M), int64 (B,)."""
    shapes = {tuple(img.shape) for img, _, _ in batch}
    if len(shapes) != 1:
        raise FFMaskError(f"one run needs face crops of one size, got {sorted(shapes)}")
    images, targets, labels = zip(*batch)
    return torch.stack(images), torch.stack(targets), torch.stack([torch.as_tensor(l) for l in labels]).long()


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


def flip_batch(images: torch.Tensor, targets: torch.Tensor, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each face *and its map target* left-right with probability 1/2, a pure function of (seed, step).

    images : (B, 3, H, W); targets : (B, 1, M, M). Kong et al.'s public code
    flips only the image, teaching the map head a mirrored target; here both
    always move together.
    """
    digest = hashlib.sha1(f"flip:{seed}:{step}".encode("utf-8")).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    flip = torch.rand(images.shape[0], generator=g) < 0.5
    f_img = flip.to(images.device)[:, None, None, None]
    f_map = flip.to(targets.device)[:, None, None, None]
    return torch.where(f_img, images.flip(-1), images), torch.where(f_map, targets.flip(-1), targets)


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
    "map": float32 (N, M, M) predicted map in [0, 1], "target": float32
    (N, M, M) map target (only with ``map_name``)}.
    """
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(SupervisedFaces(dataset, indices, map_name, model.map_size), batch_size=batch_size,
                        shuffle=False, num_workers=workers, collate_fn=collate_supervised,
                        generator=torch.Generator())
    labels, scores, maps, targets = [], [], [], []
    try:
        for images, target, y in loader:
            x = prepare_images(images.to(device, non_blocking=True), model.img_size)
            with autocast_for(device):
                out = model(x)
            labels.append(y.numpy())
            scores.append(out["logit"].float().softmax(-1)[:, 1].cpu().numpy().astype(np.float64))
            maps.append(torch.sigmoid(out["map"].float())[:, 0].cpu().numpy())
            targets.append(target[:, 0].numpy())
    finally:
        model.train(was_training)
    m = model.map_size
    out = {
        "label": np.concatenate(labels) if labels else np.zeros(0, np.int64),
        "score": np.concatenate(scores) if scores else np.zeros(0),
        "map": np.concatenate(maps) if maps else np.zeros((0, m, m), np.float32),
    }
    if map_name is not None:
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


@dataclass
class EvaluatorTrainResult:
    """Outcome of :func:`train_evaluator`.

    losses : mean of the last (up to 50) steps' parts ({"total", "cls"[, "map"]}).
    best_val_auc / best_step : best validation AUC (NaN / None without validation).
    seconds : wall time of this call; train_seconds : summed over resumes.
    """

    out_dir: Path
    model: str
    step: int
    iters: int
    resumed_from: Optional[int]
    losses: dict[str, float]
    first_losses: dict[str, float]
    best_val_auc: float
    best_step: Optional[int]
    last_val: Optional[dict[str, float]]
    seconds: float
    train_seconds: float
    n_train: int
    n_val: int
    pretrained: Optional[str] = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / (LAST + ".json")


def _resume_differences(doc: Mapping[str, Any], model_name: str, config: dict, args: EvaluatorTrainArgs,
                        fingerprint: str) -> list[str]:
    diffs = []
    if doc.get("model") != model_name:
        diffs.append(f"model: checkpoint {doc.get('model')!r}, now {model_name!r}")
    saved_cfg = doc.get("config", {})
    for key in sorted(set(saved_cfg) | set(config)):
        if saved_cfg.get(key) != config.get(key):
            diffs.append(f"{key}: checkpoint {saved_cfg.get(key)!r}, now {config.get(key)!r}")
    saved_args, now = doc.get("train", {}), args.to_dict()
    for key in RESUME_KEYS:
        if saved_args.get(key) != now.get(key):
            diffs.append(f"{key}: checkpoint {saved_args.get(key)!r}, now {now.get(key)!r}")
    if doc.get("data", {}).get("fingerprint") != fingerprint:
        diffs.append("the training faces differ")
    return diffs


class _Bar:
    """A rich progress bar with the losses, or nothing."""

    def __init__(self, enabled: bool, title: str, total: int, done: int) -> None:
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=total, completed=done, info="")

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, info: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=info)


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

    args = args if args is not None else EvaluatorTrainArgs()
    entry = evaluator_entry(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    started = time.perf_counter()

    maps = [args.map] if args.map else []
    train_ds = ShardDataset(train_shards, maps=maps, return_meta=False)
    if args.map and train_ds.maps[args.map] == "noise":
        raise FFMaskError(f"map {args.map!r} is a noise residual (3 channels), not a map an evaluator can predict")
    table = face_table(train_ds)
    train_idx = select_faces(table, args.manipulations)
    labels = table["label"]
    val_ds = ShardDataset(val_shards, return_meta=False) if val_shards else None
    val_idx = select_faces(face_table(val_ds), args.manipulations) if val_ds is not None else np.zeros(0, np.int64)
    if val_idx.size > args.val_max:
        val_idx = val_idx[np.unique(np.linspace(0, val_idx.size - 1, args.val_max).round().astype(np.int64))]
    fingerprint = data_fingerprint(table, train_idx)

    torch.manual_seed(args.seed)
    net = create_evaluator(model, **dict(config or {})).to(device)
    cfg = net.config.to_dict()
    fixed = mean_target(train_ds, train_idx, args.map, net.map_size) if args.map_mean else None
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_decay(args.iters))

    step, best_auc, best_step, history, train_seconds = 0, math.nan, None, [], 0.0
    resumed_from, pretrained_summary, first_losses = None, None, {}
    last_json = out / (LAST + ".json")
    if last_json.is_file():
        doc = read_description(last_json)
        diffs = _resume_differences(doc, model, cfg, args, fingerprint)
        if diffs:
            raise CheckpointError(f"{out} holds a checkpoint of a different run ({'; '.join(diffs)}); "
                                  "use another output directory or remove it")
        step = int(doc["step"])
        tensors, meta = read_safetensors(out / (LAST + ".safetensors"))
        if meta.get("step") != str(step):
            raise CheckpointError(f"{out}/last.safetensors is from step {meta.get('step')}, last.json from step {step}")
        match_state_dict(net, tensors, str(out / (LAST + ".safetensors")))
        load_training_state(out, doc["training_state"], optimizer, scheduler, step)
        metrics = doc.get("metrics", {})
        best_auc = math.nan if metrics.get("best_val_auc") is None else float(metrics["best_val_auc"])
        best_step = metrics.get("best_step")
        first_losses = metrics.get("first_losses", {})
        history = doc.get("history", [])
        train_seconds = float(metrics.get("train_seconds", 0.0))
        pretrained_summary = doc.get("pretrained")
        resumed_from = step
        truncate_log(out / LOG_FILE, step)  # lines a crashed run wrote after its last checkpoint
        log.info("resuming %s training from %s at step %d", model, last_json, step)
    elif args.pretrained:
        from ffmask.models.pretrained import load_pretrained

        pretrained_summary = load_pretrained(net.backbone, args.pretrained).summary()
        log.info("%s", pretrained_summary)

    # Positions into train_idx (what SupervisedFaces indexes), per class.
    real = np.flatnonzero(labels[train_idx] == 0)
    fake = np.flatnonzero(labels[train_idx] == 1)
    loader = DataLoader(
        SupervisedFaces(train_ds, train_idx, args.map, net.map_size, fixed),
        batch_sampler=BalancedStepSampler(real, fake, args.batch_size, args.seed, step, args.iters),
        collate_fn=collate_supervised, num_workers=args.workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(args.seed),
    )
    window: deque = deque(maxlen=_LOSS_WINDOW)
    last_val = history[-1]["val"] if history else None
    saved_step, completed, in_update = step, step, False
    session_start = time.perf_counter()

    def describe() -> dict[str, Any]:
        return {
            "train": args.to_dict(),
            "data": {"n_train": int(train_idx.size), "n_real": int(real.size), "n_fake": int(fake.size),
                     "n_val": int(val_idx.size), "fingerprint": fingerprint,
                     "train_shards": [str(p) for p in train_ds.paths],
                     "val_shards": [str(p) for p in val_ds.paths] if val_ds is not None else []},
            "pretrained": pretrained_summary,
            "metrics": {"losses": _mean_parts(list(window)), "first_losses": first_losses,
                        "best_val_auc": best_auc, "best_step": best_step, "last_val": last_val,
                        "train_seconds": train_seconds + time.perf_counter() - session_start},
        }

    def save_last(current: int) -> None:
        training_state = save_training_state(out / OPTIM_FILE, optimizer, scheduler, current)
        extra = describe()
        extra.update(history=history, training_state=training_state)
        save_checkpoint(out / LAST, net, model_name=model, config=cfg, step=current, extra=extra)

    net.train()
    try:
        with _Bar(progress, model, args.iters, step) as bar:
            for step, (images, target, y) in enumerate(loader, start=step + 1):
                images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if args.hflip:
                    images, target = flip_batch(images, target, args.seed, step)
                x = prepare_images(images, net.img_size)
                with autocast_for(device):
                    outputs = net(x)
                loss, parts = entry.loss(outputs, y, target if args.map else None, **entry.loss_kwargs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                in_update = True
                optimizer.step()
                scheduler.step()
                in_update, completed = False, step
                record = {k: float(v) for k, v in parts.items()}
                if not all(math.isfinite(v) for v in record.values()):
                    raise FFMaskError(f"training diverged at step {step} (losses {record}); "
                                      f"the last good checkpoint is {last_json}")
                window.append(record)
                if not first_losses and len(window) == min(10, args.iters):
                    first_losses = _mean_parts(list(window))
                if val_idx.size and ((args.val_every and step % args.val_every == 0) or step == args.iters):
                    last_val = validate(net, val_ds, val_idx, batch_size=args.batch_size, device=device,
                                        workers=args.workers)
                    history.append({"step": step, "val": last_val, "losses": _mean_parts(list(window))})
                    if math.isfinite(last_val["auc"]) and not (last_val["auc"] <= best_auc):
                        best_auc, best_step = last_val["auc"], step
                        save_checkpoint(out / BEST, net, model_name=model, config=cfg, step=step, extra=describe())
                    append_log(out / LOG_FILE, {"step": step, "lr": optimizer.param_groups[0]["lr"], **history[-1]})
                if step % args.checkpoint_every == 0 or step == args.iters:
                    save_last(step)
                    saved_step = step
                info = "loss " + " ".join(f"{k} {v:.3f}" for k, v in record.items())
                if last_val is not None:
                    info += f"  val AUC {last_val['auc']:.3f}"
                bar.update(step, info)
                if callback is not None:
                    callback(step, record)
    except KeyboardInterrupt:
        if not in_update and completed > saved_step:
            save_last(completed)
            log.info("interrupted: saved step %d to %s", completed, last_json)
        raise

    train_seconds += time.perf_counter() - session_start
    return EvaluatorTrainResult(
        out_dir=out, model=model, step=max(step, completed), iters=args.iters, resumed_from=resumed_from,
        losses=_mean_parts(list(window)), first_losses=first_losses, best_val_auc=best_auc, best_step=best_step,
        last_val=last_val, seconds=time.perf_counter() - started, train_seconds=train_seconds,
        n_train=int(train_idx.size), n_val=int(val_idx.size), pretrained=pretrained_summary, history=history,
    )
