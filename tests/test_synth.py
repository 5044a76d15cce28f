"""ffmask synth: the miniature FaceForensics++ tree, its forgeries and true masks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.synth import forge, motion, portraits, tree, warp
from ffmask.video import probe, read_frames

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "ff++"
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
SMALL = dict(seed=3, identities=4, frames=12, size=(160, 128))


# --- helpers independent of the code under test --------------------------------

def _affine_from_json(m: dict, t: float) -> np.ndarray:
    """The camera affine written out from ground_truth.json's documented formula."""
    s = m["scale"] * (1 + m["zoom_amp"] * math.sin(2 * math.pi * m["zoom_hz"] * t + m["zoom_phase"]))
    cx = m["center"][0] + m["pan_amp"][0] * math.sin(2 * math.pi * m["pan_hz"][0] * t + m["pan_phase"][0])
    cy = m["center"][1] + m["pan_amp"][1] * math.sin(2 * math.pi * m["pan_hz"][1] * t + m["pan_phase"][1])
    w, h = m["frame_size"]
    return np.array([[s, 0, (w - 1) / 2 - s * cx], [0, s, (h - 1) / 2 - s * cy]])


def _true_landmarks(gt: dict, vid: str, k: int) -> np.ndarray:
    o = gt["originals"][vid]
    a = _affine_from_json(o["motion"], k / o["fps"])
    pts = np.asarray(o["landmarks_in_portrait"])
    return pts @ a[:, :2].T + a[:, 2]


def _hull(points, shape, dilate_px=0):
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    if dilate_px:
        r = int(round(dilate_px))
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return m.astype(bool)


def _all(path):
    n = probe(path).n_frames
    frames = read_frames(path, range(n))
    assert sorted(frames) == list(range(n)), path
    return [frames[i] for i in range(n)]


def _mask(gray_or_rgb):
    return (gray_or_rgb[..., 0] if gray_or_rgb.ndim == 3 else gray_or_rgb) > 1


# --- the tree, built once -------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ff"
    summary = tree.build_synth(out, **SMALL, jobs=1)
    gt = json.loads((out / "ground_truth.json").read_text())
    return out, gt, summary


def test_tree_has_exactly_the_ff_layout(small):
    out, gt, summary = small
    ids = ["000", "001", "002", "003"]
    names = ["000_001", "001_000", "002_003", "003_002"]
    expected = {f"original_sequences/youtube/{c}/videos/{i}.mp4" for c in ("c23", "c40") for i in ids}
    expected |= {f"manipulated_sequences/{m}/{c}/videos/{n}.mp4"
                 for m in METHODS for c in ("c23", "c40") for n in names}
    expected |= {f"manipulated_sequences/{m}/masks/videos/{n}.mp4" for m in METHODS for n in names}
    expected |= {"splits/train.json", "splits/val.json", "splits/test.json", "ground_truth.json"}
    found = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert found == expected  # nothing missing, no temp files left behind
    assert summary.n_files == 8 + 4 * (8 + 4)
    assert summary.videos["Deepfakes"] == {"c23": 4, "c40": 4, "masks": 4}
    assert summary.bytes == sum((out / f).stat().st_size for f in expected)


def test_every_video_decodes_with_the_right_count_and_size(small):
    out, gt, _ = small
    for path in sorted(out.rglob("*.mp4")):
        info = probe(path)
        assert (info.n_frames, info.width, info.height, info.fps) == (12, 160, 128, 25.0), path
        frames = read_frames(path, range(12))
        assert sorted(frames) == list(range(12))
        assert frames[11].shape == (128, 160, 3)


def test_fakes_pair_originals_both_ways(small):
    out, gt, _ = small
    originals = {p.stem for p in (out / "original_sequences/youtube/c23/videos").glob("*.mp4")}
    pairs = [tuple(p) for split in ("train", "val", "test")
             for p in json.loads((out / "splits" / f"{split}.json").read_text())]
    assert sorted(pairs) == [("000", "001"), ("002", "003")]
    for m in METHODS:
        for c in ("c23", "c40"):
            names = {p.stem for p in (out / "manipulated_sequences" / m / c / "videos").glob("*.mp4")}
            assert names == {f"{a}_{b}" for a, b in pairs} | {f"{b}_{a}" for a, b in pairs}
            for n in names:
                target, source = n.split("_")
                assert target in originals and source in originals and target != source
    fakes = {(f["method"], f["name"]): f for f in gt["fakes"]}
    assert len(fakes) == 16
    assert fakes[("FaceSwap", "003_002")]["target"] == "003"
    assert fakes[("FaceSwap", "003_002")]["source"] == "002"


