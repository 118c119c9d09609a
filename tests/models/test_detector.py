"""The Detector: letterbox geometry, YOLOv8 / YOLOv5 / YOLOX decoding with exact boxes, NMS,
mapping back to the original image, the API, and parity with nudenet's NudeDetector."""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor
from visor.errors import ConfigError, CorruptImage, ImageNotFound
from visor.io import expand_paths
from visor.models import Detector, card_from_onnx
from visor.models.card import Preprocess
from visor.models.detector import Letterbox, objectness_candidates, yolox_decode_raw, yolox_grid, yolox_is_raw
from visor.models.onnx_import import grid_cells
from visor.models.preprocess import letterbox, letterbox_params
from visor.ops import box_iou
from visor.types import Detections

N64 = grid_cells((64, 64))  # 84


def make_onnx(path: Path, output: np.ndarray, *, input_shape=(1, 3, 64, 64), metadata=None) -> Path:
    """An ONNX model whose output is the constant ``output`` whatever the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [helper.make_node("Constant", [], ["value"], value=numpy_helper.from_array(output.astype(np.float32))),
             helper.make_node("Identity", ["value"], ["output0"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [out]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, os.fspath(path))
    return path


def image(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), (90, 120, 150))


# --------------------------------------------------------------------------- letterbox


def test_letterbox_centre_geometry_and_padding():
    cfg = Preprocess(input_size=(64, 64), resize="letterbox", interpolation="bilinear", pad_value=114)
    arr, scale, (px, py) = letterbox(image(128, 64), cfg)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    assert scale == 0.5 and (px, py) == (0, 16)
    assert (arr[:16] == 114).all() and (arr[48:] == 114).all()
    assert (arr[16:48] == (90, 120, 150)).all()
    # Odd padding: the extra pixel goes after the image (Ultralytics, albumentations PadIfNeeded).
    assert letterbox_params(100, 49, Preprocess(input_size=(64, 64), resize="letterbox")) == (0.64, 0.0, 16.0)


def test_letterbox_top_left_and_non_square_inputs():
    cfg = Preprocess(input_size=(48, 96), resize="letterbox", letterbox_align="top_left", pad_value=0)
    arr, scale, pad = letterbox(image(50, 100), cfg)
    assert arr.shape == (48, 96, 3) and scale == 0.48 and pad == (0, 0)
    assert (arr[:, 25:] == 0).all() and (arr[:, :23] == (90, 120, 150)).all()
    centre = Preprocess(input_size=(48, 96), resize="letterbox")
    arr, scale, pad = letterbox(image(200, 50), centre)
    assert arr.shape == (48, 96, 3) and scale == 0.48 and pad == (0, 12)


@pytest.mark.parametrize(("h", "w"), [(480, 640), (333, 517), (700, 301), (37, 80)])
def test_centre_letterbox_is_pixel_identical_to_the_training_pipeline(h, w):
    """visor's detector training letterboxes with albumentations LongestMaxSize + PadIfNeeded."""
    import albumentations as A
    import cv2

    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    train = A.Compose([A.LongestMaxSize(max_size=96),
                       A.PadIfNeeded(96, 96, position="center", border_mode=cv2.BORDER_CONSTANT, fill=114)])
    cfg = Preprocess(input_size=(96, 96), resize="letterbox", interpolation="bilinear", pad_value=114)
    np.testing.assert_array_equal(letterbox(img, cfg)[0], train(image=img)["image"])


def test_letterbox_mapping_round_trips():
    geo = Letterbox(width=128, height=64, scale=0.5, pad_x=0, pad_y=16)
    boxes = np.array([[22, 27, 42, 37], [-5, 0, 70, 70]], np.float32)
    np.testing.assert_allclose(geo.to_original(boxes), [[44, 22, 84, 42], [0, 0, 128, 64]])


# --------------------------------------------------------------------------- decoding


def yolov8_output(nc: int = 3) -> np.ndarray:
    """[1, 4+nc, 84] with five candidate boxes in 64x64 input pixels (cx, cy, w, h)."""
    out = np.zeros((1, 4 + nc, N64), np.float32)
    rows = [
        ((32, 32, 20, 10), 0, 0.90),  # kept
        ((33, 32, 20, 10), 0, 0.80),  # same class, IoU 0.9 with the first: suppressed
        ((33, 32, 20, 10), 1, 0.70),  # other class, same place: kept unless agnostic
        ((10, 30, 8, 8), 2, 0.20),  # below conf 0.25
        ((60, 40, 16, 12), 2, 0.60),  # crosses the right edge: clipped
    ]
    for i, (box, cls, score) in enumerate(rows):
        out[0, :4, i] = box
        out[0, 4 + cls, i] = score
    return out


