"""Video-level faults through the real annotate pipeline (issue 9, items 1, 5, 6 and the
untested paths): fakes at another resolution, rotation metadata, truncated files, an
unreadable original, frame-count and mask-length mismatches, c40 noise, --every and MTCNN.

Every video is a real H.264 file: a small synth FF++ tree, re-encoded or cut as a broken
download would be.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from _shards_read import read_faces
from _target_refs import ref_noise_map
from ffmask import video
from ffmask.annotate import annotate
from ffmask.faces import crop_resize
from ffmask.pipeline import JobSpec
from ffmask.shards import Manifest
from ffmask.synth.tree import build_synth

FRAMES = 12  # per synth video; --frames 4 samples indices 0, 4, 7, 11
ORIG = "original_sequences/youtube/c23/videos"
FAKES = "manipulated_sequences/Deepfakes/c23/videos"
MASKS = "manipulated_sequences/Deepfakes/masks/videos"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """Originals 000-003 (320x240), Deepfakes 000_001, 001_000, 002_003, 003_002 with masks."""
    root = tmp_path_factory.mktemp("synth") / "ff++"
    build_synth(root, seed=3, identities=4, frames=FRAMES, compressions=("c23",),
                manipulations=("Deepfakes",), jobs=1)
    return root


@pytest.fixture
def root(synth_root, tmp_path):
    copy = tmp_path / "ff++"
    shutil.copytree(synth_root, copy)
    return copy


def read_records(out: Path) -> dict[tuple[str, int], dict]:
    records = {}
    for face in read_faces(out):
        key = (face["video_id"], face["frame_index"])
        assert key not in records
        records[key] = face
    return records


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame, by plain PyAV (independent of ffmask.video's reader)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def reencode(path: Path, *, size=None, keep=None, lossless=False) -> None:
    """Rewrite a video in place: resized to ``size`` (w, h) and/or only its first ``keep`` frames."""
    frames = decode_all(path)[:keep]
    if size is not None:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    video.write_video(path, frames, lossless=lossless)


def run(root: Path, out: Path, spec: JobSpec, dataset: str = "ff++", **options):
    report = annotate(dataset, root, out, spec, **options)
    entries = Manifest(out / "manifest.jsonl").load()
    assert not list(out.glob("*.tmp"))
    return report, entries, read_records(out)


# --- item 1: a fake at another resolution than its original ------------------------------

def test_fake_and_mask_at_another_resolution_are_cropped_at_the_scaled_box(root, tmp_path):
    # the same picture at another size -> the original's box scaled to it
    reencode(root / FAKES / "000_001.mp4", size=(640, 480))  # a larger fake: once cropped at the wrong place
    reencode(root / MASKS / "000_001.mp4", size=(160, 120), lossless=True)  # and a smaller mask video
    reencode(root / FAKES / "002_003.mp4", size=(160, 120))  # a smaller fake: once a traceback
    # another aspect ratio (a crop or letterbox, not a rescale) -> skipped with both sizes
    reencode(root / FAKES / "001_000.mp4", size=(320, 180))
    reencode(root / MASKS / "003_002.mp4", size=(320, 200), lossless=True)
    _, entries, records = run(root, tmp_path / "out", JobSpec(methods=("mscc", "official"), frames=4, size=64),
                              dataset_options={"manipulations": ["Deepfakes"]})

    for vid, reason in (("Deepfakes/001_000", "frame size mismatch 320x180 vs 320x240"),
                        ("Deepfakes/003_002", "mask frame size mismatch 320x200 vs 320x240")):
        assert (entries[vid]["status"], entries[vid]["reason"]) == ("skipped", reason)
        assert not [k for k in records if k[0] == vid]
    assert "frame_sizes" not in entries["youtube/000"]

    inside = outside = 0.0
    for vid, fake_scale, mask_scale in (("000_001", 2, 0.5), ("002_003", 0.5, 1)):
        e = entries["Deepfakes/" + vid]
        assert e["status"] == "ok" and e["faces"] == 4
        assert e["frame_sizes"] == {"original": [320, 240], "fake": [320 * fake_scale, 240 * fake_scale],
                                    "mask": [320 * mask_scale, 240 * mask_scale]}
        mask_frames = decode_all(root / MASKS / f"{vid}.mp4")
        fakes = [(k, r) for k, r in records.items() if k[0] == "Deepfakes/" + vid]
        assert len(fakes) == 4
        for (_, index), r in fakes:
            real = records[(r["original_id"], index)]
            # the fake's box is the original's box in the fake's pixels, inside its frame
            x0, y0, x1, y1 = r["box"]
            assert 0 <= x0 < x1 <= 320 * fake_scale and 0 <= y0 < y1 <= 240 * fake_scale
            np.testing.assert_allclose(r["box"], np.asarray(real["box"]) * fake_scale, atol=0.5)
            np.testing.assert_allclose(r["landmarks"], (real["landmarks"] + 0.5) * fake_scale - 0.5, atol=1e-3)
            # the official map is the true mask at the original's box carried to the mask video
            mx0, my0, mx1, my1 = np.rint(np.asarray(real["box"]) * mask_scale).astype(int)
            truth = cv2.resize(mask_frames[index][my0:my1, mx0:mx1], (64, 64), interpolation=cv2.INTER_NEAREST)
            truth = truth[..., 0] > 1
            assert truth.any()
            assert np.mean(r["maps"]["official"].astype(bool) == truth) > 0.97
            # the crops show the same face: they differ inside the manipulated area, not outside
            d = np.abs(r["image"].astype(float) - real["image"].astype(float)).mean(axis=2)
            inside += d[truth].mean()
            outside += d[~truth].mean()
            assert 0.01 < r["maps"]["mscc"].mean() < 0.9
    assert inside > 3 * outside


# --- item 5: rotation metadata --------------------------------------------------------------

def _write_with_rotation(path: Path, frames, degrees: int) -> None:
    """An MP4 whose track carries a display matrix (as a phone stores a sideways video)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": "18"}
        s.set_display_rotation(degrees)
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode(None))


