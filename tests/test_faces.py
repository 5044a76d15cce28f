"""ffmask.faces: real detectors on real faces, crop boxes and crops.

Faces: skimage's astronaut (Eileen Collins, NASA, public domain) and a
downscaled official White House portrait (tests/data/faces_obama.jpg, see
tests/data/README_faces.md).
"""

from __future__ import annotations

import math
import pathlib

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.transform import downscale_local_mean

import ffmask  # noqa: F401  (torchvision shim before facenet-pytorch)
from ffmask.faces import (
    DETECTORS,
    Face,
    FaceDetector,
    crop_box,
    crop_pair,
    crop_resize,
    get_detector,
    landmarks68,
    largest_face,
    points_to_crop,
)

DATA = pathlib.Path(__file__).parent / "data"
# The astronaut's face, read off the image by eye (not by a detector).
ASTRONAUT_FACE = (170, 60, 280, 180)
EYES, MOUTH = slice(36, 48), slice(48, 68)


def iou(a, b) -> float:
    ax0, ay0, ax1, ay1 = map(float, a)
    bx0, by0, bx1, by1 = map(float, b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def obama():
    image = cv2.imread(str(DATA / "faces_obama.jpg"), cv2.IMREAD_COLOR)
    assert image is not None, "tests/data/faces_obama.jpg is missing"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def canvas(astronaut):
    """A 640x480 frame with the astronaut placed 64 px from the left."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 64:576] = astronaut[:480]
    return frame


@pytest.fixture(scope="module")
def dlib_det():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def mtcnn_det():
    return get_detector("mtcnn", device="cpu")


def assert_plausible_landmarks(face: Face):
    """68 points in dlib's layout, on the face and anatomically ordered."""
    points = face.landmarks
    assert points.shape == (68, 2) and points.dtype == np.float32
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    # The jaw line runs past a tight box (dlib's box often cuts the chin);
    # everything stays near it.
    assert np.all(points[:, 0] >= x0 - 0.15 * w) and np.all(points[:, 0] <= x1 + 0.15 * w)
    assert np.all(points[:, 1] >= y0 - 0.15 * h) and np.all(points[:, 1] <= y1 + 0.25 * h)
    # Brows, eyes, nose and mouth lie inside the box.
    inner = points[17:]
    assert np.all((inner[:, 0] >= x0) & (inner[:, 0] <= x1) & (inner[:, 1] >= y0) & (inner[:, 1] <= y1))
    eye_y, mouth_y = points[EYES, 1].mean(), points[MOUTH, 1].mean()
    assert eye_y < mouth_y - 0.2 * h, "eyes must sit well above the mouth"
    # Subject's right eye (36-41) appears on the image's left.
    assert points[36:42, 0].mean() < points[42:48, 0].mean()
    nose_tip = points[30]
    assert points[36:42, 0].mean() < nose_tip[0] < points[42:48, 0].mean()
    assert eye_y < nose_tip[1] < mouth_y


def assert_same_faces(got: list[list[Face]], expected: list[list[Face]]):
    """Equal up to float noise: batched convolutions round differently."""
    assert [len(f) for f in got] == [len(f) for f in expected]
    for faces_a, faces_b in zip(got, expected):
        for a, b in zip(faces_a, faces_b):
            np.testing.assert_allclose(a.box, b.box, atol=0.01)
            assert a.score == pytest.approx(b.score, abs=1e-5)
            # landmarks68 rounds the box to whole pixels, which noise can tip.
            assert np.abs(a.landmarks - b.landmarks).max() <= 1.0


# -- detectors on real faces ----------------------------------------------


def test_registry_and_protocol(dlib_det, mtcnn_det):
    assert set(DETECTORS) == {"dlib", "mtcnn", "none"}
    for det, name in ((dlib_det, "dlib"), (mtcnn_det, "mtcnn")):
        assert isinstance(det, FaceDetector) and det.name == name
    # Built once per process: the same arguments give the same object.
    assert get_detector("dlib") is dlib_det
    assert get_detector("mtcnn", device="cpu") is mtcnn_det
    assert get_detector("dlib", landmarks=False) is not dlib_det


def test_dlib_finds_the_astronaut(astronaut, dlib_det):
    faces = dlib_det.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.box.dtype == np.float32 and face.box.shape == (4,)
    assert iou(face.box, ASTRONAUT_FACE) > 0.5
    assert face.score > 0
    assert_plausible_landmarks(face)
    # Landmarks are exactly dlib's predictor on the detector's box.
    x0, y0, x1, y1 = face.box
    np.testing.assert_array_equal(face.landmarks, landmarks68(astronaut, (x0, y0, x1 - 1, y1 - 1)))


def test_mtcnn_finds_the_same_face(astronaut, dlib_det, mtcnn_det):
    (face,) = mtcnn_det.detect(astronaut)
    assert iou(face.box, ASTRONAUT_FACE) > 0.5
    assert iou(face.box, dlib_det.detect(astronaut)[0].box) > 0.4
    assert 0.9 < face.score <= 1.0
    assert_plausible_landmarks(face)
    # Same 68-point layout as dlib: the two detectors' landmarks nearly agree.
    dlib_points = dlib_det.detect(astronaut)[0].landmarks
    assert np.median(np.linalg.norm(face.landmarks - dlib_points, axis=1)) < 5


def test_both_detectors_find_a_second_real_face(obama, dlib_det, mtcnn_det):
    (by_dlib,) = dlib_det.detect(obama)
    (by_mtcnn,) = mtcnn_det.detect(obama)
    assert iou(by_dlib.box, by_mtcnn.box) > 0.4
    assert_plausible_landmarks(by_dlib)
    assert_plausible_landmarks(by_mtcnn)


@pytest.mark.parametrize("name", ["dlib", "mtcnn"])
def test_landmarks_off_gives_none(astronaut, name):
    (face,) = get_detector(name, landmarks=False, device=None if name == "dlib" else "cpu").detect(astronaut)
    assert face.landmarks is None
    assert iou(face.box, ASTRONAUT_FACE) > 0.5


@pytest.mark.parametrize("name", ["dlib", "mtcnn"])
def test_detect_batch_equals_per_frame_detect(name, astronaut, obama, canvas, dlib_det, mtcnn_det):
    det = dlib_det if name == "dlib" else mtcnn_det
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    # Mixed sizes: MTCNN groups equal sizes into one forward pass each.
    frames = [astronaut, canvas, obama, noise, np.ascontiguousarray(canvas[:, ::-1]), astronaut]
    batched = det.detect_batch(frames)
    single = [det.detect(f) for f in frames]
    assert_same_faces(batched, single)
    assert [len(f) for f in batched] == [1, 1, 1, 0, 1, 1]
    # The canvas face is the astronaut's, moved 64 px right.
    assert np.allclose(batched[1][0].box, batched[0][0].box + [64, 0, 64, 0], atol=4)
    assert det.detect_batch([]) == []
    # A 4-D array is a batch too.
    assert_same_faces(det.detect_batch(np.stack([obama, obama])), [single[2], single[2]])


# dlib's 80 px window needs the 2x size; MTCNN is cheaper on 1.5x.
@pytest.mark.parametrize("name, factor", [("dlib", 2.0), ("mtcnn", 1.5)])
def test_max_side_maps_boxes_back_to_full_resolution(name, factor, astronaut):
    device = None if name == "dlib" else "cpu"
    side = round(512 * factor)
    big = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_CUBIC)
    reference = np.array(ASTRONAUT_FACE) * factor

    def the_face(faces):  # dlib also reports a weak glove "face" at this size
        return max(faces, key=lambda f: iou(f.box, reference))

    full = the_face(get_detector(name, device=device, max_side=None).detect(big))
    shrunk = the_face(get_detector(name, device=device, max_side=side // 2).detect(big))
    assert iou(full.box, reference) > 0.5
    face_side = full.box[2] - full.box[0]
    # Detectors quantise scale differently at each size; the box stays put.
    assert np.abs(shrunk.box - full.box).max() < 0.1 * face_side
    assert iou(shrunk.box, full.box) > 0.8
    # Exactly the detection on a half-size copy, scaled by 2.
    small = cv2.resize(big, (side // 2, side // 2), interpolation=cv2.INTER_AREA)
    on_small = the_face(get_detector(name, device=device, max_side=None, landmarks=False).detect(small))
    np.testing.assert_allclose(shrunk.box, on_small.box * 2, rtol=1e-6)
    # Landmarks come from the full-resolution frame, not the shrunk copy.
    x0, y0, x1, y1 = shrunk.box
    np.testing.assert_array_equal(shrunk.landmarks, landmarks68(big, (x0, y0, x1 - 1, y1 - 1)))
    assert_plausible_landmarks(shrunk)


def test_max_side_larger_than_frame_changes_nothing(canvas):
    a = get_detector("dlib", max_side=640).detect(canvas)
    b = get_detector("dlib", max_side=None).detect(canvas)
    assert a == b and len(a) == 1


@pytest.mark.parametrize("name", ["dlib", "mtcnn"])
def test_no_face_gives_empty_list(name, dlib_det, mtcnn_det):
    det = dlib_det if name == "dlib" else mtcnn_det
    rng = np.random.default_rng(1)
    blank = np.full((240, 320, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    tiny = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smaller than any detector window
    assert det.detect(blank) == []
    assert det.detect(noise) == []
    assert det.detect(tiny) == []
    assert det.detect_batch([blank, tiny, noise]) == [[], [], []]


def test_largest_face_picks_the_bigger_of_two_real_faces(astronaut, dlib_det, mtcnn_det):
    head = astronaut[20:240, 120:330]  # 220 x 210
    big_head = cv2.resize(head, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_LINEAR)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[130:350, 20:230] = head
    frame[60:60 + big_head.shape[0], 280:280 + big_head.shape[1]] = big_head
    for det in (dlib_det, mtcnn_det):
        faces = det.detect(frame)
        assert len(faces) == 2, det
        chosen = largest_face(faces)
        assert chosen.box[0] > 280 - 5 and chosen.area == max(f.area for f in faces)
        small = min(faces, key=lambda f: f.area)
        assert small.box[2] < 230 + 5
        assert 1.4 < math.sqrt(chosen.area / small.area) < 1.8


def test_largest_face_on_plain_faces():
    a = Face(np.array([0, 0, 10, 10]), 0.9, None)
    b = Face(np.array([5, 5, 25, 20]), 0.1, None)
    c = Face(np.array([50, 50, 70, 65]), 0.5, None)  # same area as b
    assert largest_face([]) is None
    assert largest_face([a, b]) is b
    assert largest_face([a, c, b]) is c  # first on a tie
    with pytest.raises(ValueError, match="Face"):
        largest_face([a, (0, 0, 5, 5)])


def test_face_validates_and_is_immutable():
    face = Face([1, 2, 30, 40], 0.5, np.zeros((68, 2)))
    assert face.box.dtype == np.float32 and face.landmarks.dtype == np.float32
    with pytest.raises(ValueError):
        face.box[0] = 5  # read-only
    assert face == Face(np.array([1, 2, 30, 40], np.float32), 0.5, np.zeros((68, 2), np.float32))
    assert face != Face([1, 2, 30, 40], 0.5, None)
    with pytest.raises(ValueError, match="4 finite numbers"):
        Face([1, 2, 3], 0.5, None)
    with pytest.raises(ValueError, match="degenerate"):
        Face([10, 2, 10, 40], 0.5, None)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        Face([1, 2, 30, 40], 0.5, np.zeros((5, 2)))


@pytest.mark.parametrize("name", ["dlib", "mtcnn"])
def test_detectors_reject_bad_frames(name, dlib_det, mtcnn_det, astronaut):
    det = dlib_det if name == "dlib" else mtcnn_det
    with pytest.raises(ValueError, match="uint8"):
        det.detect(astronaut.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        det.detect(astronaut[:, :, 0])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        det.detect(np.dstack([astronaut, astronaut[:, :, :1]]))
    with pytest.raises(ValueError, match="numpy array"):
        det.detect(astronaut.tolist())
    with pytest.raises(ValueError, match=r"frames\[1\]"):
        det.detect_batch([astronaut, astronaut.astype(np.int16)])


def test_get_detector_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'dlib'.*'mtcnn'"):
        get_detector("retinaface")
    with pytest.raises(ValueError, match="max_side"):
        get_detector("dlib", max_side=0)
    with pytest.raises(ValueError, match="upsample"):
        get_detector("dlib", upsample=-1)
    with pytest.raises(ValueError, match="unknown option.*accepts"):
        get_detector("dlib", min_face_size=40)
    with pytest.raises(ValueError, match="CPU"):
        get_detector("dlib", device="cuda")
    with pytest.raises(ValueError, match="thresholds"):
        get_detector("mtcnn", device="cpu", thresholds=(0.6, 0.7))
    with pytest.raises(ValueError, match="threshold must be a number"):
        get_detector("dlib", threshold="high")
    with pytest.raises(ValueError, match="not a torch device"):
        get_detector("mtcnn", device="gpu0")


def test_dlib_upsample_finds_smaller_faces(astronaut):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)  # face ~44 px
    assert get_detector("dlib", landmarks=False).detect(small) == []
    (face,) = [f for f in get_detector("dlib", landmarks=False, upsample=1).detect(small) if f.score > 0.5]
    assert iou(face.box, np.array(ASTRONAUT_FACE) / 2) > 0.5


# -- crop boxes ---------------------------------------------------------------


def test_crop_box_centred_square():
    box = crop_box([100, 100, 200, 180], (480, 640), scale=1.3)
    assert box.dtype == np.int32 and box.shape == (4,)
    np.testing.assert_array_equal(box, [85, 75, 215, 205])  # side 130, centre (150, 140)
    # The RGB shape works as well as (H, W).
    np.testing.assert_array_equal(crop_box([100, 100, 200, 180], (480, 640, 3)), box)
    np.testing.assert_array_equal(crop_box([100, 100, 200, 200], (480, 640), scale=1.0), [100, 100, 200, 200])


def test_crop_box_shifts_inside_near_edges():
    # Near the top-left corner: the square moves inside rather than shrinking.
    np.testing.assert_array_equal(crop_box([0, 5, 100, 105], (480, 640), scale=2.0), [0, 0, 200, 200])
    # Near the bottom-right corner.
    np.testing.assert_array_equal(crop_box([580, 430, 640, 480], (480, 640), scale=1.5), [550, 390, 640, 480])
    # A face box sticking out of the frame still gives an in-frame square.
    np.testing.assert_array_equal(crop_box([-20, -20, 60, 60], (480, 640), scale=1.0), [0, 0, 80, 80])


def test_crop_box_clamps_when_bigger_than_the_frame():
    box = crop_box([200, 100, 440, 380], (480, 640), scale=2.0)  # side 560 > H
    np.testing.assert_array_equal(box, [40, 0, 600, 480])  # square in x, whole height in y
    box = crop_box([10, 10, 630, 470], (480, 640), scale=1.5)
    np.testing.assert_array_equal(box, [0, 0, 640, 480])


def test_crop_box_random_properties():
    rng = np.random.default_rng(1234)
    for _ in range(3000):
        height, width = (int(v) for v in rng.integers(1, 1500, size=2))
        w = rng.uniform(0.5, 1.2 * width)
        h = rng.uniform(0.5, 1.2 * height)
        fx0 = rng.uniform(-w + 0.5, width - 0.5)  # overlaps the frame
        fy0 = rng.uniform(-h + 0.5, height - 0.5)
        scale = float(rng.choice([rng.uniform(0.2, 1.0), rng.uniform(1.0, 3.0)]))
        face = np.array([fx0, fy0, fx0 + w, fy0 + h])
        box = crop_box(face, (height, width), scale)
        assert box.dtype == np.int32 and box.shape == (4,)
        x0, y0, x1, y1 = (int(v) for v in box)
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height  # inside, never empty
        side = max(1, math.ceil(scale * max(w, h) - 1e-9))
        for lo, hi, length, start, end in ((x0, x1, width, face[0], face[2]), (y0, y1, height, face[1], face[3])):
            if side <= length:
                assert hi - lo == side  # the square fits: kept whole, shifted inside
                ideal = (start + end) / 2 - side / 2
                if 0.5 <= ideal <= length - side - 0.5:
                    assert abs((lo + hi) / 2 - (start + end) / 2) <= 0.5  # centred
            else:
                assert (lo, hi) == (0, length)  # clamped to the whole axis
            if scale >= 1.0:  # contains the face (clipped to the frame), to rounding
                assert lo <= max(start, 0) + 0.5 and hi >= min(end, length) - 0.5
        if side <= min(height, width):
            assert x1 - x0 == y1 - y0 == side  # square


def test_crop_box_contains_integer_face_boxes():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        height, width = (int(v) for v in rng.integers(20, 800, size=2))
        fx0, fx1 = sorted(rng.choice(width + 1, size=2, replace=False))
        fy0, fy1 = sorted(rng.choice(height + 1, size=2, replace=False))
        x0, y0, x1, y1 = crop_box([fx0, fy0, fx1, fy1], (height, width), float(rng.uniform(1.0, 2.0)))
        assert x0 <= fx0 and y0 <= fy0 and x1 >= fx1 and y1 >= fy1


@pytest.mark.parametrize(
    "face_box, frame_shape, scale, match",
    [
        ([10, 10, 10, 50], (100, 100), 1.3, "degenerate"),
        ([10, 50, 40, 20], (100, 100), 1.3, "degenerate"),
        ([10, 10, np.nan, 50], (100, 100), 1.3, "finite"),
        ([10, 10, 50], (100, 100), 1.3, "shape"),
        ("abcd", (100, 100), 1.3, "face box"),
        ([10, 10, 50, 50], (100, 100), 0.0, "scale"),
        ([10, 10, 50, 50], (100, 100), -1.0, "scale"),
        ([10, 10, 50, 50], (100, 100), float("inf"), "scale"),
        ([10, 10, 50, 50], (0, 100), 1.3, "positive"),
        ([10, 10, 50, 50], (100,), 1.3, "frame_shape"),
        ([200, 10, 250, 50], (100, 100), 1.3, "outside"),
    ],
)
def test_crop_box_rejects_bad_input(face_box, frame_shape, scale, match):
    with pytest.raises(ValueError, match=match):
        crop_box(face_box, frame_shape, scale)


# -- crops --------------------------------------------------------------------


def test_crop_resize_rgb_shapes_and_references(astronaut):
    box = np.array([150, 40, 350, 240], np.int32)  # 200 x 200
    same = crop_resize(astronaut, box, 200)
    np.testing.assert_array_equal(same, astronaut[40:240, 150:350])
    half = crop_resize(astronaut, box, 100)
    assert half.shape == (100, 100, 3) and half.dtype == np.uint8
    # "auto" shrinks with area averaging: 2x2 block means.
    reference = downscale_local_mean(astronaut[40:240, 150:350].astype(np.float64), (2, 2, 1))
    assert np.abs(half.astype(np.float64) - reference).max() <= 1.0
    np.testing.assert_array_equal(half, crop_resize(astronaut, box, 100, interpolation="area"))
    # "auto" enlarges with linear interpolation.
    up = crop_resize(astronaut, box, 299)
    assert up.shape == (299, 299, 3)
    np.testing.assert_array_equal(up, crop_resize(astronaut, box, 299, interpolation="linear"))
    assert not np.array_equal(up, crop_resize(astronaut, box, 299, interpolation="area"))


def test_crop_resize_depends_only_on_the_box(astronaut):
    """The box found on the original crops the fake at the same place."""
    box = crop_box(ASTRONAUT_FACE, astronaut.shape)
    other = astronaut.copy()
    outside = np.ones(astronaut.shape[:2], bool)
    outside[box[1]:box[3], box[0]:box[2]] = False
    other[outside] = 255 - other[outside]
    for size in (64, 224, 299):
        np.testing.assert_array_equal(crop_resize(astronaut, box, size), crop_resize(other, box, size))
    out = crop_resize(astronaut, [0, 0, 512, 512], 512)
    out[:] = 0  # a new array, never a view of the frame
    assert astronaut.any()


def test_crop_resize_reads_the_frame_in_place_as_a_copy_of_the_box():
    """The crop is resized from a view of the frame (no copy): the same pixels as
    resizing a contiguous copy of the box, whatever the dtype, channels, interpolation
    and layout of the frame (a mirrored frame has a negative stride)."""
    rng = np.random.default_rng(11)
    flags = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
    for shape, dtype in [((240, 320, 3), np.uint8), ((240, 320), np.uint8), ((240, 320), np.float32),
                         ((240, 320, 2), np.uint16), ((240, 320), np.bool_)]:
        frame = rng.random(shape) < 0.5 if dtype == np.bool_ else (rng.random(shape) * 250).astype(dtype)
        for image in (frame, frame[:, ::-1]):
            for box, size in [((37, 21, 251, 230), 100), ((37, 21, 141, 111), 224), ((0, 0, 320, 240), 64)]:
                x0, y0, x1, y1 = box
                copy = np.ascontiguousarray(image[y0:y1, x0:x1])
                for name in (("nearest",) if dtype == np.bool_ else ("area", "linear", "nearest")):
                    got = crop_resize(image, box, size, interpolation=name)
                    want = cv2.resize(copy.view(np.uint8) if dtype == np.bool_ else copy, (size, size),
                                      interpolation=flags[name])
                    if dtype == np.bool_:
                        want = want.astype(bool)
                    np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"{shape} {dtype} {name}")
                    assert not np.may_share_memory(got, frame)


def test_crop_resize_masks_stay_binary():
    rng = np.random.default_rng(3)
    mask = (rng.random((90, 120)) > 0.6).astype(np.uint8) * 255
    for size, box in ((224, [10, 5, 90, 85]), (32, [0, 0, 90, 90]), (60, [10, 5, 40, 35])):
        nearest = crop_resize(mask, box, size, interpolation="nearest")
        assert nearest.shape == (size, size) and nearest.dtype == np.uint8
        assert set(np.unique(nearest)) <= {0, 255}
    # An integer upscale with "nearest" repeats pixels exactly.
    np.testing.assert_array_equal(
        crop_resize(mask, [10, 5, 40, 35], 90, interpolation="nearest"),
        np.kron(mask[5:35, 10:40], np.ones((3, 3), np.uint8)),
    )
    # Linear interpolation would invent in-between values: "nearest" matters.
    assert len(np.unique(crop_resize(mask, [10, 5, 90, 85], 224, interpolation="linear"))) > 2
    as_bool = mask > 0
    out = crop_resize(as_bool, [10, 5, 90, 85], 224)  # bool masks default to nearest
    assert out.dtype == bool and out.shape == (224, 224)
    np.testing.assert_array_equal(out, crop_resize(mask, [10, 5, 90, 85], 224, interpolation="nearest") > 0)
    with pytest.raises(ValueError, match="nearest"):
        crop_resize(as_bool, [10, 5, 90, 85], 224, interpolation="linear")


def test_crop_resize_other_dtypes_and_channels():
    rng = np.random.default_rng(4)
    single = rng.integers(0, 256, (50, 60, 1), dtype=np.uint8)
    assert crop_resize(single, [0, 0, 50, 50], 20).shape == (20, 20, 1)
    noise = rng.normal(size=(50, 60, 3)).astype(np.float32)
    out = crop_resize(noise, [5, 0, 55, 50], 25)
    assert out.dtype == np.float32 and out.shape == (25, 25, 3)
    reference = downscale_local_mean(noise[0:50, 5:55].astype(np.float64), (2, 2, 1))
    np.testing.assert_allclose(out, reference, atol=1e-5)


@pytest.mark.parametrize(
    "image, box, size, kwargs, match",
    [
        (np.zeros((10, 10, 3), np.int64), [0, 0, 5, 5], 4, {}, "dtype"),
        (np.zeros((10,), np.uint8), [0, 0, 5, 5], 4, {}, "shape"),
        (np.zeros((0, 10, 3), np.uint8), [0, 0, 5, 5], 4, {}, "empty"),
        ([[0, 1], [1, 0]], [0, 0, 1, 1], 4, {}, "numpy array"),
        (np.zeros((10, 10, 3), np.uint8), [0, 0, 11, 5], 4, {}, "outside"),
        (np.zeros((10, 10, 3), np.uint8), [5, 0, 5, 5], 4, {}, "empty"),
        (np.zeros((10, 10, 3), np.uint8), [-1, 0, 5, 5], 4, {}, "outside"),
        (np.zeros((10, 10, 3), np.uint8), [0.5, 0, 5, 5], 4, {}, "whole pixel"),
        (np.zeros((10, 10, 3), np.uint8), [0, 0, 5], 4, {}, "shape"),
        (np.zeros((10, 10, 3), np.uint8), [0, 0, 5, 5], 0, {}, "size"),
        (np.zeros((10, 10, 3), np.uint8), [0, 0, 5, 5], 2.5, {}, "size"),
        (np.zeros((10, 10, 3), np.uint8), [0, 0, 5, 5], 4, {"interpolation": "cubic"}, "interpolation"),
    ],
)
def test_crop_resize_rejects_bad_input(image, box, size, kwargs, match):
    with pytest.raises(ValueError, match=match):
        crop_resize(image, box, size, **kwargs)


def test_crop_pair_uses_the_original_box_for_all(astronaut, dlib_det):
    real = astronaut
    fake = real.copy()
    fake[100:150, 190:260] += 128  # a "manipulated" patch: every pixel off by 128 (mod 256)
    mask = np.zeros(real.shape[:2], np.uint8)
    mask[100:150, 190:260] = 255
    face = largest_face(dlib_det.detect(real))
    box = crop_box(face.box, real.shape, 1.3)
    real_crop, fake_crop, mask_crop = crop_pair(real, fake, box, 224, mask=mask)
    np.testing.assert_array_equal(real_crop, crop_resize(real, box, 224))
    np.testing.assert_array_equal(fake_crop, crop_resize(fake, box, 224))
    assert mask_crop.dtype == np.uint8 and set(np.unique(mask_crop)) == {0, 255}
    # The mask marks exactly where the crops differ, up to interpolation blur at the rim.
    differs = np.abs(real_crop.astype(int) - fake_crop.astype(int)).max(axis=2) > 60
    assert iou_masks(differs, mask_crop > 0) > 0.85
    assert crop_pair(real, fake, box, 64)[2] is None
    with pytest.raises(ValueError, match="differ in shape"):
        crop_pair(real, fake[:-1], box, 64)
    with pytest.raises(ValueError, match="mask"):
        crop_pair(real, fake, box, 64, mask=mask[:-1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        crop_pair(real.astype(np.float32), fake, box, 64)


def iou_masks(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("box, size", [((40, 30, 140, 130), 224), ((10, 20, 110, 140), 96), ((0, 0, 64, 64), 64)])
def test_points_to_crop_lands_on_the_resized_pixels(box, size):
    # Bright 3x3 dots in a frame; after crop_resize the brightest crop pixel
    # of each dot sits where points_to_crop maps the dot's centre.
    frame = np.zeros((200, 200, 3), np.uint8)
    pts = np.array([[60, 50], [100, 90], [x + 0.0 for x in (box[0] + 30, box[1] + 40)]])
    for x, y in pts.astype(int):
        frame[y - 1:y + 2, x - 1:x + 2] = 255
    crop = crop_resize(frame, box, size, interpolation="linear").astype(float).sum(axis=2)
    mapped = points_to_crop(pts, box, size)
    assert mapped.dtype == np.float32 and mapped.shape == (3, 2)
    sx, sy = size / (box[2] - box[0]), size / (box[3] - box[1])
    for (x, y), (cx, cy) in zip(pts, mapped):
        if not (box[0] + 2 <= x < box[2] - 2 and box[1] + 2 <= y < box[3] - 2):
            continue
        r = int(np.ceil(2 * max(sx, sy)))
        yy, xx = int(round(cy)), int(round(cx))
        win = crop[max(0, yy - r):yy + r + 1, max(0, xx - r):xx + r + 1]
        wy, wx = np.unravel_index(np.argmax(win), win.shape)
        # intensity-weighted centre of the dot in the crop
        ys, xs = np.mgrid[max(0, yy - r):yy + r + 1, max(0, xx - r):xx + r + 1]
        centre = (np.sum(xs * win) / win.sum(), np.sum(ys * win) / win.sum())
        assert abs(centre[0] - cx) < 0.35 and abs(centre[1] - cy) < 0.35, (centre, (cx, cy))
    # NaN (unknown) points stay NaN
    assert np.isnan(points_to_crop(np.full((68, 2), np.nan), box, size)).all()


def test_points_to_crop_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        points_to_crop(np.zeros((4, 3)), (0, 0, 10, 10), 10)
    with pytest.raises(ValueError, match="x1 > x0"):
        points_to_crop(np.zeros((4, 2)), (10, 0, 10, 10), 10)
    with pytest.raises(ValueError, match="size"):
        points_to_crop(np.zeros((4, 2)), (0, 0, 10, 10), 0)
