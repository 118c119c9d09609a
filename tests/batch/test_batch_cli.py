"""``visor batch`` on the command line: summary, JSON Lines output, refusal and missing-Ray exit codes."""

from __future__ import annotations

import json
import sys

import pytest
from batch_helpers import LIMIT_PIXELS, check_against_reference

from visor.batch import iter_results
from visor.cli.main import main


def visor_batch(*argv: str) -> int:
    """``visor batch ARGV`` through the ``visor`` command line."""
    return main(["batch", *argv])


def test_cli_jsonl_summary_resume_and_refusal(tmp_path, image_folder, reference, capsys):
    root, _, bad = image_folder
    out = tmp_path / "labels.jsonl"
    args = [str(root), "--task", "classify", "--out", str(out), "--max-pixels", str(LIMIT_PIXELS),
            "--workers", "2", "--batch-size", "16", "--top-k", "5"]
    assert visor_batch(*args, "--json", "--no-progress") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["ok"], summary["quarantined"], summary["engine"]) == (60, 4, "local")
    check_against_reference(list(iter_results(out)), reference)
    assert {r["path"]: r["code"] for r in iter_results(out, quarantine=True)} == bad

    assert visor_batch(*args, "--no-progress") == 0
    text = capsys.readouterr().out
    assert "0 done, 0 quarantined, 64 skipped (already done) of 64 inputs" in text

    assert visor_batch(*args[:-1], "3", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "OutputMismatch" in err and "top_k" in err and "--overwrite" in err
    assert visor_batch(*args[:-1], "3", "--no-progress", "--overwrite") == 0
    capsys.readouterr()
    assert all(len(r["result"]["predictions"]) == 3 for r in iter_results(out))


def test_cli_detect_without_a_model_uses_the_default_detector(tmp_path, coco_images, yolox_nano, capsys):
    out = tmp_path / "boxes.jsonl"
    assert visor_batch(*coco_images[:3], "--task", "detect", "--out", str(out), "--json", "--no-progress") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["ok"], summary["model"], summary["task"]) == (3, "yolox_nano", "detect")
    rows = {r["path"]: r for r in iter_results(out)}
    assert all(r["model"] == "yolox_nano" and r["result"]["model"] == "yolox_nano" for r in rows.values())
    bus = rows[coco_images[0]]
    assert (bus["label"], bus["class_id"]) == ("bus", 5) and abs(bus["confidence"] - 0.962151) < 1e-4


def test_cli_ray_missing(monkeypatch, tmp_path, dev60, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert visor_batch(str(dev60[0]), "--out", str(tmp_path / "r.parquet"), "--engine", "ray") == 2
    assert "pip install 'visor-vision[ray]'" in capsys.readouterr().err


def test_cli_usage_errors(tmp_path, dev60, capsys):
    assert visor_batch(str(dev60[0]), "--out", str(tmp_path / "r.txt")) == 2
    assert ".parquet or .jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        visor_batch(str(dev60[0]), "--out", str(tmp_path / "r.parquet"), "--task", "panoptic")
