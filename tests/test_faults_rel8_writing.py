"""Session 10 (rel8), item 7: one helper turns a failed write into one line, in one style.

``outdir.writing``, ``models.checkpoint._writing`` and ``evaluate.write_report``'s own
try/except said it three ways ("no space left on device while writing X; ...",
"cannot write X: ..."); now every write says ``cannot write X: REASON; WHAT TO DO``.
Fails at 589437d.
"""

from __future__ import annotations

import errno

import pytest

from ffmask.errors import OutputError
from ffmask.outdir import RERUN, RERUN_TO_RESUME, write_failure, writing


def test_writing_names_the_file_and_the_reason_and_removes_the_tmp(tmp_path):
    tmp = tmp_path / "x.json.tmp"
    tmp.write_text("half")
    with pytest.raises(OutputError) as caught:
        with writing(tmp_path / "x.json", tmp=tmp, then=RERUN):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value) == f"cannot write {tmp_path / 'x.json'}: no space left on device; {RERUN}"
    assert not tmp.exists()
    with pytest.raises(OutputError, match=r"^cannot write shard-00003.h5: no space left on device; "
                                          + RERUN_TO_RESUME + "$"):
        with writing("shard-00003.h5"):  # h5py keeps the errno in a RuntimeError's text
            raise RuntimeError("Can't write data (file write failed: ..., errno = 28, error message = 'x')")
    with pytest.raises(OutputError, match=r"^cannot write a: file too large \(the file size limit is reached\)$"):
        with writing("a", then=""):  # safetensors' SafetensorError carries it as "os error 27"
            raise type("SafetensorError", (Exception,), {})("I/O error: File too large (os error 27)")
    with pytest.raises(RuntimeError, match="not a write"):  # anything else passes through untouched
        with writing("a"):
            raise RuntimeError("not a write failure")
    with pytest.raises(KeyboardInterrupt):
        with writing("a"):
            raise KeyboardInterrupt
    assert write_failure(ValueError("x")) is None


def test_checkpoint_and_evaluate_report_writes_say_it_the_same_way(tmp_path):
    from ffmask.models.checkpoint import write_json

    target = tmp_path / "best.json"
    target.mkdir()  # a directory where the file goes: os.replace fails
    with pytest.raises(OutputError) as caught:
        write_json(target, {"a": 1})
    assert str(caught.value).startswith(f"cannot write {target}: ")
    assert str(caught.value).endswith(f"; {RERUN}")
    assert not list(tmp_path.glob("*.tmp"))
