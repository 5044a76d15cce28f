"""Slow, obvious reference implementations of ffmask.targets, and test faces.

The references follow the method descriptions line by line with the
straightforward libraries (scikit-image SSIM, per-channel PyWavelets with
scipy.ndimage box filters, the MSCCNet authors' OpenCV script); the fast
code in ffmask.targets must agree with them. `benchmarks/bench_targets.py`
times them too.

The test faces are real: the astronaut portrait from scikit-image, a "fake"
made by warping and recolouring the inner face inside a feathered ellipse,
both passed through real H.264 (libx264, yuv420p) and decoded back.
"""

from __future__ import annotations

import io
import warnings

import av
import cv2
import numpy as np
import pywt
import scipy.ndimage as ndi
import skimage.data
from skimage.metrics import structural_similarity

# ---------------------------------------------------------------- test faces


def face_crop(size: int | None = None) -> np.ndarray:
    """The astronaut's face, uint8 RGB (200, 200, 3), optionally resized."""
    face = skimage.data.astronaut()[30:230, 140:340]
    if size is not None and size != face.shape[0]:
        face = cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(face)


def make_fake(real: np.ndarray, seed: int = 0) -> np.ndarray:
    """Face-swap-like forgery: the inner face warped, smoothed and recoloured
    inside a feathered ellipse; the rest of the crop is untouched."""
    h, w = real.shape[:2]
    centre = (0.425 * w, 0.475 * h)  # (x, y) of the inner face
    rng = np.random.default_rng(seed)
    angle = 6.0 + rng.uniform(-1.0, 1.0)
    warp = cv2.getRotationMatrix2D(centre, angle, 1.06)
    swapped = cv2.warpAffine(
        real, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    swapped = cv2.GaussianBlur(swapped, (5, 5), 0).astype(np.float32)
    swapped += np.array([14.0, -6.0, -12.0], dtype=np.float32)
    ellipse = np.zeros((h, w), dtype=np.uint8)
    axes = (int(0.19 * w), int(0.24 * h))
    cv2.ellipse(ellipse, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(ellipse.astype(np.float32) / 255.0, (0, 0), 0.02 * w)[..., None]
    fake = alpha * swapped + (1.0 - alpha) * real.astype(np.float32)
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8)


def h264_roundtrip(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """Encode RGB frames with libx264 (yuv420p, given CRF) and decode them."""
    h, w = frames[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def compressed_pair(
    crf: int, size: int | None = None, frames: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(real, fake) middle frames of short H.264 clips of the face and its fake.

    The clips drift by a pixel per frame so the encoder sees motion.
    """
    real = face_crop(size)
    fake = make_fake(real)
    shifts = [np.float32([[1, 0, i], [0, 1, 0]]) for i in range(frames)]
    h, w = real.shape[:2]

    def clip(img: np.ndarray) -> list[np.ndarray]:
        return [cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT) for m in shifts]

    mid = frames // 2
    return h264_roundtrip(clip(real), crf)[mid], h264_roundtrip(clip(fake), crf)[mid]


# ---------------------------------------------------------------- references


def ref_gray(rgb: np.ndarray) -> np.ndarray:
    """OpenCV gray in [0, 1], float64."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) / 255.0


def ref_ssim_map(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    _, s = structural_similarity(
        ref_gray(real),
        ref_gray(fake),
        win_size=7,
        data_range=1.0,
        use_sample_covariance=True,
        gaussian_weights=False,
        full=True,
    )
    return np.clip(1.0 - s, 0.0, 1.0)


def ref_diff_map(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    absdiff = np.abs(real.astype(np.int16) - fake.astype(np.int16)).astype(np.uint8)
    return cv2.cvtColor(absdiff, cv2.COLOR_RGB2GRAY) / 255.0


def ref_mscc_mask(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """The MSCCNet authors' annotation script, step by step.

    Their inputs were ``cv2.imread`` BGR images turned into gray / 255; the
    SSIM call ``compare_ssim(fake, real, full=True)`` used the old skimage
    default data range for float images, 2. Their three-channel hull image,
    float64 blurs and uint8 thresholds are kept as they were. Where their
    script raised (no contour, 0/0), the frame gets an all-zero mask.
    """
    fake_g = cv2.cvtColor(cv2.cvtColor(fake, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2GRAY) / 255.0
    real_g = cv2.cvtColor(cv2.cvtColor(real, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2GRAY) / 255.0
    empty = np.zeros(fake_g.shape, dtype=bool)

    _, a = structural_similarity(
        fake_g, real_g, win_size=7, data_range=2, use_sample_covariance=True,
        gaussian_weights=False, full=True,
    )
    diff = 1 - a
    if diff.max() == diff.min():
        return empty
    diff_mask = (diff - diff.min()) / (diff.max() - diff.min())
    diff_mask = cv2.GaussianBlur(diff_mask, (5, 5), 0)
    factor = (diff_mask > 0.08) * 1
    diff_mask = fake_g * factor
    _, mask = cv2.threshold(np.uint8(diff_mask * 255), 0, 255, cv2.THRESH_BINARY)

    kernel1 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    dilated = cv2.dilate(mask, kernel1, iterations=3)
    contours, _ = cv2.findContours(dilated, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    hull = []
    for contour in contours:
        if contour.shape[0] > 5:
            if len(hull) == 0:
                hull = contour
            else:
                hull = np.concatenate((hull, cv2.convexHull(contour, False)))
    if len(hull) == 0:
        return empty

    h, w = fake_g.shape
    dilated_hull = np.zeros((h, w, 3), dtype=np.uint8)
    dilated_hull = cv2.fillConvexPoly(dilated_hull, cv2.convexHull(hull, False), (255, 255, 255))
    kernel2 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    eroded = cv2.erode(dilated_hull, kernel2, iterations=3)
    blur = cv2.GaussianBlur(eroded / 255, (7, 7), 0)
    _, blur = cv2.threshold(np.uint8(blur * 255), 0, 255, cv2.THRESH_BINARY)
    assert (blur == blur[..., :1]).all()
    return blur[..., 0] > 0


def ref_noise_map(image: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Per channel, per band, per window, in float64 with scipy.ndimage."""
    s2 = float(sigma) ** 2
    h, w = image.shape[:2]
    out = np.empty((h, w, 3), dtype=np.float64)
    for c in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # level too high on tiny crops
            channel = image[..., c].astype(np.float64)
            coeffs = pywt.wavedec2(channel, "db4", mode="symmetric", level=4)
        new = [np.zeros_like(coeffs[0])]
        for level in coeffs[1:]:
            bands = []
            for x in level:
                v = None
                for size in (3, 5, 7, 9):
                    local = np.maximum(0.0, ndi.uniform_filter(x * x, size, mode="constant") - s2)
                    v = local if v is None else np.minimum(v, local)
                bands.append(x * s2 / (v + s2))
            new.append(tuple(bands))
        out[..., c] = pywt.waverec2(new, "db4", mode="symmetric")[:h, :w]
    return out
