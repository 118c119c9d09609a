"""The segmenter: deeplabv3_voc on real photos (pixel counts, an independent reference pipeline, person IoU
against COCO's polygons), the mask postprocessing against OpenCV / PyTorch, visor-trained run folders
(NCHW, dynamic batch), and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor
from segmentation_helpers import coco_person_masks  # tests/segmentation_helpers.py
from visor.errors import ConfigError, ImageNotFound, WeightsError
from visor.models import get_card
from visor.models.registry import DEFAULT_SEGMENTER
from visor.models.segmenter import Segmenter, logits_to_mask
from visor.models.tasks import builtin_tasks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")  # its numpy 2 copy= note

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
PERSON = 15  # "person" in Pascal VOC's 21 classes
BUS_CLASS = 6


@pytest.fixture(scope="module")
def segmenter(zoo_cache) -> Segmenter:
    """deeplabv3_voc, imported from ../shared/models into the session cache by conftest (nothing downloaded)."""
    return visor.load("deeplabv3_voc")


def reference_logits(path: Path) -> np.ndarray:
    """DeepLabV3's logits for an image, as ../shared/README.md describes the model, without visor's pipeline:
    PIL bilinear resize to 257x257, RGB x / 127.5 - 1, NHWC, the ONNX file run directly. (257, 257, 21)."""
    import onnxruntime as ort

    from zoo import require_models

    onnx_file = require_models("deeplabv3_voc")["deeplabv3_voc"]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    image = Image.open(path).convert("RGB")
    x = np.asarray(image.resize((257, 257), Image.Resampling.BILINEAR), np.float32) / 127.5 - 1
    return session.run(None, {session.get_inputs()[0].name: x[None]})[0][0]


def resized_argmax(logits_hwc: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain way: all class planes resized with OpenCV, argmax, softmax max."""
    import cv2

    big = cv2.resize(logits_hwc, (width, height), interpolation=cv2.INTER_LINEAR)
    e = np.exp(big - big.max(-1, keepdims=True))
    return big.argmax(-1), (e.max(-1) / e.sum(-1)).astype(np.float32)


# ------------------------------------------------------------------------------ deeplabv3_voc on real photos


def test_the_bus_photo(segmenter):
    """assets/bus.jpg (640x427): the school bus covers 70,728 pixels (25.9%), the rest is background.
    Feeding the model 0..1 instead of x/127.5-1 gives 70,651 bus pixels, BGR 69,674, a transposed input 0:
    the tolerance (20 px) catches each."""
    mask = segmenter.predict(BUS)
    assert (mask.height, mask.width) == (427, 640) and mask.mask.shape == (427, 640)
    assert mask.mask.dtype == np.uint8 and mask.model == "deeplabv3_voc"
    assert mask.class_names == get_card("deeplabv3_voc").labels and mask.class_names[BUS_CLASS] == "bus"
    areas = mask.areas
    assert set(areas) == {"background", "bus"}
    assert abs(areas["bus"] - 70728) <= 20, areas
    assert areas["bus"] + areas["background"] == 427 * 640
    assert mask.confidence is None


def test_matches_an_independent_reference_pipeline(segmenter, shared_data):
    """Masks equal, pixel for pixel, those of the README's recipe run by hand (PIL resize, x/127.5-1, ONNX
    Runtime, OpenCV resize of all 21 planes, argmax); the confidence equals the softmax maximum there."""
    photos = [BUS, shared_data("coco128") / "images" / "000000000436.jpg",
              shared_data("camvid") / "val" / "0016E5_07965.jpg"]
    for path in photos:
        logits = reference_logits(path)
        width, height = Image.open(path).size
        want, want_conf = resized_argmax(logits, width, height)
        got = segmenter.predict(path, with_confidence=True)
        assert np.array_equal(got.mask, want), path.name
        assert got.confidence.dtype == np.float32 and got.confidence.shape == (height, width)
        np.testing.assert_allclose(got.confidence, want_conf, atol=1e-5)
        assert np.array_equal(segmenter.predict(path).mask, want)  # the fast path without confidence too


def test_person_iou_against_coco_polygons(segmenter, shared_data):
    """000000000436.jpg (one person, 63% of the frame): IoU 0.847 with COCO's polygons. Over the 61 coco128
    images with people, pooled (intersection / union of all pixels): 0.635 (issue 16 asks >= 0.60)."""
    coco128 = shared_data("coco128")
    people = coco_person_masks(coco128)
    assert len(people) == 61
    one = segmenter.predict(coco128 / "images" / "000000000436.jpg").binary("person")
    gt = people["000000000436.jpg"]
    iou = (one & gt).sum() / (one | gt).sum()
    assert iou == pytest.approx(0.8469, abs=0.003)
    inter = union = 0
    names = sorted(people)
    for name, outcome in zip(names, segmenter.predict_iter([coco128 / "images" / n for n in names]), strict=True):
        pred = outcome.result.mask == PERSON
        inter += int((pred & people[name]).sum())
        union += int((pred | people[name]).sum())
    assert inter / union == pytest.approx(0.6353, abs=0.003)
    assert inter / union >= 0.60


