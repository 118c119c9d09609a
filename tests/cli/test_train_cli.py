"""visor train classify / visor evaluate / visor classify --model RUN_DIR, end to end on tiny real data."""

from __future__ import annotations

import json
import os

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
    code = main(["evaluate", "--model", str(run_dir), str(manifest), "--split", "val", "--json",
                 "--out", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["num_samples"] == 12 and report["split"] == "val"
    keys = {"accuracy", "macro_f1", "confusion", "ece_before_scaling", "ece_after_scaling", "temperature"}
    assert keys <= set(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "reliability.png", "report.json"]
    code = main(["evaluate", "--model", str(run_dir), str(manifest)])
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
    code = main(["evaluate", "--model", str(run_dir), str(manifest), "--split", "vall"])
    assert code == 2 and "Did you mean 'val'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="labels not known to model"):
        evaluate_classifier(visor.load("efficientnet_lite0"), shared_data("imagenette-dev"), split="val")


def test_resume_of_a_finished_run_changes_nothing(run_dir, capsys):
    before = (run_dir / "model.onnx").read_bytes()
    assert main(["train", "classify", "--resume", str(run_dir), "--no-progress"]) == 0
    assert (run_dir / "model.onnx").read_bytes() == before
    # flags that agree with the run's saved settings are fine
    assert main(["train", "classify", "--resume", str(run_dir), "--epochs", "1", "--img-size", "96",
                 "--no-progress"]) == 0
    assert (run_dir / "model.onnx").read_bytes() == before


def test_resume_refuses_to_change_settings_instead_of_ignoring_them(run_dir, capsys):
    """'--resume RUN --epochs 4' used to ignore --epochs silently."""
    before = (run_dir / "last.safetensors").read_bytes()
    assert main(["train", "classify", "--resume", str(run_dir), "--epochs", "4", "--lr", "0.01",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"cannot change epochs (1 -> 4), lr (0.003 -> 0.01) when resuming {run_dir}: a resumed run continues "
            "exactly with its saved settings (only threads and progress can change); to train with other "
            "settings, e.g. more epochs, start a new run in another folder") in err
    assert main(["train", "classify", "--resume", str(run_dir), "--no-augment", "--no-progress"]) == 2
    assert "cannot change augment (" in capsys.readouterr().err
    assert (run_dir / "last.safetensors").read_bytes() == before


def test_small_val_split_keeps_temperature_1_and_says_why(run_dir, capsys):
    """The 12 val images of the tiny run are too few to fit a temperature on (it used to be fitted)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reason = "not fitted: 12 validation images, fewer than 50; T = 1 kept"
    assert metrics["temperature"] == 1.0 and metrics["temperature_fit"] == reason
    card = visor.ModelCard.load(run_dir)
    assert card.temperature == 1.0 and card.metrics["temperature_fit"] == reason


def test_small_evaluation_says_too_small_and_uses_wilson(run_dir, manifest, capsys):
    assert main(["evaluate", "--model", str(run_dir), str(manifest), "--split", "val", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "too small to judge: 12 images (fewer than 30)" in out
    assert "95% CIs (Wilson for proportions; bootstrap, 1000 resamples, seed 0, for the others): accuracy [" in out
    report = evaluate_classifier(visor.load(run_dir), manifest, split="val").to_dict()
    k = round(report["accuracy"] * 12)
    from visor.evaluate.bootstrap import wilson_interval

    assert report["confidence_intervals"]["accuracy"] == list(wilson_interval(k, 12))
    assert report["confidence_intervals"]["too_small"] is True


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_ctrl_c_says_how_to_resume(task, tmp_path, monkeypatch, capsys):
    import visor.train.classifier
    import visor.train.detector

    def interrupted(data, out, config=None, **kwargs):
        (out_dir := tmp_path / "run").mkdir(exist_ok=True)
        if kwargs.get("resume") or config.epochs == 2:  # a checkpoint was written before Ctrl-C
            (out_dir / "last.safetensors").write_bytes(b"")
        raise KeyboardInterrupt

    module = visor.train.classifier if task == "classify" else visor.train.detector
    monkeypatch.setattr(module, "train_classifier" if task == "classify" else "train_detector", interrupted)
    run = tmp_path / "run"
    assert main(["train", task, "data", "--out", str(run), "--epochs", "3", "--no-progress"]) == 130
    assert capsys.readouterr().err == (f"visor: error: interrupted before the first checkpoint of {run}; nothing "
                                       "to resume, run the command again\n")
    assert main(["train", task, "data", "--out", str(run), "--epochs", "2", "--no-progress"]) == 130
    assert capsys.readouterr().err == f"visor: error: interrupted; resume with: visor train {task} --resume {run}\n"
    assert main(["train", task, "--resume", str(run), "--no-progress"]) == 130
    assert capsys.readouterr().err == f"visor: error: interrupted; resume with: visor train {task} --resume {run}\n"


def test_no_help_text_prints_a_doubled_percent_sign(capsys):
    """'visor train classify --help' printed 'a stratified 10%% of the training data'."""
    import argparse

    from visor.cli.main import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    texts = {p.prog: p.format_help() for p in parsers(build_parser())}
    assert "visor train classify" in texts and "visor evaluate" in texts
    assert "a stratified 10% of the training data" in " ".join(texts["visor train classify"].split())
    assert [prog for prog, text in texts.items() if "%%" in text] == []


def test_train_needs_data_and_out(capsys):
    assert main(["train", "classify", "--no-progress"]) == 2


def test_train_detect_cli_end_to_end(tmp_path, capsys):
    """visor train detect on a tiny COCO export of the synthetic shapes, then visor detect on its run folder."""
    from synthetic_shapes import make_shapes_dataset  # tests/synthetic_shapes.py
    from visor.data import formats

    ds = make_shapes_dataset(tmp_path / "shapes", n_train=16, n_val=4, size=64)
    coco = formats.save(ds, tmp_path / "coco", "coco")
    run = tmp_path / "run"
    code = main(["train", "detect", str(coco), "--out", str(run), "--epochs", "1", "--img-size", "64",
                 "--batch-size", "8", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "val AP50" in out and f"visor detect --model {run}" in out
    code = main(["detect", "--model", str(run), str(ds.images[0].path), "--json", "--conf", "0.01"])
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code == 0 and record["detections"]["type"] == "detections"


def test_train_asks_mkl_for_reproducible_products(tmp_path, monkeypatch, capsys):
    """`visor train` sets MKL's strict reproducibility before training (a resumed process then continues
    bit-identically); a value the user set is kept."""
    monkeypatch.delenv("MKL_CBWR", raising=False)
    assert main(["train", "classify", "--resume", str(tmp_path / "none"), "--no-progress"]) != 0
    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    assert main(["train", "classify", "--resume", str(tmp_path / "none"), "--no-progress"]) != 0
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"
