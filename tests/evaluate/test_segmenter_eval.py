"""evaluate_segmenter on a small mask folder with a scripted model: exact pixel metrics, bad items
reported one by one, worst images, subgroups, the JSON and the HTML report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from visor.errors import ConfigError
from visor.evaluate.bootstrap import BootstrapConfig
from visor.evaluate.report_html import render_report_html
from visor.evaluate.segmentation import confusion_matrix, segmentation_report
from visor.evaluate.segmenter import class_mapping, evaluate_segmenter
from visor.models.batching import Outcome

CLASSES = ("background", "cat", "dog")
H, W = 12, 16


@dataclass
class _Mask:
    mask: np.ndarray


class ScriptedSegmenter:
    """Predicts the mask scripted for each image (its id is the red value of pixel (0, 0)), in model ids."""

    name = "scripted"
    labels = ("background", "dog", "cat", "bird")  # another order, and a label the data does not have

    def __init__(self, predictions: dict[int, np.ndarray]) -> None:
        self.predictions = predictions
        self.calls = 0

    def predict_iter(self, sources, *, batch_size=None):
        self.calls += 1
        for image in sources:
            yield Outcome(image, _Mask(self.predictions[int(np.asarray(image)[0, 0, 0])]))


def _write(root, good: int = 6):
    """``good`` usable images and four bad items; returns (ground truths, predictions in model ids)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(0)
    to_model = np.array([0, 2, 1], np.uint8)  # dataset id -> model id
    gts, preds = {}, {}
    for k in range(good):
        gt = np.zeros((H, W), np.uint8)
        gt[2:8, 1 + k: 9 + k] = 1 + k % 2
        gt[10:, :] = 255  # ignored band
        pred = gt.copy()
        pred[pred == 255] = 0
        wrong = rng.random((H, W)) < 0.08 * k  # later images are worse
        pred[wrong] = rng.integers(0, 3, int(wrong.sum()))
        pred_model = to_model[pred]
        pred_model[0, W - 1] = 3 if k == 2 else pred_model[0, W - 1]  # a 'bird' pixel: counts as background
        image = np.full((H, W, 3), 90, np.uint8)
        image[0, 0, 0] = k
        Image.fromarray(image).save(root / "images" / f"im{k}.png")
        Image.fromarray(gt).save(root / "masks" / f"im{k}.png")
        gts[k] = gt
        preds[k] = pred_model
    # bad items: no mask, a mask of another size, a value outside the classes, an unreadable image
    Image.fromarray(np.full((H, W, 3), 50, np.uint8)).save(root / "images" / "nomask.png")
    Image.fromarray(np.full((H, W, 3), 50, np.uint8)).save(root / "images" / "small.png")
    Image.fromarray(np.zeros((H - 2, W), np.uint8)).save(root / "masks" / "small.png")
    Image.fromarray(np.full((H, W, 3), 50, np.uint8)).save(root / "images" / "values.png")
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(root / "masks" / "values.png")
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "masks" / "broken.png")
    return gts, preds


def _expected(gts, preds):
    to_data = np.array([0, 2, 1, 0])  # model id -> dataset id ('bird' -> background)
    return [confusion_matrix(gts[k], to_data[preds[k]], 3) for k in sorted(gts)]


def test_metrics_bad_items_and_worst(tmp_path) -> None:
    gts, preds = _write(tmp_path / "data")
    model = ScriptedSegmenter(preds)
    result = evaluate_segmenter(model, tmp_path / "data", bootstrap_config=BootstrapConfig(resamples=200), worst=3)
    per_image = _expected(gts, preds)
    expected = segmentation_report(sum(per_image), CLASSES)
    np.testing.assert_array_equal(result.report.confusion, sum(per_image))
    assert result.report.miou == pytest.approx(expected.miou, abs=0, rel=1e-12)
    # by hand from the confusion [[583, 47, 42], [4, 138, 2], [7, 12, 125]]: 583/683, 138/203, 125/188
    assert result.report.miou == pytest.approx((583 / 683 + 138 / 203 + 125 / 188) / 3, rel=1e-12)
    assert round(result.report.miou, 4) == 0.7328 and result.report.pixel_accuracy == 846 / 960
    assert result.report.num_images == 6 and result.report.num_pixels == 6 * 10 * W
    assert result.as_background == ("bird",)
    skipped = dict(result.skipped)
    assert {p.rsplit("/", 1)[-1] for p in skipped} == {"nomask.png", "small.png", "values.png", "broken.png"}
    by_name = {p.rsplit("/", 1)[-1]: r for p, r in skipped.items()}
    assert "no mask" in by_name["nomask.png"]
    assert "16x10 but its image small.png is 16x12" in by_name["small.png"]
    assert "mask values 7 are outside the 3 classes" in by_name["values.png"]
    assert "unreadable image" in by_name["broken.png"]
    # worst first: the images with the most scripted errors
    mious = [segmentation_report(cm, CLASSES).miou for cm in per_image]
    order = np.argsort(mious, kind="stable")[:3]
    assert [w.path.rsplit("/", 1)[-1] for w in result.worst] == [f"im{k}.png" for k in order]
    assert [w.miou for w in result.worst] == pytest.approx([mious[k] for k in order])
    lo, hi = result.intervals["miou"]
    assert lo < result.report.miou < hi and result.too_small
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["task"] == "segmentation" and d["confidence_intervals"]["too_small"] is True
    assert d["per_class"]["cat"]["iou_ci"][0] <= d["per_class"]["cat"]["iou"] <= d["per_class"]["cat"]["iou_ci"][1]
    assert d["model_labels_as_background"] == ["bird"] and len(d["worst_images"]) == 3
    assert len(d["skipped_files"]) == 4 and d["data_problems"] == []  # the missing mask is reported once
    table = result.format_table()
    assert "mIoU: 0.7328" in table and "4 left out" in table and "worst images" in table


