"""DOCUMENT_TEXT_DETECTION on real scanned receipts (../shared/data/sroie-dev): ``fullTextAnnotation`` parses into
Cloud Vision's protobuf types, and its words, read in order with their detected breaks, spell out each receipt's
lines in reading order (left and right aligned columns such as "TOTAL ... 7.42" on one line)."""

from __future__ import annotations

import base64
import json

import pytest
from google.cloud import vision_v1
from google.protobuf import json_format

from visor.annotator import Annotator
from visor.serve import cloudvision as cv

RECEIPTS = ("100", "103", "110")
Break = vision_v1.TextAnnotation.DetectedBreak.BreakType


@pytest.fixture(scope="module")
def annotator() -> Annotator:
    return Annotator()


@pytest.fixture(scope="module")
def responses(annotator, shared_data) -> dict[str, tuple[vision_v1.AnnotateImageResponse, dict]]:
    out = {}
    for name in RECEIPTS:
        data = (shared_data("sroie-dev") / "img" / f"{name}.jpg").read_bytes()
        body = {"requests": [{"image": {"content": base64.b64encode(data).decode()},
                              "features": [{"type": "DOCUMENT_TEXT_DETECTION"}]}]}
        answer = cv.annotate_images(body, lambda d, f, o: annotator.annotate(d, f), int_enums=False,
                                    has_detector=False)
        pb = vision_v1.BatchAnnotateImagesResponse.pb()()
        json_format.Parse(json.dumps(answer), pb)  # strict: an unknown field or a bad enum is an error
        out[name] = (vision_v1.BatchAnnotateImagesResponse.wrap(pb).responses[0], annotator.annotate(data, ("text",)))
    return out


def spelled_rows(full: vision_v1.TextAnnotation) -> list[str]:
    """The text the hierarchy spells: symbols in order, a space or a new line at each detected break."""
    text = ""
    for page in full.pages:
        for block in page.blocks:
            for paragraph in block.paragraphs:
                for word in paragraph.words:
                    for symbol in word.symbols:
                        text += symbol.text
                        kind = symbol.property.detected_break.type_
                        text += {Break.SPACE: " ", Break.LINE_BREAK: "\n"}.get(kind, "")
    return text.splitlines()


@pytest.mark.parametrize("name", RECEIPTS)
def test_words_in_order_spell_the_receipt_lines(responses, name):
    response, native = responses[name]
    assert not response.error.message
    full = response.full_text_annotation
    rows = native["text"]["full_text"].split("\n")
    assert len(rows) >= 20
    assert spelled_rows(full) == rows
    assert full.text == native["text"]["full_text"]
    page = full.pages[0]
    assert (page.width, page.height) == (native["width"], native["height"])
    assert 0 < page.confidence <= 1
    words = [w for b in page.blocks for p in b.paragraphs for w in p.words]
    assert all(0 < w.confidence <= 1 and len(w.bounding_box.vertices) == 4 for w in words)
    # the first textAnnotation is the whole text, the rest one per line
    assert response.text_annotations[0].description == full.text


def test_label_and_amount_columns_share_a_line(responses):
    """Receipt 100 prints "TOTAL SALES (EXCLUDING GST) :" on the left and "7.00" on the right, on a skewed scan."""
    rows = spelled_rows(responses["100"][0].full_text_annotation)
    assert any("EXCLUDING" in row.upper() and row.endswith("7.00") for row in rows), rows
    assert any(row.upper().startswith("DISCOUNT") and row.endswith("0.00") for row in rows), rows
