"""``ffmask evaluate CKPT --shards SHARDS --out REPORT``: score a trained evaluator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer


class _HeldWarnings(logging.Handler):
    """Keeps the warnings the CLI does not print from the metrics (e.g. a model that predicts no map)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not hasattr(record, "metric"):
            self.messages.append(record.getMessage())


def evaluate(
    checkpoint: Path = typer.Argument(..., help="Evaluator checkpoint: a training directory (best, else last), "
                                      "its .json or its .safetensors.", show_default=False),
    shards: List[Path] = typer.Option(..., "--shards", help="Shards to score on (files or directories); repeatable. "
                                      "Cross-dataset evaluation is just other shards."),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory: metrics.json, metrics.md, roc.png, contact_sheet.png."),
    against: Optional[str] = typer.Option(None, help="Comma-separated maps in the shards to score the predicted map "
                                          "against (official, hull, mscc, ...)."),
    manipulations: Optional[str] = typer.Option(None, help="Score only fakes of these manipulations (all reals kept)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, help="DataLoader worker processes."),
) -> None:
    """Frame ACC/AUC/EER/AP, video AUC and pixel F1/IoU/mIoU/AUC of an evaluator, by manipulation and compression."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ffmask.errors import FFMaskError
    from ffmask.evaluate import crop_mismatch_line, evaluate_to, training_video_lines, unlabelled_line
    from ffmask.options import usable_out_dir
    from ffmask.shards.manifest import being_written_line

    usable_out_dir(out)  # an unusable --out fails now, not after the whole evaluation
    split = lambda s: [v.strip() for v in s.split(",") if v.strip()] if s else None  # noqa: E731
    # The library's warnings, held for after the table: those about what metrics.json records are printed
    # from it below (each once: Python's last-resort handler printed them a second time, uncoloured).
    held = _HeldWarnings()
    logger = logging.getLogger("ffmask.evaluate")
    logger.addHandler(held)
    propagate, logger.propagate = logger.propagate, False
    try:
        # holds --out's run lock throughout: a second evaluate into the same --out is one "in use" line
        ev, paths = evaluate_to(checkpoint, shards, out, against=split(against) or (),
                                manipulations=split(manipulations), batch_size=batch_size, device=device,
                                workers=workers)
    except ValueError as exc:
        raise FFMaskError(str(exc)) from None
    finally:
        logger.removeHandler(held)
        logger.propagate = propagate

    fmt = lambda v: "-" if v is None or v != v else f"{v:.3f}"  # noqa: E731
    table = Table(title=f"{ev.model} on {len(ev.shards)} shard(s)")
    table.add_column("group", no_wrap=True)
    for col in ("faces", "ACC", "AUC", "EER", "AP", "video AUC", *(f"IoU {m}" for m in ev.metrics["against"])):
        table.add_column(col)
    for name, g in ev.metrics["groups"].items():
        f = g["frame"]
        short = name.replace("manipulation=", "").replace("compression=", "").replace(",", " ")
        table.add_row(escape(short), str(f["n"]), fmt(f["acc"]), fmt(f["auc"]), fmt(f["eer"]), fmt(f["ap"]),
                      fmt(g["video_auc"]), *(fmt(g["pixel"][m]["iou"]) for m in ev.metrics["against"]))
    Console().print(table)
    if ev.metrics.get("scored_training_shards"):
        Console().print(f"[yellow]{len(ev.metrics['scored_training_shards'])} of the {len(ev.shards)} scored shard(s) "
                        "trained this checkpoint: these scores are not held out[/]")
    for text in held.messages:
        Console().print(f"[yellow]{escape(text)}[/]")
    for line in training_video_lines(ev.metrics.get("scored_training_videos", {})):
        Console().print(f"[yellow]{escape(line)}[/]")
    if ev.metrics.get("crop_mismatch"):
        Console().print(f"[yellow]{escape(crop_mismatch_line(ev.metrics['crop_mismatch']))}[/]")
    if unlabelled_line(ev.metrics.get("unlabelled_faces", {})):
        Console().print(f"[yellow]{escape(unlabelled_line(ev.metrics['unlabelled_faces']))}[/]")
    if ev.metrics.get("missing_shards"):
        names = ", ".join(Path(p).name for p in ev.metrics["missing_shards"])
        Console().print(f"[red]not scored: the manifest names {len(ev.metrics['missing_shards'])} shard(s) that are "
                        f"missing ({escape(names)}); their videos are left out[/]")
    for folder, pid in ev.metrics.get("shards_being_written", {}).items():
        Console().print(f"[red]{escape(being_written_line(folder, pid, 'evaluation'))}[/]")
    Console().print("report: " + ", ".join(escape(str(p)) for p in paths.values()))
    Console().print("per manipulation: its fakes + all reals of the scored compressions; IoU of fakes and reals "
                    "(reals' target empty); full tables in metrics.md")
