"""yolox_nano, the default detector, on real images: the card matches the shared file and its fixed
batch of 1, the input is BGR 0-255 letterboxed top-left with 114, the raw-grid decode agrees with
Megvii's reference post-processing, and the sample photo's bus is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.models import get_card
from visor.models import weights as weights_mod
from visor.models.onnx_import import inspect_onnx

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "bus.jpg"
BUS_GT_XYXY = (121.0, 112.0, 581.0, 324.0)  # coco128's box of 000000000471.jpg (x, y, w, h = 121, 112, 460, 212)


@pytest.fixture(scope="module")
def yolox(yolox_nano):
    """The session's yolox_nano (tests/conftest.py imports ../shared/models into the test cache)."""
    return yolox_nano


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------ Megvii's reference, written out here


def megvii_decode(raw: np.ndarray, size: int = 416) -> np.ndarray:
    """``demo_postprocess`` of YOLOX's ONNX demo (yolox/utils/demo_utils.py): grids per stride 8/16/32."""
    grids, strides = [], []
    for stride in (8, 16, 32):
        cells = size // stride
        xv, yv = np.meshgrid(np.arange(cells), np.arange(cells))
        grids.append(np.stack((xv, yv), 2).reshape(1, -1, 2))
        strides.append(np.full((1, cells * cells, 1), stride))
    grid, stride = np.concatenate(grids, 1), np.concatenate(strides, 1)
    out = raw.astype(np.float64).copy()
    out[..., :2] = (out[..., :2] + grid) * stride
    out[..., 2:4] = np.exp(out[..., 2:4]) * stride
    return out


def greedy_nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order, keep = list(np.argsort(-scores, kind="stable")), []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if box_iou(xyxy[i], xyxy[j]) <= iou]
    return keep


def megvii_postprocess(rows: np.ndarray, conf: float, iou: float) -> list[tuple[int, float, np.ndarray]]:
    """YOLOX's ``postprocess`` (yolox/utils/boxes.py) for one image: best class, obj x cls > conf,
    class-aware NMS; ``(class, score, xyxy in input pixels)`` best first."""
    cxcywh = rows[:, :4]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    cls = rows[:, 5:].argmax(1)
    score = rows[:, 4] * rows[np.arange(len(rows)), 5 + cls]
    found = []
    for c in np.unique(cls[score > conf]):
        idx = np.flatnonzero((score > conf) & (cls == c))
        found += [(int(c), float(score[idx[k]]), xyxy[idx[k]]) for k in greedy_nms(xyxy[idx], score[idx], iou)]
    return sorted(found, key=lambda f: -f[1])


# ------------------------------------------------------------------ tests


