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
