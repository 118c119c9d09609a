"""The visor command: output formats, folders and globs, per-file errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import visor
from visor.cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder tree with three good images and a text file that folder expansion skips."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    data = SAMPLE.read_bytes()
    for name in ("one.jpg", "a/two.JPG", "a/b/three.jpeg"):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    ihdr = b"IHDR" + (30000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    bomb = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\r" + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
            + b"\x00\x00\x00\x00IEND\xaeB`\x82")  # declares 30000x30000, holds no pixels
    files = {
        "CorruptImage": ("cut.jpg", SAMPLE.read_bytes()[:4000]),
        "UnsupportedFormat": ("text.jpg", b"just some text\n"),
        "ImageTooLarge": ("bomb.png", bomb),
    }
    out = {}
    for kind, (name, data) in files.items():
        (tmp_path / name).write_bytes(data)
        out[kind] = tmp_path / name
    out["ImageNotFound"] = tmp_path / "missing.jpg"
    return out


def test_classify_sample_text_output(capsys):
    code, out, err = run(capsys, "classify", str(SAMPLE), "--top-k", "3")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == str(SAMPLE)
    assert len(lines) == 4 and "school bus (779)" in lines[1]


def test_json_output_is_the_api_json(capsys, classifier):
    code, out, _ = run(capsys, "classify", str(SAMPLE), "--json", "--top-k", "4")
    assert code == 0
    record = json.loads(out)
    assert record["image"] == str(SAMPLE)
    assert record["classifications"] == visor.classify(SAMPLE, top_k=4, model=classifier).to_dict()


def test_folders_recurse_and_globs_expand(capsys, photos):
    code, out, _ = run(capsys, "classify", str(photos), "--json", "--batch-size", "2", "--top-k", "1")
    assert code == 0
    images = [json.loads(line)["image"] for line in out.splitlines()]
    assert [Path(i).relative_to(photos).as_posix() for i in images] == ["a/b/three.jpeg", "a/two.JPG", "one.jpg"]
    code, out, _ = run(capsys, "classify", str(photos / "**" / "*.jpeg"), "--json")
    assert code == 0 and len(out.splitlines()) == 1


def test_progress_bar_for_folders(capsys, photos):
    code, _, err = run(capsys, "classify", str(photos), "--progress", "--top-k", "1")
    assert code == 0 and "3/3" in err
    code, _, err = run(capsys, "classify", str(photos), "--no-progress", "--top-k", "1")
    assert code == 0 and err == ""


@pytest.mark.parametrize("kind", ["CorruptImage", "UnsupportedFormat", "ImageTooLarge", "ImageNotFound"])
def test_each_bad_file_gives_one_line_and_exit_1(capsys, bad_files, kind):
    path = bad_files[kind]
    code, out, err = run(capsys, "classify", str(path))
    assert code == 1 and out == ""
    assert err.splitlines() == [err.strip()]  # exactly one line
    assert err.startswith(f"visor: error: {path}: {kind}: ")


def test_bad_files_are_reported_and_the_rest_go_on(capsys, bad_files):
    paths = [str(SAMPLE), *map(str, bad_files.values()), str(SAMPLE)]
    code, out, err = run(capsys, "classify", *paths, "--json", "--top-k", "1")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in records] == paths
    assert [r.get("error", {}).get("type") for r in records] == [None, *bad_files.keys(), None]
    assert records[-1]["classifications"]["predictions"][0]["label"] == "school bus"
    err_lines = err.splitlines()
    assert len(err_lines) == 5 and err_lines[-1] == "visor: error: 4 of 6 images failed"


def test_configurable_limits(capsys):
    code, _, err = run(capsys, "classify", str(SAMPLE), "--max-pixels", "1000")
    assert code == 1 and "ImageTooLarge" in err
    code, _, err = run(capsys, "classify", str(SAMPLE), "--max-bytes", "1000")
    assert code == 1 and "ImageTooLarge" in err


def test_unknown_model_and_bad_options_exit_2(capsys):
    code, _, err = run(capsys, "classify", str(SAMPLE), "--model", "efficientnet-lite0")
    assert code == 2 and "Did you mean 'efficientnet_lite0'" in err and len(err.splitlines()) == 1
    for argv in (["classify", str(SAMPLE), "--top-k", "0"], ["classify"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_models_command(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and any(line.startswith("efficientnet_lite0  classification") for line in out.splitlines()[1:])
    code, out, _ = run(capsys, "models", "--json")
    cards = {c["name"]: c for c in json.loads(out)}
    assert cards["efficientnet_lite0"]["labels"] == 1000 and cards["efficientnet_lite0"]["present"] is True


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    out = capsys.readouterr().out
    assert "folder" in out and "--top-k" in out and "exit" in out


def test_python_dash_m_exit_codes(tmp_path):
    """The real process: exit status and stderr as a shell sees them."""
    bad = tmp_path / "x.jpg"
    bad.write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "visor", "classify", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"visor: error: {bad}: UnsupportedFormat: not a supported image " \
        "(allowed: JPEG, PNG, WebP, BMP, GIF, TIFF)"


# --------------------------------------------------------------------------- rough edges: one line, never a traceback


def _constant_detector(path: Path) -> Path:
    """A tiny imported-ONNX "YOLOv8" detector (3 classes, 64x64) whose output is all zeros."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from visor.models.onnx_import import grid_cells

    out = np.zeros((1, 7, grid_cells((64, 64))), np.float32)
    nodes = [helper.make_node("Constant", [], ["value"], value=numpy_helper.from_array(out)),
             helper.make_node("Identity", ["value"], ["output0"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_classify_with_a_detector_says_use_detect(capsys, tmp_path):
    """It used to end in AttributeError: 'Detector' object has no attribute 'classify_iter'."""
    model = _constant_detector(tmp_path / "boxes.onnx")
    code, out, err = run(capsys, "classify", "--model", str(model), str(SAMPLE))
    assert code == 2 and out == ""
    assert err == (f"visor: error: ConfigError: {model} is a detection model; "
                   f"use visor detect --model {model}\n")


@pytest.mark.parametrize("argv", [["models", "--json"], ["classify", "DIR"], ["classify", "DIR", "--json"]])
def test_output_to_a_closed_pipe_stops_quietly(argv, photos, classifier):
    """``visor classify dir | head -1``: the reader is gone before visor writes (as if head had
    exited), so every write fails with EPIPE. It used to print a BrokenPipeError traceback."""
    argv = [str(photos) if a == "DIR" else a for a in argv]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "visor", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (1, "")


def test_annotate_with_no_images_says_so(capsys, tmp_path):
    """``visor annotate empty/`` used to exit 0 printing nothing."""
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "annotate", str(tmp_path / "empty"))
    assert (code, out, err) == (1, "", "visor: error: no images found\n")


def test_batch_parquet_without_pyarrow_fails_before_loading_the_model(capsys, tmp_path, monkeypatch):
    """A core install (no pyarrow) asked for Parquet: one line naming the extra and the JSON Lines
    alternative, before the model is loaded (it used to load, and on a cold cache export, first)."""
    from visor.batch.tasks import TaskSpec

    def no_model(self):
        raise AssertionError("the model was loaded before the missing pyarrow was reported")

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    monkeypatch.setattr(TaskSpec, "build", no_model)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bus.jpg").write_bytes(SAMPLE.read_bytes())
    out_dir = tmp_path / "results.parquet"
    code, out, err = run(capsys, "batch", str(tmp_path / "in"), "--out", str(out_dir))
    assert (code, out) == (2, "")
    assert err == ("visor: error: MissingDependency: Parquet output needs pyarrow: pip install 'visor-vision[batch]', "
                   "or write JSON Lines (an output ending in .jsonl)\n")
    assert not out_dir.exists()


def test_annotate_with_the_wrong_kind_of_model_reports_it_in_the_slot(capsys, tmp_path, classifier):
    """A detector as --model (labels) or a classifier as --detector (objects) used to end in an
    AttributeError traceback; now that feature reports a ConfigError in its own slot."""
    model = _constant_detector(tmp_path / "boxes.onnx")
    code, out, err = run(capsys, "annotate", str(SAMPLE), "--model", str(model), "--features", "labels")
    assert (code, err) == (0, "")
    message = "boxes is a detection model; the labels feature needs a classification model"
    assert json.loads(out)["labels"] == {"error": {"type": "ConfigError", "code": "invalid_config", "message": message}}
    code, out, err = run(capsys, "annotate", str(SAMPLE), "--detector", "efficientnet_lite0", "--features", "objects")
    assert (code, err) == (0, "")
    assert json.loads(out)["objects"]["error"]["message"] == (
        "efficientnet_lite0 is a classification model; the objects feature needs a detection model")
