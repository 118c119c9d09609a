"""Image properties on constructed images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from visor.errors import InvalidInput
from visor.features import properties as props


def test_srgb_to_lab_reference_values() -> None:
    lab = props.srgb_to_lab(np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]], np.uint8))
    np.testing.assert_allclose(lab[0], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(lab[1], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab[3], [32.30, 79.19, -107.86], atol=0.05)


def test_three_flat_regions_give_their_colours_and_fractions() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, :150] = (200, 30, 40)  # 50 %
    image[:, 150:240] = (20, 90, 210)  # 30 %
    image[:, 240:] = (240, 220, 80)  # 20 %
    colours = props.dominant_colors(image, 5, seed=3)
    assert [c.rgb for c in colours] == [(200, 30, 40), (20, 90, 210), (240, 220, 80)]
    assert [c.fraction for c in colours] == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    assert colours[0].hex == "#c81e28"
    assert props.dominant_colors(image, 5, seed=3) == colours  # seeded


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_blurred_copy_is_less_sharp() -> None:
    image = Image.fromarray(np.kron(_texture(96, 128), np.ones((8, 8, 1), np.uint8)))  # 1024 x 768
    blurred = image.filter(ImageFilter.GaussianBlur(3))
    assert props.sharpness(blurred) < 0.5 * props.sharpness(image)
    # comparable across sizes: the same picture at half size scores about the same
    half = image.resize((image.width // 2, image.height // 2), Image.Resampling.BOX)
    assert props.sharpness(half) == pytest.approx(props.sharpness(image), rel=0.05)


def test_brightness_and_exposure_of_black_and_white() -> None:
    black, white = np.zeros((50, 80, 3), np.uint8), np.full((50, 80, 3), 255, np.uint8)
    assert props.brightness(black) == 0.0
    assert props.brightness(white) == pytest.approx(1.0)
    _, exp_black = props.brightness_exposure(black)
    _, exp_white = props.brightness_exposure(white)
    assert (exp_black.dark_fraction, exp_black.bright_fraction, exp_black.score) == (1.0, 0.0, 0.0)
    assert (exp_white.dark_fraction, exp_white.bright_fraction, exp_white.score) == (0.0, 1.0, 0.0)
    _, grey = props.brightness_exposure(np.full((50, 80, 3), 128, np.uint8))
    assert grey.score == 1.0


def test_crop_hint_contains_the_textured_region() -> None:
    image = np.full((300, 600, 3), 120, np.uint8)
    image[100:180, 420:500] = _texture(80, 80)
    (x1, y1, x2, y2), = props.crop_hints(image, 1.0)
    assert (x2 - x1, y2 - y1) == (300, 300)
    assert x1 <= 420 and x2 >= 500 and y1 <= 100 and y2 >= 180
    tall = props.crop_hints(image, 0.5, scales=(1.0, 0.5))
    assert [(b[2] - b[0], b[3] - b[1]) for b in tall] == [(150, 300), (75, 150)]
    assert tall[0][0] <= 420 and tall[0][2] >= 500 - 80  # the window covers most of the texture


def test_crop_hint_keeps_salient_boxes_first() -> None:
    image = np.full((300, 600, 3), 120, np.uint8)
    image[100:180, 420:500] = _texture(80, 80)  # edges on the right ...
    (x1, y1, x2, y2), = props.crop_hints(image, 1.0, salient_boxes=[(40, 50, 120, 150)])  # ... a face on the left
    assert x1 <= 40 and x2 >= 120 and y1 <= 50 and y2 >= 150
    assert (x2 - x1, y2 - y1) == (300, 300) and x1 >= 0


def test_image_properties_json() -> None:
    d = props.image_properties(np.full((40, 60, 3), (10, 200, 10), np.uint8)).to_dict()
    assert d["type"] == "properties" and (d["width"], d["height"]) == (60, 40)
    assert d["dominant_colors"] == [{"rgb": [10, 200, 10], "hex": "#0ac80a", "fraction": 1.0}]


def test_bad_aspect_ratio() -> None:
    with pytest.raises(InvalidInput):
        props.crop_hints(np.zeros((10, 10, 3), np.uint8), 0.0)
