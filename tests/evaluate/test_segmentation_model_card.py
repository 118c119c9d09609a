"""The Markdown model card of a segmentation evaluation.

First on a report made from hand-written pixel confusions (every figure worked out by hand below), then end to
end: ``visor evaluate --model deeplabv3_voc DATA --model-card card.md`` in a fresh process on a mask set of the
first 8 coco128 images with people (COCO's polygons rasterised for 7 VOC classes, crowd ignored), with exact
figures in the card.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.evaluate.bootstrap import BootstrapConfig
from visor.evaluate.model_card import LOW_IOU, MEASURED_ONLY, limitations, md, render_model_card
from visor.evaluate.segmentation import SegmentationOutcomes
from visor.evaluate.segmenter import SegmenterEvaluation
from visor.evaluate.subgroups import segmentation_subgroups
from visor.models.card import ModelCard, Preprocess, WeightsSource

NASTY = "car <b>|&_*"
CLASSES = ("background", "road", NASTY, "tree")
SECTIONS = ["Model details", "Intended use", "Training data", "Evaluation data", "Metrics", "Subgroup results",
            "Robustness and calibration", "Limitations"]


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m is not None, f"no section {title}"
    return m.group(1)


# --------------------------------------------------------------------------- a hand-made evaluation


def _evaluation() -> SegmenterEvaluation:
    """40 images of two kinds, 20 each (rows: true class, columns: predicted; "tree" is never seen):

    kind A: background 90 right, 5 as road, 5 as car; road 10 as background, 80 right
    kind B: background 50 right; road 40 right; car 6 as background, 4 right

    Summed: background TP 2800, FN 200, FP 320 -> IoU 2800/3320 = 0.8434, Dice 5600/6120 = 0.9150;
    road TP 2400, FN 200, FP 100 -> IoU 0.8889, Dice 0.9412; car TP 80, FN 120, FP 100 -> IoU 0.2667,
    Dice 0.4211; mIoU 0.6663, mean Dice 0.7591, pixel accuracy 5280/5800 = 0.9103, mean class accuracy 0.7521.
    mIoU of kind A alone (car only predicted there: IoU 0) 0.5534, of kind B 0.7643: A is worse, and each
    group's interval is a point since its images are all alike.
    """
    a = np.zeros((4, 4), np.int64)
    a[0, 0], a[0, 1], a[0, 2], a[1, 0], a[1, 1] = 90, 5, 5, 10, 80
    b = np.zeros((4, 4), np.int64)
    b[0, 0], b[1, 1], b[2, 0], b[2, 2] = 50, 40, 6, 4
    outcomes = SegmentationOutcomes(np.stack([a] * 20 + [b] * 20), CLASSES)
    config = BootstrapConfig(200, 0.95, 0)
    lighting = segmentation_subgroups(outcomes, ["A"] * 20 + ["B"] * 20, "road type", config=config, min_size=10)
    return SegmenterEvaluation(
        model="roads_v1", split="test", report=outcomes.report(), outcomes=outcomes,
        skipped=[("/data/roads/images/broken.png", "CorruptImage: cannot decode")],
        problems=[("/data/roads/masks/orphan.png", "mask without an image")],
        paths=tuple(f"/data/roads/images/{i}.png" for i in range(40)), bootstrap=config,
        intervals=outcomes.intervals(config), class_intervals=outcomes.class_intervals(config),
        subgroups=(lighting,), as_background=("sky",), ignore_index=255)


def _card(**changes) -> ModelCard:
    card = ModelCard(name="roads_v1", task="segmentation", architecture="seg_fpn_efficientnet_lite0",
                     weights=WeightsSource(kind="path", location="model.onnx", sha256="ab" * 32, format="onnx"),
                     labels=(*CLASSES, "sky"), license="CC-BY-NC-4.0",
                     preprocess=Preprocess(input_size=(256, 384), resize="squash", mean=(0.485, 0.456, 0.406),
                                           std=(0.229, 0.224, 0.225), layout="nchw"))
    return card.replace(**changes)


@pytest.fixture(scope="module")
def hand() -> dict:
    return _evaluation().to_dict()


def test_sections_details_and_intended_use(hand):
    text = render_model_card(hand, _card())
    assert text.startswith("# Model card: roads\\_v1\n\nEvaluated on split test (40 images).")
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    details = _section(text, "Model details")
    assert ("- **Preprocessing:** 256×384 input, squash, bicubic interpolation, RGB, mean [0.485, 0.456, 0.406], "
            "std [0.229, 0.224, 0.225], NCHW\n") in details
    assert "- **Output:** a class per pixel" in details and "temperature" not in details
    use = _section(text, "Intended use")
    assert "the model assigns one of its 5 classes to every pixel of an image (semantic segmentation" in use
    assert "every pixel gets one of its labels, so an unknown object is painted as background" in use
    assert "assigns one of its 4 classes to every pixel" in render_model_card(hand)  # no card: the data's classes
    assert "Not measured for segmentation models by this version of visor." in _section(
        text, "Robustness and calibration")


def test_evaluation_data(hand):
    ev = _section(render_model_card(hand), "Evaluation data")
    assert ev == (
        "\n- **Split:** test\n"
        "- **Images evaluated:** 40, 5,800 pixels counted (pixels whose ground truth is the ignore index 255 are "
        "not counted)\n"
        "- **Classes:** 4 in the data, 3 of them in the ground truth\n"
        "- **Model labels the data does not have, counted as background:** 1 (sky)\n"
        "- **Items left out (not counted):** 1\n"
        "  - `broken.png`: CorruptImage: cannot decode\n"
        "- **Other problems found in the data:** 1\n"
        "  - `orphan.png`: mask without an image\n\n")


def test_metrics_and_per_class_iou(hand):
    metrics = _section(render_model_card(hand), "Metrics")
    ci = hand["confidence_intervals"]

    def interval(key: str) -> str:
        return f"{ci[key][0]:.4f}–{ci[key][1]:.4f}"

    assert ci["resamples"] == 200 and ci["too_small"] is False
    assert (f"| Metric | Value | 95% CI |\n| :-- | --: | --: |\n| mIoU | 0.6663 | {interval('miou')} |\n"
            f"| Mean Dice | 0.7591 | {interval('mean_dice')} |\n"
            f"| Pixel accuracy | 0.9103 | {interval('pixel_accuracy')} |\n"
            "| Mean class accuracy | 0.7521 | — |\n") in metrics
    assert "percentile bootstrap over images" in metrics and "200 resamples, seed 0." in metrics
    assert "too few to judge" not in metrics  # 40 images
    per_class = hand["per_class"]

    def iou_ci(name: str) -> str:
        lo, hi = per_class[name]["iou_ci"]
        return f"{lo:.4f}–{hi:.4f}"

    assert ("IoU per class (all 3 classes in the ground truth or the prediction; lowest IoU first):\n\n"
            "| Class | IoU | IoU 95% CI | Dice | Ground-truth pixels | Predicted pixels |\n"
            "| :-- | --: | --: | --: | --: | --: |\n"
            f"| {md(NASTY)} | 0.2667 | {iou_ci(NASTY)} | 0.4211 | 200 | 180 |\n"
            f"| background | 0.8434 | {iou_ci('background')} | 0.9150 | 3,000 | 3,120 |\n"
            f"| road | 0.8889 | {iou_ci('road')} | 0.9412 | 2,600 | 2,500 |\n") in metrics
    assert ("Absent from both the ground truth and the prediction (no IoU, left out of the means, not in the "
            "table): tree.") in metrics
    assert "| tree |" not in metrics and "lowest mIoU" not in metrics  # no worst images in this report


def test_subgroups_in_miou(hand):
    sub = _section(render_model_card(hand), "Subgroup results")
    assert "### By road type\n" in sub and "Scores are mIoU per group (the pixels of each group's images summed" in sub
    assert "| Group | n | mIoU | 95% CI | Gap to best | Status |\n" in sub
    assert "| A | 20 | 0.5534 | 0.5534–0.5534 | -0.2109 | worse |\n" in sub
    assert "| B | 20 | 0.7643 | 0.7643–0.7643 | +0.0000 | best |\n" in sub
    assert ("- **Flagged:** road type = **A** has mIoU 0.5534 (95% CI 0.5534–0.5534, n=20), against 0.7643 "
            "(95% CI 0.7643–0.7643) for the best group **B**: a gap of -0.2109, with the intervals apart.") in sub
    none = _section(render_model_card({**hand, "subgroups": []}), "Subgroup results")
    assert "No subgroup analysis was run: no --by column was given" in none


def test_limitations(hand):
    items = limitations(hand)
    assert items == [
        "The model does measurably worse on one subgroup: road type = **A** has mIoU 0.5534 (95% CI 0.5534–0.5534, "
        "n=20), against 0.7643 (95% CI 0.7643–0.7643) for the best group **B**: a gap of -0.2109, with the "
        "intervals apart.",
        f"IoU is below {LOW_IOU} for 1 class: {md(NASTY)} (0.2667).",
        "1 class of the data is absent from both the ground truth and the prediction (tree): these images say "
        "nothing about how the model does on it.",
        "Only the data's classes were measured: the model's 1 other label was counted as background (sky), so how "
        "well it finds those is unknown.",
        "The evaluation set is small (40 images, fewer than 100): the confidence intervals are wide and rare scenes "
        "may not show up at all.",
        "1 item was left out and not evaluated (the reasons are under Evaluation data).",
        MEASURED_ONLY,
    ]
    text = render_model_card(hand)
    assert _section(text, "Limitations") == "".join(f"\n- {item}" for item in items) + "\n"
    clean = {**hand, "subgroups": [], "skipped_files": [], "model_labels_as_background": [], "num_images": 500,
             "per_class": {n: m for n, m in hand["per_class"].items() if n not in (NASTY, "tree")}}
    assert limitations(clean) == [MEASURED_ONLY]


def test_training_summary_of_a_segmentation_run_folder(tmp_path):
    """What ``visor train segment`` writes into a run folder (metrics.json, config.json) reaches the card."""
    from types import SimpleNamespace

    from visor.evaluate.pipeline import segmentation_training_summary

    (tmp_path / "metrics.json").write_text(json.dumps({
        "best_epoch": 7, "epochs_run": 10, "stopped_early": True,
        "val": {"num_images": 37, "miou": 0.61234, "pixel_accuracy": 0.9, "per_class": {}},
        "history": [{}] * 10, "skipped_files": [["a.png", "mask of another size"]]}))
    (tmp_path / "config.json").write_text(json.dumps({"data": "camvid/", "input_size": [256, 352],
                                                      "config": {"loss": "ce+dice", "augment": ["hflip"]}}))
    summary = segmentation_training_summary(SimpleNamespace(labels=CLASSES), str(tmp_path))
    assert summary == {"data": "camvid/", "classes": 4, "input size": "256x352", "validation images": 37,
                       "validation mIoU": 0.61234, "validation pixel accuracy": 0.9, "epochs_run": 10,
                       "best_epoch": 7, "stopped_early": True, "loss": "ce+dice", "augment": ["hflip"],
                       "skipped_files": [["a.png", "mask of another size"]]}
    training = _section(render_model_card(_evaluation().to_dict(), training=summary), "Training data")
    assert "- **Data:** camvid/\n" in training and "- **validation mIoU:** 0.6123\n" in training
    assert "- **Epochs run:** 10\n- **Best epoch:** 7\n- **Stopped early:** True\n" in training


# --------------------------------------------------------------------------- deeplabv3_voc on coco128

#: The data's classes: VOC names that COCO spells alike; "train" and "sheep" are in none of the 8 images.
DATA_CLASSES = ("background", "person", "dog", "horse", "bicycle", "cow", "train", "sheep")
IMAGES = 8


@pytest.fixture(scope="module")
def coco_masks(shared_data, tmp_path_factory) -> Path:
    """images/ + masks/ + classes.txt + scene.csv: the first 8 coco128 images (by name) with a person, COCO's
    polygons of DATA_CLASSES rasterised (other objects background, crowd regions 255); scene "animals" where
    a dog, horse or cow is in the image, else "people"."""
    from visor.data.segmentation import SegmentationDataset

    coco = Path(shared_data("coco128"))
    ds = SegmentationDataset.from_coco(coco / "instances.json", coco / "images")
    lookup = np.zeros(256, np.uint8)
    lookup[255] = 255
    for j, name in enumerate(DATA_CLASSES[1:], 1):
        lookup[ds.classes.index(name)] = j
    root = tmp_path_factory.mktemp("coco128-voc")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(DATA_CLASSES) + "\n")
    rows = ["file_name,scene"]
    for i in sorted(range(len(ds)), key=lambda i: ds.samples[i].image.name):
        sample = ds.samples[i]
        names = {ds.classes[a.class_id + 1] for a in sample.coco.annotations if not a.iscrowd}
        if "person" not in names:
            continue
        _, mask = ds.load(i)
        shutil.copy(sample.image, root / "images" / sample.image.name)
        Image.fromarray(lookup[mask]).save(root / "masks" / f"{sample.image.stem}.png")
        rows.append(f"{sample.image.name},{'animals' if names & {'dog', 'horse', 'cow'} else 'people'}")
        if len(rows) == IMAGES + 1:
            break
    (root / "scene.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def carded(zoo_cache, coco_masks, tmp_path_factory) -> tuple[dict, str]:
    """``visor evaluate ... --model-card card.md --json`` in a fresh process (the session's offline cache comes
    through VISOR_CACHE): the JSON report and the card."""
    out = tmp_path_factory.mktemp("card")
    proc = subprocess.run(
        [sys.executable, "-m", "visor", "evaluate", "--model", "deeplabv3_voc", str(coco_masks), "--by", "scene",
         "--metadata", str(coco_masks / "scene.csv"), "--min-group-size", "3", "--resamples", "300",
         "--threads", "1", "--no-progress", "--model-card", str(out / "card.md"), "--json"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["card.md"]
    return json.loads(proc.stdout), (out / "card.md").read_text(encoding="utf-8")


def test_deeplab_card_metrics(carded):
    report, card = carded
    assert report["num_images"] == IMAGES and report["labels"] == list(DATA_CLASSES)
    assert card.startswith("# Model card: deeplabv3\\_voc\n\nEvaluated on split all (8 images).")
    assert re.findall(r"^## (.+)$", card, re.M) == SECTIONS
    ci = report["confidence_intervals"]

    def interval(key: str) -> str:
        return f"{ci[key][0]:.4f}–{ci[key][1]:.4f}"

    metrics = _section(card, "Metrics")
    # measured on these 8 images (person IoU as in test_deeplab_coco128_eval: the same images and person masks)
    assert f"| mIoU | 0.4029 | {interval('miou')} |\n" in metrics
    assert f"| Mean Dice | 0.4505 | {interval('mean_dice')} |\n" in metrics
    assert f"| Pixel accuracy | 0.9305 | {interval('pixel_accuracy')} |\n" in metrics
    assert f"{report['miou']:.4f}" == "0.4029" and ci["miou"][0] < report["miou"] < ci["miou"][1]
    assert "300 resamples, seed 0. Only 8 images: too few to judge" in metrics
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+)–([\d.]+) \| ([\d.]+) \| ([\d,]+) \| ([\d,]+) \|$", metrics,
                      re.M)
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [
        ("cow", "0.0000", "0.0000", "0"),  # only predicted (horses taken for cows)
        ("horse", "0.0000", "0.0000", "12,790"),
        ("bicycle", "0.0251", "0.0489", "29,989"),
        ("dog", "0.7241", "0.8399", "18,415"),
        ("person", "0.7444", "0.8535", "365,759"),
        ("background", "0.9238", "0.9604", "1,744,967"),
    ]
    for name, _, lo, hi, _, _, predicted in rows:  # the rest as in the JSON report
        m = report["per_class"][name]
        assert (lo, hi) == (f"{m['iou_ci'][0]:.4f}", f"{m['iou_ci'][1]:.4f}")
        assert predicted == f"{m['predicted']:,}"
    assert ("Absent from both the ground truth and the prediction (no IoU, left out of the means, not in the "
            "table): train, sheep.") in metrics
    worst = re.findall(r"^\| `(\d+\.jpg)` \| ([\d.]+) \| ([\d.]+) \|$", metrics, re.M)
    assert [w[0] for w in worst] == [Path(w["path"]).name for w in report["worst_images"]]
    assert worst[:3] == [("000000000049.jpg", "0.2387", "0.9052"), ("000000000109.jpg", "0.3323", "0.9970"),
                         ("000000000074.jpg", "0.4035", "0.8649")]
    ev = _section(card, "Evaluation data")
    assert "- **Images evaluated:** 8, 2,171,920 pixels counted" in ev
    assert "- **Classes:** 8 in the data, 5 of them in the ground truth\n" in ev
    assert "counted as background:** 13 (aeroplane, bird, boat, bottle, bus, car, cat, chair," in ev


def test_deeplab_card_subgroups_and_limitations(carded):
    report, card = carded
    groups = {g["group"]: g for g in report["subgroups"][0]["groups"]}
    animals, people = groups["animals"], groups["people"]
    assert (animals["n"], animals["status"], people["n"], people["status"]) == (3, "worse", 5, "best")
    sub = _section(card, "Subgroup results")
    assert (f"| animals | 3 | 0.2807 | {animals['ci'][0]:.4f}–{animals['ci'][1]:.4f} | -0.5563 | worse |\n"
            f"| people | 5 | 0.8371 | {people['ci'][0]:.4f}–{people['ci'][1]:.4f} | +0.0000 | best |\n") in sub
    items = re.findall(r"^- (.+)$", _section(card, "Limitations"), re.M)
    assert items[0].startswith("The model does measurably worse on one subgroup: scene = **animals** has mIoU "
                               "0.2807")
    assert items[1:] == [
        "IoU is below 0.5 for 3 classes: cow (0.0000, only predicted, never in the ground truth), horse (0.0000), "
        "bicycle (0.0251).",
        "2 classes of the data are absent from both the ground truth and the prediction (train, sheep): these images "
        "say nothing about how the model does on them.",
        "Only the data's classes were measured: the model's 13 other labels were counted as background (aeroplane, "
        "bird, boat, bottle, bus, car, cat, chair, diningtable, motorbike, pottedplant, sofa, tvmonitor), so how "
        "well it finds those is unknown.",
        "The evaluation set is too small to judge (8 images, fewer than 30): the confidence intervals are wide, and "
        "a few images say little about other scenes.",
        MEASURED_ONLY,
    ]


def test_report_writes_the_card_beside_it(zoo_cache, coco_masks, tmp_path):
    """--report alone: model_card.md beside the page, as for the other tasks; the same figures."""
    from visor.cli.main import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", "--model", "deeplabv3_voc", str(coco_masks), "--resamples", "50", "--threads", "1",
                     "--no-progress", "--report", str(tmp_path / "report.html")])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_card.md", "report.html"]
    card = (tmp_path / "model_card.md").read_text(encoding="utf-8")
    assert "| mIoU | 0.4029 |" in card and "No subgroup analysis was run" in card
    assert len(re.findall(r'src="data:image/jpeg;base64,', (tmp_path / "report.html").read_text())) == IMAGES