def test_video_with_rotation_metadata_is_annotated_upright(synth_root, tmp_path):
    upright = decode_all(synth_root / ORIG / "000.mp4")
    folder = tmp_path / "phone"
    folder.mkdir()
    # stored sideways (turned clockwise), played upright: the display matrix turns it back
    _write_with_rotation(folder / "cw.mp4", [np.rot90(f, -1) for f in upright], 90)
    _write_with_rotation(folder / "ccw.mp4", [np.rot90(f, 1) for f in upright], -90)
    _write_with_rotation(folder / "flipped.mp4", [np.rot90(f, 2) for f in upright], 180)
    video.write_video(folder / "upright.mp4", upright, crf=18)
    video.write_video(folder / "sideways.mp4", [np.rot90(f, -1) for f in upright], crf=18)  # no metadata
    spec = JobSpec(methods=("noise",), frames=3, size=64)
    report, entries, records = run(folder, tmp_path / "out", spec, dataset="folder")

    # the premise: a sideways face is not found, so the metadata is what makes the difference
    assert entries["sideways"]["reason"] == "no face detected in any sampled frame"
    assert entries["upright"]["faces"] == 3
    for name in ("cw", "ccw", "flipped"):
        assert entries[name]["status"] == "ok" and entries[name]["faces"] == 3, entries[name]
        for index in (0, 6, 11):
            box, ref = np.array(records[(name, index)]["box"]), np.array(records[("upright", index)]["box"])
            assert box[2] <= 320 and box[3] <= 240  # in the displayed (landscape) frame
            assert np.abs(box - ref).max() <= 4
            diff = np.abs(records[(name, index)]["image"].astype(int) - records[("upright", index)]["image"])
            assert diff.mean() < 6
    assert report.faces == 12


