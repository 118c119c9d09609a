"""``visor detect``: text and JSON Lines output, bad files, annotated copies, licence warnings, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor
from visor.cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"
N64 = 84  # grid cells of a 64x64 input over strides 8, 16, 32


def make_onnx(path: Path, output: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    """An ONNX detector (input 1x3x64x64) whose output is the constant ``output``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [helper.make_node("Constant", [], ["value"], value=numpy_helper.from_array(output.astype(np.float32))),
             helper.make_node("Identity", ["value"], ["output0"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [out]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, os.fspath(path))
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    out = np.zeros((1, 6, N64), np.float32)
    out[0, :, 0] = [32, 32, 20, 10, 0.9, 0.0]  # cat, centre of the input
    out[0, :, 1] = [16, 16, 8, 8, 0.0, 0.6]  # dog
    return make_onnx(tmp_path / "pets.onnx", out, {"names": "{0: 'cat', 1: 'dog'}"})


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("RGB", (128, 64), (200, 200, 200)).save(root / "a" / "wide.jpg")
    Image.new("RGB", (64, 64), (200, 200, 200)).save(root / "b" / "wide.jpg")  # same name, other folder
    Image.new("RGB", (64, 128), (200, 200, 200)).save(root / "b" / "tall.webp")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output_is_one_line_per_box(capsys, model, photos):
    code, out, err = run(capsys, "detect", str(photos / "a" / "wide.jpg"), "--model", str(model))
    assert code == 0 and err == ""
    lines = out.splitlines()
    path = str(photos / "a" / "wide.jpg")
    assert lines == [f"{path}  cat  0.9000  44.0 22.0 84.0 42.0", f"{path}  dog  0.6000  24.0 0.0 40.0 8.0"]


def test_json_lines_are_the_api_json(capsys, model, photos):
    code, out, _ = run(capsys, "detect", str(photos), "--model", str(model), "--json", "--conf", "0.7")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["image"]).relative_to(photos).as_posix() for r in records] == [
        "a/wide.jpg", "b/tall.webp", "b/wide.jpg"]
    det = visor.load(model)
    for r in records:
        assert set(r) == {"image", "detections"}
        assert r["detections"] == det.detect(r["image"], conf=0.7).to_dict()
        assert [d["class_name"] for d in r["detections"]["detections"]] == ["cat"]


def test_options_reach_the_detector(capsys, model, photos):
    path = str(photos / "b" / "wide.jpg")
    _, out, _ = run(capsys, "detect", path, "--model", str(model), "--max-det", "1")
    assert len(out.splitlines()) == 1
    labels = photos.parent / "labels.txt"
    labels.write_text("kitten\npuppy\n")
    _, out, _ = run(capsys, "detect", path, "--model", str(model), "--labels", str(labels))
    assert [line.split("  ")[1] for line in out.splitlines()] == ["kitten", "puppy"]


def test_bad_files_are_reported_one_line_each_and_the_rest_go_on(capsys, model, photos, tmp_path):
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(SAMPLE.read_bytes()[:3000])
    missing = tmp_path / "missing.png"
    good = str(photos / "b" / "wide.jpg")
    code, out, err = run(capsys, "detect", good, str(bad), str(missing), good, "--model", str(model), "--json")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r.get("error", {}).get("type") for r in records] == [None, "CorruptImage", "ImageNotFound", None]
    assert err.splitlines() == [
        f"visor: error: {bad}: CorruptImage: {records[1]['error']['message']}",
        f"visor: error: {missing}: ImageNotFound: {records[2]['error']['message']}",
        "visor: error: 2 of 4 images failed",
    ]


