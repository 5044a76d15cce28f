"""The fast paths of ``hull``'s selector against plain definitions: the relabelled tree walk
(:func:`ffmask.targets.hull_select.score_candidates`) against a node-by-node walk of the stored trees, and
the stacked shape operators (:func:`ffmask.targets.hull_candidates._stack_shapes`) against the same
operators run map by map; on the golden pairs' real evidence (tests/data/hull_golden.npz)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffmask.targets import hull as H
from ffmask.targets import hull_candidates as hc
from ffmask.targets import hull_features as hf
from ffmask.targets import hull_select
from ffmask.targets.mscc import mscc_mask

GOLDEN = Path(__file__).parent / "data" / "hull_golden.npz"


@pytest.fixture(scope="module")
def golden_pairs():
    with np.load(GOLDEN) as fh:
        g = {k: fh[k] for k in fh.files}
    out = []
    for i in range(3):
        real, fake = (cv2.imdecode(g[f"{i}_{n}"], cv2.IMREAD_COLOR) for n in ("real", "fake"))
        out.append((real, fake, g[f"{i}_landmarks"]))
    return out


def _walk_node_by_node(arrays: dict, x: np.ndarray) -> np.ndarray:
    """Every row down every stored tree, one node at a time (left where x <= threshold; NaN goes right); the
    leaves' values (T, K) summed over the trees as the scorer sums them."""
    t = arrays["feature"].shape[0]
    values = np.empty((t, len(x)))
    for r, row in enumerate(x.astype(np.float64)):
        for i in range(t):
            node = 0
            while not arrays["leaf"][i, node]:
                go_left = row[arrays["feature"][i, node]] <= arrays["threshold"][i, node]
                node = arrays["left"][i, node] if go_left else arrays["right"][i, node]
            values[i, r] = arrays["value"][i, node]
    return float(arrays["baseline"].reshape(-1)[0]) + values.sum(0)


def test_tree_walk_reaches_the_stored_trees_leaves(golden_pairs):
    with np.load(hull_select.WEIGHTS, allow_pickle=False) as fh:
        arrays = {k: fh[k] for k in fh.files if k != "meta"}
    real, fake, pts = golden_pairs[0]
    ev = hc.pair_evidence(real, fake, pts)
    masks, info = hc.candidate_masks(ev, mscc_mask(real, fake))
    x = hf.candidate_features(ev, masks, info)
    # rows sitting exactly on split thresholds (x <= threshold goes left), and NaN (goes right)
    split = ~arrays["leaf"].astype(bool)
    on = x[:8].astype(np.float64)
    for j in range(len(on)):
        i = j * 31 % arrays["feature"].shape[0]
        on[j, arrays["feature"][i, 0]] = arrays["threshold"][i, 0]
    on[0, :] = np.nan
    on[1, ::2] = np.nan
    rows = np.concatenate([x.astype(np.float64), on])
    got = hull_select.score_candidates(hull_select.load_scorer(), rows)
    np.testing.assert_array_equal(got, _walk_node_by_node(arrays, rows))
    assert split.sum() > 1000 and len(np.unique(got)) > len(x) // 2


def test_tree_walk_on_small_hand_made_trees():
    # tree 0 a single leaf; tree 1: root splits f0 at 0.5, its right child f1 at -1; tree 2 stored out of order
    # (children before parents, one unreachable padding node)
    feature = np.array([[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 2, 0]])
    threshold = np.array([[0, 0, 0, 0, 0], [0.5, 0, -1, 0, 0], [0, 0, 0, 2.0, 0]])
    left = np.array([[0, 0, 0, 0, 0], [1, 0, 3, 0, 0], [0, 0, 0, 2, 0]])
    right = np.array([[0, 0, 0, 0, 0], [2, 0, 4, 0, 0], [0, 0, 0, 1, 0]])
    leaf = np.array([[1, 1, 1, 1, 1], [0, 1, 0, 1, 1], [1, 1, 1, 0, 1]], np.uint8)
    value = np.array([[0.25, 0, 0, 0, 0], [0, 1.0, 0, 2.0, 3.0], [9.0, 10.0, 20.0, 0, 0]])
    # tree 2's root must be node 0: swap its nodes 0 and 3 so the stored root is the split
    for a in (feature, threshold, leaf, value):
        a[2, [0, 3]] = a[2, [3, 0]]
    left[2], right[2] = [2, 0, 0, 0, 0], [1, 0, 0, 0, 0]
    arrays = {"feature": feature, "threshold": threshold, "left": left, "right": right, "leaf": leaf,
              "value": value, "baseline": np.array([0.5])}
    x = np.array([[0.5, -1.0, 2.0], [0.6, -1.0, 2.5], [0.6, -0.9, 1.0], [np.nan, np.nan, np.nan]])
    got = hull_select.score_candidates(hull_select.as_model(arrays), x)
    np.testing.assert_array_equal(got, [0.5 + 0.25 + 1.0 + 20.0, 0.5 + 0.25 + 2.0 + 10.0,
                                        0.5 + 0.25 + 3.0 + 20.0, 0.5 + 0.25 + 3.0 + 10.0])
    np.testing.assert_array_equal(got, _walk_node_by_node(arrays, x))
    single = {k: v[:1] for k, v in arrays.items() if k != "baseline"} | {"baseline": np.array([0.0])}
    np.testing.assert_array_equal(hull_select.score_candidates(hull_select.as_model(single), x), np.full(4, 0.25))


