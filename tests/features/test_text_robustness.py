"""Pages that are not ordinary documents read cleanly: no lines, or the text, never a crash or an untyped error."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from visor.features.text import TextReader
from visor.features.text_engines import MIN_TEXT_SIDE
from visor.features.text_filter import char_script


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


@pytest.mark.parametrize(("size", "colour"), [((1000, 1400), "white"), ((800, 600), "black"), ((1, 10000), "white"),
                                              ((10000, 1), "grey"), ((40, 10000), "white"), ((10000, 40), "white"),
                                              ((3, 3), "white")])
def test_blank_tiny_and_thin_images_have_no_lines(reader, size, colour):
    lines = reader.read(Image.new("RGB", size, colour))
    assert len(lines) == 0 and lines.full_text == ""


def test_min_text_side_is_the_threshold(reader):
    assert MIN_TEXT_SIDE == 8
    assert len(reader.read(Image.new("RGB", (MIN_TEXT_SIDE - 1, 500), "white"))) == 0


@pytest.mark.parametrize("name", ["000000000009", "000000000025"])  # bowls of food; a giraffe
def test_photos_without_text_have_no_lines(reader, shared_data, name):
    assert len(reader.read(shared_data("coco128") / "images" / f"{name}.jpg")) == 0


@pytest.mark.parametrize(("angle", "share"), [(90, 0.6), (180, 0.75), (270, 0.6)])
def test_a_rotated_receipt_still_reads(reader, shared_data, angle, share):
    """Receipt 100 turned a quarter or half turn: most of its words are still read (measured: 0.71, 0.84 and 0.77
    of the upright reading's 99 words; the 0/180 classifier turns lines round, tall line crops are turned upright)."""
    page = Image.open(shared_data("sroie-dev") / "img" / "100.jpg")
    upright = Counter(w for line in reader.read(page).text for w in line.lower().split())
    turned = Counter(w for line in reader.read(page.rotate(angle, expand=True)).text for w in line.lower().split())
    assert sum((turned & upright).values()) / sum(upright.values()) >= share


@pytest.mark.parametrize(("photo", "invented", "kept"), [
    ("known/biden/biden2.jpg", ["是"], []),
    ("unknown/obama1.jpg", ["曲", "田"], ["HOUSE"]),  # the sign behind him is real text
])
def test_portraits_get_no_invented_glyphs(shared_data, reader, photo, invented, kept):
    """The recogniser reads lone CJK glyphs into faces and textures (measured without the filter); the default
    reader drops them and keeps real words."""
    def cjk(lines):
        return [t for t in lines.text if any(char_script(ch) == "CJK" for ch in t)]

    path = shared_data("faces") / photo
    assert cjk(TextReader(filter_text=False).read(path))  # measured here: the glyphs in `invented`
    read = reader.read(path)
    assert not cjk(read) and set(kept) <= set(read.text)
