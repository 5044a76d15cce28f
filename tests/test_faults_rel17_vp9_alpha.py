"""Session 16, second pass, M7: VP8 / VP9 with alpha in WebM read as their colour layer.

A WebM stream tagged ``alpha_mode=1`` carries its alpha as a second layer (Matroska BlockAdditional) that
FFmpeg's own ``vp9`` / ``vp8`` decoders, the ones PyAV opens, never read: at be89432 the transparent part
read as the colour an encoder left under it (bright green here). Now every open of a video goes through
``video._open_input``, which decodes such a stream with libvpx's decoder (``video.ALPHA_DECODERS``), and the
``yuva420p`` frames are composited on black as every other alpha format is (M3). A stream without alpha
keeps FFmpeg's decoder.
"""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from ffmask import video
from tests._video_files import REAL

HIDDEN = (0, 255, 0)  # the colour under the transparent quarter


def _frames(n: int = 3) -> list[np.ndarray]:
    return [np.ascontiguousarray(f[:96, :128]) for _, f in video.iter_frames(REAL, range(n))]


def _write_webm(path, frames, encoder: str, alpha: bool):
    """``frames`` as a lossless WebM; with ``alpha`` (``yuva420p``): the left quarter transparent over
    ``HIDDEN``, the next quarter half transparent, the rest opaque."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(encoder, rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuva420p" if alpha else "yuv420p"
        # near-lossless; VP8 encodes an alpha layer only without alt-ref frames
        s.options = {"lossless": "1"} if encoder == "libvpx-vp9" else {"crf": "4", "b": "20M", "auto-alt-ref": "0"}
        for f in frames:
            if alpha:
                a = np.full((h, w), 255, np.uint8)
                a[:, : w // 4], a[:, w // 4: w // 2] = 0, 128
                f = np.dstack([f, a])
                f[:, : w // 4, :3] = HIDDEN
                picture = av.VideoFrame.from_ndarray(f, format="rgba")
            else:
                picture = av.VideoFrame.from_ndarray(f, format="rgb24")
            for p in s.encode(picture):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("encoder, decoder, tolerance", [("libvpx-vp9", "libvpx-vp9", 0), ("libvpx", "libvpx", 3)])
def test_a_webm_with_alpha_reads_black_where_transparent(tmp_path, encoder, decoder, tolerance):
    frames = _frames()
    for f in frames:
        f[:, : f.shape[1] // 4] = HIDDEN  # the opaque copy hides the same colour there: its colour layer is the same
    clear = _write_webm(tmp_path / "alpha.webm", frames, encoder, alpha=True)
    opaque = _write_webm(tmp_path / "opaque.webm", frames, encoder, alpha=False)
    got, plain = video.read_frames(clear, range(3)), video.read_frames(opaque, range(3))
    assert sorted(got) == sorted(plain) == [0, 1, 2]
    w = frames[0].shape[1]
    for i in range(3):
        # at be89432: the left quarter read [0, 255, 0] (the hidden colour), the next one as opaque
        assert got[i][:, : w // 4].max() == 0
        half = (plain[i][:, w // 4: w // 2].astype(int) * 128 + 127) // 255
        assert np.abs(got[i][:, w // 4: w // 2].astype(int) - half).max() <= 1 + tolerance
        assert np.abs(got[i][:, w // 2:].astype(int) - plain[i][:, w // 2:]).mean() <= tolerance
    container, stream = video._open_input(clear)
    container.close()
    assert stream.metadata.get("alpha_mode") == "1" and stream.codec_context.name == decoder
    # the other ways in: streaming, grey, the reader, the first frame's display matrix
    assert np.array_equal(dict(video.stream_frames(clear, [1]))[1], got[1])
    assert np.array_equal(video.read_frames(clear, [2], gray=True)[2], cv2.cvtColor(got[2], cv2.COLOR_RGB2GRAY))
    with video.VideoReader(clear) as reader:
        assert reader.info.n_frames == 3 and (reader.info.width, reader.info.height) == (w, frames[0].shape[0])
        assert np.array_equal(dict(reader.frames([0]))[0], got[0])
    assert video.display_turn(clear) == "as stored"


def test_a_webm_without_alpha_keeps_ffmpegs_decoder(tmp_path):
    frames = _frames(2)
    path = _write_webm(tmp_path / "plain.webm", frames, "libvpx-vp9", alpha=False)
    container, stream = video._open_input(path)
    container.close()
    assert stream.codec_context.name == "vp9"  # not libvpx: no change in decode cost
    with av.open(str(path)) as c:
        direct = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    got = video.read_frames(path, [0, 1])
    assert all(np.array_equal(got[i], direct[i]) for i in range(2))