def test_split_files_are_lists_of_string_pairs(small):
    out, gt, _ = small
    seen = []
    for split in ("train", "val", "test"):
        data = json.loads((out / "splits" / f"{split}.json").read_text())
        assert isinstance(data, list)
        for pair in data:
            assert isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        seen += data
        assert gt["splits"][split] == data
    assert sorted(map(tuple, seen)) == tree.pair_videos(4)
    # two pairs: one to train, one to test (FF++ proportions need three for val)
    assert [len(gt["splits"][s]) for s in ("train", "val", "test")] == [1, 0, 1]


def test_split_proportions():
    pairs = tree.pair_videos(1000)
    s = tree.split_pairs(pairs)
    assert [len(s[k]) for k in ("train", "val", "test")] == [360, 70, 70]  # FF++'s official counts
    s6 = tree.split_pairs(tree.pair_videos(6))
    assert s6 == {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
    assert tree.pair_videos(5) == [("000", "001"), ("002", "003")]


def test_masks_align_with_fakes_and_match_the_recorded_areas(small):
    out, gt, _ = small
    for f in gt["fakes"]:
        masks = _all(out / f["mask"])
        fakes = _all(out / f["videos"]["c23"])
        assert len(masks) == len(fakes) == f["frames"] == 12
        assert len(f["mask_area"]) == 12
        for k, (m, fk) in enumerate(zip(masks, fakes)):
            assert m.shape == fk.shape
            assert set(np.unique(m)) <= {0, 255}  # lossless: exactly black and white
            assert _mask(m).mean() == pytest.approx(f["mask_area"][k], abs=1e-6)


def test_fakes_differ_from_originals_inside_the_mask(small):
    out, gt, _ = small
    for method in METHODS:
        inside, outside = [], []
        for f in (f for f in gt["fakes"] if f["method"] == method):
            masks = [_mask(m) for m in _all(out / f["mask"])]
            fakes = _all(out / f["videos"]["c23"])
            reals = _all(out / gt["originals"][f["target"]]["videos"]["c23"])
            ins, outs = [], []
            for m, fk, rl in zip(masks, fakes, reals):
                d = np.abs(fk.astype(np.int16) - rl).mean(axis=2)
                ins.append(d[m].mean())
                outs.append(d[~m].mean())
            assert np.mean(ins) > 2 * np.mean(outs), (method, f["name"])
            inside += ins
            outside += outs
        assert np.mean(inside) > 4 * np.mean(outside), method


def test_masks_are_non_empty_confined_to_the_face_and_ordered(small):
    out, gt, _ = small
    areas = {m: [] for m in METHODS}
    for f in gt["fakes"]:
        masks = [_mask(m) for m in _all(out / f["mask"])]
        for k, m in enumerate(masks):
            assert m.any(), (f["method"], f["name"], k)
            lms = _true_landmarks(gt, f["target"], k)
            face_w = np.linalg.norm(lms[16] - lms[0])
            allowed = _hull(lms, m.shape, dilate_px=0.3 * face_w)
            assert not (m & ~allowed).any(), (f["method"], f["name"], k)
            areas[f["method"]].append(m.mean())
        if f["method"] == "NeuralTextures":  # around the mouth only
            lms = _true_landmarks(gt, f["target"], 0)
            face_w = np.linalg.norm(lms[16] - lms[0])
            assert not (masks[0] & ~_hull(lms[48:60], masks[0].shape, 0.2 * face_w)).any()
        if f["method"] == "Face2Face":  # the eyes never move
            lms = _true_landmarks(gt, f["target"], 0)
            assert not (masks[0] & _hull(lms[36:48], masks[0].shape)).any()
    mean = {m: np.mean(v) for m, v in areas.items()}
    for small_method in ("Face2Face", "NeuralTextures"):
        for big_method in ("Deepfakes", "FaceSwap"):
            assert mean[small_method] < 0.8 * mean[big_method], mean


def test_ground_truth_describes_the_build(small):
    out, gt, _ = small
    assert gt["seed"] == 3
    assert gt["options"] == {"identities": 4, "frames": 12, "size": [160, 128], "fps": 25.0,
                             "compressions": ["c23", "c40"], "manipulations": list(METHODS)}
    assert [o["portrait"] for o in gt["originals"].values()] == ["obama", "biden", "astronaut", "obama2"]
    assert len({o["person"] for o in gt["originals"].values()}) == 3
    for vid, o in gt["originals"].items():
        assert (o["width"], o["height"], o["frames"]) == (160, 128, 12)
        assert set(o["videos"]) == {"c23", "c40"}
        assert np.asarray(o["landmarks_in_portrait"]).shape == (68, 2)
        for p in o["videos"].values():
            assert (out / p).is_file()
    for f in gt["fakes"]:
        assert (out / f["mask"]).is_file()
        assert all(0 < a < 0.5 for a in f["mask_area"])


def test_original_frames_follow_the_recorded_motion(small):
    """A decoded original equals the bundled portrait warped by the JSON's affine."""
    out, gt, _ = small
    o = gt["originals"]["002"]
    p = portraits.load_portrait(o["portrait"], o["mirrored"])
    frames = _all(out / o["videos"]["c23"])
    for k in (0, 11):
        a = _affine_from_json(o["motion"], k / o["fps"])
        direct = cv2.warpAffine(p.image, a, (160, 128), flags=cv2.INTER_AREA)
        gain = o["motion"]["gain0"] + o["motion"]["gain_slope"] * k / o["fps"]
        direct = np.clip(direct * gain, 0, 255)
        assert np.abs(frames[k].astype(float) - direct).mean() < 6.0


def test_same_seed_same_output_and_methods_are_independent(small, tmp_path):
    out, gt, _ = small
    again = tmp_path / "again"
    tree.build_synth(again, **SMALL, manipulations="NT,Deepfakes", compressions="c23", jobs=2)
    gt2 = json.loads((again / "ground_truth.json").read_text())
    assert gt2["originals"] == {
        k: {**v, "videos": {"c23": v["videos"]["c23"]}} for k, v in gt["originals"].items()
    }
    subset = [f for f in gt["fakes"] if f["method"] in ("NeuralTextures", "Deepfakes")]
    for f in subset:
        f["compressions"], f["videos"] = ["c23"], {"c23": f["videos"]["c23"]}
    assert sorted(gt2["fakes"], key=lambda f: (f["method"], f["name"])) == \
        sorted(subset, key=lambda f: (f["method"], f["name"]))
    for rel in ("manipulated_sequences/NeuralTextures/c23/videos/001_000.mp4",
                "manipulated_sequences/Deepfakes/masks/videos/002_003.mp4",
                "original_sequences/youtube/c23/videos/003.mp4"):
        for x, y in zip(_all(out / rel), _all(again / rel)):
            np.testing.assert_array_equal(x, y)
        assert (out / rel).read_bytes() == (again / rel).read_bytes()


def test_a_different_seed_gives_different_videos(small, tmp_path):
    out, gt, _ = small
    other = tmp_path / "other"
    tree.build_synth(other, **{**SMALL, "seed": 4, "identities": 2}, manipulations="F2F", compressions="c23")
    gt2 = json.loads((other / "ground_truth.json").read_text())
    assert gt2["originals"]["000"]["motion"] != gt["originals"]["000"]["motion"]
    rel = "original_sequences/youtube/c23/videos/000.mp4"
    diffs = [np.abs(x.astype(int) - y).mean() for x, y in zip(_all(out / rel), _all(other / rel))]
    assert np.mean(diffs) > 2.0


def test_raw_compression_is_lossless_and_fakes_equal_originals_outside_the_mask(tmp_path):
    out = tmp_path / "raw"
    tree.build_synth(out, seed=0, identities=2, frames=3, size=(128, 96), compressions="raw")
    gt = json.loads((out / "ground_truth.json").read_text())
    assert sorted(p.name for p in (out / "original_sequences/youtube").iterdir()) == ["raw"]
    reals = {v: _all(out / o["videos"]["raw"]) for v, o in gt["originals"].items()}
    for f in gt["fakes"]:
        for m, fk, rl in zip(map(_mask, _all(out / f["mask"])), _all(out / f["videos"]["raw"]),
                             reals[f["target"]]):
            # yuv420p shares chroma between 2x2 pixels: allow a thin band at the edge
            near = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            np.testing.assert_array_equal(fk[~near], rl[~near])
            assert np.abs(fk[m].astype(int) - rl[m]).max() > 20


def test_overwrite_only_replaces_synths_own_files(tmp_path):
    out = tmp_path / "tree"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(tree.FFMaskError, match="not empty"):
        tree.build_synth(out, seed=0, identities=2, frames=2, size=(128, 96), manipulations="DF")
    tree.build_synth(out, seed=0, identities=2, frames=2, size=(128, 96), manipulations="DF", overwrite=True)
    (out / "splits" / "stale.json").write_text("[]")
    tree.build_synth(out, seed=0, identities=2, frames=2, size=(128, 96), manipulations="NT", overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (out / "splits" / "stale.json").exists()
    assert not (out / "manipulated_sequences" / "Deepfakes").exists()
    assert (out / "manipulated_sequences" / "NeuralTextures" / "masks" / "videos" / "000_001.mp4").is_file()


@pytest.mark.parametrize("kwargs", [
    dict(identities=1), dict(frames=0), dict(size=(161, 128)), dict(size=(64, 64)),
    dict(compressions="c99"), dict(compressions=""), dict(manipulations="FaceShifter"),
    dict(seed=-1), dict(seed=1.5), dict(jobs=0), dict(fps=0),
])
def test_build_synth_rejects_bad_options_before_touching_out(tmp_path, kwargs):
    out = tmp_path / "never"
    with pytest.raises(ValueError):
        tree.build_synth(out, **kwargs)
    assert not out.exists()


def test_parsers():
    assert tree.parse_size("640x480") == (640, 480)
    assert tree.parse_size(" 256X256 ") == (256, 256)
    for bad in ("640", "640x", "axb", "641x480", "-640x480"):
        with pytest.raises(ValueError):
            tree.parse_size(bad)
    assert tree.parse_compressions("c40, raw") == ("raw", "c40")
    assert tree.parse_manipulations("nt,DF,face2face") == ("Deepfakes", "Face2Face", "NeuralTextures")


# --- the forgeries on a real face ----------------------------------------------------

@pytest.fixture(scope="module")
def faces():
    a = portraits.load_portrait("obama")
    b = portraits.load_portrait("biden")
    return (np.array(a.image), a.landmarks.astype(np.float64)), (np.array(b.image), b.landmarks.astype(np.float64))


@pytest.mark.parametrize("method", METHODS)
def test_forge_changes_only_the_masked_pixels(faces, method):
    (t, tl), (s, sl) = faces
    params = forge.draw_params(method, np.random.default_rng(0))
    fake, mask = forge.forge_frame(method, t, tl, s, sl, params, t=0.3)
    assert fake.dtype == np.uint8 and fake.shape == t.shape
    assert mask.dtype == bool and mask.shape == t.shape[:2]
    np.testing.assert_array_equal(fake[~mask], t[~mask])
    assert mask.sum() > 500
    assert np.abs(fake.astype(int) - t)[mask].mean() > 3
    face_w = np.linalg.norm(tl[16] - tl[0])
    assert not (mask & ~_hull(tl, mask.shape, 0.3 * face_w)).any()


def test_forge_rejects_bad_inputs(faces):
    (t, tl), (s, sl) = faces
    with pytest.raises(ValueError, match="uint8"):
        forge.forge_deepfakes(t.astype(np.float32), tl, s, sl)
    with pytest.raises(ValueError, match="68"):
        forge.forge_faceswap(t, tl[:60], s, sl)
    with pytest.raises(ValueError, match="68"):
        forge.forge_face2face(t, tl, sl[:5])
    with pytest.raises(ValueError):
        forge.forge_face2face(t, tl, sl, strength=2.0)
    with pytest.raises(ValueError):
        forge.forge_neuraltextures(t, tl, render_scale=0.0)
    with pytest.raises(ValueError, match="unknown manipulation"):
        forge.draw_params("FaceShifter", np.random.default_rng(0))


def test_deepfakes_carries_the_source_identity(faces):
    """Inside the mask the fake looks more like the (warped) source than the target."""
    (t, tl), (s, sl) = faces
    fake, mask = forge.forge_deepfakes(t, tl, s, sl, resolution=96)
    warped, covered = warp.warp_triangles(s, sl, tl, warp.delaunay(tl), t.shape[:2])
    core = mask & covered
    gray = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(float)
    ys, xs = np.nonzero(core)
    sel = (ys, xs)
    # structure (zero-mean gray) is compared, so the colour transfer does not matter
    f, w, tt = (g[sel] - g[sel].mean() for g in (gray(fake), gray(warped), gray(t)))
    assert np.corrcoef(f, w)[0, 1] > np.corrcoef(f, tt)[0, 1] + 0.2


def test_reinhard_transfer_matches_the_reference_statistics():
    from skimage.color import rgb2lab

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(100, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    ref = np.clip(rng.normal((170, 120, 90), 12, (64, 64, 3)), 0, 255).astype(np.uint8)
    region = np.zeros((64, 64), bool)
    region[8:56, 8:56] = True
    out = forge.reinhard_transfer(img, ref, region)
    lab_out, lab_ref = rgb2lab(out)[region], rgb2lab(ref)[region]  # skimage as the independent Lab
    np.testing.assert_allclose(lab_out.mean(0), lab_ref.mean(0), atol=1.5)
    np.testing.assert_allclose(lab_out.std(0), lab_ref.std(0), rtol=0.15, atol=1.0)


def test_piecewise_affine_warp_of_a_global_affine_equals_warp_affine(faces):
    (t, tl), _ = faces
    a = np.array([[0.9, 0.1, 12.0], [-0.08, 0.95, 20.0]])
    dst = tl @ a[:, :2].T + a[:, 2]
    warped, covered = warp.warp_triangles(t, tl, dst, warp.delaunay(dst), t.shape[:2])
    reference = cv2.warpAffine(t, a, (t.shape[1], t.shape[0]), flags=cv2.INTER_LINEAR)
    inner = cv2.erode(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert inner.sum() > 5000
    assert np.abs(warped[inner].astype(int) - reference[inner]).max() <= 2
    assert np.array_equal(covered, _hull(dst, covered.shape)) or \
        (covered ^ _hull(dst, covered.shape)).mean() < 0.002


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (20, 2))
    ang, s = 0.3, 1.7
    a = np.array([[s * np.cos(ang), -s * np.sin(ang), 5.0], [s * np.sin(ang), s * np.cos(ang), -3.0]])
    dst = src @ a[:, :2].T + a[:, 2]
    np.testing.assert_allclose(warp.similarity(src, dst), a, atol=1e-9)
    with pytest.raises(ValueError):
        warp.similarity(np.ones((5, 2)), np.ones((5, 2)))


def test_render_frame_equals_the_camera_affine():
    p = portraits.load_portrait("astronaut")
    m = motion.random_motion(np.random.default_rng(0), (p.image.shape[1], p.image.shape[0]), p.box, (320, 240))
    for t in (0.0, 0.7):
        frame = motion.render_frame(p.image, m, t)
        a = m.affine(t)
        direct = cv2.warpAffine(p.image, a, (320, 240), flags=cv2.INTER_LINEAR)
        direct = np.clip(np.rint(direct * m.gain(t)), 0, 255)
        assert np.abs(frame.astype(float) - direct).mean() < 4.0
        corners = np.array([[0, 0], [319, 239]], float)
        inv = cv2.invertAffineTransform(a)
        inside = corners @ inv[:, :2].T + inv[:, 2]  # the view never leaves the portrait
        assert (inside >= -0.5).all() and (inside[:, 0] <= p.image.shape[1] - 0.5).all()
        assert (inside[:, 1] <= p.image.shape[0] - 0.5).all()


# --- bundled portraits and the committed sample ----------------------------------------

def test_bundled_portraits_are_small_and_their_faces_are_found():
    import dlib

    detector = dlib.get_frontal_face_detector()
    names = portraits.portrait_names()
    assert set(names) == {"obama", "biden", "astronaut", "obama2", "obama3"}
    pdir = REPO / "ffmask" / "synth" / "portraits"
    assert (pdir / "README.md").is_file()
    for name in names:
        info = portraits.portrait_info(name)
        assert "public domain" in info["license"]
        assert (pdir / info["file"]).stat().st_size < 80_000
        p = portraits.load_portrait(name)
        assert max(p.image.shape[:2]) <= 512
        rects = detector(np.asarray(p.image), 0)
        assert len(rects) == 1, name
        r = rects[0]
        x0, y0, x1, y1 = p.box
        ix = max(0, min(x1, r.right()) - max(x0, r.left()))
        iy = max(0, min(y1, r.bottom()) - max(y0, r.top()))
        union = (x1 - x0) * (y1 - y0) + r.width() * r.height() - ix * iy
        assert ix * iy / union > 0.6, name
        mirrored = portraits.load_portrait(name, True)
        np.testing.assert_array_equal(mirrored.image, p.image[:, ::-1])
        # the subject's right eye (36-41) is on the image's left in both
        assert mirrored.landmarks[36:42, 0].mean() < mirrored.landmarks[42:48, 0].mean()
        assert p.landmarks[36:42, 0].mean() < p.landmarks[42:48, 0].mean()


@pytest.fixture(scope="module")
def sample_gt():
    path = SAMPLE / "ground_truth.json"
    assert path.is_file(), "sample_data/ff++ is missing: run `make sample-data`"
    return json.loads(path.read_text())


def test_sample_data_is_the_default_synth_output(sample_gt):
    assert sample_gt["seed"] == 0
    assert sample_gt["options"] == {
        "identities": tree.DEFAULT_IDENTITIES, "frames": tree.DEFAULT_FRAMES,
        "size": list(tree.DEFAULT_SIZE), "fps": tree.DEFAULT_FPS,
        "compressions": list(tree.DEFAULT_COMPRESSIONS), "manipulations": list(METHODS),
    }
    for split in ("train", "val", "test"):
        assert json.loads((SAMPLE / "splits" / f"{split}.json").read_text()), split
    size = sum(p.stat().st_size for p in (REPO / "sample_data").rglob("*") if p.is_file())
    assert size < 6_000_000
    assert len(list(SAMPLE.rglob("*.mp4"))) == 6 * 2 + 24 * 3


def test_dlib_finds_the_face_in_every_sample_original(sample_gt):
    """Other stages rely on it: the HOG detector (no upsampling) sees every face,
    and the 68 landmarks agree with the ground-truth geometry."""
    import dlib

    from ffmask.faces.landmarks import landmarks68

    detector = dlib.get_frontal_face_detector()
    for vid, o in sample_gt["originals"].items():
        for c in ("c23", "c40"):
            n = probe(SAMPLE / o["videos"][c]).n_frames
            frames = read_frames(SAMPLE / o["videos"][c], [0, n // 2, n - 1])
            for k, img in frames.items():
                rects = detector(img, 0)
                assert len(rects) == 1, (vid, c, k)
                r = rects[0]
                lms = landmarks68(img, (r.left(), r.top(), r.right(), r.bottom()))
                true = _true_landmarks(sample_gt, vid, k)
                face_w = np.linalg.norm(true[16] - true[0])
                assert np.linalg.norm(lms - true, axis=1).mean() < 0.06 * face_w, (vid, c, k)


# --- the command line -------------------------------------------------------------

def test_cli_writes_a_tree(tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["synth", str(out), "-n", "2", "--frames", "3", "--size", "128x96",
                                      "-m", "NT,F2F", "-c", "c23", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "NeuralTextures" in result.output and "Face2Face" in result.output
    gt = json.loads((out / "ground_truth.json").read_text())
    assert gt["seed"] == 5 and gt["options"]["manipulations"] == ["Face2Face", "NeuralTextures"]
    assert probe(out / "manipulated_sequences/Face2Face/masks/videos/001_000.mp4").n_frames == 3


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ffmask", "synth", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_cli_refuses_a_non_empty_out_with_one_line(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    r = _run_cli(str(tmp_path), "-n", "2", "--frames", "2")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--overwrite" in lines[0] and "not empty" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something.txt"]


@pytest.mark.parametrize("args, hint", [
    (["--size", "161x128"], "--size"), (["-c", "c99"], "--compression"),
    (["-m", "FaceShifter"], "--manipulations"), (["-n", "1"], "identities"),
])
def test_cli_bad_options_are_clear_errors(tmp_path, args, hint):
    r = _run_cli(str(tmp_path / "x"), *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert hint in r.stderr
    assert not (tmp_path / "x").exists()


def test_cli_help_is_informative():
    r = _run_cli("--help")
    assert r.returncode == 0
    for word in ("FaceForensics++", "--seed", "--identities", "--frames", "--size", "--compression",
                 "--manipulations", "--overwrite", "masks"):
        assert word in r.stdout


# --- manipulation families --------------------------------------------------------------

from ffmask.errors import FFMaskError  # noqa: E402
from ffmask.synth import families, pairs  # noqa: E402


def _family(region="mouth", operation="blur", blend="hard", strength=1.0, seed=0):
    params = families.draw_family(np.random.default_rng(seed), regions=[region], operations=[operation],
                                  blends=[blend], strength=(strength, strength))
    assert (params["region"], params["operation"], params["blend"]) == (region, operation, blend)
    return params


@pytest.mark.parametrize("operation", families.OPERATIONS)
@pytest.mark.parametrize("blend", families.BLENDS)
def test_family_mask_is_exactly_where_pixels_changed(faces, operation, blend):
    (t, tl), (s, sl) = faces
    params = _family("inner", operation, blend, strength=0.8)
    fake, mask = families.forge_family(t, tl, params, s, sl)
    assert fake.dtype == np.uint8 and fake.shape == t.shape and mask.dtype == bool
    changed = (fake.astype(np.int16) != t.astype(np.int16)).any(axis=2)
    np.testing.assert_array_equal(mask, changed)
    assert mask.sum() > 300, (operation, blend)
    # confined to the region grown by what a feather or a Poisson rim may add
    face_w = np.linalg.norm(tl[16] - tl[0])
    assert not (mask & ~_hull(tl, mask.shape, 0.35 * face_w)).any()


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("region, where", [
    ("mouth", np.r_[48:60]), ("nose", np.r_[27:36]), ("eyes", np.r_[17:27, 36:48]), ("hull", np.r_[0:68]),
])
def test_family_regions_sit_on_their_landmarks(faces, region, where):
    (t, tl), _ = faces
    fake, mask = families.forge_family(t, tl, _family(region, "color", "hard", strength=1.0))
    face_w = np.linalg.norm(tl[16] - tl[0])
    assert np.linalg.norm(_centroid(mask) - tl[where].mean(0)) < 0.12 * face_w


def test_forehead_is_above_the_brows_and_a_cheek_on_one_side(faces):
    (t, tl), _ = faces
    _, fore = families.forge_family(t, tl, _family("forehead", "color", "hard"))
    assert _centroid(fore)[1] < tl[17:27, 1].mean()
    sides = set()
    for seed in range(6):
        _, cheek = families.forge_family(t, tl, _family("cheek", "color", "hard", seed=seed))
        x = _centroid(cheek)[0]
        assert abs(x - tl[30, 0]) > 0.1 * np.linalg.norm(tl[16] - tl[0])  # not on the nose line
        sides.add(bool(x < tl[30, 0]))
    assert sides == {True, False}


def test_strength_orders_the_size_of_the_change(faces):
    (t, tl), _ = faces
    diffs = []
    for strength in (0.0, 0.5, 1.0):
        fake, mask = families.forge_family(t, tl, _family("hull", "blur", "hard", strength=strength))
        diffs.append(np.abs(fake.astype(int) - t)[mask].mean())
    assert diffs[0] < diffs[1] < diffs[2]


def test_draw_family_is_deterministic_and_validates():
    a = families.draw_family(np.random.default_rng([5, 1]))
    assert a == families.draw_family(np.random.default_rng([5, 1]))
    json.dumps(a)
    drawn = {families.draw_family(np.random.default_rng(i))["operation"] for i in range(200)}
    assert drawn == set(families.OPERATIONS)
    with pytest.raises(ValueError, match="region"):
        families.draw_family(np.random.default_rng(0), regions=["ear"])
    with pytest.raises(ValueError, match="strength"):
        families.draw_family(np.random.default_rng(0), strength=(0.5, 2.0))
    assert families.parse_axis("blend", "seamless,hard") == ("hard", "seamless")
    assert tree.parse_manipulations("fam,df") == ("Deepfakes", "Families")


def test_pairs_are_compressed_independently_cropped_and_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    opts = dict(seed=4, n=3, compressions=("raw", "c40"), size=128)
    pairs.build_pairs(a, **opts)
    pairs.build_pairs(b, **opts)
    assert (a / "pairs.json").read_text() == (b / "pairs.json").read_text()
    got = list(pairs.read_pairs(a))
    assert len(got) == 6 and {p.compression for p in got} == {"raw", "c40"}
    by = {(p.id, p.compression): p for p in got}
    for sid in ("00000", "00001", "00002"):
        raw, c40 = by[sid, "raw"], by[sid, "c40"]
        assert raw.real.shape == (128, 128, 3) and raw.truth.shape == (128, 128) and raw.truth.any()
        np.testing.assert_array_equal(raw.truth, c40.truth)
        # lossless: the fake equals the real outside the (crop-resampled) mask
        near = cv2.dilate(raw.truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.abs(raw.fake.astype(int) - raw.real)[~near].max() <= 2
        # c40 adds independent noise everywhere
        assert np.abs(c40.fake.astype(int) - c40.real)[~near].mean() > 0.5
        lm = c40.landmarks
        assert lm.shape == (68, 2) and (lm > 0).all() and (lm < 128).all()
        # the change is on the face (a forehead reaches 0.35 face widths above the brows)
        assert not (raw.truth & ~_hull(lm, (128, 128), 0.4 * np.linalg.norm(lm[16] - lm[0]))).any()
    with pytest.raises(FFMaskError, match="overwrite"):
        pairs.build_pairs(a, **opts)


def test_pairs_take_any_x264_crf_and_refuse_others(tmp_path):
    out = tmp_path / "crf"
    pairs.build_pairs(out, seed=4, n=1, compressions=("c18", "c45"), size=64)
    got = {p.compression: p for p in pairs.read_pairs(out)}
    assert set(got) == {"c18", "c45"}
    err = [np.abs(got[c].fake.astype(int) - got[c].real)[~got[c].truth].mean() for c in ("c18", "c45")]
    assert err[1] > err[0]  # CRF 45 quantises harder than CRF 18
    for bad in ("c52", "x23", "c"):
        with pytest.raises(ValueError, match="compressions"):
            pairs.build_pairs(tmp_path / "bad", seed=4, n=1, compressions=(bad,))
    assert not (tmp_path / "bad").exists()


def test_families_tree_masks_are_the_change(tmp_path):
    out = tmp_path / "fam"
    tree.build_synth(out, seed=1, identities=2, frames=3, size=(128, 96), compressions="raw",
                     manipulations="Families")
    gt = json.loads((out / "ground_truth.json").read_text())
    reals = {v: _all(out / o["videos"]["raw"]) for v, o in gt["originals"].items()}
    assert {f["method"] for f in gt["fakes"]} == {"Families"}
    for f in gt["fakes"]:
        assert f["params"]["region"] in families.REGIONS
        for m, fk, rl in zip(map(_mask, _all(out / f["mask"])), _all(out / f["videos"]["raw"]),
                             reals[f["target"]]):
            near = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            np.testing.assert_array_equal(fk[~near], rl[~near])


def test_cli_pairs_mode_writes_selected_families(tmp_path):
    from typer.testing import CliRunner

    from ffmask.cli import app

    out = tmp_path / "pairs"
    result = CliRunner().invoke(app, ["synth", str(out), "--pairs", "3", "--crop", "64", "-c", "c40",
                                      "--regions", "mouth", "--operations", "color,blur", "--blends", "hard",
                                      "--faces", "astronaut", "--seed", "2"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "pairs.json").read_text())
    assert meta["compressions"] == ["c40"] and len(meta["samples"]) == 3
    for rec in meta["samples"]:
        assert rec["family"] in ("mouth/color/hard", "mouth/blur/hard") and rec["identity"] == "astronaut"
        assert cv2.imread(str(out / "c40" / f"{rec['id']}_fake.png")).shape == (64, 64, 3)
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "bad"), "--pairs", "2", "--operations", "melt"])
    assert bad.exit_code != 0 and "melt" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
