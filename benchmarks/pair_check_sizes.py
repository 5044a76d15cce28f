"""How the wrong-original check scores true pairs with big forged faces and wrong pairs.

``ffmask.pair_checks`` skips a fake whose thumbnail differs too much from its
original's. A true pair whose forged face fills a large share of the frame
(close-ups: DFDC and Celeb-DF faces can fill half the frame) with a strong
change (a swap between people of very different skin tone, a relit face)
must not be skipped; a fake paired with another original must be.

True pairs: each bundled portrait (and its mirror image) framed so that an
ellipse over the face covers ``share`` of a 640x480 frame; inside the ellipse
(feathered) the face is darkened to 40 %, brightened (0.6 x + 110), replaced
by another portrait's face, flattened to its mean, or inverted (no real
forgery does that: the worst case). Both frames JPEG-compressed at quality 25
(about c40's loss) independently.

Wrong pairs: (a) another portrait framed alike (another person, or the same
person in another photo: obama / obama2 / obama3), as it is, darkened or
brightened (not swapped: that would paste the original's face in); (b) the same
portrait with the camera moved (shifted 5-20 % of the width or zoomed 1.1-1.3):
the same scene at another moment.

Flat backgrounds: each portrait's head and shoulders pasted on a plain grey
640x480 frame, off-centre (4 placements); true pairs (darkened, brightened,
flattened face), the same fakes flipped or turned (metadata on one side), and
another portrait at the same place (wrong pairs).

Prints, for the whole-frame mean of the thumbnails' absolute grey difference
(the check before session 10, limit 20) and for
:func:`ffmask.pair_checks.picture_difference` (the check now), the range over
true pairs by share and over wrong pairs, and how many pairs each check
reports (the check before is emulated here: :func:`old_check`). No randomness beyond a fixed
seed; runs in a few seconds::

    PYTHONPATH=$PWD python benchmarks/pair_check_sizes.py
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from ffmask import pair_checks
from ffmask.synth.portraits import load_portrait, portrait_names

W, H = 640, 480
SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def framed(p, share: float, shift=(0.0, 0.0), zoom: float = 1.0):
    """(frame, ellipse mask float32) with the face ellipse covering ``share`` of a W x H frame."""
    x0, y0, x1, y1 = p.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0)
    bw = (x1 - x0) * 1.5  # ellipse over the face: 1.5 x the dlib box wide, 1.9 x high
    bh = (y1 - y0) * 1.9
    ell_area = np.pi / 4 * bw * bh
    scale = np.sqrt(share * W * H / ell_area) * zoom  # output pixels per portrait pixel
    big = cv2.copyMakeBorder(p.image, 2000, 2000, 2000, 2000, cv2.BORDER_REFLECT)
    cx, cy = cx + 2000 + shift[0] * W / scale, cy + 2000 + shift[1] * H / scale
    m = np.float32([[scale, 0, W / 2 - scale * cx], [0, scale, H / 2 - scale * cy]])
    frame = cv2.warpAffine(big, m, (W, H), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    mask = np.zeros((H, W), np.float32)
    cv2.ellipse(mask, (W // 2, H // 2), (int(bw * scale / 2), int(bh * scale / 2)), 0, 0, 360, 1.0, -1)
    sigma = max(2.0, 0.05 * bw * scale)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return frame, mask


def forge(frame, mask, op: str, other=None):
    f = frame.astype(np.float32)
    if op == "dark":
        g = f * 0.4
    elif op == "bright":
        g = f * 0.6 + 110
    elif op == "swap":
        g = other.astype(np.float32)
    elif op == "flat":
        g = np.broadcast_to((f * mask[..., None]).sum((0, 1)) / mask.sum(), f.shape)
    elif op == "invert":
        g = 255 - f
    else:
        raise ValueError(op)
    out = f * (1 - mask[..., None]) + g * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg(frame, q=25):
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def old_check(ta, tf):
    """589437d's ``orientation_mismatch`` on two grey thumbnails: "turned", "wrong" or None."""
    as_is = float(np.abs(ta - tf).mean())
    if as_is <= 8.0:
        return None
    best = min(float(np.abs(ta - t).mean()) for t in (tf[::-1, ::-1], tf[:, ::-1], tf[::-1, :]))
    if best * 2.0 > as_is:
        return "wrong" if as_is > 20.0 else None
    return "turned"


def new_check(a, b):
    """This ffmask's verdict: "turned", "wrong" or None."""
    v = pair_checks.orientation_mismatch(a, b)
    return None if v is None else ("wrong" if v.code == pair_checks.WRONG_PICTURE else "turned")


def flat_frame(p, x_center: float, width: float, bg: int = 110):
    """(frame, face mask): the portrait's head and shoulders on a plain grey frame, ``width`` of it wide."""
    x0, y0, x1, y1 = p.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = 2.2 * (x1 - x0)
    a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2.4))
    crop = p.image[b:int(b + side * 1.1), a:int(a + side)]
    w = int(width * W)
    h = min(H, int(w * crop.shape[0] / crop.shape[1]))
    crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    frame = np.full((H, W, 3), bg, np.uint8)
    x, y = int(x_center * W - w / 2), H - h
    frame[y:y + h, x:x + w] = crop
    mask = np.zeros((H, W), np.float32)
    fx, fy = x + (cx - a) / side * w, y + (cy - b) / (side * 1.1) * h
    r = (x1 - x0) / side * w
    cv2.ellipse(mask, (int(fx), int(fy)), (int(0.75 * r), int(0.95 * r)), 0, 0, 360, 1.0, -1)
    return frame, cv2.GaussianBlur(mask, (0, 0), 3)