@pytest.fixture
def v8(tmp_path) -> Detector:
    path = make_onnx(tmp_path / "v8.onnx", yolov8_output(), metadata={"names": "['cat', 'dog', 'bird']"})
    return visor.load(path)


def test_yolov8_decode_nms_and_mapping_back_are_exact(v8):
    assert isinstance(v8, Detector) and v8.labels == ("cat", "dog", "bird")
    # 128x64 image: scale 0.5, pad_y 16 -> original = (input - [0, 16]) * 2
    dets = v8.detect(image(128, 64))
    assert isinstance(dets, Detections)
    np.testing.assert_allclose(dets.xyxy, [[44, 22, 84, 42], [46, 22, 86, 42], [104, 36, 128, 60]])
    np.testing.assert_allclose(dets.confidence, [0.9, 0.7, 0.6])
    assert dets.class_id.tolist() == [0, 1, 2]
    assert dets.data["class_name"].tolist() == ["cat", "dog", "bird"]
    agnostic = v8.detect(image(128, 64), agnostic=True)
    assert agnostic.class_id.tolist() == [0, 2]
    assert len(v8.detect(image(128, 64), conf=0.1)) == 4
    assert len(v8.detect(image(128, 64), iou=0.95)) == 4
    assert len(v8.detect(image(128, 64), max_det=1)) == 1
    # A tall 32x64 image: scale 1, pad_x 16.
    np.testing.assert_allclose(v8.detect(image(32, 64)).xyxy[0], [6, 27, 26, 37])


def test_yolov8_transposed_output(tmp_path):
    path = make_onnx(tmp_path / "t.onnx", np.swapaxes(yolov8_output(), 1, 2))
    det = Detector.from_card(card_from_onnx(path, output_format="yolov8"))
    np.testing.assert_allclose(det.detect(image(64, 64)).xyxy[0], [22, 27, 42, 37])


def test_yolov5_scores_are_objectness_times_class(tmp_path):
    out = np.zeros((1, 3 * N64, 5 + 2), np.float32)
    out[0, 0] = [32, 32, 20, 10, 0.5, 0.9, 0.1]  # 0.45, class 0
    out[0, 1] = [10, 10, 8, 8, 0.4, 0.2, 0.5]  # 0.20 < 0.25
    out[0, 2] = [48, 48, 10, 10, 1.0, 0.0, 0.3]  # 0.30, class 1
    det = visor.load(make_onnx(tmp_path / "v5.onnx", out))
    assert det.card.output_format == "yolov5"
    dets = det.detect(image(64, 128))  # scale 0.5, pad_x 16
    np.testing.assert_allclose(dets.confidence, [0.45, 0.30], rtol=1e-6)
    assert dets.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(dets.xyxy, [[12, 54, 52, 74], [54, 86, 64, 106]])


def test_only_rows_with_objectness_above_conf_are_decoded_when_class_scores_are_probabilities():
    rows = np.zeros((6, 5 + 2), np.float32)
    rows[:, 4] = [0.1, 0.3, 0.25, 0.9, -1.0, 0.26]
    rows[:, 5:] = 0.5
    assert objectness_candidates(rows, 0.25).tolist() == [1, 3, 5]  # obj x cls <= obj: no other row can pass
    assert objectness_candidates(rows, 0.0).tolist() == [0, 1, 2, 3, 5]
    for bad in (1.5, -0.1, np.nan):  # class scores that are not probabilities: every row is scored
        changed = rows.copy()
        changed[4, 6] = bad
        assert objectness_candidates(changed, 0.25) is None
    assert objectness_candidates(rows.astype(np.float64), 0.25).tolist() == [1, 3, 5]


def test_yolov5_class_scores_above_one_still_score_every_row(tmp_path):
    """A row whose objectness is below conf but whose class score is above 1 (not a sigmoid) is kept."""
    out = np.zeros((1, 3 * N64, 5 + 2), np.float32)
    out[0, 0] = [32, 32, 20, 10, 0.2, 2.0, 0.0]  # 0.2 x 2.0 = 0.4 > 0.25
    out[0, 1] = [10, 10, 8, 8, 0.9, 0.0, 0.2]  # 0.18 < 0.25, though objectness passes
    det = visor.load(make_onnx(tmp_path / "v5.onnx", out))
    dets = det.detect(image(64, 64))
    np.testing.assert_allclose(dets.confidence, [0.4], rtol=1e-6)
    np.testing.assert_allclose(dets.xyxy, [[22, 27, 42, 37]])