def test_iter_goes_past_bad_inputs_and_batches_agree(segmenter, tmp_path, shared_data):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    camvid = sorted((shared_data("camvid") / "val").glob("*.jpg"))[:3]
    sources = [camvid[0], broken, camvid[1], tmp_path / "missing.png", camvid[2]]
    outcomes = list(segmenter.predict_iter(sources, batch_size=2))
    assert [o.ok for o in outcomes] == [True, False, True, False, True]
    assert isinstance(outcomes[3].error, ImageNotFound)
    for path, outcome in zip(camvid, [outcomes[0], outcomes[2], outcomes[4]], strict=True):
        assert np.array_equal(outcome.result.mask, segmenter.predict(path).mask)
    d = outcomes[0].to_dict()
    assert d["segmentation"]["type"] == "segmentation" and (d["segmentation"]["width"],
                                                             d["segmentation"]["height"]) == (480, 360)
    with pytest.raises(ImageNotFound):
        segmenter.predict([camvid[0], tmp_path / "missing.png"])


def test_the_task_registry_and_the_top_level_verb(segmenter):
    spec = builtin_tasks().get("segmentation")
    assert (spec.verb, spec.route, spec.batch_task, spec.annotate_feature) == ("segment", "/v1/segment", "segment",
                                                                             "segmentation")
    assert spec.default_model == DEFAULT_SEGMENTER == "deeplabv3_voc"
    assert spec.predictor_class() is Segmenter and spec.result_type().__name__ == "SegmentationMask"
    assert spec.options == ("with_confidence",) and spec.output_formats == ("segmentation_logits",)
    assert segmenter.max_batch == 1  # the export's batch axis is fixed
    one = visor.segment(BUS)
    assert np.array_equal(one.mask, segmenter.predict(BUS).mask)
    both = visor.segment([BUS, np.asarray(Image.open(BUS).convert("RGB"))], model=segmenter)
    assert [np.array_equal(m.mask, one.mask) for m in both] == [True, True]
    assert visor.predict("segmentation", BUS, model=segmenter).areas == one.areas
    with pytest.raises(ConfigError, match=r"no option 'with_confidense'\. Did you mean 'with_confidence'"):
        segmenter.predict(BUS, with_confidense=True)
    with pytest.raises(ConfigError, match="with_confidence must be true or false"):
        segmenter.predict(BUS, with_confidence="yes")
    with pytest.raises(ConfigError, match="needs a segmentation model"):
        visor.segment(BUS, model="yolox_nano")


# ------------------------------------------------------------------------------ the postprocessing


def test_logits_to_mask_by_hand():
    """2x2 logits of 2 classes upsampled to 4x4 (half-pixel centres): row 0 of the source prefers class 1
    strongly on the left, class 0 on the right; the mix is worked out by hand."""
    # class 1 minus class 0 at the four source pixels: [[+3, -1], [+1, -3]]
    logits = np.zeros((2, 2, 2), np.float32)
    logits[1] = [[3, -1], [1, -3]]
    mask, conf = logits_to_mask(logits, 4, 4, with_confidence=True)
    # output pixel (y, x) samples source ((x + .5) / 2 - .5, (y + .5) / 2 - .5), clamped at the edges:
    # weights along an axis per output index 0..3: (1, 0), (.75, .25), (.25, .75), (0, 1)
    w = np.array([[1, 0], [.75, .25], [.25, .75], [0, 1]])
    diff = np.einsum("ya,ab,xb->yx", w, np.array([[3, -1], [1, -3]], float), w)
    assert np.array_equal(mask, (diff > 0).astype(np.uint8))
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    np.testing.assert_allclose(conf, 1 / (1 + np.exp(-np.abs(diff))), atol=1e-6)
    # a tie goes to the lower class id, as numpy.argmax
    tie = np.zeros((3, 2, 2), np.float32)
    assert logits_to_mask(tie, 5, 3)[0].tolist() == [[0] * 5] * 3


def test_logits_to_mask_agrees_with_opencv_and_torch_on_every_layout():
    """Smooth random logits (regions with boundaries), NCHW and NHWC, up- and downscaled: the mask equals the
    argmax of OpenCV's resize of all planes and of torch's interpolate(align_corners=False)."""
    import cv2

    rng = np.random.default_rng(7)
    small = rng.standard_normal((5, 9, 7)).astype(np.float32)
    chw = np.stack([cv2.resize(p, (41, 33), interpolation=cv2.INTER_CUBIC) for p in small]) * 3
    for width, height in [(123, 77), (41, 33), (20, 50), (1, 1), (400, 9)]:
        want = cv2.resize(np.ascontiguousarray(chw.transpose(1, 2, 0)), (width, height)).argmax(-1)
        if want.ndim == 1:  # OpenCV drops a 1-pixel axis
            want = want.reshape(height, width)
        for layout, logits in (("nchw", chw), ("nhwc", np.ascontiguousarray(chw.transpose(1, 2, 0)))):
            mask, _ = logits_to_mask(logits, width, height, layout=layout)
            assert mask.shape == (height, width) and np.array_equal(mask, want), (layout, width, height)
            assert np.array_equal(logits_to_mask(logits, width, height, layout=layout, with_confidence=True)[0], want)
    torch = pytest.importorskip("torch")
    up = torch.nn.functional.interpolate(torch.from_numpy(chw)[None], size=(150, 90), mode="bilinear",
                                         align_corners=False)[0].argmax(0).numpy()
    assert (logits_to_mask(chw, 90, 150)[0] == up).mean() > 0.9999


