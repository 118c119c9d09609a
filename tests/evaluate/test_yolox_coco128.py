"""``visor evaluate yolox_nano`` on coco128 (COCO train2017 images, so this checks decoding, not
generalisation): mAP@[.5:.95] >= 0.32 and AP50 >= 0.50, and pycocotools' COCOeval scoring the same
predictions agrees with visor's figures to 1e-4."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import visor
from visor.cli.main import main
from visor.data import formats
from visor.evaluate.detection import evaluate_detections

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

TOLERANCE = 1e-4
#: pycocotools' ``stats`` order, as visor's report names them.
STATS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
         "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


@pytest.fixture(scope="module")
def coco128(shared_data) -> Path:
    return Path(shared_data("coco128"))


@pytest.fixture(scope="module")
def evaluated(zoo_cache, coco128) -> dict:
    """What ``visor evaluate yolox_nano COCO128 --json`` prints (10 bootstrap resamples: the interval is not
    under test here). ``zoo_cache``: tests/conftest.py imports ../shared/models into the test cache."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["evaluate", "yolox_nano", str(coco128), "--json", "--resamples", "10", "--no-progress"])
    assert code == 0
    return json.loads(out.getvalue())


def test_map_and_ap50_on_coco128(evaluated):
    assert (evaluated["model"], evaluated["num_images"], evaluated["skipped_files"]) == ("yolox_nano", 128, [])
    # COCO's protocol: every box above a low threshold, at most 100 per image
    assert (evaluated["conf"], evaluated["nms_iou"], evaluated["max_dets"]) == (0.001, 0.6, [1, 10, 100])
    assert evaluated["ap"] >= 0.32 and evaluated["ap50"] >= 0.50
    # measured: 0.3368 and 0.5178 (../shared/README.md's reference pipeline: 0.326 and 0.511)
    assert evaluated["ap"] == pytest.approx(0.3368, abs=0.005)
    assert evaluated["ap50"] == pytest.approx(0.5178, abs=0.005)
    assert evaluated["per_class_ap50"]["person"] == pytest.approx(0.6507, abs=0.01)


def test_pycocotools_scores_the_same_predictions_alike(evaluated, coco128, yolox_nano):
    """The same predictions (same thresholds, same per-image cap) scored by COCOeval, COCO category
    ids (1..90 with gaps) matched to the model's 80 contiguous classes by name."""
    detector = yolox_nano
    ds = formats.load(coco128)
    category_of = dict(zip(ds.classes, ds.category_ids, strict=True))
    model_index = {name: i for i, name in enumerate(detector.labels)}
    assert set(category_of) == set(model_index)  # all 80 COCO classes, by name

    max_det = evaluated["max_dets"][-1]
    predictions, truth, results = [], [], []
    outcomes = detector.detect_iter([im.path for im in ds.images], conf=evaluated["conf"], iou=evaluated["nms_iou"],
                                    max_det=max_det)
    for i, (image, outcome) in enumerate(zip(ds.images, outcomes, strict=True)):
        pred = outcome.result
        predictions.append(pred)
        gt = ds.detections(i)
        mapping = np.array([model_index[name] for name in ds.classes])
        truth.append(visor.types.Detections(gt.xyxy, gt.confidence, mapping[gt.class_id], dict(gt.data)))
        for (x1, y1, x2, y2), score, name in zip(pred.xyxy.tolist(), pred.confidence.tolist(),
                                                 pred.data["class_name"].tolist(), strict=True):
            results.append({"image_id": image.id, "category_id": category_of[name],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    assert len(results) == evaluated["num_predictions"]

    ours = evaluate_detections(truth, predictions, detector.labels).to_dict()
    for key in STATS:  # the same predictions as the CLI's evaluation
        assert ours[key] == pytest.approx(evaluated[key], abs=1e-12), key

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco128 / "instances.json"))
        run = COCOeval(gt, gt.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    diffs = {key: abs(float(theirs) - evaluated[key]) for key, theirs in zip(STATS, run.stats, strict=True)}
    assert max(diffs.values()) <= TOLERANCE, diffs
    assert run.stats[0] >= 0.32 and run.stats[1] >= 0.50