def test_subgroups_by_metadata(tmp_path) -> None:
    gts, preds = _write(tmp_path / "data")
    meta = tmp_path / "meta.csv"
    meta.write_text("file_name,light\n" + "".join(f"im{k}.png,{'day' if k < 3 else 'night'}\n" for k in range(6)))
    result = evaluate_segmenter(ScriptedSegmenter(preds), tmp_path / "data", by=["light"], metadata=meta,
                                min_group_size=2, bootstrap_config=BootstrapConfig(resamples=100), worst=0)
    (report,) = result.subgroups
    per_image = _expected(gts, preds)
    day = segmentation_report(sum(per_image[:3]), CLASSES).miou
    night = segmentation_report(sum(per_image[3:]), CLASSES).miou
    assert report.metric == "miou" and report.group("day").score == pytest.approx(day)
    assert report.group("night").score == pytest.approx(night) and report.best == "day"
    assert report.group("day").n == 3 and not result.worst
    with pytest.raises(ConfigError, match="no sample has a metadata column 'lihgt'"):
        evaluate_segmenter(ScriptedSegmenter(preds), tmp_path / "data", by=["lihgt"], metadata=meta)


def test_classes_and_ignore_index_for_a_folder_without_names(tmp_path) -> None:
    """CamVid-style: no classes file, void stored as 11 of 12 values; names and the ignore index given."""
    gts, preds = _write(tmp_path / "data", good=2)
    (tmp_path / "data" / "classes.txt").unlink()
    for k, gt in gts.items():
        Image.fromarray(np.where(gt == 255, 11, gt).astype(np.uint8)).save(tmp_path / "data" / "masks" / f"im{k}.png")
    for bad in ("nomask", "small", "values", "broken"):
        for f in (tmp_path / "data").glob(f"*/{bad}.png"):
            f.unlink()
    with pytest.raises(ConfigError, match="dataset classes not known to model scripted: class_0"):
        evaluate_segmenter(ScriptedSegmenter(preds), tmp_path / "data")
    result = evaluate_segmenter(ScriptedSegmenter(preds), tmp_path / "data", classes=CLASSES, ignore_index=11,
                                bootstrap_config=BootstrapConfig(resamples=20))
    np.testing.assert_array_equal(result.report.confusion, sum(_expected(gts, preds)))
    assert result.ignore_index == 11 and result.report.num_pixels == 2 * 10 * W and not result.skipped


def test_class_matching() -> None:
    lookup, extra = class_mapping(("background", "dog", "cat", "bird"), CLASSES)
    assert lookup.tolist() == [0, 2, 1, 0] and extra == ("bird",)
    with pytest.raises(ConfigError, match=r"not known to model m: cta.*Did you mean 'cat'"):
        class_mapping(("background", "cat"), ("background", "cta"), "m")
    with pytest.raises(ConfigError, match="no background class"):
        class_mapping(("sky", "road", "car"), ("sky", "road"), "m")


def test_html_report_has_chart_confusion_and_overlays(tmp_path) -> None:
    _, preds = _write(tmp_path / "data")
    result = evaluate_segmenter(ScriptedSegmenter(preds), tmp_path / "data",
                                bootstrap_config=BootstrapConfig(resamples=50), worst=2)
    assert len(result.overlays) == 2
    page = render_report_html(result.to_dict(), overlays=result.overlays)
    assert "IoU per class with 95% confidence intervals" in page
    assert "Pixels: rows are the true class" in page and "Worst images" in page
    assert page.count('src="data:image/jpeg;base64,') == 2
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "bird" in page  # the labels counted as background are named
    assert not math.isnan(result.report.mean_dice)