def yolox_rows(raw: bool) -> np.ndarray:
    """[1, 84, 5+2]: one box, as raw grid offsets or decoded pixels."""
    out = np.zeros((1, N64, 7), np.float32)
    # stride 8, cell (x=3, y=2) -> index 2 * 8 + 3 = 19; stride 16, cell (1, 1) -> 64 + 1 * 4 + 1 = 69
    if raw:
        out[0, 19] = [0.5, 0.25, math.log(2), math.log(2), 0.8, 0.0, 1.0]  # centre (28, 18), 16x16
        out[0, 69] = [0.0, 0.0, 0.0, 0.0, 0.1, 1.0, 0.0]  # 0.1: dropped
    else:
        out[0, :, 0] = np.linspace(4, 60, N64)  # decoded centres spread over the input
        out[0, 19] = [28, 18, 16, 16, 0.8, 0.0, 1.0]
    return out


@pytest.mark.parametrize("raw", [True, False])
def test_yolox_raw_and_decoded_outputs(tmp_path, raw):
    det = visor.load(make_onnx(tmp_path / "yx.onnx", yolox_rows(raw)))
    assert det.card.output_format == "yolox" and det.card.preprocess.letterbox_align == "top_left"
    dets = det.detect(image(128, 64))  # top-left letterbox: scale 0.5, no pad
    assert len(dets) == 1 and dets.class_id.tolist() == [1]
    np.testing.assert_allclose(dets.xyxy, [[40, 20, 72, 52]], atol=1e-4)
    np.testing.assert_allclose(dets.confidence, [0.8])
    assert yolox_is_raw(yolox_rows(raw), (64, 64)) is raw
    forced = Detector.from_card(det.card, yolox_decode="decoded" if raw else "raw")
    assert not np.allclose(forced.detect(image(128, 64), conf=0.0).xyxy[:1], [[40, 20, 72, 52]], atol=1)


def test_yolox_grid_order():
    grid, stride = yolox_grid((64, 64))
    assert grid.shape == (84, 2) and stride.shape == (84, 1)
    assert grid[19].tolist() == [3, 2] and stride[19, 0] == 8
    assert grid[69].tolist() == [1, 1] and stride[69, 0] == 16 and stride[-1, 0] == 32


def test_yolox_decode_of_some_rows_is_the_decode_of_all_rows_at_those_rows():
    rows = np.random.default_rng(3).normal(size=(N64, 7)).astype(np.float32)
    full = yolox_decode_raw(rows, (64, 64))
    index = np.array([0, 19, 69, 83])
    assert yolox_decode_raw(rows[index], (64, 64), index).tobytes() == full[index].tobytes()
    grid, _ = yolox_grid((64, 64))  # a fresh, writable array each call: the decode's cached grid is its own
    grid += 100
    assert yolox_decode_raw(rows, (64, 64)).tobytes() == full.tobytes()
    with pytest.raises(ConfigError, match="has 84 boxes"):
        yolox_decode_raw(rows[:80], (64, 64))


def test_output_that_does_not_fit_the_card(tmp_path):
    path = make_onnx(tmp_path / "v8.onnx", yolov8_output())
    card = card_from_onnx(path).replace(labels=("a", "b"))
    with pytest.raises(ConfigError, match="does not fit"):
        Detector.from_card(card).detect(image(64, 64))


# --------------------------------------------------------------------------- API


def test_one_in_one_out_list_in_list_out_and_every_input_kind(v8, tmp_path):
    png = tmp_path / "a.png"
    image(128, 64).save(png)
    ref = v8.detect(png).to_dict()
    for source in (str(png), png.read_bytes(), io.BytesIO(png.read_bytes()), Image.open(png),
                   np.asarray(image(128, 64))):
        assert v8.detect(source).to_dict() == ref
    many = v8.detect([png, image(32, 64), png], batch_size=2)  # the graph's batch is 1: chunked
    assert isinstance(many, list) and len(many) == 3
    assert many[0].to_dict() == ref and len(many[1]) == 3


