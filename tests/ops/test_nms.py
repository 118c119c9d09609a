"""Box IoU and NMS: exact small cases, a brute-force reference, class awareness, determinism, torch."""

from __future__ import annotations

import numpy as np
import pytest

from visor.ops import batched_nms, box_area, box_iou, nms


def test_box_iou_exact_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.0])
    np.testing.assert_array_equal(iou[1], [0, 0, 0, 0])  # empty boxes: 0, not NaN
    np.testing.assert_array_equal(box_area(np.array([[0, 0, 2, 3], [5, 5, 4, 4]])), [6, 0])


def test_nms_keeps_the_best_and_drops_overlaps_above_the_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # IoU(0,1) = 90/110 = 0.82, IoU(0,2) = 1/3, IoU(1,2) = 60/140 = 0.43
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 2, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.3), [0, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.9), [0, 1, 2, 3])
    # An IoU equal to the threshold is kept (suppression needs more than the threshold).
    np.testing.assert_array_equal(nms(boxes[[0, 2]], scores[[0, 2]], 1 / 3), [0, 1])


def test_nms_orders_by_score_and_breaks_ties_by_index():
    boxes = np.array([[0, 0, 1, 1], [10, 10, 11, 11], [20, 20, 21, 21], [0, 0, 1, 1]], np.float32)
    scores = np.array([0.5, 0.9, 0.5, 0.5], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [1, 0, 2])  # box 3 duplicates box 0


def test_empty_inputs():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5).shape == (0,)
    with pytest.raises(ValueError):
        nms(np.zeros((2, 4)), np.zeros(3), 0.5)


def _reference_nms(boxes, scores, classes, thr):
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:  # kept unless a kept box of its class overlaps it by more than thr
        rivals = [k for k in keep if classes[k] == classes[i]]
        if not rivals or (box_iou(boxes[i], boxes[rivals]) <= thr).all():
            keep.append(i)
    return keep


@pytest.mark.parametrize(("seed", "n"), [(0, 200), (1, 200), (2, 200), (3, 200), (4, 200), (5, 700)])
def test_batched_nms_matches_a_brute_force_reference(seed, n):
    """(700 boxes: across nms's blocks of 256.)"""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, n).round(2).astype(np.float32)  # rounding makes ties
    classes = rng.integers(0, 3, n)
    got = batched_nms(boxes, scores, classes, 0.45)
    assert got.tolist() == _reference_nms(boxes, scores, classes, 0.45)
    agnostic = nms(boxes, scores, 0.45)
    assert agnostic.tolist() == _reference_nms(boxes, scores, np.zeros(n, int), 0.45)


def test_batched_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5), [0, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0])


def test_torch_tensors_give_the_same_indices():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 100, (100, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (100, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 100).round(2).astype(np.float32)
    classes = rng.integers(0, 4, 100)
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
    kept = nms(tb, ts, 0.5)
    assert isinstance(kept, torch.Tensor) and kept.dtype == torch.int64
    assert kept.tolist() == nms(boxes, scores, 0.5).tolist()
    assert batched_nms(tb, ts, tc, 0.5).tolist() == batched_nms(boxes, scores, classes, 0.5).tolist()
    assert nms(tb[:0], ts[:0], 0.5).numel() == 0
