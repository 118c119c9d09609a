import numpy as np
import pytest
from PIL import Image

from visor.models import Preprocess, get_card
from visor.models.preprocess import crop_box, draft_size, normalize, preprocess

LITE0 = get_card("efficientnet_lite0").preprocess


@pytest.mark.parametrize(
    ("size", "cfg", "box"),
    [
        ((224, 224), LITE0, (14.0, 14.0, 210.0, 210.0)),
        # 640x427: the square of 87.5% of the short side, centred.
        ((640, 427), LITE0, (133.1875, 26.6875, 506.8125, 400.3125)),
        ((100, 50), Preprocess(input_size=(10, 20), crop_pct=1.0), (0.0, 0.0, 100.0, 50.0)),
        ((100, 100), Preprocess(input_size=(10, 20), crop_pct=1.0), (0.0, 25.0, 100.0, 75.0)),
        ((640, 427), Preprocess(resize="squash"), (0.0, 0.0, 640.0, 427.0)),
    ],
)
def test_crop_box(size, cfg, box):
    assert crop_box(*size, cfg) == pytest.approx(box)


def test_draft_size_keeps_the_crop_resolution():
    assert draft_size(LITE0) == (256, 256)


def test_normalize_uses_the_card_mean_and_std():
    batch = np.array([[[[127, 255, 0]]]], np.uint8)
    out = normalize(batch, LITE0)
    assert out.shape == (1, 3, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [0.0, 1.0, -127 / 128], atol=1e-6)


def test_preprocess_shape_and_layout():
    img = Image.new("RGB", (300, 200), (127, 255, 0))
    out = preprocess([img, img], LITE0)
    assert out.shape == (2, 3, 224, 224) and out.flags.c_contiguous
    np.testing.assert_allclose(out[1, :, 100, 100], [0.0, 1.0, -127 / 128], atol=1e-6)
    assert preprocess([], LITE0).shape == (0, 3, 224, 224)


# --------------------------------------------------------------------------- normalize: exact values


@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize(
    ("mean", "std"),
    [
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
        ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)),  # YOLOX / YuNet: 0-255
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # x / 127.5 - 1
        ((0.1, 0.0, 0.3), (1.0, 1.0, 1.0)),
    ],
)
def test_normalize_is_exactly_the_float_formula(order, layout, mean, std):
    """Reordering the uint8 pixels first, and skipping a zero mean or a unit scale, changes no bit:
    ``(float32(x) - 255 mean) * (1 / (255 std))`` per RGB channel, then the channel order and layout."""
    batch = np.random.default_rng(15).integers(0, 256, (2, 7, 5, 3), dtype=np.uint8)
    before = batch.copy()
    cfg = Preprocess(mean=mean, std=std, channel_order=order, layout=layout)
    mean32 = np.asarray(mean, np.float32) * np.float32(255)
    inv_std32 = np.float32(1) / (np.asarray(std, np.float32) * np.float32(255))
    ref = (batch.astype(np.float32) - mean32) * inv_std32
    if order == "bgr":
        ref = ref[..., ::-1]
    if layout == "nchw":
        ref = ref.transpose(0, 3, 1, 2)
    out = normalize(batch, cfg)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert out.shape == ((2, 3, 7, 5) if layout == "nchw" else (2, 7, 5, 3))
    assert out.tobytes() == np.ascontiguousarray(ref).tobytes()  # bit for bit, signs of zero included
    np.testing.assert_array_equal(batch, before)


def test_normalize_never_returns_or_writes_its_input():
    batch = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    cfg = Preprocess(mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, layout="nhwc")  # no reorder, no arithmetic
    out = normalize(batch, cfg)
    assert out is not batch and not np.shares_memory(out, batch)
    out += 1
    assert batch[0, 0, 0, 0] == 0.0


# --------------------------------------------------------------------------- top-left letterbox: exact pixels


def canvas_letterbox(arr: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """nudenet's top-left letterbox, written out: pad the image at the bottom and right to the input's
    aspect ratio, then resize the whole canvas (OpenCV bilinear)."""
    import cv2

    h, w = arr.shape[:2]
    out_h, out_w = cfg.input_size
    cw, ch = max(w, round(h * out_w / out_h)), max(h, round(w * out_h / out_w))
    canvas = np.full((ch, cw, 3), cfg.pad_value, np.uint8)
    canvas[:h, :w] = arr
    return canvas if (cw, ch) == (out_w, out_h) else cv2.resize(canvas, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def paste_letterbox(arr: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """The shortcut that looks the same: resize the image alone to round(side x scale), paste it top left."""
    import cv2

    h, w = arr.shape[:2]
    scale = min(cfg.input_size[1] / w, cfg.input_size[0] / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.full((*cfg.input_size, 3), cfg.pad_value, np.uint8)
    out[:nh, :nw] = cv2.resize(arr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


TOP_LEFT = Preprocess(input_size=(416, 416), resize="letterbox", interpolation="bilinear", letterbox_align="top_left",
                      pad_value=114, channel_order="bgr", mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)


def test_top_left_letterbox_resizes_the_padded_canvas_on_coco128(shared_data):
    """yolox_nano's (and nudenet's) letterbox, pixel for pixel. Resizing the image alone and pasting it is
    not the same: the image's own scale per axis differs from the canvas's, and the last row or column no
    longer blends into the pad; on most coco128 images some pixels change."""
    from visor.models.preprocess import letterbox

    paths = sorted((shared_data("coco128") / "images").glob("*.jpg"))
    assert len(paths) >= 100
    sizes, shortcut_differs = set(), 0
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
        sizes.add(arr.shape[:2])
        out, scale, pad = letterbox(arr, TOP_LEFT)
        np.testing.assert_array_equal(out, canvas_letterbox(arr, TOP_LEFT), err_msg=p.name)
        assert scale == 416 / max(arr.shape[:2]) and pad == (0.0, 0.0)
        shortcut_differs += not np.array_equal(out, paste_letterbox(arr, TOP_LEFT))
    assert len(sizes) > 20  # landscape, portrait and square images of many sizes
    assert shortcut_differs > len(paths) // 3


@pytest.mark.parametrize("input_size", [(416, 416), (48, 96), (96, 48), (384, 640), (13, 7)])
def test_top_left_letterbox_resizes_the_padded_canvas_at_any_size(input_size):
    from visor.models.preprocess import letterbox

    cfg = Preprocess(input_size=input_size, resize="letterbox", interpolation="bilinear",
                     letterbox_align="top_left", pad_value=114)
    rng = np.random.default_rng(sum(input_size))
    # 400x300, 300x225 into 416x416: the last image row blends with the pad row after it
    shapes = [(300, 400), (225, 300), (400, 300), (1, 1), (1, 700), (700, 1)]
    for h, w in shapes + [tuple(int(v) for v in rng.integers(1, 700, 2)) for _ in range(60)]:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(letterbox(arr, cfg)[0], canvas_letterbox(arr, cfg), err_msg=f"{w}x{h}")
