"""Face detection speed on 640x480 frames: dlib HOG and MTCNN (CPU).

Frames: skimage's astronaut (a real face, ~88 px wide) placed at 20
different offsets, alternately mirrored, in a 640x480 canvas. Each detector
configuration is warmed up on every frame once (model loading and oneDNN
kernel setup for each input size are one-off costs per worker process), then
timed; the figure is the median over repeats of (time for all frames) /
frames. "faces" counts frames where a face was found.

Run: python benchmarks/bench_faces.py [--repeats 3]
The annotate pipeline budget: one detection on an original serves ~5 faces
(the original + 4 fakes), 2 processes, >= 40 faces/s end to end, so detection
+ landmarks must stay well under ~40 ms a frame on one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from skimage import data

import ffmask  # noqa: F401  (torchvision shim before facenet-pytorch)
from ffmask.faces import crop_box, crop_resize, get_detector, largest_face


def make_frames(n: int = 20) -> list[np.ndarray]:
    astronaut = data.astronaut()[:480]
    frames = []
    for i, x in enumerate(np.linspace(0, 128, n).astype(int)):
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, x:x + 512] = astronaut[:, ::-1] if i % 2 else astronaut
        frames.append(frame)
    return frames


def time_per_frame(fn, frames, repeats: int) -> tuple[float, int]:
    """Median ms per frame of ``fn(frames) -> list[list[Face]]`` and frames with a face."""
    found = sum(bool(faces) for faces in fn(frames))  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(frames)
        runs.append((time.perf_counter() - start) * 1e3 / len(frames))
    return statistics.median(runs), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    frames = make_frames()
    n = len(frames)
    default_threads = torch.get_num_threads()
    print(f"frames: {n} x 640x480 RGB (astronaut, face ~88 px); repeats: {args.repeats}; "
          f"cpu cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print(f"{'detector':<52} {'ms/frame':>9} {'faces':>7}")

    def row(label, fn, frames=frames):
        ms, found = time_per_frame(fn, frames, args.repeats)
        print(f"{label:<52} {ms:9.1f} {found:>4}/{len(frames)}", flush=True)

    for max_side in (640, 320):
        for landmarks in (True, False):
            det = get_detector("dlib", landmarks=landmarks, max_side=max_side)
            row(f"dlib upsample=0 max_side={max_side} landmarks={landmarks}",
                lambda fs, det=det: [det.detect(f) for f in fs])
    det = get_detector("dlib", landmarks=True, max_side=320, upsample=1)
    row("dlib upsample=1 max_side=320 landmarks=True", lambda fs: [det.detect(f) for f in fs])

    # One torch thread is what each of 2 worker processes on 2 cores gets.
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        det = get_detector("mtcnn", device="cpu", landmarks=True, max_side=640)
        row(f"mtcnn cpu threads={threads} single frame landmarks=True",
            lambda fs: [det.detect(f) for f in fs])
        row(f"mtcnn cpu threads={threads} batch of {n} landmarks=True", det.detect_batch)
    torch.set_num_threads(1)
    det = get_detector("mtcnn", device="cpu", landmarks=False, max_side=640)
    row("mtcnn cpu threads=1 single frame landmarks=False", lambda fs: [det.detect(f) for f in fs])
    torch.set_num_threads(default_threads)
    if torch.cuda.is_available():
        det = get_detector("mtcnn", device="cuda", landmarks=True, max_side=640)
        row(f"mtcnn cuda batch of {n} landmarks=True", det.detect_batch)

    det = get_detector("dlib")
    faces = [largest_face(det.detect(f)) for f in frames]

    def crop_all(fs):
        for f, face in zip(fs, faces):
            crop_resize(f, crop_box(face.box, f.shape, 1.3), 224)
        return [[face] for face in faces]

    row("crop_box + crop_resize to 224 (per face)", crop_all)


if __name__ == "__main__":
    main()
