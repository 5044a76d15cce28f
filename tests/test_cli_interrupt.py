"""Ctrl-C in any command ends with one ``Interrupted.`` line and exit 130 (Typer alone exits 130 silently)."""

from __future__ import annotations

import sys

import pytest

import ffmask.shards
from ffmask import cli


def _main(monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["ffmask", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code


def test_ctrl_c_in_a_command_says_interrupted_and_exits_130(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ffmask.shards, "summarize_shards", interrupted)  # what `ffmask info` reads the shards with
    assert _main(monkeypatch, ["info", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["Interrupted."], err


def test_other_exits_say_nothing_more(monkeypatch, capsys, tmp_path):
    assert _main(monkeypatch, ["--version"]) == 0
    assert "Interrupted" not in capsys.readouterr().err
    # a usage error: Typer's exit 2 with its own message, no "Interrupted."
    assert _main(monkeypatch, ["info", "--no-such-option"]) == 2
    assert "Interrupted" not in capsys.readouterr().err
    # a user error: one line, exit 2
    assert _main(monkeypatch, ["info", str(tmp_path / "missing")]) != 0
    assert "Interrupted" not in capsys.readouterr().err
