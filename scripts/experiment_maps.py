"""Which supervision map helps a detector? Train an evaluator (efb4-fpn, lite0 backbone) with each map, score it.

Run by ``scripts/experiment_maps.sh`` (which makes the synth tree and the
shards first); see docs/evaluators.md for the design and the results.

    python scripts/experiment_maps.py WORK [--seeds 0,1,2] [--iters 60] [--jobs 2]
    python scripts/experiment_maps.py WORK --model msccnet --config '{"backbone": "resnet18d"}' \
        --supervisions none,mscc,hull --protocols main

Another ``--model`` (any registered evaluator) takes its own ``--config``
(JSON, merged over ``{"img_size": --img-size}``), ``--lr`` (default: the
model's own optimizer setting) and ``--pretrained``; its results go to
``WORK/results-MODEL/`` and ``WORK/table-MODEL.md``. Map-less models report
NaN pixel scores.

WORK holds ``c23/`` and ``c40/`` shards of one synth tree (one shard per
original video: shard k = original k and the fakes whose target is k).
Every (supervision, seed) cell trains once per protocol and is skipped when
its result file exists, so a rerun resumes. Results: ``WORK/results/*.json``,
the table: ``WORK/table.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# Synth identities with --identities 10: shard k = original video k.
# 000 obama, 001 biden, 004 obama3, 005 biden (mirrored) train; 002 astronaut and 003 obama2 are the
# held-out test pair (the astronaut photo appears nowhere in training, obama2 is another photo of a
# trained person); 008 obama2 (mirrored), 009 obama3 (mirrored) only monitor training.
TRAIN = (0, 1, 4, 5)
TEST = (2, 3)
VAL = (8, 9)
SUPERVISIONS = ("none", "diff@0.1", "ssim", "mscc", "hull", "focus", "official", "mean:official")
HELD_OUT_MANIPULATION = "NeuralTextures"
MANIPULATIONS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def shards(work: Path, compression: str, ids) -> list[str]:
    return [str(work / compression / f"shard-{i:05d}.h5") for i in ids]


def run_cell(work: str, protocol: str, supervision: str, seed: int, iters: int, batch: int, img_size: int,
             model: str = "efb4-fpn", config: dict | None = None, lr: float | None = 1e-3,
             pretrained: str | None = "lite0") -> dict:
    """Train one model and evaluate it on its protocol's test sets; returns the result record."""
    import torch

    torch.set_num_threads(1)
    from ffmask.evaluate import evaluate_checkpoint
    from ffmask.train.evaluator import EvaluatorTrainArgs, parse_map_spec, train_evaluator

    work = Path(work)
    name, mean = parse_map_spec(supervision)
    train_manips = tuple(m for m in MANIPULATIONS if m != HELD_OUT_MANIPULATION) if protocol == "manipulation" else None
    runs = "runs" if model == "efb4-fpn" else f"runs-{model}"
    run_dir = work / runs / f"{protocol}-{supervision.replace(':', '_')}-s{seed}"
    started = time.perf_counter()
    if model == "efb4-fpn" and config is None:
        config = {"backbone": "tf_efficientnet_lite0", "map_size": 40}
    result = train_evaluator(
        shards(work, "c23", TRAIN), run_dir, model=model,
        config={"img_size": img_size, **(config or {})},
        val_shards=shards(work, "c23", VAL),
        args=EvaluatorTrainArgs(map=name, map_mean=mean, iters=iters, batch_size=batch, lr=lr,
                                val_every=iters, seed=seed, device="cpu", pretrained=pretrained,
                                manipulations=train_manips),
    )
    tests = {"identities_c23": ("c23", None), "identities_c40": ("c40", None)} if protocol == "main" else \
        {"manipulation_c23": ("c23", (HELD_OUT_MANIPULATION,))}
    record = {"model": model, "config": dict(result_config(run_dir)), "protocol": protocol,
              "supervision": supervision, "seed": seed, "iters": iters, "lr": lr, "pretrained": pretrained,
              "first_losses": result.first_losses, "losses": result.losses, "tests": {}}
    for test, (compression, manips) in tests.items():
        ev = evaluate_checkpoint(run_dir / "last.json", shards(work, compression, TEST), against=["official"],
                                 manipulations=manips, device="cpu", keep_images=0)
        groups = ev.metrics["groups"]
        pixel = groups["fakes"]["pixel"].get("official", {})  # none for a model without a map
        record["tests"][test] = {"auc": groups["all"]["frame"]["auc"], "acc": groups["all"]["frame"]["acc"],
                                 "video_auc": groups["all"]["video_auc"],
                                 "iou_fakes": pixel.get("iou", math.nan),
                                 "pixel_auc_fakes": pixel.get("auc", math.nan)}
    record["seconds"] = time.perf_counter() - started
    return record


def result_config(run_dir: Path) -> dict:
    return json.loads((run_dir / "last.json").read_text())["config"]


def _results_dir(work: Path, model: str) -> Path:
    return work / ("results" if model == "efb4-fpn" else f"results-{model}")


def _result_path(work: Path, protocol: str, supervision: str, seed: int, model: str = "efb4-fpn") -> Path:
    return _results_dir(work, model) / f"{protocol}-{supervision.replace(':', '_')}-s{seed}.json"


