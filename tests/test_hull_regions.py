"""targets.hull_regions: the two candidate sources gated in session 12 (local structure evidence; Chan-Vese region
segmentation by threshold dynamics), on a real portrait with known edits, and their proxy variants."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import ffmask  # noqa: F401
from ffmask.targets import hull_candidates as hc
from ffmask.targets.experiments import hull_regions as hr
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256


@pytest.fixture(scope="module")
def portrait():
    """A real face crop (the bundled Obama portrait around dlib's box), 256 x 256 uint8 RGB, and its 68 landmarks."""
    from ffmask.synth.portraits import load_portrait

    p = load_portrait("obama")
    x0, y0, x1, y1 = p.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
    left, top = max(0, int(cx - half)), max(0, int(cy - half))
    crop = np.ascontiguousarray(p.image[top:int(cy + half), left:int(cx + half)])
    scale = SIZE / crop.shape[1]
    face = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    landmarks = (p.landmarks - np.array([left, top], np.float32)) * np.array([scale, SIZE / crop.shape[0]])
    return face, landmarks.astype(np.float64)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _region() -> np.ndarray:
    """The edited region: an ellipse over the mouth and chin of the crop, bool (256, 256)."""
    core = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(core, (128, 150), (40, 28), 0, 0, 360, 1, -1)
    return core.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def _best(masks: np.ndarray, truth: np.ndarray) -> float:
    return max((_iou(hc.to_crop(m, truth.shape), truth) for m in masks), default=0.0)


def _check_candidates(masks: np.ndarray, info: list, ev) -> None:
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == ev.face.shape
    assert 0 < len(masks) <= hr.MAX_CANDIDATES == 12 and len(info) == len(masks)
    assert len({np.packbits(m).tobytes() for m in masks}) == len(masks)  # distinct
    assert not (masks & ~ev.face).any()  # within the face region


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_identical_images_give_no_candidates(portrait, use_landmarks):
    face, landmarks = portrait
    lm = landmarks if use_landmarks else None
    ev = hr.structure_evidence(face, face.copy(), lm)
    assert ev.d.dtype == np.float32 and ev.d.shape == (96, 96) and float(np.abs(ev.d).max()) < 1e-3
    assert len(hr.structure_candidates(ev)[0]) == 0
    assert len(hr.region_candidates(hc.pair_evidence(face, face.copy(), lm))[0]) == 0


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_structure_finds_a_blurred_region_under_jpeg(portrait, use_landmarks):
    # a zero-mean edit (the region blurred): both images JPEG-compressed independently, so every pixel differs a
    # little; the structure evidence stands far above its own background level inside the region only
    face, landmarks = portrait
    truth = _region()
    fake = np.where(truth[..., None], cv2.GaussianBlur(face, (0, 0), 2.5), face).astype(np.uint8)
    real_c, fake_c = _jpeg(face, 30), _jpeg(fake, 27)
    assert np.count_nonzero(real_c != fake_c) > 0.5 * real_c.size
    ev = hr.structure_evidence(real_c, fake_c, landmarks if use_landmarks else None)
    small = cv2.resize(truth.astype(np.float32), (96, 96), interpolation=cv2.INTER_AREA) > 0.5
    inside, rest = float(ev.d[small].mean()), float(ev.d[ev.face & ~small].mean())
    assert inside > 3.0 and rest < 1.5 and inside > 4 * rest  # 1 = what compression alone reaches in this pair
    masks, info = hr.structure_candidates(ev)
    _check_candidates(masks, info, ev)
    assert {i["source"] for i in info} == {"structure"} and {i["shape"] for i in info} <= set(hr.STRUCT_SHAPES)
    assert _best(masks, truth) > 0.6


def test_structure_term_ignores_gain_and_offset_and_sees_changed_detail(portrait):
    # inside the region the fake is 0.6 * real + 50 (a contrast / brightness edit: the same structure) and, in a
    # second region, the real's pixels shuffled (the same histogram, no shared structure)
    face, _ = portrait
    a = _region()
    b = np.zeros_like(a)
    b[40:90, 60:200] = True
    fake = face.copy()
    fake[a] = np.clip(0.6 * face[a].astype(np.float32) + 50, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(0)
    fake[b] = face[b][rng.permutation(int(b.sum()))]
    structure, variance = hr.structure_maps(face, fake, (96, 96))
    assert structure.dtype == variance.dtype == np.float32 and structure.shape == (96, 96)
    assert 0 <= structure.min() and structure.max() <= 2 and variance.min() >= 0
    ra = cv2.erode(cv2.resize(a.astype(np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST), np.ones((9, 9)))
    rb = cv2.erode(cv2.resize(b.astype(np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST), np.ones((9, 9)))
    assert ra.any() and rb.any()
    assert float(np.median(structure[ra > 0])) < 0.05  # gain and offset leave the structure term at 0
    assert float(np.median(structure[rb > 0])) > 0.5  # shuffled pixels share no structure
    # the variance ratio sees the contrast change: log(0.6^2) for variances well above C2, less for flat skin
    assert 0.2 < float(np.median(variance[ra > 0])) <= abs(np.log(0.36)) + 0.05
    both = cv2.resize((a | b).astype(np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST)
    far = cv2.dilate(both, np.ones((17, 17), np.uint8)) == 0  # away from both regions and their windows
    assert far.mean() > 0.3
    assert float(structure[far].max()) < 0.01 and float(variance[far].max()) < 0.01  # the windows' tails only


@pytest.mark.parametrize("use_landmarks", [True, False])
def test_regions_segment_a_colour_shifted_region(portrait, use_landmarks):
    face, landmarks = portrait
    truth = _region()
    alpha = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 2.0)[..., None]
    shifted = np.clip(face.astype(np.float32) + np.array([25, -15, 20], np.float32), 0, 255)
    fake = np.rint(face * (1 - alpha) + shifted * alpha).astype(np.uint8)
    real_c, fake_c = _jpeg(face, 40), _jpeg(fake, 35)
    ev = hc.pair_evidence(real_c, fake_c, landmarks if use_landmarks else None)
    masks, info = hr.region_candidates(ev)
    _check_candidates(masks, info, ev)
    assert {i["source"] for i in info} == {"region"} and {i["param"] for i in info} <= set(hr.REGION_SCALES)
    assert _best(masks, truth) > 0.8


def test_region_segments_are_spatially_coherent():
    # two-level evidence with specks: the segmentation keeps the square and drops isolated bright pixels that a
    # per-pixel threshold between the two levels keeps
    rng = np.random.default_rng(1)
    u = rng.normal(0.2, 0.05, (96, 96)).astype(np.float32)
    u[30:60, 30:60] += 1.0
    specks = np.zeros((96, 96), bool)
    specks[rng.integers(5, 25, 12), rng.integers(5, 90, 12)] = True
    u[specks] += 1.0
    face = np.ones((96, 96), bool)
    segs = hr.region_segments(u, face, u > 0.5)
    assert len(segs) == len(hr.REGION_SCALES)
    square = np.zeros((96, 96), bool)
    square[30:60, 30:60] = True
    for seg in segs:
        assert seg.dtype == bool and _iou(seg, square) > 0.85
        assert not (seg & specks).any()
    assert (u > 0.7)[specks].all()  # the threshold keeps them
    # outside the domain nothing joins; a start with no evidence contrast gives nothing
    dom = face.copy()
    dom[:, 45:] = False
    assert not (hr.region_segments(u, dom, u > 0.5)[0] & ~dom).any()
    flat = np.full((96, 96), 0.3, np.float32)
    assert not any(s.any() for s in hr.region_segments(flat, face, flat > 0.5))


def test_sources_have_no_position(portrait):
    # the same edit moved with the image: the structure evidence moves with it (no position, no face prior)
    face, _ = portrait
    truth = _region()
    fake = np.where(truth[..., None], cv2.GaussianBlur(face, (0, 0), 2.5), face).astype(np.uint8)
    shift = 24
    d0 = hr.structure_evidence(face, fake).d
    d1 = hr.structure_evidence(np.roll(face, shift, axis=1), np.roll(fake, shift, axis=1)).d
    s = shift * 96 // SIZE
    assert np.allclose(np.roll(d0, s, axis=1)[:, 20:76], d1[:, 20:76], atol=0.15 * float(d0.max()))


def test_proxy_scores_the_sources_and_their_unions(tmp_path):
    # scripts/evidence_proxy.py (the gate's measure): each source's oracle, its count (<= 12) and its union with the
    # shipped candidates, which is the better of the two per sample
    from ffmask.synth.pairs import build_pairs

    folder = tmp_path / "pairs"
    build_pairs(folder, seed=7, n=2, regions=("nose",), operations=("blur",), compressions=("c30",))
    proxy = load_script("scripts/evidence_proxy.py")
    names = ("abs", "struct", "regions")
    rows = proxy.score_folder(folder, limit=2, stride=1, names=names)
    assert len(rows) == 4 and [r["lm"] for r in rows] == [True, False, True, False]
    for r in rows:
        for n in ("struct", "regions"):
            assert 0 <= r[f"{n}:n"] <= 12 and 0 <= r[f"{n}:orc"] <= 1
            assert r[f"union_abs_{n}:orc"] == max(r["abs:orc"], r[f"{n}:orc"])
        assert "struct:thr" not in r  # sources are not maps: no threshold ceilings
    text = proxy.summary(rows, names)
    assert "union_abs_struct" in text and "union_abs_regions" in text
