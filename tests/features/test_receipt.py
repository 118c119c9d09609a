"""Receipt rows and key fields (visor.features.receipt): real SROIE receipts with their ground-truth lines as
the OCR, and synthetic edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visor.evaluate.ocr import read_box_csv
from visor.features.receipt import ReceiptField, extract_receipt, rows
from visor.types.text import TextLines


def _lines(spec: list[tuple[str, float, float]], *, slope: float = 0.0, height: float = 20.0) -> TextLines:
    """TextLines from (text, left x, top y): 10 px a character wide, ``slope`` px of y per px of x."""
    polys = []
    for text, x, y in spec:
        w = 10.0 * len(text)
        polys.append([[x, y + slope * x], [x + w, y + slope * (x + w)],
                      [x + w, y + height + slope * (x + w)], [x, y + height + slope * x]])
    return TextLines(np.asarray(polys, np.float32), np.array([t for t, _, _ in spec], dtype=object),
                     np.full(len(spec), 0.9, np.float32))


def _oracle(root, name: str) -> tuple[TextLines, dict]:
    polys, text = read_box_csv(root / "box" / f"{name}.csv")
    lines = TextLines(np.asarray(polys, np.float32), np.array(text, dtype=object), np.ones(len(text), np.float32))
    return lines, json.loads((root / "key" / f"{name}.json").read_text())


@pytest.mark.parametrize("name, fields", [
    ("102", ("company", "date", "address", "total")),  # the branch name "IKEA CHERAS" is not the address
    ("104", ("company", "date", "total")),  # company registration "(256864-P)" dropped; date "30 DEC 17"
    ("107", ("company", "date", "address", "total")),  # TOTAL 48.15 after rounding, not the 48.16 above it
    ("111", ("company", "date", "total")),
    ("199", ("company", "date", "address", "total")),  # company continues on the next row ("TRADING")
    ("195", ("company", "date", "total")),  # "AEON CO. (M) BHD (126926-H)": mostly digits until the number goes
])
def test_real_receipts_match_their_key_files(shared_data, name, fields):
    lines, key = _oracle(shared_data("sroie-dev"), name)
    got = extract_receipt(lines)
    assert {f: getattr(got, f).value for f in fields} == {f: key[f] for f in fields}
    assert got.total.confidence == 1.0 and all(i < len(lines) for i in got.total.lines)


def test_real_receipt_exact_values(shared_data):
    lines, _ = _oracle(shared_data("sroie-dev"), "107")
    got = extract_receipt(lines)
    assert got.values() == {
        "company": "ZAWIAJAYA FOOD N BEVERAGE SDN BHD", "date": "21-03-2018",
        "address": "106-107, LEVEL 1 THE MINES MALL SERDANG SRI KEMBANGAN, 43300 SELANGOR DARUL EHSAN.",
        "total": "48.15"}
    assert [str(lines.text[i]) for i in got.total.lines] == ["TOTAL:", "48.15"]


def test_rows_keep_left_and_right_aligned_columns_together_on_a_skewed_page():
    lines = _lines([("SHOP SDN BHD", 100, 10), ("TOTAL", 20, 100), ("7.42", 400, 100), ("CASH", 20, 140),
                    ("10.00", 400, 140)], slope=0.03)  # 12 px of drift across the amount column
    assert rows(lines) == [[0], [1, 2], [3, 4]]


def test_no_total_gives_none_with_zero_confidence():
    got = extract_receipt(_lines([("KEDAI ABC ENTERPRISE", 10, 10), ("ITEM A", 10, 60), ("3", 300, 60)]))
    assert got.total == ReceiptField(None, 0.0, ())
    assert got.company.value == "KEDAI ABC ENTERPRISE"
    assert got.date == ReceiptField(None)


def test_two_dates_the_one_on_a_date_row_wins():
    lines = _lines([("ABC TRADING", 10, 10), ("VALID TILL 31/12/2019", 10, 60), ("DATE: 05-01-2018", 10, 100)])
    got = extract_receipt(lines)
    assert got.date.value == "05-01-2018" and got.date.lines == (2,)
    # without a DATE cue the first date on the page, at lower confidence
    got = extract_receipt(_lines([("ABC TRADING", 10, 10), ("05/01/2018 10:22", 10, 60), ("01/02/2018", 10, 100)]))
    assert got.date.value == "05/01/2018" and got.date.confidence == pytest.approx(0.9 * 0.8)


def test_date_glued_to_its_time_by_the_ocr():
    lines = _lines([("ABC TRADING", 10, 10), ("DATE", 10, 60), ("10/10/20174:22:12PM", 200, 60),
                    ("NO 4711/12/2018", 10, 100)])
    assert extract_receipt(lines).date == ReceiptField("10/10/2017", pytest.approx(0.9), (2,))


def test_total_on_the_next_row():
    lines = _lines([("ABC SDN BHD", 10, 10), ("TOTAL AMOUNT DUE", 10, 60), ("RM 12.50", 300, 100),
                    ("CASH", 10, 140), ("20.00", 300, 140)])
    got = extract_receipt(lines)
    assert got.total.value == "12.50" and got.total.lines == (1, 2)  # a currency printed apart is not the value
    assert got.total.confidence == pytest.approx(0.9 * 0.8)


def test_a_currency_attached_to_the_amount_is_kept_as_printed():
    """SROIE's keys: "RM4.00" printed as one word stays "RM4.00"; "RM 53.30" gives "53.30"."""
    for printed, value in (("RM4.00", "RM4.00"), ("RM 53.30", "53.30"), ("53.30", "53.30")):
        got = extract_receipt(_lines([("ABC SDN BHD", 10, 10), (f"TOTAL {printed}", 10, 60)]))
        assert got.total.value == value


def test_final_total_beats_larger_subtotals_and_tax_tables():
    lines = _lines([("ABC SDN BHD", 10, 10), ("TOTAL (INCLUSIVE OF GST):", 10, 60), ("48.16", 400, 60),
                    ("ROUNDING ADJ:", 10, 100), ("-0.01", 400, 100), ("TOTAL:", 10, 140), ("48.15", 400, 140),
                    ("CASH:", 10, 180), ("50.00", 400, 180), ("TOTAL", 10, 220), ("45.43", 300, 220),
                    ("2.72", 400, 220)])
    assert extract_receipt(lines).total.value == "48.15"


def test_company_drops_its_registration_number_and_address_stops_at_the_phone():
    lines = _lines([("GOLDEN SCOOP SDN BHD (169609-A)", 10, 10), ("(CO. REG 169609-A)", 10, 40),
                    ("LOT 1, JALAN 2,", 10, 70), ("50000 KUALA LUMPUR", 10, 100), ("TEL: 03-1234567", 10, 130)])
    got = extract_receipt(lines)
    assert got.company.value == "GOLDEN SCOOP SDN BHD"
    assert got.address.value == "LOT 1, JALAN 2, 50000 KUALA LUMPUR" and got.address.lines == (2, 3)
    assert got.to_dict()["company"] == {"value": "GOLDEN SCOOP SDN BHD", "confidence": 0.9, "lines": [0]}
