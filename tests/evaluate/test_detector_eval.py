"""Detector evaluation with subgroups: a trained detector on the synthetic shapes val set, half of
it darkened, through the library and through ``visor evaluate`` (COCO files + a metadata CSV)."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from PIL import Image, ImageEnhance

import visor
from visor.cli.main import main
from visor.data import formats
from visor.errors import ConfigError
from visor.evaluate.bootstrap import BootstrapConfig
from visor.evaluate.detection import evaluate_detections
from visor.evaluate.detector import evaluate_detector
from visor.evaluate.metadata import attach_metadata

DARKEN_FACTOR = 0.06  # PIL brightness factor, as the classification subgroup tests use


@pytest.fixture(scope="module")
def lit(shapes, tmp_path_factory):
    """The 40 val images; every other one darkened (group "dark"), the rest "day"; as a dataset,
    written as COCO, with a metadata CSV keyed by file name."""
    folder = tmp_path_factory.mktemp("lit")
    images, rows = [], []
    for i, im in enumerate(shapes.subset("val").images):
        group = "dark" if i % 2 else "day"
        path = im.path
        if group == "dark":
            path = folder / f"dark_{im.path.name}"
            with Image.open(im.path) as src:
                ImageEnhance.Brightness(src.convert("RGB")).enhance(DARKEN_FACTOR).save(path)
        images.append(dataclasses.replace(im, path=path, file_name=path.name))
        rows.append({"file_name": path.name, "lighting": group})
    ds = dataclasses.replace(shapes, images=tuple(images))
    coco = formats.save(ds, folder / "coco", "coco")
    meta = folder / "lighting.csv"
    with open(meta, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "lighting"])
        w.writeheader()
        w.writerows(rows)
    return ds, coco, meta


def test_the_darkened_images_get_a_worse_ap50(trained, lit):
    ds, _, meta = lit
    detector = visor.load(trained.run_dir)
    ev = evaluate_detector(detector, ds, by=["lighting"], metadata=meta, min_group_size=10,
                           bootstrap_config=BootstrapConfig(resamples=100))
    # the headline numbers are the COCO evaluator's on the same predictions
    preds = detector.detect([im.path for im in ds.images], conf=0.001, iou=0.6, max_det=100)
    expected = evaluate_detections([ds.detections(i) for i in range(len(ds))], preds, detector.labels)
    assert ev.report.ap50 == pytest.approx(expected.ap50) and ev.report.ap == pytest.approx(expected.ap)
    lo, hi = ev.intervals["ap50"]
    assert lo <= ev.report.ap50 <= hi
    (lighting,) = ev.subgroups
    assert lighting.metric == "ap50"
    dark, day = lighting.group("dark"), lighting.group("day")
    assert dark.n == day.n == 20
    print(f"\nAP50 day {day.score:.3f} {day.ci}, dark {dark.score:.3f} {dark.ci}")
    assert day.score > 0.85 and dark.status == "worse" and dark.ci[1] < day.ci[0]
    d = ev.to_dict()
    assert d["task"] == "detection" and d["confidence_intervals"]["ap50"] == list(ev.intervals["ap50"])
    assert "AP50" in ev.format_table() and "WORSE" in ev.format_table()


def test_visor_evaluate_on_a_detector(trained, lit, tmp_path, capsys):
    _, coco, meta = lit
    report = tmp_path / "report.html"
    code = main(["evaluate", str(trained.run_dir), str(coco), "--by", "lighting", "--metadata", str(meta),
                 "--min-group-size", "10", "--resamples", "50", "--report", str(report), "--json", "--no-progress"])
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert d["task"] == "detection" and d["num_images"] == 40
    groups = {g["group"]: g for g in d["subgroups"][0]["groups"]}
    assert groups["dark"]["status"] == "worse"
    page = report.read_text()
    assert "AP50 per class" in page and "Subgroups" in page and "Calibration" not in page
    card = (tmp_path / "model_card.md").read_text()
    assert "| AP50 |" in card and "Not measured for detectors" in card and "dark" in card


def test_detector_errors(trained, lit, capsys):
    ds, coco, meta = lit
    detector = visor.load(trained.run_dir)
    with pytest.raises(ConfigError, match="--by needs per-image metadata"):
        evaluate_detector(detector, ds, by=["lighting"])
    with pytest.raises(ConfigError, match="Did you mean 'lighting'"):
        evaluate_detector(detector, ds, by=["lightning"], metadata=meta)
    code = main(["evaluate", str(trained.run_dir), str(coco), "--corruptions", "--no-progress"])
    assert code == 2 and "not available for detectors" in capsys.readouterr().err


def test_metadata_matching(tmp_path):
    images = [(tmp_path / "a" / "x.jpg", "a/x.jpg"), (tmp_path / "b" / "x.jpg", "b/x.jpg"),
              (tmp_path / "b" / "y.jpg", None)]
    meta = tmp_path / "m.csv"
    meta.write_text("path,site\na/x.jpg,north\nb/y.jpg,south\nother/z.jpg,east\n")
    assert attach_metadata(images, meta) == [{"site": "north"}, {}, {"site": "south"}]
    by_name = tmp_path / "n.jsonl"
    by_name.write_text('{"file_name": "b/x.jpg", "site": "west"}\n{"file_name": "y.jpg", "site": 3}\n')
    assert attach_metadata(images, by_name) == [{}, {"site": "west"}, {"site": "3"}]
    (tmp_path / "none.csv").write_text("path,site\nnowhere.jpg,x\n")
    with pytest.raises(ConfigError, match="matches an evaluated image"):
        attach_metadata(images, tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("image,site\nx.jpg,x\n")
    with pytest.raises(ConfigError, match="needs a 'path' or 'file_name' column"):
        attach_metadata(images, tmp_path / "bad.csv")


def test_the_ap50_bootstrap_shows_its_own_progress(shapes, capsys):
    """The bootstrap ran silently for minutes after the evaluation bar reached 100%."""
    from types import SimpleNamespace

    val = shapes.subset("val")
    val = dataclasses.replace(val, images=val.images[:6])

    class Oracle:  # predicts the ground truth: no model needed to exercise the evaluation's phases
        name, labels = "oracle", val.classes

        def detect_iter(self, paths, **kwargs):
            for i in range(len(paths)):
                truth = val.detections(i)
                sure = dataclasses.replace(truth, confidence=truth.confidence * 0 + 1)
                yield SimpleNamespace(error=None, result=sure)

    ev = evaluate_detector(Oracle(), val, bootstrap_config=BootstrapConfig(resamples=12), progress=True)
    assert ev.report.ap50 == pytest.approx(1.0) and ev.intervals["ap50"] == (pytest.approx(1.0), pytest.approx(1.0))
    err = capsys.readouterr().err
    assert "evaluating: 100%" in err and "6/6" in err
    assert "bootstrap AP50: 100%" in err and "12/12" in err
