"""ffmask.metrics against hand-made cases and independent brute-force computations."""

import itertools
import math

import numpy as np
import pytest

from ffmask import metrics as M


# ---------------------------------------------------------------- independent references


def brute_auc(labels, scores):
    """P(random fake scores above random real), ties one half: an explicit pair count."""
    pos = [s for l, s in zip(labels, scores) if l == 1]
    neg = [s for l, s in zip(labels, scores) if l == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def brute_rates(labels, scores):
    """(FPR, FNR) of the rule 'fake if score >= t' for t = +inf and every distinct score, descending."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    out = []
    for t in [math.inf] + sorted(set(scores.tolist()), reverse=True):
        called = scores >= t
        fp = np.sum(called & (labels == 0))
        fn = np.sum(~called & (labels == 1))
        out.append((fp / np.sum(labels == 0), fn / np.sum(labels == 1)))
    return out


def brute_ap(labels, scores):
    """Average precision for distinct scores: mean precision at the rank of each positive."""
    order = np.argsort(-np.asarray(scores, dtype=float))
    labels = np.asarray(labels)[order]
    hits, total = 0, 0.0
    for rank, lab in enumerate(labels, start=1):
        if lab:
            hits += 1
            total += hits / rank
    return total / labels.sum()


# ---------------------------------------------------------------- frame level


def test_perfect_inverted_and_tied_scores():
    y = [0, 0, 1, 1]
    perfect = M.frame_metrics(y, [0.1, 0.2, 0.8, 0.9])
    assert perfect["acc"] == 1.0 and perfect["auc"] == 1.0 and perfect["ap"] == 1.0 and perfect["eer"] == 0.0
    assert (perfect["n"], perfect["n_real"], perfect["n_fake"]) == (4, 2, 2)

    inverted = M.frame_metrics(y, [0.9, 0.8, 0.2, 0.1])
    assert inverted["acc"] == 0.0 and inverted["auc"] == 0.0 and inverted["eer"] == 1.0
    assert inverted["ap"] == pytest.approx(brute_ap(y, [0.9, 0.8, 0.2, 0.1]))  # (1/3 + 2/4) / 2

    tied = M.frame_metrics(y, [0.5, 0.5, 0.5, 0.5])
    assert tied["auc"] == 0.5 and tied["eer"] == 0.5 and tied["ap"] == 0.5
    assert tied["acc"] == 0.5  # 0.5 is not > 0.5: every frame is called real


def test_threshold_is_strict():
    assert M.accuracy([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6]) == 0.5
    assert M.accuracy([1], [0.5]) == 0.0 and M.accuracy([1], [0.5], threshold=0.4) == 1.0


def test_random_scores_agree_with_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(4, 40))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.random(n), 1)  # many ties
        assert M.roc_auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)
        rates = brute_rates(y, s)
        i = int(np.argmin([abs(fnr - fpr) for fpr, fnr in rates]))
        assert M.equal_error_rate(y, s) == pytest.approx(0.5 * sum(rates[i]), abs=1e-12)
        distinct = rng.permutation(n) / n
        assert M.average_precision(y, distinct) == pytest.approx(brute_ap(y, distinct), abs=1e-12)


def test_eer_equals_fpr_where_the_rates_cross():
    # 4 reals, 4 fakes; at threshold 0.6 one real is above (FPR 1/4) and one fake below (FNR 1/4).
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.7, 0.4, 0.6, 0.8, 0.9]
    assert M.equal_error_rate(y, s) == 0.25


def test_one_class_is_nan_not_an_error():
    for fn in (M.roc_auc, M.average_precision, M.equal_error_rate):
        assert math.isnan(fn([1, 1, 1], [0.1, 0.5, 0.9]))
        assert math.isnan(fn([0, 0], [0.1, 0.5]))
    assert math.isnan(M.accuracy([], []))
    m = M.frame_metrics([1, 1], [0.9, 0.2])
    assert m["acc"] == 0.5 and math.isnan(m["auc"])


@pytest.mark.parametrize("labels, scores, message", [
    ([0, 2], [0.1, 0.2], "only 0 and 1"),
    ([0, 1], [0.1, 0.2, 0.3], "shape"),
    ([0, 1], [0.1, np.nan], "NaN"),
    ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ([0.0, 1.0], [0.1, 0.2], "integers"),
    ([0, 1], ["a", "b"], "numbers"),
])
def test_bad_frame_inputs(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        M.frame_metrics(labels, scores)


# ---------------------------------------------------------------- video level


def test_video_auc_means_frames_and_handles_one_frame_videos():
    # video a (real): 0.2, 0.4 -> 0.3; b (fake, one frame): 0.35; c (fake): 0.9, 0.1 -> 0.5; d (real, one frame): 0.6
    labels = [0, 0, 1, 1, 1, 0]
    scores = [0.2, 0.4, 0.35, 0.9, 0.1, 0.6]
    ids = ["a", "a", "b", "c", "c", "d"]
    vl, vs, vid = M.video_scores(labels, scores, ids)
    assert vid == ["a", "b", "c", "d"]
    assert vl.tolist() == [False, True, True, False]
    assert vs == pytest.approx([0.3, 0.35, 0.5, 0.6])
    # fakes {0.35, 0.5} vs reals {0.3, 0.6}: pairs won 1 + 0 + 1 + 0 of 4
    assert M.video_auc(labels, scores, ids) == 0.5
    assert M.video_auc(labels, scores, ids) == brute_auc(vl.astype(int), vs)
    # frame AUC differs: it is not a per-video quantity
    assert M.roc_auc(labels, scores) == pytest.approx(brute_auc(labels, scores))


def test_video_ids_must_be_consistent():
    with pytest.raises(ValueError, match="both real and fake"):
        M.video_auc([0, 1], [0.1, 0.9], ["v", "v"])
    with pytest.raises(ValueError, match="one video id per frame"):
        M.video_auc([0, 1], [0.1, 0.9], ["v"])
    assert math.isnan(M.video_auc([1], [0.9], ["only"]))


# ---------------------------------------------------------------- pixel level


def test_mask_scores_on_a_drawn_case():
    pred = np.zeros((6, 6), bool)
    truth = np.zeros((6, 6), bool)
    pred[0:2, 0:3] = True    # 6 pixels
    truth[1:3, 1:3] = True   # 4 pixels; overlap row 1, cols 1..2 = 2 pixels
    s = M.mask_scores(pred, truth)
    assert s == pytest.approx({"iou": 2 / 8, "f1": 4 / 10, "precision": 2 / 6, "recall": 2 / 4})
    assert M.pixel_iou(pred, truth) == s["iou"] and M.pixel_f1(pred, truth) == s["f1"]
    # pristine pixels: 36 - 8 union = 28 shared of 36 - 2 overlap... by counting: ~pred & ~truth
    both_clean = np.sum(~pred & ~truth)
    assert M.mean_iou(pred, truth) == pytest.approx(0.5 * (2 / 8 + both_clean / np.sum(~pred | ~truth)))


def test_empty_masks():
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    assert M.mask_scores(empty, empty) == {"iou": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    s = M.mask_scores(empty, full)
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["iou"] == 0.0
    with pytest.raises(ValueError, match="bool"):
        M.mask_scores(empty.astype(np.float32), empty)
    with pytest.raises(ValueError, match="shape"):
        M.mask_scores(empty, empty[:3])


def test_pixel_metrics_stack_and_pooled_auc():
    rng = np.random.default_rng(0)
    truths = rng.random((3, 8, 8)) > 0.6
    preds = np.clip(truths * 0.7 + rng.random((3, 8, 8)) * 0.4, 0, 1).astype(np.float32)
    out = M.pixel_metrics(preds, truths)
    per_face = [M.mask_scores(p > 0.5, t) for p, t in zip(preds, truths)]
    assert out["iou"] == pytest.approx(np.mean([s["iou"] for s in per_face]))
    assert out["recall"] == pytest.approx(np.mean([s["recall"] for s in per_face]))
    assert out["auc"] == pytest.approx(brute_auc(truths.ravel().astype(int), preds.ravel().astype(float)))
    assert out["n"] == 3
    # a perfect map
    perfect = M.pixel_metrics(truths.astype(np.float32), truths)
    assert perfect["iou"] == perfect["f1"] == perfect["miou"] == perfect["auc"] == 1.0
    assert math.isnan(M.pixel_metrics(np.zeros((0, 4, 4)), np.zeros((0, 4, 4), bool))["iou"])
    with pytest.raises(ValueError, match="stacks"):
        M.pixel_metrics(preds[0], truths[0])


def test_pixel_auc_subsamples_deterministically():
    truths = [np.arange(100).reshape(10, 10) % 3 == 0]  # stride 10 still sees both classes
    maps = [truths[0].astype(float)]
    assert M.pixel_auc(truths, maps, max_pixels=10) == 1.0
    assert math.isnan(M.pixel_auc([], []))
    with pytest.raises(ValueError, match="shape"):
        M.pixel_auc(truths, [np.zeros((3, 3))])


def test_old_import_path_still_works():
    from ffmask.train.metrics import roc_auc

    assert roc_auc is M.roc_auc
