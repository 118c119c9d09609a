"""anonymize(): faces hidden from the detector, every pixel outside the grown boxes unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visor.errors import ConfigError
from visor.faces import FaceAnalyzer, anonymize
from visor.faces.anonymize import expanded_boxes
from visor.io import load_image


@pytest.fixture(scope="module")
def analyzer(zoo_cache) -> FaceAnalyzer:
    return FaceAnalyzer()  # YuNet (weights imported from ../shared/models by zoo_cache) + dlib embeddings


def _outside(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        mask[y1:y2, x1:x2] = False
    return mask


def test_acceptance_blur_hides_every_face(shared_data, analyzer):
    photos = sorted((shared_data("faces") / "unknown").iterdir())
    assert len(photos) == 8
    for path in photos:
        original = load_image(path)
        faces = analyzer.detect(original, embeddings=False)
        assert len(faces) >= 1, path
        out = anonymize(original, faces, "blur")
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (original.shape[1], original.shape[0])
        assert len(analyzer.detect(out, embeddings=False)) == 0, path
        pixels = np.asarray(out)
        boxes = expanded_boxes(faces, out.size, 0.2)
        outside = _outside(boxes, original.shape)
        assert np.array_equal(pixels[outside], original[outside]), path
        assert not np.array_equal(pixels[~outside], original[~outside]), path


def _noise() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", ["blur", "pixelate", "box"])
def test_methods_change_only_the_boxes(method):
    img = _noise()
    boxes = np.array([[10, 10, 30, 30], [70, 50, 90, 70]], np.float32)  # the second runs off the image
    out = np.asarray(anonymize(img, boxes, method, expand=0.1))
    grown = expanded_boxes(boxes, (80, 60), 0.1)
    assert grown.tolist() == [[8, 8, 32, 32], [68, 48, 80, 60]]
    outside = _outside(grown, img.shape)
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out[~outside], img[~outside])
    if method == "box":
        assert not out[~outside].any()
    if method == "pixelate":
        region = out[8:32, 8:32]
        assert len(np.unique(region.reshape(-1, 3), axis=0)) <= 64  # about 8 x 8 blocks


def test_no_faces_and_bad_arguments():
    img = _noise()
    assert np.array_equal(np.asarray(anonymize(img, np.zeros((0, 4)))), img)
    with pytest.raises(ConfigError):
        anonymize(img, np.zeros((0, 4)), "smudge")
    with pytest.raises(ConfigError):
        anonymize(img, np.zeros((0, 4)), expand=-1)


def test_text_regions_are_hidden_too(tmp_path):
    """With a text reader, text boxes join the face boxes, and OCR then finds no text."""
    import matplotlib
    from PIL import ImageDraw, ImageFont

    from visor.faces import sensitive_boxes
    from visor.features.text import TextReader

    img = Image.new("RGB", (480, 160), (255, 255, 255))
    font = f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf"
    ImageDraw.Draw(img).text((20, 50), "PRIVATE 12345", fill=(0, 0, 0), font=ImageFont.truetype(font, 40))
    reader = TextReader()
    assert "PRIVATE" in reader.read(img).full_text
    boxes, n_faces, n_texts = sensitive_boxes(img, analyzer=FaceAnalyzer(), text_reader=reader)
    assert n_faces == 0 and n_texts >= 1 and len(boxes) == n_texts
    hidden = anonymize(img, boxes, "box")
    assert "PRIVATE" not in reader.read(hidden).full_text
