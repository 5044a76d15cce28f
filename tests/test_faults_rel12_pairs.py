"""Session 14 (rel12), A4: the orientation check answers with a reason code, not only words.

At 06d4739 ``pipeline._annotate_one`` told "not its original's picture" from "turned" by
matching the start of ``orientation_mismatch``'s sentence (``NOT_ITS_PICTURE``): rewording
the message would silently change which fakes get the time-shift check. The check now
returns a :class:`~ffmask.pair_checks.Mismatch` (code + message); the messages are unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ffmask.pair_checks import NOT_ITS_PICTURE, TURNED, WRONG_PICTURE, Mismatch, orientation_mismatch

PORTRAITS = Path(__file__).resolve().parents[1] / "ffmask" / "synth" / "portraits"


def _frames():
    files = sorted(p for p in PORTRAITS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:2]
    return [cv2.resize(cv2.imread(str(p))[..., ::-1], (320, 240), interpolation=cv2.INTER_AREA) for p in files]


def test_orientation_mismatch_gives_a_code_and_the_same_words():
    frame, other = _frames()
    assert orientation_mismatch(frame, frame) is None
    turned = orientation_mismatch(frame, np.ascontiguousarray(frame[::-1]))
    assert isinstance(turned, Mismatch) and turned.code == TURNED  # 06d4739: a str, no code
    assert re.fullmatch(r"fake is flipped upside down relative to its original \(grey difference [0-9.]+ that way "
                        r"up, [0-9.]+ as read\); rotation or flip metadata on only one of the pair\?", turned.message)
    wrong = orientation_mismatch(frame, other, what="mask")
    assert wrong.code == WRONG_PICTURE and str(wrong) == wrong.message
    assert re.fullmatch(rf"mask {NOT_ITS_PICTURE} \(grey difference [0-9.]+ over the best-agreeing fifth of 64 px "
                        r"thumbnails, true pairs differ by a few levels there\); paired with the wrong original\?",
                        wrong.message)
