"""visor.features.text_filter: recognised text that is not there is dropped, real text is kept."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from visor.errors import ConfigError
from visor.features.text_filter import (
    DOCUMENT_LINES,
    MAX_LINE_HEIGHT,
    MAX_TALL_CHARS,
    MIN_CONFIDENCE,
    char_script,
    filter_lines,
    scripts_for,
)
from visor.types.text import TextLines


def _lines(items: list[tuple[str, float]], box: tuple[float, float, float, float] = (0, 0, 40, 20)) -> TextLines:
    x0, y0, x1, y1 = box
    poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    return TextLines(np.repeat(poly[None], len(items), axis=0), [t for t, _ in items],
                     np.array([c for _, c in items], np.float32), model="m")


SCRIPTS = [("ROL", 0.99), ("业", 0.9), ("物板", 0.9), ("H8EA讯L", 0.9), ("Ünïcode café", 0.9), ("ΑΒΓ", 0.9),
           ("4.α0", 0.9), ("ＡＢ", 0.9)]


def test_char_script() -> None:
    assert [char_script(c) for c in "aÜ业ガあ한Жα1.%  ＡＢ"] == [
        "LATIN", "LATIN", "CJK", "KATAKANA", "HIRAGANA", "HANGUL", "CYRILLIC", "GREEK", None, None, None, None,
        None, "LATIN", "LATIN"]


def test_default_drops_a_lone_character_of_another_script() -> None:
    kept = filter_lines(_lines(SCRIPTS), None)
    assert list(kept.text) == ["ROL", "物板", "Ünïcode café", "ΑΒΓ", "ＡＢ"]


@pytest.mark.parametrize(("lang", "expected"), [
    (["en"], ["ROL", "Ünïcode café", "ＡＢ"]),
    ("en-US", ["ROL", "Ünïcode café", "ＡＢ"]),
    (["zh"], ["业", "物板"]),
    ("zh-Hant", ["业", "物板"]),
    (["zh", "en"], ["ROL", "业", "物板", "H8EA讯L", "Ünïcode café", "ＡＢ"]),
    (["el"], ["ΑΒΓ", "4.α0"]),
])
def test_lang_keeps_only_its_scripts(lang, expected) -> None:
    assert list(filter_lines(_lines(SCRIPTS), None, lang=lang).text) == expected


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown language code 'xx'"):
        filter_lines(_lines([("a", 1.0)]), None, lang=["en", "xx"])
    with pytest.raises(ConfigError, match="lang is empty"):
        scripts_for([])
    with pytest.raises(ConfigError, match="min_confidence"):
        filter_lines(_lines([("a", 1.0)]), None, min_confidence=1.5)


# coco128's false lines at the reader's old floor (0.5), with real lines of the same photos
PHOTO = [("94", 0.97), ("388", 0.54), ("HCHHAHHNA", 0.53), ("1", 0.70), ("A", 0.86), (".......", 0.88),
         ("%", 0.92), ("", 0.9), ("  ", 0.9), ("-=", 0.95)]


def test_confidence_floor_single_characters_and_punctuation() -> None:
    assert (MIN_CONFIDENCE, MAX_LINE_HEIGHT) == (0.55, 0.45)
    assert list(filter_lines(_lines(PHOTO), None).text) == ["94", "A", "%"]
    assert list(filter_lines(_lines(PHOTO), None, min_confidence=0.5).text) == ["94", "388", "HCHHAHHNA", "A", "%"]


def test_a_document_keeps_its_lone_characters() -> None:
    page = [("TOTAL", 0.9)] * (DOCUMENT_LINES - 1) + [("6", 0.62), ("1", 0.70)]
    assert list(filter_lines(_lines(page), None).text) == ["TOTAL"] * (DOCUMENT_LINES - 1) + ["6", "1"]
    photo = page[2:]  # under DOCUMENT_LINES lines: a photo, where a lone '6' at 0.62 is most likely a texture
    assert list(filter_lines(_lines(photo), None).text) == ["TOTAL"] * (DOCUMENT_LINES - 3)


def test_keeps_columns_model_and_order() -> None:
    lines = _lines([("a1", 0.9), ("业", 0.9), ("b2", 0.8)]).with_data(ids=np.array([7, 8, 9]))
    kept = filter_lines(lines, None)
    assert list(kept.text) == ["a1", "b2"] and list(kept.data["ids"]) == [7, 9] and kept.model == "m"
    np.testing.assert_array_equal(kept.confidence, np.array([0.9, 0.8], np.float32))
    assert filter_lines(kept, None) is kept
    assert len(filter_lines(TextLines.empty(), None)) == 0


def _rendered(text: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    img = Image.new("RGB", (200, 120), (235, 235, 230))
    draw = ImageDraw.Draw(img)
    draw.text((10, 15), text, fill=(20, 20, 20), font=ImageFont.load_default())
    return np.asarray(img), (5, 10, 195, 50)


def test_flat_box_is_dropped_and_rendered_text_kept() -> None:
    rgb, box = _rendered("Total 12.50")
    assert list(filter_lines(_lines([("Total 12.50", 0.9)], box), rgb).text) == ["Total 12.50"]
    flat = np.full((120, 200, 3), 200, np.uint8)
    flat[:, :, 0] = 205  # a colour cast is no text either
    assert len(filter_lines(_lines([("Total 12.50", 0.9)], box), flat)) == 0
    assert len(filter_lines(_lines([("Total 12.50", 0.9)], box), None)) == 1  # no image: no pixel test
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    assert list(filter_lines(_lines([("Total 12.50", 0.9)], box), gray).text) == ["Total 12.50"]


def test_a_line_taller_than_half_the_image_is_dropped() -> None:
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[::7] = 255  # stripes: contrast everywhere
    tall, short = (0, 0, 300, 217), (0, 0, 300, 215)  # 0.452 and 0.448 of the 480 px side
    assert len(filter_lines(_lines([("8", 0.95)], tall), rgb)) == 0
    assert len(filter_lines(_lines([("8", 0.95)], short), rgb)) == 1
    assert len(filter_lines(_lines([("8", 0.95)], tall), None)) == 1
    # the shorter edge is the height: a long line is fine
    assert len(filter_lines(_lines([("a long line", 0.95)], (0, 0, 640, 100)), rgb)) == 1
    # words filling the frame are text: only a tall line of at most MAX_TALL_CHARS characters goes
    assert MAX_TALL_CHARS == 3
    assert len(filter_lines(_lines([("8.5", 0.95)], tall), rgb)) == 0
    assert list(filter_lines(_lines([("OPEN", 0.95)], tall), rgb).text) == ["OPEN"]


def test_face_read_as_a_chinese_character_is_dropped(shared_data) -> None:
    """The issue's example: PP-OCR read a face as '香' (0.53)."""
    rgb = np.asarray(Image.open(shared_data("faces") / "unknown" / "obama-240p.jpg").convert("RGB"))
    face = (190, 30, 250, 90)
    assert len(filter_lines(_lines([("香", 0.53)], face), rgb)) == 0
    assert len(filter_lines(_lines([("香", 0.53)], face), rgb, lang=["zh"], min_confidence=0.5)) == 0  # a lone glyph
    assert len(filter_lines(_lines([("香", 0.95)], face), rgb, lang=["zh"])) == 1  # asked for, and sure