def _cell_job(work, protocol, supervision, seed, iters, batch, img_size, model="efb4-fpn", config=None, lr=1e-3,
              pretrained="lite0"):
    out = _result_path(Path(work), protocol, supervision, seed, model)
    lock = out.with_suffix(".lock")
    try:  # another runner on the same WORK may have taken this cell
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        return None
    try:
        if out.is_file():
            return None
        record = run_cell(work, protocol, supervision, seed, iters, batch, img_size, model, config, lr, pretrained)
        out.write_text(json.dumps(record, indent=1, allow_nan=True) + "\n")
    finally:
        lock.unlink(missing_ok=True)
    print(f"{protocol:12s} {supervision:14s} seed {seed}: " + "  ".join(
        f"{t} AUC {v['auc']:.3f} IoU {v['iou_fakes']:.3f}" for t, v in record["tests"].items())
        + f"  ({record['seconds']:.0f} s)", flush=True)
    return record


def table(work: Path, model: str = "efb4-fpn") -> str:
    """Markdown: mean ± std over seeds of frame AUC / ACC and IoU (fakes) per supervision and test."""
    records = [json.loads(p.read_text()) for p in sorted(_results_dir(work, model).glob("*.json"))]
    tests = ("identities_c23", "identities_c40", "manipulation_c23")
    titles = {"identities_c23": "held-out identities (c23)", "identities_c40": "c23 → c40 (held-out identities)",
              "manipulation_c23": f"held-out manipulation ({HELD_OUT_MANIPULATION}, c23)"}
    lines = []
    for test in tests:
        rows = [r for r in records if test in r["tests"]]
        if not rows:
            continue
        seeds = sorted({r["seed"] for r in rows})
        lines += [f"### {titles[test]}", "", f"seeds {', '.join(map(str, seeds))}; mean ± std (sample std, n = seeds); "
                  "Δ AUC vs none: difference of means, '≈' when smaller than the combined seed spread "
                  "sqrt(std² + std_none²)", "",
                  "| supervision | n | frame AUC | Δ AUC vs none | frame ACC | video AUC | IoU vs true masks (fakes) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]

        def values(sup, key):
            v = np.array([r["tests"][test][key] for r in rows if r["supervision"] == sup], dtype=float)
            return v[np.isfinite(v)]

        def ms(v):
            if v.size == 0:
                return "-"
            return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if v.size > 1 else f"{v.mean():.3f}"

        base = values("none", "auc")
        order = list(SUPERVISIONS) + sorted({r["supervision"] for r in rows} - set(SUPERVISIONS))
        for sup in order:
            auc = values(sup, "auc")
            if auc.size == 0:
                continue
            delta = "-"
            if sup != "none" and auc.size > 1 and base.size > 1:
                d = auc.mean() - base.mean()
                spread = math.hypot(auc.std(ddof=1), base.std(ddof=1))
                delta = f"{d:+.3f} {'≈' if abs(d) < spread else '(beyond spread)'}"
            n = sum(r["supervision"] == sup for r in rows)
            lines.append(f"| {sup} | {n} | {ms(auc)} | {delta} | {ms(values(sup, 'acc'))} | "
                         f"{ms(values(sup, 'video_auc'))} | {ms(values(sup, 'iou_fakes'))} |")
        lines.append("")
    secs = sum(r["seconds"] for r in records)
    lines.append(f"{len(records)} runs; their wall times (training + evaluation, one thread each, 2-3 runs at once) sum to {secs / 60:.1f} min.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--protocols", default="main,manipulation")
    ap.add_argument("--supervisions", default=",".join(SUPERVISIONS))
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--model", default="efb4-fpn", help="registered evaluator")
    ap.add_argument("--config", default=None, help="model config as JSON (efb4-fpn: lite0 backbone, 40x40 map)")
    ap.add_argument("--lr", default=None, help="learning rate; 'model' for the model's own (efb4-fpn: 1e-3)")
    ap.add_argument("--pretrained", default=None, help="backbone weights ('lite0', a file, 'none'; efb4-fpn: lite0)")
    a = ap.parse_args()
    efb4 = a.model == "efb4-fpn"
    config = json.loads(a.config) if a.config else None
    lr = (1e-3 if efb4 else None) if a.lr is None else (None if a.lr == "model" else float(a.lr))
    pretrained = ("lite0" if efb4 else None) if a.pretrained is None else \
        (None if a.pretrained == "none" else a.pretrained)
    _results_dir(a.work, a.model).mkdir(parents=True, exist_ok=True)
    if not a.table_only:
        seeds = [int(s) for s in a.seeds.split(",")]
        cells = [(p, sup, seed) for p in a.protocols.split(",") for seed in seeds for sup in a.supervisions.split(",")
                 if not _result_path(a.work, p, sup, seed, a.model).is_file()]
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=a.jobs) as pool:
            futures = [pool.submit(_cell_job, str(a.work), p, sup, seed, a.iters, a.batch, a.img_size, a.model,
                                   config, lr, pretrained)
                       for p, sup, seed in cells]
            for f in futures:
                f.result()
        print(f"{len(cells)} cells in {(time.perf_counter() - started) / 60:.1f} min wall", flush=True)
    text = table(a.work, a.model)
    (a.work / ("table.md" if efb4 else f"table-{a.model}.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
