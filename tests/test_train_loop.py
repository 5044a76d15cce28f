"""The bookkeeping both training loops share (``ffmask.train.loop.TrainingRun``), on a tiny linear model.

The loops' own exact-resume tests (tests/test_focus_train.py, tests/test_evaluators.py,
tests/test_evaluator_framework.py) run it end to end; these pin what they do not reach:
Ctrl-C before, inside and after an update, divergence, the best checkpoint, the log, refusal.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from ffmask.errors import CheckpointError, FFMaskError
from ffmask.train.loop import TrainingRun, config_differences

ITERS = 6


def _run(out, scores=None, *, interrupt=None, inside_update=False, loss_at=None, differences=lambda doc: []):
    """Train Linear(3, 1) on random data for ITERS steps through a TrainingRun; returns the run.

    scores : {step: validation AUC} (validation every 2 steps) or None (no validation).
    interrupt : raise KeyboardInterrupt after that step's update (or inside it with ``inside_update``).
    loss_at : {step: loss value} replacing the recorded loss (to make it non-finite).
    """
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 - t / ITERS)
    steps = []
    if inside_update:  # between the optimizer's step and the scheduler's
        optimizer.register_step_post_hook(lambda *_: steps[-1] == interrupt and _raise(KeyboardInterrupt))

    def validate():
        return {"n": 4, "auc": scores[steps[-1]], "acc": 0.5}

    def describe(run):
        return {"metrics": {"losses": {}, "best_val_auc": run.best_auc, "best_step": run.best_step,
                            "last_val": run.last_val, "train_seconds": run.train_seconds()}}

    run = TrainingRun(out, model, model_name="linear", config={"width": 3}, optimizer=optimizer,
                      scheduler=scheduler, title="toy", iters=ITERS, val_every=2, checkpoint_every=3,
                      validate=validate if scores else None, describe=describe)
    run.resume(differences)
    with run.session(progress=False):
        for step in range(run.step + 1, ITERS + 1):
            steps.append(step)
            x = torch.randn(4, 3)  # the global RNG: a resumed run must draw what the straight one drew
            loss = model(x).pow(2).mean()
            run.optimize(step, loss)
            run.record_losses(step, {"total": (loss_at or {}).get(step, loss)})
            run.end_step(step, optimizer.param_groups[0]["lr"], "loss")
            if step == interrupt and not inside_update:
                raise KeyboardInterrupt
    return run


def _raise(exc):
    raise exc


def _weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "last.safetensors"))


def test_ctrl_c_saves_the_completed_step_and_the_resumed_run_is_the_straight_one(tmp_path):
    straight = _run(tmp_path / "a")
    assert straight.completed == ITERS and straight.resumed_from is None
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", interrupt=4)  # checkpoints at 3; the interrupt saves 4
    assert json.loads((tmp_path / "b" / "last.json").read_text())["step"] == 4
    resumed = _run(tmp_path / "b")
    assert resumed.resumed_from == 4 and resumed.completed == ITERS
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() == {"weight", "bias"} and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_inside_an_update_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, interrupt=5, inside_update=True)
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 3  # not the half-updated 5, nor 4


def test_divergence_is_one_line_naming_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FFMaskError, match=r"toy training diverged at step 4 .*last\.json") as err:
        _run(tmp_path, loss_at={4: math.nan})
    assert "\n" not in str(err.value)
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 3


def test_validation_history_best_checkpoint_and_log(tmp_path):
    # Step 4 is best; 6 is undefined (NaN) and must not replace it.
    run = _run(tmp_path, scores={2: 0.6, 4: 0.9, 6: math.nan})
    assert [h["step"] for h in run.history] == [2, 4, 6]
    assert run.best_step == 4 and run.best_auc == run.best_score == 0.9
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 4
    lines = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4, 6]
    assert lines[2]["val"]["auc"] is None and lines[0]["lr"] == pytest.approx(0.1 * (1 - 2 / ITERS))
    # Resuming the finished run restores the NaN score as NaN (JSON has null), and trains nothing.
    again = _run(tmp_path, scores={})
    assert again.resumed_from == ITERS and again.best_step == 4 and math.isnan(again.last_val["auc"])


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tmp_path):
    _run(tmp_path)
    with pytest.raises(CheckpointError, match="width: checkpoint 3, now 4") as err:
        _run(tmp_path, differences=lambda doc: config_differences(doc["config"], {"width": 4}))
    assert "\n" not in str(err.value) and "different run" in str(err.value)


def test_config_differences_name_every_changed_key():
    assert config_differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}) == ["b: checkpoint 2, now 3"]
    assert config_differences({"a": 1}, {}) == ["a: checkpoint 1, now None"]