def test_scorer_whose_children_loop_is_refused(tmp_path):
    with np.load(hull_select.WEIGHTS, allow_pickle=False) as fh:
        arrays = {k: fh[k] for k in fh.files}
    i = int(np.flatnonzero(~arrays["leaf"][5].astype(bool))[3])
    arrays["left"][5, i] = 0  # back to the root
    bad = tmp_path / "loop.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="loop.npz: not a tree scorer: a node is reached twice"):
        hull_select.load_scorer(bad)


def _shapes_one_map(binary: np.ndarray, face8: np.ndarray, side: int, min_px: float) -> dict:
    """The shape operators on one map with OpenCV's own borders, component by component (the definition)."""
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    areas = np.bincount(labels.reshape(-1), minlength=n)
    keep = [lab for lab in range(1, n) if areas[lab] >= min_px]
    if not keep:
        return {}
    kept = np.isin(labels, keep).astype(np.uint8)
    raw = kept
    kernel = H._disk(hc.CLOSE * side)
    if kernel is not None:
        raw = cv2.morphologyEx(kept, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    contours, _ = cv2.findContours(raw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(raw)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    out = {"raw": filled & face8}
    comp, largest, every = (np.zeros_like(kept) for _ in range(3))
    for lab in keep:
        H._fill_hull(comp, (labels == lab).astype(np.uint8))
    H._fill_hull(largest, (labels == keep[int(np.argmax(areas[keep]))]).astype(np.uint8))
    H._fill_hull(every, kept)
    out.update(component=comp & face8, largest=largest & face8, all=every & face8)
    kernel = H._disk(hc.GROW * side)
    if kernel is not None:
        out["grown"] = cv2.dilate(out["component"], kernel) & face8
        out["shrunk"] = cv2.erode(out["component"], kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        out["grown_largest"] = cv2.dilate(out["largest"], kernel) & face8
    return out


@pytest.mark.parametrize("size,whole", [(104, False), (64, False), (57, False), (57, True), (104, True)])
def test_stacked_shapes_are_the_shapes_of_each_map_alone(golden_pairs, size, whole):
    """Every thresholded map's shapes from one stack equal the operators run on that map alone with
    OpenCV's borders, for odd and even working heights (the labelling pairs rows), maps whose components sit
    in others' holes, and (``whole``: the face is the whole crop) maps that touch the top and bottom rows."""
    real, fake, pts = golden_pairs[1]
    real, fake = (cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in (real, fake))
    ev = hc.pair_evidence(real, fake, pts * size / 104)
    h, w = ev.d.shape
    side = min(h, w)
    g = max([1] + [int(round(f * side)) for f in (hc.OPEN, hc.CLOSE, hc.GROW)])
    g += (h + g) % 2
    face8 = np.ones((h, w), np.uint8) if whole else ev.face.view(np.uint8)
    maps = [((ev.d > t).view(np.uint8) & face8) for _, _, t in hc.thresholds(ev)]
    ring = np.zeros((h, w), np.uint8)  # a component inside another one's hole
    cy, cx = h // 2, w // 2
    cv2.circle(ring, (cx, cy), side // 4, 1, thickness=max(2, side // 20))
    cv2.circle(ring, (cx, cy), side // 12, 1, thickness=-1)
    edges = np.zeros((h, w), np.uint8)  # blobs on the top and bottom rows, close to a neighbour's across a gap
    edges[:3, 5:w // 2] = 1
    edges[h - 2:, w // 3:] = 1
    edges[h - 6:h - 4, w // 3:w // 2] = 1
    maps += [ring & face8, edges & face8, edges[::-1].copy() & face8]
    stack = np.zeros((len(maps), h + g, w), np.uint8)
    for i, m in enumerate(maps):
        stack[i, :h] = m
    min_px = hc.MIN_AREA * h * w
    together = hc._stack_shapes(stack, h, face8, side, min_px)
    seen = set()
    for i, m in enumerate(maps):
        alone = _shapes_one_map(m, face8, side, min_px)
        assert list(together[i]) == list(alone)
        for name in alone:
            np.testing.assert_array_equal(together[i][name], alone[name], err_msg=f"map {i} {name}")
        seen |= set(alone)
    assert seen == set(hc.SHAPES)
    assert together[-3]["component"].sum() > 0