def flat_backgrounds(portraits):
    counts = {k: [0, 0] for k in ("true pairs reported", "turned fakes found as turned", "wrong pairs reported")}
    n = {"true pairs reported": 0, "turned fakes found as turned": 0, "wrong pairs reported": 0}
    for x_center, width in ((0.3, 0.35), (0.7, 0.45), (0.25, 0.3), (0.5, 0.4)):
        frames = [flat_frame(p, x_center, width) for p in portraits]
        for frame, mask in frames:
            original = jpeg(frame)
            for op in ("dark", "bright", "flat"):
                fake = jpeg(forge(frame, mask, op))
                for i, check in enumerate((old_check, new_check)):
                    a, f = (pair_checks.thumbnail(original).grey, pair_checks.thumbnail(fake).grey) if i == 0 \
                        else (original, fake)
                    counts["true pairs reported"][i] += check(a, f) is not None
                    for t in (f[:, ::-1], f[::-1, ::-1], f[::-1]):
                        counts["turned fakes found as turned"][i] += check(a, np.ascontiguousarray(t)) == "turned"
                n["true pairs reported"] += 1
                n["turned fakes found as turned"] += 3
        for i, j in itertools.permutations(range(len(frames)), 2):
            a, b = jpeg(frames[i][0]), jpeg(frames[j][0])
            counts["wrong pairs reported"][0] += old_check(pair_checks.thumbnail(a).grey,
                                                           pair_checks.thumbnail(b).grey) is not None
            counts["wrong pairs reported"][1] += new_check(a, b) is not None
            n["wrong pairs reported"] += 1
    print("flat backgrounds (before / now):")
    for k, (old, new) in counts.items():
        print(f"  {k}: {old} / {new} of {n[k]}")


def stats(a, b):
    ta, tb = pair_checks.thumbnail(a).grey, pair_checks.thumbnail(b).grey
    d = np.abs(ta - tb).ravel()
    out = {"mean": float(d.mean()), "check": pair_checks.picture_difference(ta, tb)}
    out["verdict"] = pair_checks.orientation_mismatch(a, b)
    out["old"] = old_check(ta, tb)
    return out


def main():
    portraits = [load_portrait(n, m) for n in portrait_names() for m in (False, True)]
    ops = ("dark", "bright", "swap", "flat", "invert")
    true_rows, wrong_rows, moved_rows = [], [], []
    for share in SHARES:
        frames = [framed(p, share) for p in portraits]
        for i, (frame, mask) in enumerate(frames):
            for op in ops:
                other = frames[(i + 2) % len(frames)][0]
                fake = forge(frame, mask, op, other)
                true_rows.append((share, op, portraits[i].key, stats(jpeg(frame), jpeg(fake))))
        for i, j in itertools.permutations(range(len(portraits)), 2):
            if portraits[i].name == portraits[j].name:
                continue  # a photo and its mirror image: the orientation check's case
            fi, mi = frames[i]
            fj, mj = frames[j]
            for op in ("none", "dark", "bright"):
                fake = fj if op == "none" else forge(fj, mj, op)
                wrong_rows.append((share, op, f"{portraits[i].key}/{portraits[j].key}", stats(jpeg(fi), jpeg(fake))))
        for i, p in enumerate(portraits):
            fi, _ = frames[i]
            for shift, zoom in (((0.05, 0), 1.0), ((0.1, 0), 1.0), ((0.2, 0.05), 1.0), ((0, 0), 1.1),
                                ((0, 0), 1.3), ((0.1, 0.1), 1.2)):
                moved, mm = framed(p, share, shift, zoom)
                moved_rows.append((share, f"{shift} x{zoom}", p.key, stats(jpeg(fi), jpeg(moved))))

    flat_backgrounds([load_portrait(n) for n in portrait_names()])
    keys = ("mean", "check")
    print(f"{'':26s}" + "".join(f"{k:>14s}" for k in keys))
    for share in SHARES:
        rows = [r[3] for r in true_rows if r[0] == share]
        rng = "".join(f"{min(r[k] for r in rows):6.1f}-{max(r[k] for r in rows):5.1f}  " for k in keys)
        skipped = sum(r["verdict"] is not None for r in rows)
        old = sum(r["old"] is not None for r in rows)
        print(f"true share {share:.1f} (max)   {rng} flagged {skipped}/{len(rows)} (before: {old})")
    for share in SHARES:
        rows = [r[3] for r in true_rows if r[0] == share and r[1] != "invert"]
        rng = "".join(f"{min(r[k] for r in rows):6.1f}-{max(r[k] for r in rows):5.1f}  " for k in keys)
        skipped = sum(r["verdict"] is not None for r in rows)
        old = sum(r["old"] is not None for r in rows)
        print(f"true {share:.1f} no invert     {rng} flagged {skipped}/{len(rows)} (before: {old})")
    for name, data in (("wrong (other photo)", wrong_rows), ("same scene, moved", moved_rows)):
        for share in SHARES:
            rows = [r[3] for r in data if r[0] == share]
            rng = "".join(f"{min(r[k] for r in rows):6.1f}-{max(r[k] for r in rows):5.1f}  " for k in keys)
            flagged = sum(r["verdict"] is not None for r in rows)
            old = sum(r["old"] is not None for r in rows)
            print(f"{name[:19]:19s} {share:.1f}  {rng} flagged {flagged}/{len(rows)} (before: {old})")
    rows = sorted(wrong_rows, key=lambda r: r[3]["check"])[:5]
    print("lowest wrong pairs by check:", [(r[0], r[1], r[2], round(r[3]["check"], 1)) for r in rows])
    rows = sorted(moved_rows, key=lambda r: r[3]["check"])[:8]
    print("lowest moved pairs by check:", [(r[0], r[1], r[2], round(r[3]["check"], 1)) for r in rows])


if __name__ == "__main__":
    main()