def test_fake_turned_by_metadata_of_its_own_is_skipped_not_compared(root, tmp_path):
    # The fake's stream is stored upside down with a 180 degree display matrix: read as
    # displayed it is its original's picture. Another fake's stream is upright but carries
    # the same matrix (metadata on only one of the pair): read as displayed it is upside
    # down, same size as its original, so only the picture can tell.
    fake_ok, fake_turned = root / FAKES / "000_001.mp4", root / FAKES / "001_000.mp4"
    _write_with_rotation(fake_ok, [np.rot90(f, 2) for f in decode_all(fake_ok)], 180)
    _write_with_rotation(fake_turned, decode_all(fake_turned), 180)
    report, entries, records = run(root, tmp_path / "out", JobSpec(methods=("mscc",), frames=4, size=64),
                                   dataset_options={"manipulations": ["Deepfakes"]})
    assert entries["Deepfakes/000_001"]["status"] == "ok" and entries["Deepfakes/000_001"]["faces"] == 4
    e = entries["Deepfakes/001_000"]
    assert e["status"] == "skipped", e
    assert e["reason"].startswith("fake is rotated 180 degrees relative to its original"), e["reason"]
    assert not [k for k in records if k[0] == "Deepfakes/001_000"]
    assert entries["Deepfakes/002_003"]["status"] == "ok"


def test_orientation_mismatch_on_real_frames(synth_root):
    from ffmask.pair_checks import orientation_mismatch

    original = decode_all(synth_root / ORIG / "000.mp4")[0]
    fake = decode_all(synth_root / FAKES / "000_001.mp4")[0]
    assert orientation_mismatch(original, fake) is None
    small = cv2.resize(fake, (160, 120), interpolation=cv2.INTER_AREA)  # another resolution, same picture
    assert orientation_mismatch(original, small) is None
    assert "flipped left-right" in orientation_mismatch(original, fake[:, ::-1]).message
    assert "flipped upside down" in orientation_mismatch(original, fake[::-1]).message
    assert "mask is rotated 180 degrees" in orientation_mismatch(original, fake[::-1, ::-1], what="mask").message
    square = np.ascontiguousarray(original[:, 40:280])
    assert "rotated 90 degrees counter-clockwise" in orientation_mismatch(square, np.rot90(square, 1)).message
    assert "rotated 90 degrees clockwise" in orientation_mismatch(square, np.rot90(square, -1)).message
    assert "transposed" in orientation_mismatch(square, square.transpose(1, 0, 2)).message
    assert orientation_mismatch(np.full((64, 64, 3), 90, np.uint8), np.full((64, 64, 3), 92, np.uint8)) is None
    with pytest.raises(ValueError, match="non-empty"):
        orientation_mismatch(original, np.zeros((0, 4, 3), np.uint8))


# --- item 6 and the untested paths: one run over a tree with several faults --------------

