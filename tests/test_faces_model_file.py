"""The dlib frontal detector is loaded from a file shipped with ffmask, not rebuilt.

``dlib.get_frontal_face_detector()`` decompresses the model compiled into dlib
(~0.45 s in every worker); ffmask loads the same detector saved to
``ffmask/faces/weights`` (~2 ms). These tests fail if the file is not the
installed dlib's detector, or if the fast path is not taken.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import dlib
import numpy as np

from ffmask.faces import detect

DATA = Path(__file__).parent / "data"


def test_shipped_file_is_dlibs_own_detector(tmp_path):
    builtin = dlib.get_frontal_face_detector()
    builtin.save(str(tmp_path / "builtin.svm"))
    assert (tmp_path / "builtin.svm").read_bytes() == detect.FRONTAL_MODEL.read_bytes()


def test_loaded_detector_finds_the_same_faces():
    photo = cv2.cvtColor(cv2.imread(str(DATA / "faces_obama.jpg")), cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    loaded = dlib.fhog_object_detector(str(detect.FRONTAL_MODEL))
    builtin = dlib.get_frontal_face_detector()
    for image in (gray, cv2.resize(gray, None, fx=0.6, fy=0.6)):
        rects_a, scores_a, _ = loaded.run(image, 0, 0.0)
        rects_b, scores_b, _ = builtin.run(image, 0, 0.0)
        assert len(rects_a) >= 1
        assert [(r.left(), r.top(), r.right(), r.bottom()) for r in rects_a] == \
               [(r.left(), r.top(), r.right(), r.bottom()) for r in rects_b]
        np.testing.assert_array_equal(scores_a, scores_b)


def test_detector_loads_from_the_file_quickly(monkeypatch):
    detect._dlib_frontal.cache_clear()
    calls = []
    monkeypatch.setattr(dlib, "get_frontal_face_detector", lambda: calls.append(1))
    try:
        t0 = time.process_time()
        model = detect._dlib_frontal()
        seconds = time.process_time() - t0
    finally:
        detect._dlib_frontal.cache_clear()
    assert calls == [] and isinstance(model, dlib.fhog_object_detector)
    assert seconds < 0.2, seconds  # dlib's own builder takes ~0.45 s


def test_unreadable_file_falls_back_to_dlibs_builder(monkeypatch, tmp_path):
    bad = tmp_path / "bad.svm"
    bad.write_text("not a detector")
    monkeypatch.setattr(detect, "FRONTAL_MODEL", bad)
    detect._dlib_frontal.cache_clear()
    try:
        model = detect._dlib_frontal()
    finally:
        detect._dlib_frontal.cache_clear()
    assert model.num_detectors == dlib.get_frontal_face_detector().num_detectors
