"""Segmentation metrics: a hand-computed case, an independent reference, the bootstrap over images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import sparse

from visor.errors import ConfigError, InvalidInput
from visor.evaluate.bootstrap import BootstrapConfig
from visor.evaluate.segmentation import (
    SegmentationOutcomes,
    confusion_matrix,
    confusion_metrics,
    segmentation_report,
)

NAMES = ("bg", "cat", "dog", "bird")


def test_hand_computed_case() -> None:
    gt = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 0, 2]], np.uint8)  # the 2 on the ignored pixel does not count
    cm = confusion_matrix(gt, pred, 4)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    r = segmentation_report(cm, NAMES)
    # bg: TP 1, FP 1, FN 1 -> 1/3; cat: TP 2, FP 1 -> 2/3; dog: TP 0, FN 1 -> 0; bird absent -> nan
    assert r.iou["bg"] == pytest.approx(1 / 3) and r.iou["cat"] == pytest.approx(2 / 3) and r.iou["dog"] == 0.0
    assert math.isnan(r.iou["bird"]) and math.isnan(r.dice["bird"])
    assert r.dice == pytest.approx({"bg": 0.5, "cat": 0.8, "dog": 0.0, "bird": math.nan}, nan_ok=True)
    assert r.miou == pytest.approx(1 / 3)
    assert r.mean_dice == pytest.approx(1.3 / 3)
    assert r.pixel_accuracy == pytest.approx(3 / 5)
    assert r.mean_accuracy == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert r.num_pixels == 5 and r.present == ("bg", "cat", "dog")
    assert r.support == {"bg": 2, "cat": 2, "dog": 1, "bird": 0}
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))  # strict JSON: nan written as null
    assert d["per_class"]["bird"]["iou"] is None and d["classes_in_mean"] == ["bg", "cat", "dog"]
    assert "left out of miou" in d["note"] and d["confusion"] == cm.tolist()
    table = r.format_table()
    assert "mIoU: 0.3333" in table and "1 classes absent" in table


def test_only_predicted_class_scores_zero_and_counts() -> None:
    r = segmentation_report(confusion_matrix(np.zeros((2, 2), np.uint8), np.array([[0, 0], [0, 1]]), 2), ("a", "b"))
    assert r.iou == {"a": 0.75, "b": 0.0} and r.miou == pytest.approx(0.375)


def _reference(gts, preds, c, ignore=255):
    """Independent of the bincount code: per-class boolean masks, summed over images."""
    tp, fp, fn = np.zeros(c), np.zeros(c), np.zeros(c)
    correct = total = 0
    for g, p in zip(gts, preds, strict=True):
        valid = g != ignore
        correct += int(np.count_nonzero((g == p) & valid))
        total += int(np.count_nonzero(valid))
        for k in range(c):
            tp[k] += np.count_nonzero((g == k) & (p == k) & valid)
            fp[k] += np.count_nonzero((g != k) & (p == k) & valid)
            fn[k] += np.count_nonzero((g == k) & (p != k) & valid)
    union = tp + fp + fn
    iou = [tp[k] / union[k] if union[k] else math.nan for k in range(c)]
    dice = [2 * tp[k] / (2 * tp[k] + fp[k] + fn[k]) if union[k] else math.nan for k in range(c)]
    return iou, dice, float(np.nanmean(iou)), float(np.nanmean(dice)), correct / total


def test_matches_independent_reference_and_scipy() -> None:
    rng = np.random.default_rng(7)
    c = 6
    gts, preds = [], []
    for h, w in [(31, 47), (64, 20), (9, 9), (50, 50)]:
        g = rng.integers(0, c - 1, (h, w)).astype(np.uint8)  # class 5 never true ...
        g[rng.random((h, w)) < 0.1] = 255
        p = np.where(rng.random((h, w)) < 0.6, g, rng.integers(0, c - 2, (h, w))).astype(np.uint8)
        p[p == 255] = 0  # ... and never predicted: absent
        gts.append(g)
        preds.append(p)
    total = sum(confusion_matrix(g, p, c) for g, p in zip(gts, preds, strict=True))
    # scipy.sparse as a second counter of (true, predicted) pairs
    g_all = np.concatenate([g.ravel() for g in gts]).astype(int)
    p_all = np.concatenate([p.ravel() for p in preds]).astype(int)
    keep = g_all != 255
    ref_cm = sparse.coo_matrix((np.ones(keep.sum()), (g_all[keep], p_all[keep])), shape=(c, c)).toarray()
    np.testing.assert_array_equal(total, ref_cm)
    names = tuple(f"c{i}" for i in range(c))
    r = segmentation_report(total, names)
    iou, dice, miou, mdice, acc = _reference(gts, preds, c)
    np.testing.assert_allclose([r.iou[n] for n in names], iou, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose([r.dice[n] for n in names], dice, rtol=1e-12, equal_nan=True)
    assert math.isnan(r.iou["c5"]) and not math.isnan(r.iou["c4"])
    assert r.miou == pytest.approx(miou, rel=1e-12) and r.mean_dice == pytest.approx(mdice, rel=1e-12)
    assert r.pixel_accuracy == pytest.approx(acc, rel=1e-12)
    # a stack of masks of one shape gives the same counts as image by image
    np.testing.assert_array_equal(confusion_matrix(np.stack([gts[3], gts[3]]), np.stack([preds[3], preds[3]]), c),
                                  2 * confusion_matrix(gts[3], preds[3], c))


def test_bad_inputs_are_named() -> None:
    g = np.array([[0, 7, 9]], np.uint8)
    with pytest.raises(InvalidInput, match=r"ground truth holds values outside the 3 classes \[0, 2\]: 7, 9"):
        confusion_matrix(g, np.zeros_like(g), 3)
    with pytest.raises(InvalidInput, match=r"prediction holds values outside .*: 255"):
        confusion_matrix(np.zeros((1, 2), np.uint8), np.array([[0, 255]], np.uint8), 3)
    with pytest.raises(InvalidInput, match="differ in shape"):
        confusion_matrix(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), 3)
    with pytest.raises(InvalidInput, match="integer class ids"):
        confusion_matrix(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), 3)
    with pytest.raises(InvalidInput, match="ignore_index 1 is one of the 3 class ids"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), 3, ignore_index=1)
    with pytest.raises(InvalidInput, match=r"must be \(2, 2\)"):
        segmentation_report(np.zeros((3, 3)), ("a", "b"))
    # ignore_index=None counts every pixel; a CamVid-style ignore index 11 for 11 classes works
    assert confusion_matrix(np.array([0, 11]), np.array([0, 0]), 11, ignore_index=11).sum() == 1
    assert confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2, ignore_index=None).sum() == 2


def test_all_ignored_is_nan_not_a_crash() -> None:
    r = segmentation_report(confusion_matrix(np.full((3, 3), 255, np.uint8), np.zeros((3, 3), np.uint8), 2), "ab")
    assert math.isnan(r.miou) and math.isnan(r.pixel_accuracy) and r.num_pixels == 0
    assert r.to_dict()["miou"] is None


def _outcomes(n: int, seed: int = 0) -> tuple[SegmentationOutcomes, list, list]:
    rng = np.random.default_rng(seed)
    gts = [rng.integers(0, 3, (8, 8)).astype(np.uint8) for _ in range(n)]
    preds = [np.where(rng.random((8, 8)) < 0.3 + 0.6 * (i % 2), g, rng.integers(0, 3, (8, 8))).astype(np.uint8)
             for i, g in enumerate(gts)]
    return SegmentationOutcomes.from_masks(list(zip(gts, preds, strict=True)), ("a", "b", "c")), gts, preds


def test_resampled_confusions_equal_explicit_sums() -> None:
    out, gts, preds = _outcomes(12)
    idx = np.array([[0, 0, 3, 11], [5, 6, 7, 5], [2, 2, 2, 2]])
    got = out.resampled(idx)
    for b, row in enumerate(idx):
        expected = sum(confusion_matrix(gts[i], preds[i], 3) for i in row)
        np.testing.assert_array_equal(got[b], expected)
    report = out.report()
    assert out.point("miou") == pytest.approx(report.miou) and report.num_images == 12
    np.testing.assert_allclose(confusion_metrics(got)["miou"],
                               [segmentation_report(g, "abc").miou for g in got.astype(np.int64)])


def test_bootstrap_intervals_seeded_and_sensible() -> None:
    out, _, _ = _outcomes(40)
    config = BootstrapConfig(resamples=300, seed=3)
    ci = out.intervals(config)
    assert ci == out.intervals(config)  # same seed, same intervals
    assert ci != out.intervals(BootstrapConfig(resamples=300, seed=4))
    report = out.report()
    for name, point in [("miou", report.miou), ("pixel_accuracy", report.pixel_accuracy),
                        ("mean_dice", report.mean_dice)]:
        lo, hi = ci[name]
        assert lo < point < hi and hi - lo < 0.3
    # images alternate between 30% and 90% kept: the spread is real, the interval is not a point
    assert ci["pixel_accuracy"][1] - ci["pixel_accuracy"][0] > 0.05
    assert out.interval("miou", config) == out.interval("miou", config)
    per_class = out.class_intervals(config)
    assert set(per_class) == {"a", "b", "c"}
    assert all(v["iou"][0] < report.iou[k] < v["iou"][1] for k, v in per_class.items())
    assert not out.too_small and _outcomes(29)[0].too_small
    with pytest.raises(ConfigError, match="Did you mean 'miou'"):
        out.metric("mio", np.arange(3)[None, :])
