"""Session 16, M3: frames with transparency (an alpha channel) were read with the colour stored under it.

PNG or QuickTime RLE in MOV, ProRes 4444, FFV1 ``yuva``, and a folder of RGBA / grey+alpha / palette PNG
or WebP frames: at 8fb4ccb the alpha was dropped, so a transparent part showed whatever colour the encoder
left under it (bright green here), a colour no viewer shows. Now such frames are composited on black
(``video.on_black``); opaque pixels are exactly as before.
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from ffmask import video
from ffmask.sequences import folder_sequence
from tests._video_files import REAL

HIDDEN = (0, 255, 0)  # the colour under the transparent quarter


def _with_alpha(frame: np.ndarray) -> np.ndarray:
    """(H, W, 4): the left quarter transparent over ``HIDDEN``, the next quarter half transparent, the rest
    opaque."""
    h, w = frame.shape[:2]
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 4], alpha[:, w // 4: w // 2] = 0, 128
    out = np.dstack([frame, alpha])
    out[:, : w // 4, :3] = HIDDEN
    return out


def _check(got: np.ndarray, frame: np.ndarray, tolerance: float) -> None:
    w = frame.shape[1]
    # at 8fb4ccb: the left quarter [0, 255, 0] (the hidden colour), the half-transparent quarter as opaque
    assert got[:, : w // 4].max() <= tolerance
    half = (frame[:, w // 4: w // 2].astype(int) * 128 + 127) // 255
    assert np.abs(got[:, w // 4: w // 2].astype(int) - half).mean() <= tolerance
    assert np.abs(got[:, w // 2:].astype(int) - frame[:, w // 2:]).mean() <= tolerance


@pytest.mark.parametrize("codec, pix_fmt, exact", [("png", "rgba", True), ("qtrle", "argb", True),
                                                   ("prores_ks", "yuva444p10le", False)])
def test_a_video_with_alpha_is_composited_on_black(tmp_path, codec, pix_fmt, exact):
    frames = [f for _, f in video.iter_frames(REAL, range(2))]
    path = tmp_path / f"clip_{codec}.mov"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(_with_alpha(f), format="rgba")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    got = video.read_frames(path, [0, 1])
    for i, frame in enumerate(frames):
        _check(got[i], frame, 0 if exact else 3)
    if exact:  # lossless: the opaque half is the very picture
        assert np.array_equal(got[1][:, frames[1].shape[1] // 2:], frames[1][:, frames[1].shape[1] // 2:])
    grey = video.read_frames(path, [1], gray=True)[1]
    assert np.array_equal(grey, cv2.cvtColor(got[1], cv2.COLOR_RGB2GRAY))


def test_a_folder_of_frames_with_alpha_is_composited_on_black(tmp_path):
    from PIL import Image

    frames = [f for _, f in video.iter_frames(REAL, range(4))]
    rgba = [_with_alpha(f) for f in frames]
    cv2.imwrite(str(tmp_path / "0000.png"), cv2.cvtColor(rgba[0], cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "0001.png"), cv2.cvtColor(rgba[1].astype(np.uint16) * 257, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "0002.webp"), cv2.cvtColor(rgba[2], cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_WEBP_QUALITY, 101])
    grey = cv2.cvtColor(frames[3], cv2.COLOR_RGB2GRAY)
    Image.fromarray(np.dstack([grey, rgba[3][..., 3]]), "LA").save(tmp_path / "0003.png")
    got = video.read_frames(folder_sequence(tmp_path), range(4))
    assert sorted(got) == [0, 1, 2, 3]
    for i in range(3):
        _check(got[i], frames[i], 0)
    _check(got[3], np.repeat(grey[..., None], 3, axis=2), 0)


def test_opaque_frames_read_as_before(tmp_path):
    frame = video.read_frames(REAL, [0])[0]
    cv2.imwrite(str(tmp_path / "0000.png"), cv2.cvtColor(np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)]),
                                                         cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "0001.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    got = video.read_frames(folder_sequence(tmp_path), [0, 1])
    assert np.array_equal(got[0], frame) and np.array_equal(got[1], frame)
