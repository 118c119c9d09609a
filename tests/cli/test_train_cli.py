"""visor train classify / visor evaluate / visor classify --model RUN_DIR, end to end on tiny real data."""

from __future__ import annotations

import json

import pytest

import visor
from visor.cli.main import main
from visor.data import ClassificationDataset, Sample
from visor.errors import ConfigError
from visor.evaluate.classifier import evaluate_classifier


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    full = ClassificationDataset.load(shared_data("imagenette-dev"))
    classes = full.classes[:3]
    samples = []
    for c in classes:
        train = sorted(s.path for s in full.samples if s.label == c and s.split == "train")[:6]
        val = sorted(s.path for s in full.samples if s.label == c and s.split == "val")[:4]
        samples += [Sample(p, c, "train") for p in train] + [Sample(p, c, "val") for p in val]
    return ClassificationDataset(tuple(samples), classes).to_manifest(tmp_path_factory.mktemp("data") / "d.csv")


@pytest.fixture(scope="module")
def run_dir(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "classify", str(manifest), "--out", str(out), "--epochs", "1", "--img-size", "96",
                 "--batch-size", "6", "--no-progress"])
    assert code == 0
    return out


def test_train_writes_the_model_files(run_dir):
    assert (run_dir / "card.json").is_file() and (run_dir / "model.onnx").is_file()


def test_run_dir_classifies_from_the_cli(run_dir, manifest, capsys):
    image = ClassificationDataset.load(manifest).samples[0].path
    code = main(["classify", "--model", str(run_dir), str(image), "--json", "--top-k", "3"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and len(record["classifications"]["predictions"]) == 3
    assert record["classifications"]["model"] == "tiny"


def test_evaluate_cli_json_table_and_files(run_dir, manifest, capsys, tmp_path):
    code = main(["evaluate", str(run_dir), str(manifest), "--split", "val", "--json", "--out", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["num_samples"] == 12 and report["split"] == "val"
    keys = {"accuracy", "macro_f1", "confusion", "ece_before_scaling", "ece_after_scaling", "temperature"}
    assert keys <= set(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "reliability.png", "report.json"]
    code = main(["evaluate", str(run_dir), str(manifest)])
    out = capsys.readouterr().out
    assert code == 0 and "calibration: ECE" in out


def test_evaluate_matches_the_api(run_dir, manifest):
    ev = evaluate_classifier(visor.load(run_dir), manifest, split="val")
    ds = ClassificationDataset.load(manifest).subset("val")
    results = visor.load(run_dir).classify([s.path for s in ds.samples], top_k=1)
    expected = sum(r.label[0] == s.label for r, s in zip(results, ds.samples, strict=True)) / len(ds)
    assert ev.report.accuracy == pytest.approx(expected)
    assert ev.temperature == visor.load(run_dir).card.temperature


def test_evaluate_errors(run_dir, manifest, capsys, shared_data):
    code = main(["evaluate", str(run_dir), str(manifest), "--split", "vall"])
    assert code == 2 and "Did you mean 'val'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="labels not known to model"):
        evaluate_classifier(visor.load("efficientnet_lite0"), shared_data("imagenette-dev"), split="val")


def test_resume_of_a_finished_run_changes_nothing(run_dir, capsys):
    before = (run_dir / "model.onnx").read_bytes()
    assert main(["train", "classify", "--resume", str(run_dir), "--no-progress"]) == 0
    assert (run_dir / "model.onnx").read_bytes() == before


def test_train_needs_data_and_out(capsys):
    assert main(["train", "classify", "--no-progress"]) == 2


def test_train_detect_cli_end_to_end(tmp_path, capsys):
    """visor train detect on a tiny COCO export of the synthetic shapes, then visor detect on its run folder."""
    from synthetic_shapes import make_shapes_dataset  # tests/synthetic_shapes.py

    ds = make_shapes_dataset(tmp_path / "shapes", n_train=16, n_val=4, size=64)
    coco = ds.save(tmp_path / "coco", "coco")
    run = tmp_path / "run"
    code = main(["train", "detect", str(coco), "--out", str(run), "--epochs", "1", "--img-size", "64",
                 "--batch-size", "8", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "val AP50" in out and f"visor detect --model {run}" in out
    code = main(["detect", "--model", str(run), str(ds.images[0].path), "--json", "--conf", "0.01"])
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code == 0 and record["detections"]["type"] == "detections"
