"""Checks that a fake's frames show its original's picture the same way up.

A fake and its original are compared pixel by pixel, so they must be the
same picture in the same orientation. A display matrix (rotation or flip
metadata) on only one video of a pair is applied to that video alone when
frames are read as displayed, so the two disagree: a 90 or 270 degree turn
of a non-square video changes the frame's aspect ratio and is caught by the
size check, but a 180 degree turn or a flip keeps the size and would give a
comparison map of two unrelated pictures. :func:`orientation_mismatch` finds
those by comparing small grey thumbnails of the two frames, and with them a
fake that is no copy of its original at all (paired with the wrong original:
a misnamed file, mixed downloads), whose comparison maps would be as wrong
(``mscc`` even marks nothing of such a pair).

The two thumbnails are compared by :func:`picture_difference`: the mean grey
difference of the fifth of the frame's textured patches that agrees best
(8 x 8 px patches of the 64 px thumbnail; flat ones, a plain wall, say
nothing), not of the whole frame. A forged face changes its
own pixels, and a close-up face (DFDC, Celeb-DF) can fill half the frame or
more: the whole-frame mean of a true pair whose forged face covers 30 % of
the frame with a strong change (a swap between people of very different skin
tone, a relit face) reached 26 grey levels, above the old 20-level limit, so
such pairs were skipped as "not its original's picture" (measured with
``benchmarks/pair_check_sizes.py``; the figures are at the thresholds below).

A fake is also compared with its original frame by frame *in time*: frame
``i`` of the fake against frame ``i`` of the original. A fake that lacks its
original's first frames (or has extra ones, or repeats or drops one on the
way) shows another moment at the same index, and every comparison map of
it would mark the motion between the two moments. :func:`time_mismatch`
finds such a fake: at a few sampled frames (:func:`alignment_checkpoints`),
the fake's frame is compared with the original's frames around it
(:func:`alignment_window`); when another of those matches clearly better
than the one at the same index, the fake is not aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

__all__ = ["THUMBNAIL_SIDE", "PATCH", "AGREEING_SHARE", "NOT_ITS_PICTURE_LEVEL", "NOT_ITS_PICTURE", "TURNED",
           "WRONG_PICTURE", "Mismatch", "Thumbnail",
           "thumbnail", "picture_difference", "picture_differences", "orientation_mismatch", "BAR_LEVEL", "BAR_ROWS",
           "bars_mismatch", "ALIGN_WINDOW", "ALIGN_COARSE", "ALIGN_CHECKS", "alignment_checkpoints",
           "alignment_window", "time_mismatch"]

#: Side of the grey thumbnails compared (pixels): small enough to ignore
#: compression noise and the forged face, large enough to see the scene.
THUMBNAIL_SIDE = 64

#: Side (thumbnail pixels) of the square patches :func:`picture_difference`
#: averages the difference over: 64 patches of 8 x 8 px on a 64 px thumbnail.
#: A patch of two unrelated pictures rarely agrees as a whole where single
#: pixels may (skin against skin of the same tone).
PATCH = 8

#: :func:`picture_difference` is the mean difference of the patches in this
#: best-agreeing share of the frame's textured patches (a quantile of the
#: patch means), so a forgery covering up to about the rest of them leaves it
#: unchanged.
AGREEING_SHARE = 0.2

#: A patch whose grey levels vary less than this (standard deviation, grey
#: levels) in both thumbnails is flat: a plain wall or sky agrees between any
#: two pictures of it, so flat patches are left out (when at least
#: :data:`MIN_TEXTURED` patches are not). Without this a flipped frame, or
#: another person in front of the same plain background, agreed on the
#: background (``benchmarks/pair_check_sizes.py``'s plain-background frames:
#: 10 of 180 flips and 0 of 80 wrong pairs were found; 167 and 52 with it;
#: 589437d's whole-frame mean found 172 and 12).
FLAT_STD = 3.0

#: Fewer textured patches than this: the whole frame is compared.
MIN_TEXTURED = 8

#: A turned or flipped copy must match at least this many times better than
#: the frame as it is. Measured with :func:`picture_difference` on
#: ``benchmarks/pair_check_sizes.py``'s 350 true portrait pairs with forged
#: faces covering 10-70 % of the frame: all 1050 turned or flipped copies are
#: found (the copy turned back is at least twice as close); none of the
#: pairs as they are is called turned.
BETTER_BY = 2.0

#: Below this difference (grey levels, :func:`picture_difference`) the frames
#: already agree: nothing is reported, whatever a symmetric or flat scene's
#: flips score. True pairs with forged faces up to 60 % of the frame: 0-5.9.
AGREE_LEVEL = 8.0

#: Above this difference (grey levels, :func:`picture_difference`), with no
#: turn or flip explaining it, the fake is not a copy of its original's
#: picture. Measured with ``benchmarks/pair_check_sizes.py`` (the ten bundled
#: portraits and mirror images framed in 640x480 so that a feathered ellipse
#: over the face covers 10-70 % of the frame, darkened to 40 %, brightened,
#: replaced by another face, flattened or inverted; JPEG quality 25):
#:
#: - true pairs: 0-1.1 with the forgery up to half the frame, 0-5.9 up to 60 %,
#:   0-9.8 at 70 % (inverted faces included, which no forgery does); the
#:   bundled sample's 48 true pairs (c23 and c40, frame 5) 0-1.0, its fakes
#:   against the other originals 23.6-61.3;
#: - a fake against another portrait framed alike (another person, or the same
#:   person in another photo), forged or not: 23.1 and more (1680 pairs);
#: - the same scene with the camera moved (5-20 % shift, 1.1-1.3 zoom): 4.1-48;
#:   327 of 420 score above this level, the rest (small moves) pass as true
#:   pairs. A wrong original that shares most of the frame (a static camera,
#:   the same studio) cannot be told from a forgery of the part that differs
#:   by this check.
#:
#: The whole-frame mean used before (limit 20) skipped 16 of 40 true pairs
#: with the forgery covering 30 % of the frame and 38 of 40 at 50 % (and 418
#: of the 420 moved-camera pairs).
NOT_ITS_PICTURE_LEVEL = 15.0

#: The words of :func:`orientation_mismatch`'s answer for a fake that is no
#: copy of its original's picture, after the checked video's name.
NOT_ITS_PICTURE = "does not show its original's picture"

#: :attr:`Mismatch.code` of a video that is its original's picture turned or flipped.
TURNED = "turned"
#: :attr:`Mismatch.code` of a video that does not show its original's picture at all.
WRONG_PICTURE = "wrong_picture"


@dataclass(frozen=True)
class Mismatch:
    """Why a checked video is not its original's picture the same way up.

    code : :data:`TURNED` or :data:`WRONG_PICTURE`, what callers decide on.
    message : the sentence a person reads (a manifest's skip reason).
    """

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Thumbnail:
    """A frame reduced to what the orientation check reads.

    grey : float32 (side, side), the frame's grey level (0-255) resized with
        area averaging. square : whether the frame itself is square.
    """

    grey: np.ndarray
    square: bool


def thumbnail(frame: np.ndarray, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """The :class:`Thumbnail` of one (H, W, 3) RGB or (H, W) grey uint8 frame.

    Lets a caller keep a few kilobytes of a frame it is about to drop and
    check the orientation later.
    """
    import cv2

    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        raise ValueError("frame must be a non-empty (H, W[, C]) array")
    if side < PATCH or side % PATCH:
        raise ValueError(f"side must be a positive multiple of {PATCH}, got {side}")
    grey = frame if frame.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    return Thumbnail(small, frame.shape[0] == frame.shape[1])


def picture_difference(a: np.ndarray, b: np.ndarray) -> float:
    """How far two grey thumbnails are from showing the same picture (grey levels).

    Parameters
    ----------
    a, b : ndarray float32 (side, side)
        :attr:`Thumbnail.grey` of two frames, values 0-255, ``side`` a
        multiple of :data:`PATCH`.

    Returns
    -------
    float
        The :data:`AGREEING_SHARE` quantile of the mean absolute difference
        over each ``PATCH`` x ``PATCH`` patch that is textured in either
        thumbnail (:data:`FLAT_STD`): 0 when at least that share of the
        frame's textured patches is identical, whatever the rest (the forged
        face) does.
    """
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] % PATCH or a.shape[1] % PATCH:
        raise ValueError(f"thumbnails must be the same (side, side) with side a multiple of {PATCH}: "
                         f"{a.shape} vs {b.shape}")
    return picture_differences([a], b)[0]


def picture_differences(originals, fake: np.ndarray) -> list:
    """:func:`picture_difference` of each of ``originals`` with ``fake``, computed together (its implementation).

    :func:`time_mismatch` compares one frame of a fake with ~20 frames of its
    original at each checkpoint; one call per pair spent most of its time in
    NumPy's per-call overhead (patch standard deviations recomputed for every
    pair, one quantile per pair). Here the patches of all the thumbnails are
    reduced in one stacked array (each row's mean and standard deviation along
    its own contiguous axis, the same sums as one thumbnail's) and the
    quantiles are taken once per group of rows that keep as many patches.

    Parameters
    ----------
    originals : sequence of ndarray float32 (side, side)
        Thumbnails (:attr:`Thumbnail.grey`) to compare with ``fake``.
    fake : ndarray float32 (side, side)
        One thumbnail, ``side`` a multiple of :data:`PATCH`.

    Returns
    -------
    list of float
        One difference per thumbnail of ``originals``, in order.
    """
    b = np.asarray(fake, np.float32)
    if b.ndim != 2 or b.shape[0] % PATCH or b.shape[1] % PATCH:
        raise ValueError(f"thumbnails must be (side, side) with side a multiple of {PATCH}: {b.shape}")
    if not len(originals):
        return []
    stack = np.stack([np.asarray(o, np.float32) for o in originals])  # ValueError: shapes differ
    if stack.shape[1:] != b.shape:
        raise ValueError(f"thumbnails must be the same (side, side): {stack.shape[1:]} vs {b.shape}")
    rows, cols = b.shape[0] // PATCH, b.shape[1] // PATCH
    pa = stack.reshape(len(stack), rows, PATCH, cols, PATCH).swapaxes(2, 3).reshape(
        len(stack), rows * cols, PATCH * PATCH)
    pb = b.reshape(rows, PATCH, cols, PATCH).swapaxes(1, 2).reshape(rows * cols, PATCH * PATCH)
    diff = np.subtract(pa, pb)
    np.abs(diff, out=diff)  # in place: one temporary of the stack's size, not two
    diff = diff.mean(axis=2)
    textured = (pa.std(axis=2) >= FLAT_STD) | (pb.std(axis=1) >= FLAT_STD)
    counts = textured.sum(axis=1)
    textured[counts < MIN_TEXTURED] = True  # too few textured patches: the whole frame
    counts = textured.sum(axis=1)
    out = np.empty(len(stack))
    for count in np.unique(counts):
        members = np.flatnonzero(counts == count)
        # boolean indexing keeps each row's patches in order, row after row
        kept = diff[members][textured[members]].reshape(len(members), count)
        out[members] = np.quantile(kept, AGREEING_SHARE, axis=1)
    return out.tolist()


def _candidates(thumb: np.ndarray, square: bool) -> dict:
    """Copies of the thumbnail turned back, keyed by how the frame is turned (each undoes its key)."""
    turned = {
        "rotated 180 degrees": thumb[::-1, ::-1],
        "flipped left-right": thumb[:, ::-1],
        "flipped upside down": thumb[::-1, :],
    }
    if square:  # a quarter turn keeps a square frame's size, so the size check cannot see it
        turned["rotated 90 degrees clockwise"] = np.rot90(thumb, 1)  # np.rot90 turns counter-clockwise
        turned["rotated 90 degrees counter-clockwise"] = np.rot90(thumb, 3)
        turned["transposed"] = thumb.T
        turned["anti-transposed"] = np.rot90(thumb, 2).T
    return turned


def orientation_mismatch(original: Union[np.ndarray, Thumbnail], fake: Union[np.ndarray, Thumbnail], *,
                         what: str = "fake") -> Optional[Mismatch]:
    """Why ``fake`` is not ``original``'s picture the same way up, or None when it is.

    Parameters
    ----------
    original, fake : ndarray or Thumbnail
        One frame of each video at the same index, (H, W, 3) RGB or (H, W)
        grey, uint8 in [0, 255], or their :func:`thumbnail` (same side). The
        two may differ in resolution (the same picture at another scale),
        not in content beyond a forged face (which may cover most of the
        frame's textured part: :func:`picture_difference`).
    what : str
        The name of the checked video in the message ("fake", "mask").

    Returns
    -------
    Mismatch or None
        Code :data:`TURNED`, ``"fake is rotated 180 degrees relative to its
        original …"``, when a turned or flipped copy of ``fake`` matches
        ``original`` at least :data:`BETTER_BY` times better than ``fake`` as
        it is (and the two do not already agree within :data:`AGREE_LEVEL`
        grey levels); code :data:`WRONG_PICTURE`, ``"fake does not show its
        original's picture …"``, when no such copy does and the two differ by
        more than :data:`NOT_ITS_PICTURE_LEVEL`; otherwise None.
    """
    a = original if isinstance(original, Thumbnail) else thumbnail(original)
    f = fake if isinstance(fake, Thumbnail) else thumbnail(fake)
    if a.grey.shape != f.grey.shape:
        raise ValueError(f"thumbnails differ in size: {a.grey.shape} vs {f.grey.shape}")
    as_is = picture_difference(a.grey, f.grey)
    if as_is <= AGREE_LEVEL:
        return None
    scores = {name: picture_difference(a.grey, turned) for name, turned in _candidates(f.grey, a.square).items()}
    best = min(scores, key=scores.get)
    if scores[best] * BETTER_BY > as_is:
        if as_is > NOT_ITS_PICTURE_LEVEL:
            return Mismatch(WRONG_PICTURE, f"{what} {NOT_ITS_PICTURE} (grey difference {as_is:.1f} over the "
                            f"best-agreeing fifth of {a.grey.shape[0]} px thumbnails, true pairs differ by a few "
                            "levels there); paired with the wrong original?")
        return None
    return Mismatch(TURNED, f"{what} is {best} relative to its original (grey difference {scores[best]:.1f} that way "
                    f"up, {as_is:.1f} as read); rotation or flip metadata on only one of the pair?")


#: A thumbnail row (column) at the frame's edge whose grey levels are all at
#: most this is part of a black bar (letterbox, pillarbox): compressed black
#: reads 0-20.
BAR_LEVEL = 24.0

#: A fake whose black bars are this many thumbnail rows (columns) deeper than
#: its original's, on both opposite edges, is letterboxed (pillarboxed): 2 of
#: 64 rows is 3 % of the frame.
BAR_ROWS = 2


def _bar_depth(grey: np.ndarray) -> tuple:
    """(top, bottom, left, right): how many edge rows / columns of a grey thumbnail are black bars."""
    def depth(lines) -> int:
        n = 0
        for line in lines:
            if line.max() > BAR_LEVEL:
                break
            n += 1
        return n

    return depth(grey), depth(grey[::-1]), depth(grey.T), depth(grey.T[::-1])


def bars_mismatch(original: Union[np.ndarray, Thumbnail], fake: Union[np.ndarray, Thumbnail], *,
                  what: str = "fake") -> Optional[str]:
    """Why ``fake`` has black bars its original lacks (its picture scaled into the same frame size), or None.

    A fake re-encoded with letterboxing (black bars at the top and bottom) or
    pillarboxing (left and right) at its original's frame size shows the
    picture smaller and moved: compared pixel by pixel, every frame pairs
    different places. The frame sizes agree, so the size check cannot see it,
    and a scene whose background agrees at another scale passed the picture
    check (session 12: a 48-frame synth pair, the fake scaled to 320x180
    between bars at 320x240, was written as ok).

    Parameters
    ----------
    original, fake : ndarray or Thumbnail
        One frame of each at the same index (as :func:`orientation_mismatch`).

    Returns
    -------
    str or None
        ``"fake is letterboxed (black bars at its top and bottom its original
        lacks) …"`` when both bars are :data:`BAR_ROWS` thumbnail rows deeper
        than the original's (pillarboxed likewise with columns); else None.
    """
    a = original if isinstance(original, Thumbnail) else thumbnail(original)
    f = fake if isinstance(fake, Thumbnail) else thumbnail(fake)
    if a.grey.shape != f.grey.shape:
        raise ValueError(f"thumbnails differ in size: {a.grey.shape} vs {f.grey.shape}")
    top, bottom, left, right = (x - y for x, y in zip(_bar_depth(f.grey), _bar_depth(a.grey)))
    rows = a.grey.shape[0]
    if min(top, bottom) >= BAR_ROWS and max(top, bottom) < rows // 2:
        kind, edges, share = "letterboxed", "top and bottom", (top + bottom) / rows
    elif min(left, right) >= BAR_ROWS and max(left, right) < rows // 2:
        kind, edges, share = "pillarboxed", "left and right", (left + right) / rows
    else:
        return None
    return (f"{what} is {kind} (black bars at its {edges}, about {share:.0%} of the frame, that its original "
            "lacks): its picture is scaled into the frame, so frames compared pixel by pixel show different "
            "places; re-encoded with padding?")


#: Frames on either side of a checkpoint that :func:`time_mismatch` compares
#: the fake's frame with, every one of them. ``ffmask annotate`` decodes these
#: frames of every original that has fakes (as thumbnails only).
ALIGN_WINDOW = 5

#: Farther offsets (frames, either side of a checkpoint) that
#: :func:`time_mismatch` compares the fake's frame with, coarsely: a fake
#: shifted by more than :data:`ALIGN_WINDOW` frames shows a moment nearer one
#: of these than the same index (motion grows with the time between two
#: frames), so it is found up to about 60 frames; the shift reported is then
#: the nearest offset, not the exact one. Measured on ``ffmask synth`` pairs
#: (seed 111, 48 frames, c23, a fake re-encoded with PyAV missing its first N
#: frames or with N extra ones): with the window alone a shift of 6 or 10 was
#: found but reported as 5 (once in the wrong direction) and 25 extra frames
#: were written as ok; with these offsets all are found (session 12,
#: ``docs/reliability_audit.md``).
ALIGN_COARSE = (10, 15, 20, 25, 30, 40, 50, 60)

#: Sampled frames checked per fake (the first, the last and ones evenly in
#: between), so that a shift starting mid-video (a frame repeated or dropped
#: on the way) is seen too.
ALIGN_CHECKS = 3

#: Another frame of the original must match the fake's frame at least this
#: many times better than the original's frame at the same index, and by at
#: least :data:`ALIGN_MARGIN` grey levels (:func:`picture_difference`). On
#: ``ffmask synth`` pairs (seed 111, c23, a fake re-encoded with PyAV): the
#: fake as it is matches its own index best (1.0-1.2 there, 1.6-2.8 at the
#: next best frame); a fake missing its first 3 frames, with 3 extra ones,
#: or repeating one frame: 2.0-6.9 at the same index, 1.0-1.3 at the shifted
#: one (1.9 to 6 times better). A still scene, where all frames match alike,
#: is never called shifted (nor can a shift be seen there).
ALIGN_BETTER_BY = 1.5
ALIGN_MARGIN = 0.5


def alignment_checkpoints(indices) -> list:
    """The sampled frame indices :func:`time_mismatch` checks: up to :data:`ALIGN_CHECKS`, evenly spread."""
    indices = sorted(int(i) for i in indices)
    if len(indices) <= ALIGN_CHECKS:
        return indices
    picks = np.rint(np.linspace(0, len(indices) - 1, ALIGN_CHECKS)).astype(int)
    return sorted({indices[p] for p in picks})


def _offsets() -> list:
    """Offsets from a checkpoint :func:`time_mismatch` compares: the window, then the coarse ones."""
    near = range(-ALIGN_WINDOW, ALIGN_WINDOW + 1)
    return [*near, *(d for far in ALIGN_COARSE for d in (-far, far) if far > ALIGN_WINDOW)]


def alignment_window(checkpoints, n_frames: int) -> set:
    """Indices of the original's frames :func:`time_mismatch` needs around each checkpoint.

    Every frame within :data:`ALIGN_WINDOW` of a checkpoint, and the frames
    at the :data:`ALIGN_COARSE` offsets from it, inside ``[0, n_frames)``.
    """
    out = set()
    for k in checkpoints:
        out.update(k + d for d in _offsets() if 0 <= k + d < int(n_frames))
    return out


def time_mismatch(original: dict, fake: dict, *, what: str = "fake") -> Optional[str]:
    """Why ``fake``'s frames are not its original's at the same indices, or None when they are.

    Parameters
    ----------
    original : {int: Thumbnail}
        Thumbnails of the original's frames around each checkpoint
        (:func:`alignment_window`), by frame index.
    fake : {int: Thumbnail}
        Thumbnails of the fake's frames at the checkpoints
        (:func:`alignment_checkpoints`); a checkpoint the fake lacks (a
        shorter fake) is not checked.
    what : str
        The name of the checked video in the message.

    Returns
    -------
    str or None
        ``"fake is not aligned in time with its original: its frame 10 shows the
        original's frame 13 …"`` for the first checkpoint where another frame
        of the original matches the fake's :data:`ALIGN_BETTER_BY` times and
        :data:`ALIGN_MARGIN` grey levels better than the same index; None
        when none does (or nothing could be compared).
    """
    offsets = set(_offsets())
    for k in sorted(fake):
        if k not in original:
            continue
        f = fake[k].grey
        near = [j for j, t in original.items() if j - k in offsets and t.grey.shape == f.shape]
        scores = dict(zip(near, picture_differences([original[j].grey for j in near], f)))
        best = min(scores, key=lambda j: (scores[j], abs(j - k)))
        same = scores[k]
        if best != k and same > scores[best] * ALIGN_BETTER_BY and same - scores[best] >= ALIGN_MARGIN:
            shift = best - k
            about = "" if abs(shift) < ALIGN_WINDOW else "about "  # the window's edge or a coarse offset
            return (f"{what} is not aligned in time with its original: its frame {k} shows {about}the original's "
                    f"frame {best} ({about}{abs(shift)} frame(s) {'later' if shift > 0 else 'earlier'}; grey difference "
                    f"{scores[best]:.1f} there, {same:.1f} at the same index), so frames compared by index show "
                    "different moments; frames missing at the start, or repeated or dropped on the way?")
    return None
