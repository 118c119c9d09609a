"""OCR engines: the registry, TextReader(engine=...), and the Tesseract engine (both bindings)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from skip_or_fail import skip_or_fail  # tests/skip_or_fail.py
from visor.errors import ConfigError, CorruptImage
from visor.features import text_engines
from visor.features.text import TextReader
from visor.features.text_engines import (
    TESSERACT_MODEL,
    TesseractReader,
    engine_names,
    find_tessdata,
    lines_from_tsv,
    open_engine,
    tesseract_language,
)


@pytest.fixture(scope="module")
def needs_tesseract() -> None:
    """Debian's tesseract-ocr and tesseract-ocr-eng."""
    missing = None
    if shutil.which("tesseract") is None:
        missing = "the tesseract program is missing: apt-get install tesseract-ocr tesseract-ocr-eng"
    else:
        try:
            find_tessdata("eng")
        except ConfigError as e:
            missing = str(e)
    skip_or_fail(missing)


@pytest.fixture(scope="module")
def needs_tesserocr(needs_tesseract) -> None:
    """The tesserocr binding (pip install tesserocr)."""
    skip_or_fail(None if text_engines._tesserocr_api() is not None else
             "the tesserocr binding is not installed: pip install tesserocr")


def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def _page() -> Image.Image:
    """Three printed lines, black on white, 32 px DejaVu Sans."""
    font = _font(32)
    image = Image.new("RGB", (720, 260), "white")
    draw = ImageDraw.Draw(image)
    draw.text((30, 30), "Invoice number 2041", fill="black", font=font)
    draw.text((30, 100), "Coffee beans 12.50", fill="black", font=font)
    draw.text((30, 170), "Total due 14.75", fill="black", font=font)
    return image


# --------------------------------------------------------------------------- registry (no Tesseract needed)


def test_engine_registry_names_and_default() -> None:
    assert engine_names() == ("pp-ocr", "tesseract")
    assert engine_names()[0] == text_engines.DEFAULT_ENGINE
    with pytest.raises(TypeError):
        text_engines.ENGINES["x"] = text_engines.ENGINES["tesseract"]  # type: ignore[index]


def test_unknown_engine_is_a_config_error_listing_the_engines() -> None:
    with pytest.raises(ConfigError, match=r"unknown OCR engine 'easyocr'; choose one of: pp-ocr, tesseract"):
        open_engine("easyocr")
    with pytest.raises(ConfigError, match=r"^pp-ocr is visor.features.text.TextReader itself: open that$"):
        open_engine("pp-ocr")
    with pytest.raises(ConfigError, match="unknown OCR engine 'nope'"):
        TextReader(engine="nope")


def test_tesseract_language_mapping() -> None:
    assert tesseract_language("en") == "eng"
    assert tesseract_language("eng") == "eng"
    assert tesseract_language("en+de") == "eng+deu"
    assert tesseract_language("zh-tw") == "chi_tra"
    assert tesseract_language("chi_sim") == "chi_sim"
    with pytest.raises(ConfigError, match=r"not a Tesseract language: '\.\./eng'"):
        tesseract_language("../eng")


def test_lines_from_tsv_groups_words_into_lines() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "1\t1\t0\t0\t0\t0\t0\t0\t400\t200\t-1\t",
        "4\t1\t1\t1\t1\t0\t10\t20\t300\t30\t-1\t",
        "5\t1\t1\t1\t1\t1\t10\t20\t100\t30\t96.5\tTotal",
        "5\t1\t1\t1\t1\t2\t120\t20\t60\t30\t90.5\t12.50",
        "5\t1\t1\t1\t1\t3\t200\t20\t10\t30\t12.0\t|",
        "4\t1\t1\t1\t2\t0\t10\t60\t50\t30\t-1\t",
        "5\t1\t1\t1\t2\t1\t10\t60\t50\t30\t5.0\t~~",
        "4\t1\t2\t1\t1\t0\t5\t100\t80\t20\t-1\t",
        "5\t1\t2\t1\t1\t1\t5\t100\t80\t20\t80\tCash",
    ]
    got = lines_from_tsv("\n".join([header, *rows]) + "\n", min_word_confidence=20)
    assert got.text.tolist() == ["Total 12.50", "Cash"]  # "|" and the all-noise line dropped
    np.testing.assert_array_equal(got.polygons, np.array(
        [[[10, 20], [310, 20], [310, 50], [10, 50]], [[5, 100], [85, 100], [85, 120], [5, 120]]], np.float32))
    np.testing.assert_allclose(got.confidence, [0.935, 0.8], rtol=1e-6)
    assert lines_from_tsv("\n".join([header, *rows])).text.tolist() == ["Total 12.50 |", "~~", "Cash"]
    assert len(lines_from_tsv(header + "\n")) == 0 and len(lines_from_tsv("")) == 0


