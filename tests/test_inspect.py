"""``ffmask info`` / ``ffmask preview`` on a real shard, and the drawing helpers in ffmask.viz."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from skimage import data
from typer.testing import CliRunner

from ffmask.cli import app
from ffmask.errors import FFMaskError
from ffmask.shards import FaceRecord, Manifest, ShardWriter
from ffmask.viz import contact_sheet, noise_magnitude, overlay_heat, overlay_mask, sheet_size

S = 64
runner = CliRunner()


def _records():
    face = cv2.resize(data.astronaut()[20:240, 140:360], (S, S), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[:S, :S]
    out = []
    for i in range(6):
        label = int(i >= 2)  # 2 real, 4 fake
        mask = (((xx - 30 - i) / 14) ** 2 + ((yy - 34) / 18) ** 2 < 1) & bool(label)
        out.append(FaceRecord(
            image=np.roll(face, i, axis=1), label=label,
            maps={"mscc": mask, "ssim": cv2.GaussianBlur(mask.astype(np.float32), (9, 9), 0),
                  "noise": face.astype(np.float32) - cv2.GaussianBlur(face, (5, 5), 0).astype(np.float32)},
            video_id=f"NeuralTextures/00{i}_01{i}" if label else f"youtube/00{i}",
            original_id=f"youtube/00{i}" if label else "", manipulation="NeuralTextures" if label else "original",
            compression="c23", split="test", frame_index=i, box=np.array([140, 20, 360, 240]), landmarks=None,
        ))
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run")
    with ShardWriter(d / "shard-00000.h5", size=S, maps={"mscc": "mask", "ssim": "continuous", "noise": "noise"},
                     config={"method": "mscc"}) as w:
        for r in _records():
            w.append(r)
    Manifest(d / "manifest.jsonl").append_many([
        {"video_id": "youtube/000", "status": "ok", "reason": "", "faces": 1},
        {"video_id": "Deepfakes/bad", "status": "skipped", "reason": "unreadable video: [truncated]"},
    ])
    return d


def test_info_table(shards):
    result = runner.invoke(app, ["info", str(shards)])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("faces", "2 / 4 / 0", "NeuralTextures", "mscc", "mask", "66.7%", "100.0%",
                 "1 ok", "1 skipped", "unreadable video: [truncated]"):
        assert text in out, text


def test_info_json_counts_what_was_written(shards):
    # Expected values come from the records the fixture wrote, not from the
    # summary function `info` prints.
    result = runner.invoke(app, ["info", str(shards), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    recs = _records()
    fakes = [r for r in recs if r.label == 1]
    assert printed["problems"] == {}
    assert (printed["shards"], printed["faces"], printed["videos"]) == (1, 6, 6)
    assert (printed["real"], printed["fake"], printed["unknown"]) == (2, 4, 0)
    assert printed["by_manipulation"] == {"NeuralTextures": 4, "original": 2}
    assert printed["by_compression"] == {"c23": 6} and printed["by_split"] == {"test": 6}
    mscc = printed["maps"]["mscc"]
    assert mscc["kind"] == "mask" and mscc["faces"] == 6
    assert mscc["coverage"] == pytest.approx(4 / 6) and mscc["fake_coverage"] == 1.0
    assert mscc["area"] == pytest.approx(np.mean([r.maps["mscc"].mean() for r in recs]))
    assert mscc["fake_area"] == pytest.approx(np.mean([r.maps["mscc"].mean() for r in fakes]))
    ssim = printed["maps"]["ssim"]
    assert ssim["fake_mean"] == pytest.approx(np.mean([r.maps["ssim"].mean() for r in fakes]), abs=1e-3)
    noise = printed["maps"]["noise"]
    # schema 2 stores noise in steps of 1 % of each face's range (docs/shards.md)
    assert noise["mean_abs"] == pytest.approx(np.mean([np.abs(r.maps["noise"]).mean() for r in recs]), rel=1.5e-2)
    assert printed["manifest"]["videos"] == 2 and printed["manifest"]["ok"] == 1
    assert printed["manifest"]["skipped_by_reason"] == {"unreadable video: [truncated]": 1}


def test_info_reports_schema_problems_with_exit_1(shards, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "s.h5").write_bytes((shards / "shard-00000.h5").read_bytes())
    with h5py.File(bad / "s.h5", "r+") as f:
        f["maps/mscc"][0, 0, 0] = 3
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 1
    assert "other than 0 and 1" in result.output


@pytest.mark.parametrize("command", ["info", "preview"])
def test_missing_or_empty_directory_is_one_line_error(tmp_path, command):
    extra = ["--out", str(tmp_path / "x.png")] if command == "preview" else []
    for target, message in ((tmp_path / "nope", "no such"), (tmp_path, "no shards")):
        result = runner.invoke(app, [command, str(target), *extra])
        assert isinstance(result.exception, FFMaskError) and message in str(result.exception)
        assert "\n" not in str(result.exception)


def test_preview_writes_the_contact_sheet(shards, tmp_path):
    out = tmp_path / "sheet.png"
    result = runner.invoke(app, ["preview", str(shards), "--out", str(out), "--rows", "4", "--cell", "96"])
    assert result.exit_code == 0, result.output
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert sheet is not None and sheet.shape == (*sheet_size(4, 4, 96), 3)
    # Rows are 2 real then 2 fake: the first fake row's mask column is tinted red.
    h = sheet_size(2, 4, 96)[0]
    fake_mask_tile = sheet[h + 18 : h + 18 + 96, 4 + 100 : 4 + 100 + 96].astype(int)  # BGR
    real_mask_tile = sheet[22 + 18 : 22 + 18 + 96, 4 + 100 : 4 + 100 + 96].astype(int)
    assert (fake_mask_tile[..., 2] - fake_mask_tile[..., 1] > 60).mean() > 0.1
    assert (real_mask_tile[..., 2] - real_mask_tile[..., 1] > 60).mean() < (fake_mask_tile[..., 2] - fake_mask_tile[..., 1] > 60).mean()

    result = runner.invoke(app, ["preview", str(shards), "-o", str(out), "--maps", "ssim", "--rows", "3"])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)).shape == (*sheet_size(3, 2, 160), 3)

    result = runner.invoke(app, ["preview", str(shards), "-o", str(out), "--maps", "focus"])
    assert isinstance(result.exception, FFMaskError) and "available maps: mscc, noise, ssim" in str(result.exception)


def test_preview_seed_changes_the_pick(shards, tmp_path):
    a, b, c = (tmp_path / f"{k}.png" for k in "abc")
    for path, seed in ((a, 0), (b, 0), (c, 5)):
        assert runner.invoke(app, ["preview", str(shards), "-o", str(path), "--rows", "2", "--seed", str(seed)]).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


# -- viz ---------------------------------------------------------------------


def test_overlay_mask_touches_only_masked_pixels():
    image = data.astronaut()[:64, :64].copy()
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    inner = np.zeros_like(mask)
    inner[11:29, 21:49] = True  # away from the drawn outline
    red = np.array([255, 48, 48])
    out = overlay_mask(image, mask, color=red)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    np.testing.assert_array_equal(out[mask & ~inner], np.broadcast_to(red, out[mask & ~inner].shape))  # outline
    # Inside, every pixel moves towards the colour without reaching it...
    before = np.abs(image[inner].astype(int) - red).sum(axis=1)
    after = np.abs(out[inner].astype(int) - red).sum(axis=1)
    assert (after < before).all() and (after > 0).all()
    # ...and the two ends of alpha are the image itself and the plain colour.
    np.testing.assert_array_equal(overlay_mask(image, mask, color=red, alpha=0.0)[inner], image[inner])
    np.testing.assert_array_equal(overlay_mask(image, mask, color=red, alpha=1.0)[inner],
                                  np.broadcast_to(red, image[inner].shape))


def test_overlay_heat_is_transparent_at_zero_and_coloured_at_one():
    image = data.astronaut()[:32, :32].copy()
    np.testing.assert_array_equal(overlay_heat(image, np.zeros((32, 32))), image)
    full = overlay_heat(image, np.ones((32, 32)), alpha=1.0)
    np.testing.assert_array_equal(full, np.broadcast_to(np.array([128, 0, 0], np.uint8), full.shape))  # JET(1) = dark red
    with pytest.raises(ValueError, match="shape"):
        overlay_heat(image, np.zeros((31, 32)))


def test_noise_magnitude_normalises_by_percentile():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 3, (40, 40, 3))
    mag = np.sqrt((noise**2).sum(axis=2))
    expected = np.round(np.clip(mag / np.percentile(mag, 99), 0, 1) * 255).astype(np.uint8)
    out = noise_magnitude(noise)
    assert out.shape == (40, 40, 3) and (out[..., 0] == out[..., 2]).all()
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert (noise_magnitude(np.zeros((8, 8, 3))) == 0).all()


def test_contact_sheet_layout_and_errors():
    image = data.astronaut()[:50, :50].copy()
    faces = [{"image": image, "maps": {"m": np.ones((50, 50), bool)}, "title": "fake | ünïcode | x"}] * 3
    sheet = contact_sheet(faces, {"m": "mask"}, cell=40)
    assert sheet.shape == (*sheet_size(3, 2, 40), 3) and sheet.dtype == np.uint8
    with pytest.raises(ValueError, match="no map 'n'"):
        contact_sheet(faces, {"m": "mask", "n": "continuous"}, cell=40)
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet([{"image": image.astype(float), "maps": {}}], {}, cell=40)
    with pytest.raises(ValueError, match="kind"):
        contact_sheet(faces, {"m": "edges"}, cell=40)
