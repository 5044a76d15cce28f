"""hull's gated-out experiment records live in ffmask.targets.experiments, apart from the shipped methods."""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def test_experiment_records_are_not_shipped_target_modules():
    for name in ("hull_cnn", "hull_evidence", "hull_regions"):
        assert importlib.util.find_spec(f"ffmask.targets.{name}") is None
        assert importlib.util.find_spec(f"ffmask.targets.experiments.{name}") is not None


def test_the_shipped_targets_and_cli_do_not_import_the_experiments():
    code = ("import sys, ffmask.targets, ffmask.cli; from ffmask.targets import get_method; get_method('hull'); "
            "print(sorted(m for m in sys.modules if m.startswith('ffmask.targets.experiments')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