# PP-OCRv4's lines at confidence >= 0.5 on five coco128 photos (TextReader at commit 16ca71c): every false line
# it read on coco128, and the real lines of the same photos
COCO = [
    ("000064", [[179, 83], [200, 83], [200, 100], [179, 100]], "业", 0.831),  # a watch's crown logo
    ("000064", [[159, 103], [197, 103], [197, 121], [159, 121]], "ROL", 0.990),
    ("000081", [[102, 174], [218, 177], [218, 194], [102, 191]], "AIRFRANC", 0.984),
    ("000081", [[177, 192], [214, 192], [214, 203], [177, 203]], ".......", 0.877),  # plane windows
    ("000309", [[424, 81], [506, 81], [506, 191], [424, 191]], "1", 0.704),  # a dog on grass
    ("000599", [[491, 179], [566, 192], [562, 212], [487, 199]], "388", 0.537),  # a remote's buttons
    ("000164", [[330, 135], [425, 126], [427, 150], [332, 159]], "HCHHAHHNA", 0.533),  # cans on a shelf
    # and with PP-OCRv6 small (the reader's models on branch wip/issue-20 after 16ca71c)
    ("000307", [[383, 32], [639, 191], [535, 479], [186, 464]], "2", 0.861),  # a field and a dog, boxed whole
    ("000357", [[212, 24], [230, 24], [230, 48], [212, 48]], "六", 0.835),  # a baseball player
    ("000138", [[349, 351], [532, 351], [532, 388], [349, 388]], "1", 0.641),  # a woven mat
    ("000138", [[493, 423], [580, 421], [581, 447], [494, 450]], "kefalotyri", 0.972),
]


def test_coco128_false_lines_are_dropped(shared_data) -> None:
    kept = []
    for stem in dict.fromkeys(stem for stem, *_ in COCO):
        rgb = np.asarray(Image.open(shared_data("coco128") / "images" / f"000000{stem}.jpg").convert("RGB"))
        rows = [r for r in COCO if r[0] == stem]
        lines = TextLines(np.array([r[1] for r in rows], np.float32), [r[2] for r in rows],
                          np.array([r[3] for r in rows], np.float32))
        kept += list(filter_lines(lines, rgb).text)
    assert kept == ["ROL", "AIRFRANC", "kefalotyri"]