def test_detect_iter_reports_bad_inputs_and_goes_on(v8, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    outcomes = list(v8.detect_iter([image(64, 64), bad, tmp_path / "missing.png", image(64, 64)], batch_size=3))
    assert [o.ok for o in outcomes] == [True, False, False, True]
    assert isinstance(outcomes[1].error, CorruptImage) and isinstance(outcomes[2].error, ImageNotFound)
    d = outcomes[0].to_dict()
    assert set(d) == {"image", "detections"} and d["detections"]["type"] == "detections"
    assert outcomes[1].to_dict()["error"]["type"] == "CorruptImage"
    with pytest.raises(CorruptImage):
        v8.detect([image(64, 64), bad])


def test_detect_iter_prepares_the_next_batch_in_the_background(v8, monkeypatch):
    """Decode and letterbox + normalise run ahead in a worker thread; results are what detect() gives."""
    import threading

    threads, prepare = [], v8.prepare

    def recording(images):
        threads.append(threading.get_ident())
        return prepare(images)

    monkeypatch.setattr(v8, "prepare", recording)
    images = [image(128, 64), image(32, 64), image(64, 64), image(90, 40), image(64, 64)]
    outcomes = list(v8.detect_iter(images, batch_size=2))
    assert len(threads) == 3 and threading.get_ident() not in threads
    assert [o.result.to_dict() for o in outcomes] == [v8.detect(im).to_dict() for im in images]

    def failing(images):
        raise ConfigError("prepare failed")

    monkeypatch.setattr(v8, "prepare", failing)
    with pytest.raises(ConfigError, match="prepare failed"):
        list(v8.detect_iter(images, batch_size=2))


@pytest.mark.parametrize("options", [{"conf": 1.5}, {"iou": -0.1}, {"max_det": 0}, {"batch_size": 0}])
def test_bad_options_are_config_errors(v8, options):
    with pytest.raises(ConfigError):
        v8.detect([image(64, 64)], **options)


def test_detector_refuses_classification_cards(classifier):
    with pytest.raises(ConfigError, match=r"efficientnet_lite0 is a classification model, not a detection model"):
        Detector(classifier.card, classifier.session)


# --------------------------------------------------------------------------- nudenet parity


def _nudenet_box(d: dict) -> list[float]:
    x, y, w, h = d["box"]
    return [x, y, x + w, y + h]


def test_nudenet_320n_matches_nudedetector_on_the_face_photos(shared_data):
    """nudenet's 320n.onnx through the generic YOLOv8 importer gives NudeDetector's boxes and classes.

    nudenet's own pipeline: pad bottom/right with black to a square, cv2 INTER_LINEAR resize to
    320, 0..1, fed as BGR (its cvtColor(RGBA2BGR) swaps the channels cv2 decoded as BGR, and
    blobFromImage(swapRB=True) swaps them back), scores >= 0.2 then cv2 NMSBoxes at 0.25 / 0.45
    across classes, and x, y, w, h truncated to int. We compare after the same truncation.
    """
    import nudenet  # a test dependency

    path = Path(nudenet.__file__).parent / "320n.onnx"
    card = card_from_onnx(path, preprocess={"letterbox_align": "top_left", "pad_value": 0, "channel_order": "bgr"})
    assert card.preprocess.mean == (0, 0, 0) and card.preprocess.std == (1, 1, 1)
    with pytest.warns(visor.models.LicenseWarning, match="AGPL"):
        det = Detector.from_card(card)
    photos = expand_paths([shared_data("faces")])
    assert len(photos) >= 15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = nudenet.NudeDetector()
    results = det.detect(photos, conf=0.25, iou=0.45, agnostic=True)
    total, worst = 0, 1.0
    for photo, dets in zip(photos, results, strict=True):
        ref = reference.detect(str(photo))
        assert len(dets) == len(ref), photo
        if not ref:
            continue
        xy = dets.xyxy.astype(np.float64)
        truncated = np.concatenate([np.trunc(xy[:, :2]), np.trunc(xy[:, :2]) + np.trunc(xy[:, 2:] - xy[:, :2])], 1)
        iou = box_iou(truncated, np.array([_nudenet_box(d) for d in ref], np.float64))
        match = iou.argmax(1)
        assert len(set(match.tolist())) == len(ref), photo  # one to one
        for i, j in enumerate(match):
            assert iou[i, j] >= 0.99, (photo, dets[i].to_dict(), ref[j])
            assert dets.data["class_name"][i] == ref[j]["class"], photo
            assert abs(float(dets.confidence[i]) - ref[j]["score"]) < 1e-3, photo
            worst = min(worst, float(iou[i, j]))
        total += len(ref)
    print(f"nudenet parity: {total} boxes on {len(photos)} photos, min IoU {worst:.4f}")
    assert total >= 15
