"""Helpers of the batch tests (imported by tests/batch/conftest.py and the test modules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

#: Bad files put beside the good images, with the error code each must be quarantined with.
BAD_FILES = {
    "broken.jpg": "corrupt_image",  # a truncated JPEG
    "empty.jpg": "corrupt_image",  # a path to an empty file: "image data is empty (0 bytes)"
    "notes.png": "unsupported_format",  # text with an image suffix
    "huge.png": "image_too_large",  # over LIMIT_PIXELS
}
LIMIT_PIXELS = 4_000_000
PER_CLASS = 6


def make_bad_files(folder: Path, good_jpeg: Path) -> dict[str, str]:
    """Write the BAD_FILES into ``folder``; their absolute paths with the expected error codes."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_jpeg.read_bytes()
    (folder / "broken.jpg").write_bytes(data[: len(data) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image\n")
    Image.new("RGB", (2500, 2500), (10, 20, 30)).save(folder / "huge.png")
    return {os.path.abspath(folder / name): code for name, code in BAD_FILES.items()}


def check_against_reference(rows: list[dict], reference: dict[str, dict], top_k: int = 5) -> None:
    """Each row's predictions are the classifier's: same classes and labels, confidences within 1e-6."""
    assert sorted(r["path"] for r in rows) == sorted(reference)
    for row in rows:
        ref = reference[row["path"]]
        preds = row["result"]["predictions"]
        assert [p["class_id"] for p in preds] == ref["class_id"][:top_k], row["path"]
        assert [p["label"] for p in preds] == ref["label"][:top_k]
        assert row["label"] == ref["label"][0] and row["class_id"] == ref["class_id"][0]
        assert abs(row["confidence"] - ref["confidence"][0]) <= 1e-6
        for p, c in zip(preds, ref["confidence"][:top_k], strict=True):
            assert abs(p["confidence"] - c) <= 1e-6  # to_dict rounds to 6 decimals
        assert row["status"] == "ok" and row["model"] == "efficientnet_lite0" and len(row["model_sha256"]) == 64


def make_constant_detector(path: Path) -> Path:
    """A YOLOv8-layout ONNX detector (64x64 input, classes cat and dog) whose output is constant: one box
    (cx 32, cy 32, w 20, h 10 in input pixels) scoring 0.9 for cat, whatever the image."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out_arr = np.zeros((1, 6, 84), np.float32)
    out_arr[0, :, 0] = [32, 32, 20, 10, 0.9, 0.0]
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    o = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out_arr.shape))
    nodes = [helper.make_node("Constant", [], ["value"], value=numpy_helper.from_array(out_arr)),
             helper.make_node("Identity", ["value"], ["output0"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [o]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'cat', 1: 'dog'}"})
    onnx.save(model, os.fspath(path))
    return path


#: coco128 images for the detect tests: the school bus photo (COCO 471) and four others.
COCO_IMAGES = ("000000000471.jpg", "000000000009.jpg", "000000000025.jpg", "000000000030.jpg", "000000000034.jpg")


VISOR_BATCH = [sys.executable, "-m", "visor", "batch"]


def run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``visor batch ARGV`` in a fresh interpreter."""
    return subprocess.run([*VISOR_BATCH, *argv], capture_output=True, text=True, timeout=timeout)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
