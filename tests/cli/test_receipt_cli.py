"""``visor receipt``: the fields of each image as text or JSON Lines, a bad image as one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import visor.features.text as text_module
from visor.cli.main import main
from visor.errors import InvalidInput
from visor.types.text import TextLines

SPEC = [("ABC TRADING SDN BHD", 10, 10), ("NO 1, JALAN 2, 50000 KL", 10, 40), ("DATE: 05/01/2018", 10, 80),
        ("TOTAL", 10, 120), ("12.50", 300, 120)]


class FakeReader:
    """Stands in for TextReader: fixed lines for any image, an error for an image named bad.*."""

    options: ClassVar[dict] = {}

    def __init__(self, **options):
        FakeReader.options = options

    def __call__(self, image):
        if Path(image).stem == "bad":
            raise InvalidInput(f"cannot decode {image}")
        polys = np.asarray([[[x, y], [x + 10 * len(t), y], [x + 10 * len(t), y + 20], [x, y + 20]]
                            for t, x, y in SPEC], np.float32)
        return TextLines(polys, np.array([t for t, _, _ in SPEC], dtype=object), np.ones(len(SPEC), np.float32))


@pytest.fixture
def images(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "TextReader", FakeReader)
    for name in ("a.jpg", "bad.jpg"):
        (tmp_path / name).write_bytes(b"not read: the reader is a stand-in")
    return tmp_path


def test_receipt_json_lines_and_engine(images, capsys):
    assert main(["receipt", str(images / "a.jpg"), "--json", "--engine", "tesseract"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["image"] == str(images / "a.jpg")
    assert {k: v["value"] for k, v in doc["receipt"].items()} == {
        "company": "ABC TRADING SDN BHD", "date": "05/01/2018", "address": "NO 1, JALAN 2, 50000 KL",
        "total": "12.50"}
    assert doc["receipt"]["total"] == {"value": "12.50", "confidence": 1.0, "lines": [3, 4]}
    assert FakeReader.options["engine"] == "tesseract"


def test_receipt_text_and_a_bad_image(images, capsys):
    assert main(["receipt", str(images / "a.jpg"), str(images / "bad.jpg")]) == 1
    out, errs = capsys.readouterr()
    assert out.splitlines() == [
        f"{images / 'a.jpg'}:", "  company  ABC TRADING SDN BHD  (1.00)", "  date     05/01/2018  (1.00)",
        "  address  NO 1, JALAN 2, 50000 KL  (0.80)", "  total    12.50  (1.00)"]
    bad = images / "bad.jpg"
    assert errs.splitlines() == [f"visor: error: {bad}: InvalidInput: cannot decode {bad}",
                                 "visor: error: 1 of 2 images failed"]