def _cut_after_packet(path: Path, n: int = 1) -> None:
    """Cut ``path`` inside its packet ``n`` (in file order), as a download cut short leaves it."""
    with av.open(str(path)) as c:
        packets = sorted((p.pos, p.size) for p in c.demux(video=0) if p.size)
    pos, size = packets[n]
    path.write_bytes(path.read_bytes()[: pos + size // 2])


def _cut_after_first_packet(path: Path) -> None:
    _cut_after_packet(path, 1)


def test_faults_each_get_their_manifest_entry(root, tmp_path):
    # an unreadable original: its fake cannot be cropped
    (root / ORIG / "002.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    # a fake with fewer frames than its original (frame-count mismatch)
    reencode(root / FAKES / "001_000.mp4", keep=8)
    # a mask video cut short (a download interrupted: its header still gives the fake's frame count):
    # frames without a mask (a mask *encoded* with fewer frames is skipped, tests/test_faults_rel10_align.py)
    mask = decode_all(root / MASKS / "000_001.mp4")  # the frames before the cut are these
    _cut_after_packet(root / MASKS / "000_001.mp4", 6)
    # a download cut inside the second packet: one frame decodes
    _cut_after_first_packet(root / FAKES / "003_002.mp4")
    report, entries, records = run(root, tmp_path / "out",
                                   JobSpec(methods=("mscc", "official", "noise"), frames=4, size=64),
                                   dataset_options={"manipulations": ["Deepfakes"]})

    def frames_of(vid):
        return sorted(i for v, i in records if v == vid)

    e = entries["youtube/002"]
    assert e["status"] == "skipped" and e["reason"].startswith("unreadable video: ") and "002.mp4" in e["reason"]
    e = entries["Deepfakes/002_003"]
    assert e["status"] == "skipped" and e["reason"].startswith("unreadable original: ")
    assert not frames_of("youtube/002") and not frames_of("Deepfakes/002_003")

    e = entries["Deepfakes/001_000"]
    assert e["status"] == "ok" and e["frame_count_mismatch"] == {"fake": 8, "original": 12}
    # frame 11 is past the fake's end: missing from it, not undecodable (session 11)
    assert (e["frames_sampled"], e["frames_decoded"], e["frames_missing_in_fake"], e["faces"]) == (4, 3, 1, 3)
    assert "frames_undecodable" not in e
    assert frames_of("Deepfakes/001_000") == [0, 4, 7]

    e = entries["Deepfakes/000_001"]
    assert e["status"] == "ok" and e["frames_without_mask"] == 2 and e["faces"] == 2
    assert frames_of("Deepfakes/000_001") == [0, 4]
    for index in (0, 4):
        r = records[("Deepfakes/000_001", index)]
        x0, y0, x1, y1 = r["box"]
        truth = cv2.resize(mask[index][y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_NEAREST)[..., 0] > 1
        np.testing.assert_array_equal(r["maps"]["official"].astype(bool), truth)

    e = entries["Deepfakes/003_002"]
    assert e["status"] == "ok", e
    assert (e["frames_decoded"], e["frames_undecodable"], e["faces"]) == (1, 3, 1)
    assert frames_of("Deepfakes/003_002") == [0]
    assert records[("Deepfakes/003_002", 0)]["maps"]["mscc"].any()

    assert entries["youtube/000"]["status"] == entries["youtube/003"]["status"] == "ok"
    assert report.faces == sum(e.get("faces", 0) for e in entries.values()) == len(records)


# --- noise sigma by compression, --every, --detector mtcnn -----------------------------------

def test_c40_items_get_noise_sigma_10(root, tmp_path):
    for parent in (root / "original_sequences/youtube", root / "manipulated_sequences/Deepfakes"):
        (parent / "c23").rename(parent / "c40")
    _, entries, records = run(root, tmp_path / "out", JobSpec(methods=("noise",), frames=2, size=64),
                              dataset_options={"manipulations": ["Deepfakes"], "compression": "c40"})
    assert len(records) == 16 and {e["status"] for e in entries.values()} == {"ok"}
    for key, r in list(records.items())[::3]:
        stored = r["maps"]["noise"].astype(np.float32)
        sigma10 = ref_noise_map(r["image"], sigma=10.0)
        sigma5 = ref_noise_map(r["image"], sigma=5.0)
        assert np.abs(stored - sigma10).max() < 0.05 * np.abs(sigma10).max() + 0.02, key
        assert np.abs(stored - sigma5).mean() > 5 * np.abs(stored - sigma10).mean(), key


def test_every_samples_every_kth_frame(synth_root, tmp_path):
    _, entries, records = run(synth_root, tmp_path / "out",
                              JobSpec(methods=("mscc",), frames=None, every=5, size=64),
                              dataset_options={"manipulations": ["Deepfakes"]})
    assert {i for _, i in records} == {0, 5, 10}
    for e in entries.values():
        assert e["status"] == "ok" and e["frames_sampled"] == 3 and e["faces"] == 3


@pytest.mark.slow
def test_mtcnn_detector_finds_the_faces_dlib_finds(synth_root, tmp_path):
    spec = dict(methods=("mscc",), frames=1, size=64)  # frame 0 of each original, reused by its fake
    options = {"manipulations": ["Deepfakes"]}
    _, entries, mtcnn = run(synth_root, tmp_path / "mtcnn", JobSpec(detector="mtcnn", **spec), dataset_options=options)
    _, _, dlib = run(synth_root, tmp_path / "dlib", JobSpec(**spec), dataset_options=options)
    assert {e["status"] for e in entries.values()} == {"ok"}
    assert mtcnn.keys() == dlib.keys() and len(mtcnn) == 8

    for key, r in mtcnn.items():
        # MTCNN's box reaches further up and down than dlib's, so compare the
        # crops by what matters: the same face, centred, at a similar size
        m, d = np.array(r["box"], float), np.array(dlib[key]["box"], float)
        side_m, side_d = m[2] - m[0], d[2] - d[0]
        assert 0.8 < side_m / side_d < 1.6, key
        centre_m, centre_d = (m[:2] + m[2:]) / 2, (d[:2] + d[2:]) / 2
        assert np.abs(centre_m - centre_d).max() < 0.2 * side_d, key
        if r["label"] == 1:  # a fake is cropped with its original's MTCNN box
            assert r["box"] == mtcnn[(r["original_id"], key[1])]["box"]


# --- the box helpers behind item 1 ---------------------------------------------------------

@pytest.mark.parametrize("to_size", [(160, 120), (640, 480), (426, 320), (400, 300)])
def test_scaled_box_crops_the_same_content_from_a_resized_frame(to_size):
    from ffmask.faces import scale_box, scale_points, same_aspect

    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    resized = cv2.resize(frame, to_size, interpolation=cv2.INTER_LINEAR)
    assert same_aspect(frame.shape, resized.shape)
    box = np.array([101, 37, 221, 157])
    scaled = scale_box(box, frame.shape, resized.shape)
    x0, y0, x1, y1 = scaled
    assert 0 <= x0 < x1 <= to_size[0] and 0 <= y0 < y1 <= to_size[1]
    a = crop_resize(frame, box, 64, interpolation="linear").astype(float)
    b = crop_resize(resized, scaled, 64, interpolation="linear").astype(float)
    shifted = crop_resize(frame, box + [8, 0, 8, 0], 64, interpolation="linear").astype(float)
    assert np.abs(a - b).mean() < 0.25 * np.abs(a - shifted).mean()  # same place, not 8 px off
    # a point on a pixel centre lands on the matching pixel centre of the resized frame
    sx, sy = to_size[0] / 320, to_size[1] / 240
    np.testing.assert_allclose(scale_points([[0, 0], [319, 239]], frame.shape, resized.shape),
                               [[(0.5 * sx) - 0.5, (0.5 * sy) - 0.5], [319.5 * sx - 0.5, 239.5 * sy - 0.5]], atol=1e-4)


def test_same_aspect_tolerance_and_box_edge_cases():
    from ffmask.faces import ASPECT_TOLERANCE, same_aspect, scale_box

    assert ASPECT_TOLERANCE == 0.01
    assert same_aspect((720, 1280), (480, 854))  # 0.08% off
    assert same_aspect((1920, 1080), (720, 404))  # portrait rounded to even: 0.25% off
    assert not same_aspect((240, 320), (180, 320))  # 4:3 vs 16:9
    assert not same_aspect((240, 320), (320, 240))  # a rotation is not a rescale
    assert same_aspect((100, 100), (100, 101), tolerance=0.02)
    assert not same_aspect((100, 100), (100, 103), tolerance=0.02)
    with pytest.raises(ValueError):
        same_aspect((240, 320), (120, 160), tolerance=-1)
    # a one-pixel box at the frame's edge stays one pixel inside a much smaller frame
    np.testing.assert_array_equal(scale_box([319, 239, 320, 240], (240, 320), (24, 32)), [31, 23, 32, 24])
    np.testing.assert_array_equal(scale_box([10, 20, 30, 40], (240, 320), (240, 320)), [10, 20, 30, 40])
    with pytest.raises(ValueError):
        scale_box([10, 20, 330, 40], (240, 320), (120, 160))  # not a box of the source frame