def test_many_classes_give_uint16_masks():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((300, 6, 6)).astype(np.float32)
    mask, conf = logits_to_mask(logits, 12, 12, with_confidence=True)
    assert mask.dtype == np.uint16 and mask.max() >= 255
    assert np.array_equal(mask, logits_to_mask(logits, 12, 12)[0])
    assert conf.min() > 0 and conf.max() <= 1
    logits255 = rng.standard_normal((255, 4, 4)).astype(np.float32)
    assert logits_to_mask(logits255, 4, 4)[0].dtype == np.uint8  # 255 stays free as the fast path's marker
    assert np.array_equal(logits_to_mask(logits255, 8, 8)[0], logits_to_mask(logits255, 8, 8, with_confidence=True)[0])


# ------------------------------------------------------------------------------ visor-trained run folders


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    from segmentation_helpers import make_run_folder

    folder = tmp_path_factory.mktemp("segrun") / "run"
    return folder, make_run_folder(folder)


def test_a_run_folder_loads_and_matches_pytorch(run_folder, shared_data):
    """An NCHW export with a dynamic batch axis and logits at half the input's resolution: visor.load gives a
    Segmenter that batches; its masks equal PyTorch's (same input, bilinear upsampling, argmax)."""
    import torch

    from segmentation_helpers import CLASSES

    folder, model = run_folder
    seg = visor.load(folder)
    assert isinstance(seg, Segmenter) and seg.max_batch is None and seg.labels == CLASSES
    paths = [*sorted((shared_data("camvid") / "val").glob("*.jpg"))[:3], BUS]
    masks = seg.predict(paths, batch_size=4)
    for path, mask in zip(paths, masks, strict=True):
        image = Image.open(path).convert("RGB")
        batch, _ = seg.prepare([image])
        with torch.no_grad():
            logits = model(torch.from_numpy(batch))
            up = torch.nn.functional.interpolate(logits, size=(image.height, image.width), mode="bilinear",
                                                 align_corners=False)
        want = up[0].argmax(0).numpy()
        assert mask.mask.shape == (image.height, image.width)
        assert (mask.mask == want).mean() > 0.999, path.name  # ONNX Runtime vs PyTorch: float rounding at ties
        assert len(mask.areas) >= 2, mask.areas  # the seeded model gives regions, not one class
        assert np.array_equal(mask.mask, seg.predict(path).mask)  # batch of 4 == one at a time
    assert np.array_equal(visor.segment(BUS, model=str(folder)).mask, masks[-1].mask)


def test_cards_a_segmenter_refuses(run_folder, tmp_path):
    from visor.models.card import ModelCard

    folder, _ = run_folder
    card = ModelCard.load(folder / "card.json")
    cases = {
        "logits": (card.replace(output_format="logits"), "output_format must be one of"),
        "crop": (card.replace(preprocess=card.preprocess.__class__(**{**card.preprocess.__dict__,
                                                                      "resize": "center_crop"})),
                 "segmenters need preprocess.resize='squash'"),
        "labels": (card.replace(labels=("a", "b")), "the ONNX output has 3 classes .* but the card has 2 labels"),
        "size": (card.replace(preprocess=card.preprocess.__class__(**{**card.preprocess.__dict__,
                                                                      "input_size": (64, 64)})),
                 r"the ONNX input is \[.*\], but the card's preprocessing"),
        "layout": (card.replace(preprocess=card.preprocess.__class__(**{**card.preprocess.__dict__,
                                                                        "layout": "nhwc"})),
                   "the ONNX input is"),
    }
    for name, (bad, message) in cases.items():
        target = tmp_path / name
        target.mkdir()
        (target / "model.onnx").write_bytes((folder / "model.onnx").read_bytes())
        bad.save(target)
        with pytest.raises(ConfigError, match=message):
            visor.load(target)


def test_a_wrong_output_is_a_weights_error(run_folder):
    folder, _ = run_folder
    seg = visor.load(folder)
    with pytest.raises(WeightsError, match="the model output has 4 classes"):
        seg.postprocess(np.zeros((1, 4, 8, 8), np.float32), seg.prepare([np.zeros((5, 5, 3), np.uint8)])[1])
    with pytest.raises(WeightsError, match="4 axes"):
        seg.postprocess(np.zeros((1, 3, 8), np.float32), [])
