"""Tiny forgery shards for the evaluator tests: photos as 'identities', a blended ellipse as the forgery.

Fakes of one or several manipulations (cycled over the frames, so every
shard holds each), the forged ellipse drawn anew for every frame, and
optionally the real noise residual ``noise``
(:func:`ffmask.targets.noise.noise_map`, σ 5 as for c23) of every face.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffmask.shards.writer import FaceRecord, ShardWriter


def write_shards(directory, photos, *, frames=4, size=64, seed=0, manipulations=("Blend",), noise=True):
    """One shard per photo: a real 'video' of jittered crops and one fake video per manipulation.

    Maps: ``official`` (true mask), ``ssim`` (continuous, 0.8 x the feathered
    mask) and, with ``noise``, ``noise`` (3-channel residual). Returns the paths.
    """
    import skimage.data

    from ffmask.targets.noise import noise_map

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    kinds = {"official": "mask", "ssim": "continuous"}
    if noise:
        kinds["noise"] = "noise"
    paths = []
    for photo_name in photos:
        photo = getattr(skimage.data, photo_name)()
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        photo = photo[..., :3]
        h, w = photo.shape[:2]
        side = min(h, w) // 2
        y0, x0 = int(rng.integers(0, h - side - 8)), int(rng.integers(0, w - side - 8))
        stripes = (14.0 * (-1.0) ** yy)[..., None].astype(np.float32)
        path = directory / f"{photo_name}.h5"
        with ShardWriter(path, size=size, maps=kinds, config={"test": True}) as wr:
            for f in range(frames):
                dy, dx = rng.integers(0, 8, 2)
                crop = photo[y0 + dy:y0 + dy + side, x0 + dx:x0 + dx + side]
                real = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
                (cy, cx), (ry, rx) = rng.uniform(0.35, 0.65, 2) * size, rng.uniform(0.2, 0.3, 2) * size
                region = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
                alpha = cv2.GaussianBlur(region, (0, 0), 1.5)[..., None]
                manipulation = manipulations[f % len(manipulations)]
                fake = alpha * (cv2.GaussianBlur(real, (0, 0), 1.0) * np.float32((1.1, 0.95, 0.9)) + stripes) \
                    + (1 - alpha) * real
                for label, img in ((0, real), (1, fake)):
                    image = np.clip(img, 0, 255).astype(np.uint8)
                    maps = {"official": region > 0.5 if label else np.zeros((size, size), bool),
                            "ssim": alpha[..., 0] * 0.8 if label else np.zeros((size, size), np.float32)}
                    if noise:
                        maps["noise"] = noise_map(image, sigma=5.0)
                    wr.append(FaceRecord(
                        image=image, maps=maps, label=label,
                        video_id=photo_name if label == 0 else f"{photo_name}_{manipulation}",
                        original_id=photo_name, manipulation=manipulation if label else "original",
                        compression="c23", split="", frame_index=f, box=np.array([0, 0, size, size])))
        paths.append(path)
    return paths