def test_save_annotated_keeps_paths_names_and_formats(capsys, model, photos, tmp_path):
    out_dir = tmp_path / "annotated"
    code, _, _ = run(capsys, "detect", str(photos), "--model", str(model), "--save-annotated", str(out_dir))
    assert code == 0
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert written == ["a/wide.jpg", "b/tall.webp", "b/wide.jpg"]
    with Image.open(out_dir / "a" / "wide.jpg") as im:
        assert im.format == "JPEG" and im.size == (128, 64)
        arr = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(arr[32, 44] - visor.features.class_color(0)).max() < 60  # the cat's left edge
    with Image.open(out_dir / "b" / "tall.webp") as im:
        assert im.format == "WEBP" and im.size == (64, 128)


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_annotated_never_overwrites_inputs_or_collapses_outputs(capsys, model, tmp_path):
    photos = tmp_path / "x"
    photos.mkdir()
    for ext in ("bmp", "gif", "png"):
        Image.new("RGB", (64, 64), (200, 200, 200)).save(photos / f"x.{ext}")
    before = _digests(photos)
    for out in (photos, photos / "sub", tmp_path):
        code, _, err = run(capsys, "detect", str(photos), "--model", str(model), "--save-annotated", str(out))
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"visor: error: OutputConflict: --save-annotated {out} ")
    assert _digests(photos) == before and not (photos / "sub").exists()

    out = tmp_path / "annotated"
    code, _, _ = run(capsys, "detect", str(photos), "--model", str(model), "--save-annotated", str(out))
    assert code == 0
    formats = {}
    for name in ("x.bmp", "x.gif", "x.png"):
        with Image.open(out / name) as im:
            formats[name] = im.format
    assert formats == {"x.bmp": "BMP", "x.gif": "GIF", "x.png": "PNG"}  # three inputs, three outputs
    written = _digests(out)
    code, _, err = run(capsys, "detect", str(photos), "--model", str(model), "--save-annotated", str(out))
    assert code == 2 and err == (f"visor: error: OutputConflict: {out / 'x.bmp'} already exists (and 2 more); "
                                 "choose an empty folder or pass --overwrite\n")
    assert _digests(out) == written
    code, _, _ = run(capsys, "detect", str(photos), "--model", str(model), "--save-annotated", str(out),
                     "--overwrite")
    assert code == 0 and _digests(photos) == before


def test_agpl_models_warn_on_one_stderr_line(capsys, tmp_path, photos):
    out = np.zeros((1, 6, N64), np.float32)
    meta = {"author": "Ultralytics", "version": "8.1.0", "task": "detect", "names": "{0: 'a', 1: 'b'}",
            "license": "AGPL-3.0 License (https://ultralytics.com/license)"}
    path = make_onnx(tmp_path / "yolo.onnx", out, meta)
    code, out_text, err = run(capsys, "detect", str(photos / "a" / "wide.jpg"), "--model", str(path))
    assert code == 0 and out_text == ""
    assert len(err.splitlines()) == 1 and err.startswith("visor: warning: model 'yolo' is licensed under AGPL-3.0")


def test_usage_errors_exit_2(capsys, photos):
    path = str(photos / "a" / "wide.jpg")
    code, _, err = run(capsys, "detect", path, "--model", "no-such-model")
    assert code == 2 and len(err.splitlines()) == 1
    code, _, err = run(capsys, "detect", path, "--model", "efficientnet_lite0")
    assert code == 2 and "needs a detection model" in err
    for argv in (["detect", path, "--conf", "2"], ["detect", path, "--iou", "x"], ["detect"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_no_model_means_yolox_nano_and_it_finds_the_bus(yolox_nano):
    """A fresh process (the session's offline cache comes through VISOR_CACHE): no --model runs the registry's
    default detector, yolox_nano, which finds the sample photo's school bus and nothing else above 0.3."""
    proc = subprocess.run([sys.executable, "-m", "visor", "detect", str(SAMPLE), "--json"], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0 and proc.stderr == ""
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["detections"] == yolox_nano.detect(SAMPLE).to_dict()
    boxes = record["detections"]["detections"]
    assert (boxes[0]["class_name"], round(boxes[0]["confidence"], 2)) == ("bus", 0.96)
    np.testing.assert_allclose(boxes[0]["xyxy"], [116.3, 113.6, 578.9, 318.6], atol=2.0)
    assert all(b["confidence"] < 0.3 for b in boxes[1:]), boxes


def test_the_default_detector_is_named_in_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["detect", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"\(default:? yolox_nano, COCO's 80 classes\)", text), text
