"""``visor evaluate deeplabv3_voc`` on a small person mask dataset built from coco128 (COCO person polygons
rasterised; other objects are background, crowd regions ignored): exact figures, the worst images, the
HTML report with its overlays, and the metrics against a from-scratch recount of the same predictions."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.cli.main import main
from visor.data.segmentation import SegmentationDataset

#: The first images of coco128 (by file name) with a person.
IMAGES = 8


@pytest.fixture(scope="module")
def person_masks(shared_data, tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """images/ + masks/ + classes.txt (background, person): COCO's person class as 1, crowd as 255."""
    coco = Path(shared_data("coco128"))
    ds = SegmentationDataset.from_coco(coco / "instances.json", coco / "images")
    person = ds.classes.index("person")
    root = tmp_path_factory.mktemp("coco128-person")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nperson\n")
    masks = {}
    for i in sorted(range(len(ds)), key=lambda i: ds.samples[i].image.name):
        if not any(ds.classes[a.class_id + 1] == "person" and not a.iscrowd for a in ds.samples[i].coco.annotations):
            continue
        _, mask = ds.load(i)
        out = np.where(mask == 255, 255, (mask == person).astype(np.uint8)).astype(np.uint8)
        shutil.copy(ds.samples[i].image, root / "images" / ds.samples[i].image.name)
        Image.fromarray(out).save(root / "masks" / f"{ds.samples[i].image.stem}.png")
        masks[ds.samples[i].image.name] = out
        if len(masks) == IMAGES:
            break
    return root, masks


@pytest.fixture(scope="module")
def evaluated(zoo_cache, person_masks, tmp_path_factory) -> tuple[dict, Path]:
    root, _ = person_masks
    out = tmp_path_factory.mktemp("report")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", "--model", "deeplabv3_voc", str(root), "--json", "--resamples", "300", "--no-progress",
                     "--report", str(out / "report.html"), "--out", str(out / "metrics")])
    assert code == 0
    return json.loads(stdout.getvalue()), out


def test_person_iou_on_coco128_images(evaluated, person_masks):
    report, _ = evaluated
    assert report["task"] == "segmentation" and report["model"] == "deeplabv3_voc"
    assert report["num_images"] == IMAGES and report["skipped_files"] == []
    assert report["labels"] == ["background", "person"]
    assert len(report["model_labels_as_background"]) == 19  # VOC's other classes count as background
    # measured on these 8 images (the model at 257x257, logits resized to each image, argmax)
    assert round(report["miou"], 4) == 0.8449
    assert round(report["per_class"]["person"]["iou"], 4) == 0.7444
    assert round(report["per_class"]["background"]["iou"], 4) == 0.9455
    assert round(report["pixel_accuracy"], 4) == 0.9529
    assert round(report["mean_dice"], 4) == 0.9127
    ci = report["confidence_intervals"]
    assert ci["resamples"] == 300 and ci["too_small"] is True
    assert ci["miou"][0] < report["miou"] < ci["miou"][1]
    assert report["num_pixels"] == sum(int((m != 255).sum()) for m in person_masks[1].values())


def test_recount_from_the_models_masks(evaluated, person_masks, zoo_cache):
    """The confusion matrix recounted here, image by image, from ``predict`` and the masks on disk."""
    import visor

    report, _ = evaluated
    root, masks = person_masks
    model = visor.load("deeplabv3_voc")
    person = model.labels.index("person")
    tp = fp = fn = tn = 0
    for name, gt in masks.items():
        pred = model.predict(root / "images" / name).mask == person
        valid = gt != 255
        truth = gt == 1
        tp += int((pred & truth & valid).sum())
        fp += int((pred & ~truth & valid).sum())
        fn += int((~pred & truth & valid).sum())
        tn += int((~pred & ~truth & valid).sum())
    assert report["confusion"] == [[tn, fp], [fn, tp]]
    assert report["per_class"]["person"]["iou"] == pytest.approx(tp / (tp + fp + fn), rel=1e-12)
    assert report["miou"] == pytest.approx((tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2, rel=1e-12)


def test_report_page_and_files(evaluated):
    report, out = evaluated
    page = (out / "report.html").read_text()
    assert "IoU per class with 95% confidence intervals" in page and "Pixels: rows are the true class" in page
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == min(8, IMAGES)
    for w in report["worst_images"]:
        assert Path(w["path"]).name in page
    mious = [w["miou"] for w in report["worst_images"]]
    assert mious == sorted(mious)
    assert "https://" not in page and "<script" not in page
    assert sorted(p.name for p in (out / "metrics").iterdir()) == ["confusion.png", "report.json"]
    assert json.loads((out / "metrics" / "report.json").read_text())["miou"] == report["miou"]
    assert (out / "model_card.md").read_text().startswith("# Model card: deeplabv3\\_voc")  # the card beside the report