def test_the_shared_file_is_the_cards_and_runs_one_image_at_a_time(yolox):
    card = get_card("yolox_nano")
    assert weights_mod.sha256_file(yolox.session.path) == card.weights.sha256
    info = inspect_onnx(yolox.session.path)
    assert info.input_shape == (1, 3, 416, 416) and info.output_shapes == ((1, 3549, 85),)
    assert sum((416 // s) ** 2 for s in (8, 16, 32)) == 3549
    assert yolox.max_batch == 1  # the export's fixed batch: larger batches are run one image at a time
    assert len(yolox.labels) == 80 and yolox.labels[:3] == ("person", "bicycle", "car")
    assert (yolox.labels[5], yolox.labels[79]) == ("bus", "toothbrush")
    x, _ = yolox.preprocess([np.full((50, 60, 3), 90, np.uint8)] * 3)
    assert yolox.infer(x).shape == (3, 3549, 85)


def test_input_is_bgr_0_to_255_letterboxed_top_left_with_114(yolox):
    image = np.zeros((100, 200, 3), np.uint8)
    image[:] = (250, 128, 3)  # RGB
    batch, geometry = yolox.preprocess([image])
    assert batch.shape == (1, 3, 416, 416) and batch.dtype == np.float32
    # scale 416 / 200 = 2.08: the image fills rows 0..208 at the top (the border row may blend), 114 below
    assert [np.unique(batch[0, c, :207]).tolist() for c in range(3)] == [[3.0], [128.0], [250.0]]  # B, G, R
    assert np.unique(batch[0, :, 209:]).tolist() == [114.0]
    geo = geometry[0]
    assert (geo.scale, geo.pad_x, geo.pad_y) == (2.08, 0.0, 0.0)


def test_decode_agrees_with_megvii_postprocess_on_the_same_output(yolox):
    image = yolox.decode(SAMPLE)
    x, geometry = yolox.preprocess([image])
    raw = yolox.infer(x)
    assert float(np.abs(raw[0, :, :2]).max()) < 60  # raw grid offsets, not pixels (a decoded centre reaches ~416)
    ours = yolox.postprocess(raw, geometry, conf=0.01, iou=0.45)[0]
    ref = megvii_postprocess(megvii_decode(raw)[0], conf=0.01, iou=0.45)
    assert len(ours) == len(ref) >= 3
    assert ours.class_id.tolist() == [c for c, _, _ in ref]
    np.testing.assert_allclose(ours.confidence, [s for _, s, _ in ref], rtol=1e-5)
    scale = geometry[0].scale
    ref_xyxy = np.clip(np.array([b for _, _, b in ref]) / scale, 0, [640, 427, 640, 427])
    np.testing.assert_allclose(ours.xyxy, ref_xyxy, atol=1e-3)


def test_the_bus_matches_megvii_preprocessing_end_to_end(yolox):
    """Megvii's own preprocessing (OpenCV BGR, resize then pad to the top left with 114) and decode
    find the same bus as visor's pipeline, to a pixel or two and a hundredth of score."""
    import cv2

    bgr = cv2.imread(str(SAMPLE))
    r = min(416 / bgr.shape[0], 416 / bgr.shape[1])
    padded = np.full((416, 416, 3), 114, np.uint8)
    resized = cv2.resize(bgr, (int(bgr.shape[1] * r), int(bgr.shape[0] * r)), interpolation=cv2.INTER_LINEAR)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    raw = yolox.session.run(padded.transpose(2, 0, 1)[None].astype(np.float32))
    cls, score, xyxy = megvii_postprocess(megvii_decode(raw)[0], conf=0.25, iou=0.45)[0]
    bus = yolox.detect(SAMPLE)[0]
    assert (yolox.labels[cls], bus.data["class_name"][0]) == ("bus", "bus")
    assert abs(float(bus.confidence[0]) - score) < 0.01
    np.testing.assert_allclose(bus.xyxy[0], xyxy / r, atol=2.0)


def test_the_sample_photo_is_a_bus_and_nothing_else_is_likely(yolox):
    found = yolox.detect(SAMPLE)
    names, scores = found.data["class_name"].tolist(), found.confidence.tolist()
    assert names[0] == "bus" and scores[0] == pytest.approx(0.962, abs=0.005)
    np.testing.assert_allclose(found.xyxy[0], [116.3, 113.6, 578.9, 318.6], atol=2.0)
    assert box_iou(found.xyxy[0].tolist(), BUS_GT_XYXY) > 0.9
    assert all(s < 0.3 for s in scores[1:]), list(zip(names, scores, strict=True))  # at most a faint guess or two


def test_many_images_give_what_each_gives_alone(yolox, shared_data):
    coco = shared_data("coco128") / "images"
    paths = [SAMPLE, coco / "000000000009.jpg", coco / "000000000025.jpg"]
    together = yolox.detect(paths, batch_size=8)
    alone = [yolox.detect(p) for p in paths]
    assert [d.to_dict() for d in together] == [d.to_dict() for d in alone]
    assert [len(d) for d in alone] == [len(d) for d in together] and all(len(d) for d in alone)
    with Image.open(coco / "000000000025.jpg") as im:
        assert im.size == (640, 426)
    # two giraffes annotated: the big one is found, the far one (132x55 px, mostly hidden) is not
    assert alone[2].data["class_name"].tolist() == ["giraffe"]
    assert box_iou(alone[2].xyxy[0].tolist(), (385.53, 60.03, 600.5, 357.19)) > 0.9
    assert alone[1].data["class_name"][0] == "bowl" and "broccoli" in alone[1].data["class_name"].tolist()


def test_decoding_only_rows_above_conf_changes_no_detection(yolox, shared_data):
    """visor decodes and scores only the rows whose objectness passes conf (obj x cls <= obj): the same
    boxes, scores and classes, bit for bit, as decoding and scoring all 3549 rows, on real outputs."""
    from visor.models.detector import box_scores, select, yolox_decode_raw

    paths = [SAMPLE, *sorted((shared_data("coco128") / "images").glob("*.jpg"))[:24]]
    compared = 0
    for path in paths:
        x, geometry = yolox.preprocess([yolox.decode(path)])
        raw = yolox.infer(x)
        every_row = yolox_decode_raw(raw[0], (416, 416))
        for conf, iou, agnostic in ((0.25, 0.45, False), (0.001, 0.65, False), (0.0, 0.5, True)):
            ours = yolox.postprocess(raw, geometry, conf=conf, iou=iou, agnostic=agnostic)[0]
            xyxy, score, cls = select(*box_scores(every_row, "yolox"), conf=conf, iou=iou, max_det=300,
                                      agnostic=agnostic)
            assert ours.xyxy.tobytes() == geometry[0].to_original(xyxy).tobytes()
            assert ours.confidence.tobytes() == score.tobytes() and ours.class_id.tolist() == cls.tolist()
            compared += len(ours)
    assert compared > 1000  # conf 0.001 keeps many boxes per image
