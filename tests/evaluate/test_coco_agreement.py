"""The detection evaluator agrees with pycocotools' COCOeval (a test-only dependency) on coco128.

Predictions are made by perturbing the ground truth with a seeded generator: jittered boxes,
dropped boxes, wrong classes, duplicates, random false boxes and random (sometimes tied) scores.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from visor.evaluate.detection import evaluate_detections
from visor.types.detections import Detections

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def coco128(shared_data) -> dict:
    return json.loads((Path(shared_data("coco128")) / "instances.json").read_text())


def ground_truth(dataset: dict) -> tuple[list[int], list[int], list[str], list[Detections]]:
    """Image ids (sorted), category ids (sorted), labels and one ground truth Detections per image."""
    image_ids = sorted(img["id"] for img in dataset["images"])
    cats = sorted(dataset["categories"], key=lambda c: c["id"])
    cat_ids = [c["id"] for c in cats]
    class_of = {cid: k for k, cid in enumerate(cat_ids)}
    by_image: dict[int, list[dict]] = {i: [] for i in image_ids}
    for ann in dataset["annotations"]:
        by_image[ann["image_id"]].append(ann)
    gts = []
    for i in image_ids:
        anns = by_image[i]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        gts.append(
            Detections(
                np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
                np.ones(len(anns)),
                np.array([class_of[a["category_id"]] for a in anns], dtype=np.int64),
                {
                    "iscrowd": np.array([bool(a["iscrowd"]) for a in anns], dtype=bool),
                    "area": np.array([a["area"] for a in anns], dtype=np.float64),
                },
            )
        )
    return image_ids, cat_ids, [c["name"] for c in cats], gts


def perturb(
    dataset: dict,
    gts: list[Detections],
    seed: int,
    *,
    jitter: float,
    drop: float,
    wrong_class: float,
    false_rate: float,
    tie_decimals: int | None = None,
    crowded: int = 0,
) -> list[Detections]:
    """Predictions made from the ground truth with a seeded generator."""
    rng = np.random.default_rng(seed)
    sizes = {img["id"]: (img["width"], img["height"]) for img in dataset["images"]}
    image_ids = sorted(sizes)
    num_classes = len(dataset["categories"])
    total_gt = sum(len(g) for g in gts)
    extra_per_image = np.bincount(rng.integers(0, len(gts), int(false_rate * total_gt)), minlength=len(gts))
    busiest = int(np.argmax([np.sum(g.class_id == 0) for g in gts]))
    preds = []
    for n, (gt, image_id) in enumerate(zip(gts, image_ids, strict=True)):
        width, height = sizes[image_id]
        xyxy = gt.xyxy.astype(np.float64)
        keep = rng.random(len(gt)) >= drop
        xyxy, cls = xyxy[keep], gt.class_id[keep].copy()
        wh = xyxy[:, 2:] - xyxy[:, :2]
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2 + rng.normal(0, jitter, wh.shape) * wh
        wh = wh * np.exp(rng.normal(0, jitter, wh.shape))
        boxes = [np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)]
        flip = rng.random(len(cls)) < wrong_class
        cls[flip] = rng.integers(0, num_classes, int(flip.sum()))
        classes = [cls]
        dup = rng.random(len(cls)) < 0.1  # near-duplicate detections of the same object
        boxes.append(boxes[0][dup] + rng.normal(0, 2.0, (int(dup.sum()), 4)))
        classes.append(cls[dup])
        extra = int(extra_per_image[n]) + (crowded if n == busiest else 0)
        if extra:
            xy = rng.uniform(0, 1, (extra, 2)) * [width, height]
            size = np.exp(rng.uniform(1.5, 5.5, (extra, 2)))  # 4 to 245 px: small, medium and large
            boxes.append(np.concatenate([xy, xy + size], axis=1))
            extra_cls = rng.integers(0, num_classes, extra)
            if n == busiest and crowded:
                extra_cls[-crowded:] = 0
            classes.append(extra_cls)
        all_boxes = np.concatenate(boxes)
        all_boxes[:, 2:] = np.maximum(all_boxes[:, 2:], all_boxes[:, :2] + 0.5)
        scores = rng.random(len(all_boxes))
        if tie_decimals is not None:
            scores = np.round(scores, tie_decimals)
        preds.append(Detections(all_boxes, scores, np.concatenate(classes)))
    return preds


def pycocotools_stats(dataset: dict, image_ids: list[int], cat_ids: list[int], preds: list[Detections]) -> np.ndarray:
    results = []
    for image_id, pred in zip(image_ids, preds, strict=True):
        for box, score, k in zip(pred.xyxy.tolist(), pred.confidence.tolist(), pred.class_id.tolist(), strict=True):
            x1, y1, x2, y2 = box
            results.append(
                {"image_id": image_id, "category_id": cat_ids[k], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(dataset))
        coco.createIndex()
        coco_dt = coco.loadRes(results)
        ev = COCOeval(coco, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats), ev


CASES = {
    "mild": {"seed": 0, "jitter": 0.03, "drop": 0.15, "wrong_class": 0.05, "false_rate": 0.2},
    "strong+ties": {"seed": 1, "jitter": 0.08, "drop": 0.2, "wrong_class": 0.1, "false_rate": 0.3, "tie_decimals": 2},
    "crowded": {"seed": 2, "jitter": 0.05, "drop": 0.15, "wrong_class": 0.05, "false_rate": 0.2, "crowded": 150},
}


@pytest.mark.parametrize("case", list(CASES))
def test_stats_agree_with_pycocotools(coco128, case):
    params = dict(CASES[case])
    seed = params.pop("seed")
    image_ids, cat_ids, labels, gts = ground_truth(coco128)
    preds = perturb(coco128, gts, seed, **params)
    if params.get("crowded"):
        assert max(np.bincount(p.class_id, minlength=len(labels)).max() for p in preds) > 100
    expected, ev = pycocotools_stats(coco128, image_ids, cat_ids, preds)
    report = evaluate_detections(gts, preds, labels)
    got = report.stats()
    diff = np.abs(got - expected)
    print(f"{case}: max |diff| = {diff.max():.3g}")
    assert diff.max() <= TOLERANCE, f"\nvisor       {np.round(got, 5)}\npycocotools {np.round(expected, 5)}"
    # the raw accumulation arrays agree as well
    assert np.abs(report.precision - ev.eval["precision"]).max() <= TOLERANCE
    assert np.abs(report.recall - ev.eval["recall"]).max() <= TOLERANCE
    # per-class AP is pycocotools' precision averaged per class
    for k, name in enumerate(labels):
        s = ev.eval["precision"][:, :, k, 0, -1]
        if (s > -1).any():
            assert report.per_class_ap[name] == pytest.approx(float(np.mean(s[s > -1])), abs=TOLERANCE)
        else:
            assert name not in report.per_class_ap
