"""Hand-made detection cases with exact expected values.

As in pycocotools, precision is tp / (tp + fp + eps), so a "perfect" 1.0 is 1 - 2e-16: the
comparisons allow 1e-12.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from visor.errors import InvalidInput
from visor.evaluate.detection import DetectionReport, ResampledAP50, coco_box_iou, evaluate_detections
from visor.types.detections import Detections

BIG = 100.0  # 100x100 boxes: "large" (area > 96^2)
EXACT = 1e-12


def approx(value):
    return pytest.approx(value, abs=EXACT)


def boxes(*xyxy, classes=None, scores=None, **data) -> Detections:
    arr = np.array(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(arr)
    return Detections(
        arr,
        np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64),
        np.zeros(n, np.int64) if classes is None else np.asarray(classes),
        {k: np.asarray(v) for k, v in data.items()},
    )


def square(x: float, y: float = 0.0, size: float = BIG) -> list[float]:
    return [x, y, x + size, y + size]


def test_coco_box_iou():
    iou = coco_box_iou([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], [[0, 0, 10, 10]])
    np.testing.assert_allclose(iou[:, 0], [1.0, 50 / 150, 0.0])
    # crowd: intersection over the detection's area alone
    crowd = coco_box_iou([[0, 0, 10, 10], [5, 5, 25, 25]], [[0, 0, 100, 100]], iscrowd=[True])
    np.testing.assert_allclose(crowd[:, 0], [1.0, 1.0])
    assert coco_box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_perfect_predictions():
    gt = [boxes(square(0), square(200), classes=[0, 1]), boxes(square(50), classes=[1])]
    pred = [boxes(square(0), square(200), classes=[0, 1], scores=[0.9, 0.8]), boxes(square(50), classes=[1])]
    r = evaluate_detections(gt, pred, ["cat", "dog"])
    assert isinstance(r, DetectionReport)
    # max_dets apply per image and class: one dog per image, so AR1 is 1 too
    np.testing.assert_allclose(r.stats(), [1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1, 1], rtol=0, atol=EXACT)
    assert r.per_class_ap == approx({"cat": 1.0, "dog": 1.0})
    assert r.per_class_ap50 == approx({"cat": 1.0, "dog": 1.0})
    assert r.support == {"cat": 1, "dog": 2}
    assert r.best_f1 == {"threshold": 0.800000011920929, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    np.testing.assert_array_equal(r.confusion, [[1, 0, 0], [0, 2, 0], [0, 0, 0]])
    recall, precision = r.pr_curves["dog"]
    np.testing.assert_array_equal(recall, np.linspace(0, 1, 101))
    np.testing.assert_allclose(precision, np.ones(101), rtol=0, atol=EXACT)


def test_ar1_counts_only_the_top_detection_per_image():
    # dog: two boxes in one image, so one detection finds at most half of them
    gt = [boxes(square(0), square(200), classes=[1, 1])]
    pred = [boxes(square(0), square(200), classes=[1, 1], scores=[0.9, 0.8])]
    r = evaluate_detections(gt, pred, ["cat", "dog"])
    assert (r.ar1, r.ar10, r.ar100) == (0.5, 1.0, 1.0)
    assert r.ap == approx(1.0)
    assert "cat" not in r.per_class_ap  # no ground truth: left out, not 0


def test_false_positive_ranked_above_true_positive():
    gt = [boxes(square(0))]
    pred = [boxes(square(500), square(0), scores=[0.9, 0.8])]
    r = evaluate_detections(gt, pred, ["cat"])
    # ranked FP, TP: recall [0, 1], precision [0, 1/2]; the envelope is 1/2 at every recall point
    assert r.ap == pytest.approx(0.5, abs=EXACT)
    assert r.ap50 == pytest.approx(0.5, abs=EXACT)
    assert r.ar100 == 1.0
    assert r.ar1 == 0.0  # the single best detection is the false positive


def test_interpolated_precision_hand_computed():
    # two boxes, ranked TP (0.9), FP (0.8), TP (0.7): recall .5 .5 1, precision 1 .5 2/3
    gt = [boxes(square(0), square(200))]
    pred = [boxes(square(0), square(500), square(200), scores=[0.9, 0.8, 0.7])]
    r = evaluate_detections(gt, pred, ["cat"])
    # 51 recall points in [0, 0.5] take precision 1, the 50 above take the envelope 2/3
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert r.ap == pytest.approx(expected, abs=EXACT)
    assert r.per_class_ap["cat"] == pytest.approx(expected, abs=EXACT)
    np.testing.assert_allclose(r.pr_curves["cat"][1], [1.0] * 51 + [2 / 3] * 50)


def test_iou_thresholds_shape_ap():
    # IoU 0.6 with the only box: a TP at 0.5 and 0.55, a miss from 0.6 on (>= is a match)
    gt = [boxes([0, 0, 100, 100])]
    pred = [boxes([0, 0, 100, 60])]  # IoU = 60 / 100
    r = evaluate_detections(gt, pred, ["cat"])
    assert r.ap50 == approx(1.0)
    assert r.ap75 == 0.0
    assert r.ap == pytest.approx(0.3, abs=EXACT)  # 3 of 10 thresholds (0.5, 0.55, 0.6)


def test_crowd_boxes_are_ignored():
    gt = [boxes(square(0), [300, 0, 700, 400], classes=[0, 0], iscrowd=[False, True])]
    # two detections inside the crowd region rank first, then the TP, then a plain FP
    pred = [boxes(square(320), square(500), square(0), square(0, 900), scores=[0.95, 0.94, 0.9, 0.5])]
    r = evaluate_detections(gt, pred, ["person"])
    # crowd matches count neither way: ranked TP, FP -> precision 1 at every recall point
    assert r.ap == approx(1.0)
    assert r.support == {"person": 1}
    assert r.best_f1 == pytest.approx({"threshold": 0.9, "precision": 1.0, "recall": 1.0, "f1": 1.0}, abs=1e-6)
    np.testing.assert_array_equal(r.confusion, [[1, 0], [0, 0]])
    # without the crowd flag the big box is a second (never found) box and both detections in it
    # are false positives ranked first: precision 1/3 up to recall 1/2, then nothing
    plain = evaluate_detections([boxes(square(0), [300, 0, 700, 400])], pred, ["person"])
    assert plain.ap50 == approx(51 * (1 / 3) / 101)
    assert plain.support == {"person": 2}


def test_area_ranges_use_the_given_area():
    gt = [boxes(square(0), square(200), area=[500.0, 5000.0])]  # small and medium despite 100x100 boxes
    pred = [boxes(square(0), scores=[0.9])]
    r = evaluate_detections(gt, pred, ["cat"])
    assert r.ap_small == approx(1.0)
    assert r.ap_medium == 0.0  # its only box is missed; the detection matched a box outside the range
    assert r.ap_large == -1.0
    assert (r.ar_small, r.ar_medium, r.ar_large) == (1.0, 0.0, -1.0)


def test_empty_predictions():
    gt = [boxes(square(0), square(200), classes=[0, 1]), Detections.empty()]
    r = evaluate_detections(gt, [Detections.empty(), Detections.empty()], ["cat", "dog"])
    np.testing.assert_array_equal(r.stats(), [0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1, 0])
    assert r.per_class_ap == {"cat": 0.0, "dog": 0.0}
    assert r.best_f1 == {"threshold": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    np.testing.assert_array_equal(r.confusion, [[0, 0, 1], [0, 0, 1], [0, 0, 0]])


def test_no_ground_truth_at_all():
    r = evaluate_detections([Detections.empty()], [boxes(square(0))], ["cat"])
    np.testing.assert_array_equal(r.stats(), -np.ones(12))
    assert r.per_class_ap == {} and r.pr_curves == {}
    np.testing.assert_array_equal(r.confusion, [[0, 0], [1, 0]])
    json.dumps(r.to_dict())


def test_classes_without_ground_truth_do_not_count_in_ap():
    gt = [boxes(square(0), classes=[0])]
    pred = [boxes(square(0), square(300), classes=[0, 2], scores=[0.5, 0.9])]
    r = evaluate_detections(gt, pred, ["cat", "dog", "bird"])
    assert r.ap == approx(1.0)  # the bird false positive has no bird ground truth to lower
    assert list(r.per_class_ap) == ["cat"]
    # ... but it is a false positive for the best-F1 point and the confusion matrix
    assert r.best_f1 == pytest.approx({"threshold": 0.5, "precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    np.testing.assert_array_equal(r.confusion, [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])


def test_best_f1_and_confusion_matrix():
    cat, dog = 0, 1
    gt = [boxes(square(0), square(200), square(400), square(600), classes=[cat, dog, cat, dog])]
    pred = [
        boxes(
            square(0),  # cat on the cat: TP
            square(200),  # cat on the dog: FP, confused
            square(900),  # dog on nothing: FP, background
            square(400),  # cat on the cat: TP
            square(900, 300),  # dog on nothing, below the best threshold
            classes=[cat, cat, dog, cat, dog],
            scores=[0.9, 0.8, 0.7, 0.6, 0.1],
        )
    ]
    r = evaluate_detections(gt, pred, ["cat", "dog"])
    # thresholds .9 .8 .7 .6 .1 -> F1 .4, 1/3, 2/7, .5, 4/9: the best is 0.6 with P = R = 1/2
    assert r.best_f1 == pytest.approx({"threshold": 0.6, "precision": 0.5, "recall": 0.5, "f1": 0.5}, abs=1e-6)
    # rows true (cat, dog, background), columns predicted; the dog at 600 is missed
    np.testing.assert_array_equal(r.confusion, [[2, 0, 0], [1, 0, 1], [0, 1, 0]])


def test_confusion_prefers_the_true_match():
    # the dog box is found by a dog detection, so the higher-scored cat detection on it is background
    gt = [boxes(square(0), square(200), classes=[0, 1])]
    pred = [boxes(square(0), square(200), square(200), classes=[0, 0, 1], scores=[0.9, 0.8, 0.3])]
    r = evaluate_detections(gt, pred, ["cat", "dog"])
    assert r.best_f1["f1"] == pytest.approx(0.8)
    np.testing.assert_array_equal(r.confusion, [[1, 0, 0], [0, 1, 0], [1, 0, 0]])


def test_max_dets_truncate_per_image_and_class():
    gt = [boxes(square(0))]
    pred = [boxes(*[square(1000 + 200 * i) for i in range(3)], square(0), scores=[0.9, 0.8, 0.7, 0.6])]
    r = evaluate_detections(gt, pred, ["cat"], max_dets=(1, 2, 3))
    assert (r.ar1, r.ar10, r.ar100) == (0.0, 0.0, 0.0)
    assert r.ap == 0.0
    assert r.best_f1["f1"] == 0.0
    r4 = evaluate_detections(gt, pred, ["cat"], max_dets=(1, 2, 4))
    assert r4.ar100 == 1.0
    assert r4.ap == pytest.approx(0.25, abs=EXACT)


def test_ties_keep_input_order():
    gt = [boxes(square(0))]
    first_tp = evaluate_detections(gt, [boxes(square(0), square(500), scores=[0.5, 0.5])], ["cat"])
    first_fp = evaluate_detections(gt, [boxes(square(500), square(0), scores=[0.5, 0.5])], ["cat"])
    assert first_tp.ap == approx(1.0)
    assert first_fp.ap == pytest.approx(0.5, abs=EXACT)


def test_report_serialises_and_formats():
    gt = [boxes(square(0), square(200), classes=[0, 1])]
    pred = [boxes(square(0), classes=[0], scores=[0.7])]
    r = evaluate_detections(gt, pred, ["cat", "dog"], iou_thresholds=[0.5, 0.75])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ap50"] == approx(0.5) and d["iou_thresholds"] == [0.5, 0.75]
    assert d["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert len(d["pr_curves"]["cat"]["precision"]) == 101
    table = r.format_table()
    assert "Average Precision  (AP) @[ IoU=0.50:0.75 | area=   all | maxDets=100 ] = 0.500" in table
    assert "cat" in table and "dog" in table


def test_without_half_iou_threshold():
    gt = [boxes(square(0))]
    pred = [boxes([0, 0, 100, 90])]  # IoU 0.9
    r = evaluate_detections(gt, pred, ["cat"], iou_thresholds=[0.95])
    assert r.ap == 0.0 and r.ap50 == -1.0 and r.ap75 == -1.0
    assert r.per_class_ap50 == {}
    assert r.best_f1["f1"] == 1.0  # the operating point is still at IoU 0.5


@pytest.mark.parametrize(
    ("gt", "pred", "labels", "kwargs"),
    [
        ([boxes(square(0))], [], ["cat"], {}),
        ([boxes(square(0), classes=[1])], [Detections.empty()], ["cat"], {}),
        ([boxes(square(0))], [boxes(square(0), classes=[-1])], ["cat"], {}),
        ([boxes(square(0))], [boxes(square(0), scores=[np.nan])], ["cat"], {}),
        ([boxes(square(0))], [boxes(square(0))], ["cat", "cat"], {}),
        ([boxes(square(0))], [boxes(square(0))], [], {}),
        ([boxes(square(0))], [boxes(square(0))], ["cat"], {"iou_thresholds": [1.5]}),
        ([boxes(square(0))], [boxes(square(0))], ["cat"], {"max_dets": (1, 10)}),
        ([boxes(square(0))], [np.zeros((1, 4))], ["cat"], {}),
    ],
)
def test_bad_inputs(gt, pred, labels, kwargs):
    with pytest.raises(InvalidInput):
        evaluate_detections(gt, pred, labels, **kwargs)


def test_resampled_ap50_is_the_evaluators_ap50_of_each_resample():
    """The bootstrap scorer against whole evaluations of the resampled lists: equal to the last bit, with
    crowd boxes, tied scores (pooled in the resample's order), repeated images, empty images, more than
    100 detections in an image and a class with no ground truth."""
    rng = np.random.default_rng(3)
    gts, preds = [], []
    for i in range(12):
        n_gt = int(rng.integers(0, 5))
        xy = rng.uniform(0, 300, (n_gt, 2))
        gt_boxes = np.concatenate([xy, xy + rng.uniform(20, 120, (n_gt, 2))], 1)
        crowd = np.zeros(n_gt, bool)
        if i == 3 and n_gt:
            crowd[0] = True
        gts.append(Detections(gt_boxes, np.ones(n_gt), rng.integers(0, 2, n_gt), {"iscrowd": crowd}))
        n_pred = 130 if i == 5 else int(rng.integers(0, 8))
        jitter = gt_boxes[rng.integers(0, n_gt, n_pred)] + rng.normal(0, 12, (n_pred, 4)) if n_gt else \
            np.tile([10.0, 10.0, 60.0, 60.0], (n_pred, 1))
        preds.append(Detections(jitter, rng.choice([0.3, 0.5, 0.9], n_pred), rng.integers(0, 3, n_pred)))
    labels = ["a", "b", "never"]
    scorer = ResampledAP50(gts, preds, labels)
    rows = np.vstack([np.arange(12), rng.integers(0, 12, (20, 12)), np.full(12, 5)])
    want = [evaluate_detections([gts[i] for i in row], [preds[i] for i in row], labels, iou_thresholds=[0.5]).ap50
            for row in rows]
    got = scorer(rows)
    assert got.tolist() == want
    assert len(set(want)) > 10  # the resamples differ
    assert scorer(np.arange(12)).tolist() == [evaluate_detections(gts, preds, labels).ap50]
