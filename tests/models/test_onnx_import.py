"""Importing ONNX detector exports: layout, input size, labels, licence and origin, visor.load."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import visor
from visor.errors import ConfigError, ModelNotFound
from visor.models import Detector, LicenseWarning, ModelCard, card_from_onnx
from visor.models.onnx_import import detect_layout, grid_cells, inspect_onnx, metadata_format


def make_onnx(path: Path, output: np.ndarray, *, input_shape=(1, 3, 64, 64), output_shape=None,
              metadata: dict[str, str] | None = None) -> Path:
    """An ONNX model whose output is the constant ``output`` whatever the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output_shape or output.shape))
    nodes = [helper.make_node("Constant", [], ["value"], value=numpy_helper.from_array(output.astype(np.float32))),
             helper.make_node("Identity", ["value"], ["output0"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [out]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return path


def nudenet_onnx() -> Path:
    nudenet = pytest.importorskip("nudenet")
    return Path(nudenet.__file__).parent / "320n.onnx"


N64 = grid_cells((64, 64))  # 64 + 16 + 4 = 84 cells for a 64x64 input


def test_grid_cells():
    assert N64 == 84
    assert grid_cells((640, 640)) == 8400
    assert grid_cells((320, 480)) == 40 * 60 + 20 * 30 + 10 * 15


@pytest.mark.parametrize(
    ("shape", "nc", "expected"),
    [
        ((1, 84, 8400), None, "yolov8"),
        ((1, 6, 2100), 2, "yolov8"),
        ((1, 25200, 85), None, "yolov5"),
        ((1, 25200, 85), 80, "yolov5"),
        ((1, 8400, 85), None, "yolox"),
        ((1, 3 * 8500, 85), None, "yolov5"),  # a P6 model: strides 8..64
        ((1, 84, "anchors"), None, "yolov8"),
    ],
)
def test_detect_layout_from_shapes(shape, nc, expected):
    assert detect_layout(shape, (640, 640), num_classes=nc) == expected


def test_detect_layout_refuses_what_it_cannot_tell():
    with pytest.raises(ConfigError, match="output_format"):
        detect_layout((1, 1234, 85), (640, 640))
    with pytest.raises(ConfigError, match="labels"):
        detect_layout((1, 84, 8400), (640, 640), num_classes=3)
    with pytest.raises(ConfigError, match="expected"):
        detect_layout((1, 1000), (640, 640))


def test_metadata_format():
    assert metadata_format({"author": "Ultralytics", "version": "8.3.1", "task": "detect"}) == "yolov8"
    assert metadata_format({"stride": "32", "names": "{0: 'person'}"}) == "yolov5"
    assert metadata_format({}) is None


def test_yolov8_static_export(tmp_path):
    path = make_onnx(tmp_path / "v8.onnx", np.zeros((1, 6, N64)))
    card = card_from_onnx(path)
    assert card.task == "detection" and card.output_format == "yolov8"
    assert card.labels == ("class_0", "class_1")
    assert card.preprocess.input_size == (64, 64) and card.preprocess.resize == "letterbox"
    assert card.preprocess.letterbox_align == "center" and card.preprocess.pad_value == 114
    assert card.preprocess.mean == (0, 0, 0) and card.preprocess.std == (1, 1, 1)
    assert card.weights.kind == "path" and card.weights.format == "onnx"
    assert card.weights.location == os.fspath(path.resolve())
    assert card.weights.sha256 == visor.models.weights.sha256_file(path)
    assert card.license == "unknown" and str(path.resolve()) in card.source
    assert card.name == "v8"


def test_yolov5_and_yolox_told_apart_by_the_box_count(tmp_path):
    v5 = card_from_onnx(make_onnx(tmp_path / "v5.onnx", np.zeros((1, 3 * N64, 8))))
    assert v5.output_format == "yolov5" and v5.num_classes == 3
    yx = card_from_onnx(make_onnx(tmp_path / "yx.onnx", np.zeros((1, N64, 8))))
    assert yx.output_format == "yolox" and yx.num_classes == 3
    assert yx.preprocess.letterbox_align == "top_left"
    np.testing.assert_allclose(yx.preprocess.std, [1 / 255] * 3)  # YOLOX takes 0..255
    forced = card_from_onnx(tmp_path / "yx.onnx", output_format="yolov5")
    assert forced.output_format == "yolov5"


def test_ultralytics_metadata_names_imgsz_and_licence(tmp_path):
    meta = {"author": "Ultralytics", "version": "8.3.40", "task": "detect", "stride": "32", "imgsz": "[96, 128]",
            "names": "{0: 'cat', 1: 'dog'}", "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "description": "Ultralytics YOLO11n model trained on pets.yaml", "date": "2024-11-01T10:00:00"}
    path = make_onnx(tmp_path / "pets.onnx", np.zeros((1, 6, grid_cells((96, 128)))),
                     input_shape=("batch", 3, "height", "width"), output_shape=("batch", 6, "anchors"), metadata=meta)
    info = inspect_onnx(path)
    assert info.input_shape == ("batch", 3, "height", "width") and info.metadata["imgsz"] == "[96, 128]"
    card = card_from_onnx(path)
    assert card.output_format == "yolov8" and card.labels == ("cat", "dog")
    assert card.preprocess.input_size == (96, 128)
    assert card.license.startswith("AGPL-3.0") and card.description.startswith("Ultralytics YOLO11n")
    assert "Ultralytics, version 8.3.40, 2024-11-01" in card.source
    assert card_from_onnx(path, labels=["a", "b"]).labels == ("a", "b")
    assert card_from_onnx(path, labels={1: "B", 0: "A"}).labels == ("A", "B")
    with pytest.raises(ConfigError, match="2 classes but 3 labels"):
        card_from_onnx(path, labels=["a", "b", "c"])
    assert card_from_onnx(path, input_size=(64, 64)).preprocess.input_size == (64, 64)
    over = card_from_onnx(path, preprocess={"letterbox_align": "top_left", "pad_value": 0})
    assert over.preprocess.letterbox_align == "top_left" and over.preprocess.pad_value == 0
    assert over.preprocess.input_size == (96, 128)


def test_dynamic_input_without_metadata_defaults_to_640_and_probes_the_box_count(tmp_path):
    path = make_onnx(tmp_path / "dyn.onnx", np.zeros((1, 3 * grid_cells((640, 640)), 7)),
                     input_shape=(1, 3, "h", "w"), output_shape=(1, "n", 7))
    card = card_from_onnx(path)
    assert card.preprocess.input_size == (640, 640)
    assert card.output_format == "yolov5" and card.num_classes == 2


def test_agpl_models_warn_when_loaded(tmp_path):
    meta = {"author": "Ultralytics", "version": "8.2.0", "task": "detect", "names": "{0: 'a', 1: 'b'}"}
    path = make_onnx(tmp_path / "agpl.onnx", np.zeros((1, 6, N64)), metadata=meta)
    assert card_from_onnx(path).license == "AGPL-3.0 (Ultralytics)"  # no licence key: Ultralytics' own
    with pytest.warns(LicenseWarning, match="AGPL-3.0") as record:
        det = visor.load(path)
    assert record[0].filename == __file__  # the warning names the caller's line
    assert isinstance(det, Detector)
    plain = make_onnx(tmp_path / "mine.onnx", np.zeros((1, 6, N64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        visor.load(plain)


def test_nudenet_export_loads_through_the_generic_importer():
    path = nudenet_onnx()
    card = card_from_onnx(path)
    assert card.output_format == "yolov8" and card.preprocess.input_size == (320, 320)
    assert card.num_classes == 18 and card.labels[1] == "FACE_FEMALE" and card.labels[12] == "FACE_MALE"
    assert "AGPL-3.0" in card.license and "Ultralytics" in card.source
    with pytest.warns(LicenseWarning, match="AGPL"):
        det = visor.load(path)
    assert isinstance(det, Detector) and det.card.output_format == "yolov8"


def test_load_prefers_a_card_beside_the_onnx_file(tmp_path):
    path = make_onnx(tmp_path / "model.onnx", np.zeros((1, 6, N64)))
    card = card_from_onnx(path, labels=["cat", "dog"]).replace(name="pets")
    card.replace(weights=card.weights.__class__(kind="path", location="model.onnx", sha256=card.weights.sha256,
                                                format="onnx")).save(tmp_path)
    assert visor.load(path).name == "pets"
    assert visor.load(tmp_path).name == "pets"
    assert visor.load(path, labels=["x", "y"]).labels == ("x", "y")  # overrides re-import the file
    other = make_onnx(tmp_path / "other.onnx", np.zeros((1, 6, N64)))
    assert visor.load(other).name == "other"  # that card is not about this file


def test_load_errors(tmp_path):
    with pytest.raises(ModelNotFound):
        visor.load(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(visor.WeightsError):
        visor.load(broken)


def test_detection_cards_load_as_detectors_and_keep_their_json_form(tmp_path):
    path = make_onnx(tmp_path / "model.onnx", np.zeros((1, 6, N64)))
    card = card_from_onnx(path)
    saved = card.save(tmp_path / "card.json")
    assert ModelCard.from_dict(json.loads(saved.read_text())) == card
    assert isinstance(visor.load(saved), Detector)
    assert isinstance(visor.load("efficientnet_lite0"), visor.Classifier)
