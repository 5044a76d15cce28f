"""Controls that tell FoCus maps that read the face from a position prior.

A map generator can score well against true masks without looking at the
face: synthetic (and real) forgeries sit in similar places of an aligned
crop, so one fixed template already overlaps them. :func:`focus_controls`
measures the maps next to the baselines that expose this:

- ``pixel_auc``: mean per-face pixel AUC of a'_fus (the map ``annotate
  folder`` writes for a face of unknown label) against the face's true mask;
- ``mean_map_auc``: the same for ONE fixed map, the mean a'_fus over the
  fake faces, used for every face (a pure position prior);
- ``grey_map_auc``: the same for the model's map of a constant grey image
  (what the model draws with no face at all);
- ``shuffled_auc``: each face's map scored against another video's mask;
  ``own_minus_shuffled`` is the per-face evidence the maps carry;
- ``rgb_share``: fraction of tokens Complementary Learning takes from the RGB
  branch (eval mode, all faces; the Sobel branch wins the rest);
- ``frame_auc``: frame AUC of the fused classifier ŷ_fus, real vs fake faces.

:data:`GOALS` are the targets of the issue that asked for these controls;
:meth:`FocusControls.goals` says which are met.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from ffmask.metrics import roc_auc
from ffmask.train.focus import map_pixel_auc

# Grey level of the "no face" control image.
GREY = 128

# name -> (description, test on a FocusControls)
GOALS = {
    "pixel_auc >= 0.90": lambda c: c.pixel_auc >= 0.90,
    "pixel_auc >= mean map + 0.05": lambda c: c.pixel_auc >= c.mean_map_auc + 0.05,
    "pixel_auc >= grey-image map + 0.05": lambda c: c.pixel_auc >= c.grey_map_auc + 0.05,
    "own - shuffled mask AUC >= 0.10": lambda c: c.own_minus_shuffled >= 0.10,
    "each modality wins >= 10% of tokens": lambda c: 0.10 <= c.rgb_share <= 0.90,
    "frame AUC of y_fus >= 0.95": lambda c: c.frame_auc >= 0.95,
}


@dataclass
class FocusControls:
    """Figures of :func:`focus_controls` (AUCs in [0, 1], NaN when undefined)."""

    pixel_auc: float
    mean_map_auc: float
    grey_map_auc: float
    shuffled_auc: float
    own_minus_shuffled: float
    rgb_share: float
    rgb_share_fake: float
    frame_auc: float
    n_fake: int
    n_real: int
    n_scored: int

    def goals(self) -> dict[str, bool]:
        """Each goal of :data:`GOALS` -> met (NaN figures are not met)."""
        return {name: bool(test(self)) for name, test in GOALS.items()}

    def to_dict(self) -> dict:
        return asdict(self)


def shuffled_partners(groups: Sequence[str]) -> np.ndarray:
    """For each face, the index of a face from another group (video), deterministically.

    Faces are ordered by group and each is paired with the face half the list
    away (a rotation), then any pair that still shares a group is moved to
    the next face of a different group. Returns int64 (N,). ValueError when
    fewer than two groups exist.
    """
    groups = np.asarray([str(g) for g in groups], dtype=object)
    n = groups.size
    if len(set(groups.tolist())) < 2:
        raise ValueError("shuffled-mask control needs faces of at least two videos")
    order = np.argsort(groups, kind="stable")
    partner = np.empty(n, np.int64)
    partner[order] = order[np.roll(np.arange(n), n // 2)]
    for i in range(n):
        j = int(partner[i])
        while groups[j] == groups[i]:
            j = (j + 1) % n
        partner[i] = j
    return partner


def focus_controls(annotator, fakes: np.ndarray, masks: np.ndarray, reals: np.ndarray,
                   groups: Optional[Sequence[str]] = None, batch_size: int = 64) -> FocusControls:
    """Score a FocusAnnotator's maps against true masks and the position-prior controls.

    Parameters
    ----------
    annotator : :class:`ffmask.models.focus.FocusAnnotator`.
    fakes : uint8 (N, S, S, 3) fake face crops.
    masks : bool (N, S, S) their true masks.
    reals : uint8 (M, S, S, 3) real face crops (for the frame AUC and token shares).
    groups : (N,) video of each fake (the shuffled control pairs faces of
        different videos); None: every face its own group.
    batch_size : faces per forward pass.

    Returns
    -------
    FocusControls (see the module docstring).
    """
    fakes, reals = np.asarray(fakes), np.asarray(reals)
    masks = np.asarray(masks).astype(bool)
    if fakes.ndim != 4 or masks.shape != fakes.shape[:3]:
        raise ValueError(f"fakes (N, S, S, 3) and masks (N, S, S) must match, got {fakes.shape} and {masks.shape}")
    if reals.ndim != 4 or reals.shape[1:] != fakes.shape[1:]:
        raise ValueError(f"reals must be (M, {fakes.shape[1]}, {fakes.shape[2]}, 3), got {reals.shape}")
    if len(fakes) < 2 or len(reals) < 1:
        raise ValueError(f"need at least 2 fake and 1 real face, got {len(fakes)} and {len(reals)}")
    groups = [str(i) for i in range(len(fakes))] if groups is None else list(groups)
    if len(groups) != len(fakes):
        raise ValueError(f"{len(groups)} groups for {len(fakes)} fakes")

    unknown = np.full(len(fakes), -1)
    maps, fake_probs = annotator(fakes, unknown, batch_size=batch_size)
    _, real_probs = annotator(reals, np.full(len(reals), -1), batch_size=batch_size)
    grey = np.full((1,) + fakes.shape[1:], GREY, np.uint8)
    grey_map = annotator(grey, np.array([-1]))[0][0]
    mean_map = maps.mean(axis=0)

    scored = np.array([m.any() and not m.all() for m in masks])
    pixel, n_scored = map_pixel_auc(maps, masks)
    mean_auc, _ = map_pixel_auc(np.broadcast_to(mean_map, maps.shape), masks)
    grey_auc, _ = map_pixel_auc(np.broadcast_to(grey_map, maps.shape), masks)
    partner = shuffled_partners(groups)
    own = [roc_auc(masks[i].ravel(), maps[i].ravel()) for i in np.flatnonzero(scored & scored[partner])]
    other = [roc_auc(masks[partner[i]].ravel(), maps[i].ravel()) for i in np.flatnonzero(scored & scored[partner])]
    own_auc = float(np.mean(own)) if own else math.nan
    shuffled = float(np.mean(other)) if other else math.nan

    share_fake = annotator.token_shares(fakes, batch_size=batch_size)
    share_real = annotator.token_shares(reals, batch_size=batch_size)
    labels = np.r_[np.ones(len(fakes)), np.zeros(len(reals))].astype(np.int64)
    return FocusControls(
        pixel_auc=pixel,
        mean_map_auc=mean_auc,
        grey_map_auc=grey_auc,
        shuffled_auc=shuffled,
        own_minus_shuffled=own_auc - shuffled,
        rgb_share=float(np.r_[share_fake, share_real].mean()),
        rgb_share_fake=float(share_fake.mean()),
        frame_auc=roc_auc(labels, np.r_[fake_probs, real_probs]),
        n_fake=int(len(fakes)),
        n_real=int(len(reals)),
        n_scored=int(n_scored),
    )


def faces_for_controls(samples) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(fakes, masks, reals, groups) from :func:`ffmask.fidelity.collect_faces` samples.

    Each original frame is used once as a real face, however many fakes were
    made from it (key: target video, compression, frame).
    """
    if not samples:
        raise ValueError("no faces")
    fakes = np.stack([s.fake for s in samples])
    masks = np.stack([s.truth for s in samples])
    reals, seen = [], set()
    for s in samples:
        key = (s.video_id.rsplit("/", 1)[-1].split("_")[0], s.compression, s.frame_index)
        if key not in seen:
            seen.add(key)
            reals.append(s.real)
    groups = [s.video_id for s in samples]
    return fakes, masks, np.stack(reals), groups


def controls_table(rows: dict[str, FocusControls]) -> list[list[str]]:
    """Rows ``[figure, value per column]`` for printing several FocusControls side by side."""
    names = list(rows)
    out = [["figure"] + names]
    for field_name in ("pixel_auc", "mean_map_auc", "grey_map_auc", "shuffled_auc", "own_minus_shuffled",
                       "rgb_share", "rgb_share_fake", "frame_auc", "n_fake", "n_real", "n_scored"):
        vals = [getattr(rows[n], field_name) for n in names]
        out.append([field_name] + [f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals])
    for goal in GOALS:
        out.append([goal] + ["met" if rows[n].goals()[goal] else "NOT met" for n in names])
    return out