def test_missing_language_names_the_apt_package(tmp_path: Path) -> None:
    (tmp_path / "eng.traineddata").write_bytes(b"x")
    assert find_tessdata("eng", tessdata=tmp_path) == tmp_path
    with pytest.raises(ConfigError, match=r"no deu language data in .*apt-get install tesseract-ocr-deu$"):
        find_tessdata("eng+deu", tessdata=tmp_path)
    with pytest.raises(ConfigError, match=r"apt-get install tesseract-ocr-chi-sim$"):
        find_tessdata("chi_sim", tessdata=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="language data is not installed; install it with apt-get install "
                                          "tesseract-ocr tesseract-ocr-eng"):
        TesseractReader(tessdata=empty)


def test_missing_program_names_the_apt_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "eng.traineddata").write_bytes(b"x")
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on it
    with pytest.raises(ConfigError, match=r"^the tesseract program is not installed; install it with apt-get "
                                          r"install tesseract-ocr tesseract-ocr-eng \(or pip install tesserocr\)$"):
        TesseractReader(binding="program", tessdata=tmp_path)
    monkeypatch.setattr(text_engines, "_tesserocr_api", lambda: None)
    with pytest.raises(ConfigError, match="tesseract program is not installed"):
        TesseractReader(tessdata=tmp_path)  # auto: no binding, no program
    with pytest.raises(ConfigError, match=r"^the tesserocr binding is not installed; install it with pip"):
        TesseractReader(binding="tesserocr", tessdata=tmp_path)


@pytest.mark.parametrize(("option", "value"), [("psm", 0), ("psm", 2), ("min_word_confidence", 101),
                                               ("dpi", 20), ("threads", 0), ("binding", "cli"), ("binarization", "x"),
                                               ("max_pixels", 10)])
def test_bad_options_are_config_errors(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=option):
        TesseractReader(**{option: value})


# --------------------------------------------------------------------------- Tesseract itself


@pytest.fixture(scope="module", params=["program", "tesserocr"])
def tesseract(request: pytest.FixtureRequest, needs_tesseract) -> TesseractReader:
    if request.param == "tesserocr":
        request.getfixturevalue("needs_tesserocr")
    return TesseractReader(binding=request.param)


def test_tesseract_reads_printed_lines(tesseract: TesseractReader) -> None:
    image = _page()
    got = tesseract.read(image)
    assert got.model == TESSERACT_MODEL == "tesseract-5"
    assert got.text.tolist() == ["Invoice number 2041", "Coffee beans 12.50", "Total due 14.75"]
    assert got.full_text == "Invoice number 2041\nCoffee beans 12.50\nTotal due 14.75"
    assert got.polygons.shape == (3, 4, 2) and got.polygons.dtype == np.float32
    assert ((got.confidence > 0.8) & (got.confidence <= 1.0)).all()
    # each line's box is around its ink: rows 30, 100, 170 (+ the glyphs' height), from x = 30
    x0, y0, x1, y1 = got.xyxy.T
    assert (np.abs(x0 - 32) <= 6).all() and (x1 < 420).all()
    assert np.all(np.abs(y0 - [30 + 6, 100 + 6, 170 + 6]) <= 6) and np.all(y1 - y0 < 40)


def test_tesseract_boxes_are_in_original_pixels_when_downscaled(tesseract: TesseractReader) -> None:
    big = _page().resize((1440, 520), Image.Resampling.LANCZOS)
    bounded = TesseractReader(binding=tesseract.binding, max_side=720)
    got = bounded.read(big)
    assert got.text.tolist() == ["Invoice number 2041", "Coffee beans 12.50", "Total due 14.75"]
    x0, y0 = got.xyxy[:, 0], got.xyxy[:, 1]
    assert (np.abs(x0 - 64) <= 12).all() and np.all(np.abs(y0 - [72, 212, 352]) <= 12)


def test_tesseract_blank_and_bad_images(tesseract: TesseractReader) -> None:
    got = tesseract.read(np.full((120, 200, 3), 240, np.uint8))
    assert len(got) == 0 and got.full_text == "" and got.model == TESSERACT_MODEL
    with pytest.raises(CorruptImage):
        tesseract.read(b"\x89PNG\r\n\x1a\nbroken")


def test_text_reader_dispatches_to_tesseract(needs_tesseract) -> None:
    reader = TextReader(engine="tesseract", threads=1)
    got = reader.read(_page())
    assert got.model == "tesseract-5"
    assert got.full_text == "Invoice number 2041\nCoffee beans 12.50\nTotal due 14.75"
