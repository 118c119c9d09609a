"""Receipts: text lines grouped into visual rows, and the four key fields (company, date, address, total).

Rules plus layout, no model: the OCR lines (:class:`~visor.types.text.TextLines`) are grouped into rows with
:func:`visor.types.text.reading_order` (quads de-skewed by the page's median slope; boxes whose vertical
extents overlap by at least half the shorter one share a row, so a left-aligned ``TOTAL`` and its
right-aligned amount are one row), then:

- **date**: the first date-like string (``dd/mm/yyyy``, ``dd-mm-yy``, ``dd.mm.yyyy``, ``yyyy-mm-dd``,
  ``dd MMM yy(yy)``, ``ddmmyyyy`` ...) on a row with a ``DATE`` cue, else the first on the page; the value is
  the text exactly as printed (the way SROIE's key files write it).
- **total**: amounts (``1,234.56``, with an attached ``RM`` kept as printed: ``RM4.00``; one printed apart,
  ``RM 4.00``, is not part of the value, as in SROIE's keys) on rows with a total cue
  (``TOTAL``, ``NETT``, ``ROUNDED``, ``GRAND TOTAL``, ``AMOUNT DUE``, ...) but not a sub-total one (``QTY``,
  ``GST``, ``TAX``, ``EXCLUDING``, ``DISCOUNT``, ``CHANGE``, ...), or on the row below when the cue row has
  none; the largest value wins (a later row breaks ties). No cue: the largest amount on a ``CASH`` row, else
  nothing.
- **company**: among the first rows (before any date or amount), the first row with a business cue
  (``SDN BHD``, ``S/B``, ``ENTERPRISE``, ``TRADING``, ``RESTORAN`` ...); else the first mostly upper-case
  row of letters that is not a heading such as ``TAX INVOICE``.
- **address**: the rows after the company, first skipping (at most 4) registration / GST numbers, web
  addresses and rows with neither a digit nor a street word (a branch name such as ``IKEA CHERAS``), then up
  to the first phone, fax, e-mail, GST, invoice, date or registration row (at most 5 rows; a phone number at
  the end of a row is cut off and ends it), joined with spaces.

Each field's confidence is the mean OCR confidence of the lines it came from times the rule's strength
(1.0 with a cue, lower for a fallback); a field not found has value ``None`` and confidence 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.types.text import TextLines, reading_order


def rows(lines: TextLines) -> list[list[int]]:
    """The line indices grouped into visual rows: each row left to right, rows top to bottom.

    This is :func:`visor.types.text.reading_order` on the lines' quads (skew-corrected, vertical overlap
    of at least half the shorter box's height).
    """
    return reading_order(lines.polygons)


@dataclass(frozen=True)
class ReceiptField:
    """One extracted field: the ``value`` (``None`` when not found), a ``confidence`` in [0, 1] and the
    indices of the text lines it came from."""

    value: str | None
    confidence: float = 0.0
    lines: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "confidence": round(float(self.confidence), 6), "lines": list(self.lines)}


@dataclass(frozen=True)
class ReceiptFields:
    """The four key fields of a receipt."""

    company: ReceiptField = field(default_factory=lambda: ReceiptField(None))
    date: ReceiptField = field(default_factory=lambda: ReceiptField(None))
    address: ReceiptField = field(default_factory=lambda: ReceiptField(None))
    total: ReceiptField = field(default_factory=lambda: ReceiptField(None))

    FIELDS = ("company", "date", "address", "total")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in self.FIELDS}

    def values(self) -> dict[str, str | None]:
        """``{field: value}``, the shape of SROIE's key files."""
        return {name: getattr(self, name).value for name in self.FIELDS}


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC"
#: After a date's year: no further digit, unless a time follows at once ("10/10/20174:22:12PM": OCR lost the space).
_END = r"(?:(?!\d)|(?=\d{1,2}:\d{2}))"
_DATE_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"(?<!\d)(?:19|20)\d{2}([/\-.])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?!\d)",  # yyyy-mm-dd
    r"(?<!\d)(?:0?[1-9]|[12]\d|3[01])([/\-.])(?:0?[1-9]|1[0-2])\1(?:(?:19|20)\d{2}|\d{2})" + _END,  # dd/mm/yy(yy)
    rf"(?<!\d)(?:0?[1-9]|[12]\d|3[01])[ \-]?(?:{_MONTHS})[A-Z]*[ \-,]*(?:(?:19|20)\d{{2}}|\d{{2}})" + _END,  # 30 DEC 17
    rf"\b(?:{_MONTHS})[A-Z]*[ \-]?(?:0?[1-9]|[12]\d|3[01]),?[ \-]?(?:19|20)\d{{2}}" + _END,  # DEC 30, 2017
    r"(?<!\d)(?:0[1-9]|[12]\d|3[01])(?:0[1-9]|1[0-2])20\d{2}(?!\d)",  # 25032018
))
_DATE_CUE = re.compile(r"\bDATE\b|\bTARIKH\b|\bDT\b", re.IGNORECASE)

_AMOUNT = re.compile(r"(?<![\d.,])(?:RM)?-?\d{1,3}(?:,\d{3})*\.\d{2}(?![\d%])"
                     r"|(?<![\d.,])(?:RM)?\d+\.\d{2}(?![\d%])", re.IGNORECASE)
_TOTAL_CUE = re.compile(r"TOTAL|\bNETT?\b|ROUNDED|ROUNDING\s*TOTAL|AMOUNT\s*DUE|AMT\s*DUE|\bDUE\b|GRAND|\bJUMLAH\b",
                        re.IGNORECASE)
_NOT_TOTAL = re.compile(r"QTY|QUANTITY|\bITEMS?\b|EXCL|\bGST\b|\bTAX\b|SST|SERVICE|DISCOUNT|DISC\b|SAVING|CHANGE|"
                        r"TENDER|\bPCS?\b|ROUNDING\b(?!\s*TOTAL)|SUB\s*-?\s*TOTAL|TOTAL\s*SALES\s*\(EXCL|POINTS?",
                        re.IGNORECASE)
_INCL = re.compile(r"INCL|INCLUSIVE|ROUNDED|NETT?|GRAND|DUE", re.IGNORECASE)
_SUBTOTAL = re.compile(r"SUB\s*-?\s*TOTAL", re.IGNORECASE)
_FINAL_TOTAL = re.compile(r"ROUNDED|NETT?\b|GRAND|DUE\b|^\W*(?:TOTAL|JUMLAH)\W*(?:\(?RM\)?)?\W*(?:[\d.,\s]|RM)*$",
                          re.IGNORECASE)
_CASH_CUE = re.compile(r"\bCASH\b|\bPAID\b|\bPAYMENT\b", re.IGNORECASE)

_COMPANY_CUE = re.compile(
    r"\bSDN\.?\s*BHD\b|\bBHD\b|\bS/B\b|\bSB\b|\bENTERPRISES?\b|\bTRADING\b|\bRESTORAN\b|\bRESTAURANTS?\b|"
    r"\bHARDWARE\b|\bSTORES?\b|\bCAFE\b|\bPHARMACY\b|\bFARMASI\b|\bMART\b|\bPLT\b|\bKEDAI\b|\bPERNIAGAAN\b|"
    r"\bSYARIKAT\b|\bCO\.|\bCORPORATION\b|\bLTD\b|\bBAKERY\b|\bFLORIST\b|\bSUPERMARKET\b|\bCENTRE\b|\bMARKETING\b",
    re.IGNORECASE)
_HEADING = re.compile(r"INVOICE|RECEIPT|WELCOME|\bTHANK|\bCOPY\b|\bBILL\b|\bORDER\b|\bTABLE\b|\bCASHIER\b",
                      re.IGNORECASE)
_REGISTRATION = re.compile(r"^\W*\(?\s*(?:CO\.?\s*-?\s*(?:REG|NO)\.?|NO\.|COMPANY\s*(?:REG|NO)|ROC|REG\.?\s*NO)?[\s.:]*"
                           r"[A-Z]{0,3}\d[\d\-]*[A-Z]?(?:-[A-Z]+)?\s*\)?\W*$"
                           r"|\bCO\.?\s*-?\s*(?:REG|NO)\b|\bCOMPANY\s*(?:REG|NO)\b|\bROC\b", re.IGNORECASE)
_ADDRESS_END = re.compile(r"\bTEL\b|\bTEL\.|TELEPHONE|\bPHONE\b|\bH/?P\b|\bFAX\b|@|E-?MAIL|WWW\.|\bGST\b|"
                          r"INVOICE|RECEIPT|\bDATE\b|\bTAX\b|\bSST\b|\bCASHIER\b|\bBILL\b|\bTIME\b",
                          re.IGNORECASE)


def _row_text(lines: TextLines, row: list[int]) -> str:
    return " ".join(str(lines.text[i]).strip() for i in row).strip()


def _conf(lines: TextLines, idx: list[int] | tuple[int, ...], strength: float) -> float:
    if not idx:
        return 0.0
    return float(np.clip(np.mean([float(lines.confidence[i]) for i in idx]) * strength, 0.0, 1.0))


def _find_date(text: str) -> str | None:
    best: tuple[int, str] | None = None
    for pattern in _DATE_PATTERNS:
        m = pattern.search(text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), m.group(0).strip(" ,"))
    return best[1] if best else None


def _amount_value(s: str) -> float:
    return float(re.sub(r"[^\d.\-]", "", s) or "nan")


def _amounts(lines: TextLines, row: list[int], after_cue: bool) -> list[tuple[str, int]]:
    """(amount as printed, line index) on a row; with ``after_cue`` only those right of the cue's start."""
    found: list[tuple[str, int]] = []
    cue_seen = not after_cue
    for i in row:
        text = str(lines.text[i])
        if not cue_seen and _TOTAL_CUE.search(text):
            cue_seen = True
            text = text[_TOTAL_CUE.search(text).end():]  # type: ignore[union-attr]
        if cue_seen:
            found += [(m.group(0).strip(), i) for m in _AMOUNT.finditer(text) if not m.group(0).strip().startswith("-")]
    return found


def _total_order(c: tuple) -> tuple:  # the candidates' sort key: rank, then value, then row
    return (c[1], c[0], c[2])


def _total_rank(text: str) -> int:
    """2: a final total (``TOTAL:`` alone, ``ROUNDED``, ``NETT``, ``GRAND``, ``DUE``); 1: inclusive of tax; 0: other."""
    if _FINAL_TOTAL.search(text):
        return 2 if len(_AMOUNT.findall(text)) <= 1 else 0  # "TOTAL 12.00 0.72": a tax summary table
    return 1 if _INCL.search(text) else 0


def _extract_total(lines: TextLines, row_list: list[list[int]], texts: list[str]) -> ReceiptField:
    candidates: list[tuple[float, int, int, str, list[int], float]] = []  # value, rank, row, text, lines, strength
    for r, row in enumerate(row_list):
        text = texts[r]
        if not _TOTAL_CUE.search(text) or (_NOT_TOTAL.search(text) and not _INCL.search(text)):
            continue
        found = _amounts(lines, row, after_cue=True)
        cue_lines = [i for i in row if _TOTAL_CUE.search(str(lines.text[i]))]
        strength = 1.0
        if not found and r + 1 < len(row_list) and not _TOTAL_CUE.search(texts[r + 1]):
            found = _amounts(lines, row_list[r + 1], after_cue=False)
            strength = 0.8
        for value, i in found:
            v = _amount_value(value)
            if np.isfinite(v) and v > 0:
                candidates.append((v, _total_rank(text), r, value, sorted({*cue_lines, i}), strength))
    for fallback, strength in ((_SUBTOTAL, 0.6), (_CASH_CUE, 0.5)):  # no total cue: a sub-total row, a cash row
        if candidates:
            break
        for r, row in enumerate(row_list):
            if fallback.search(texts[r]):
                for value, i in _amounts(lines, row, after_cue=False):
                    v = _amount_value(value)
                    if np.isfinite(v) and v > 0:
                        candidates.append((v, 0, r, value, [i], strength))
    if not candidates:
        return ReceiptField(None)
    v, _, _, value, idx, strength = max(candidates, key=_total_order)
    return ReceiptField(value, _conf(lines, idx, strength), tuple(idx))


def _extract_date(lines: TextLines, row_list: list[list[int]], texts: list[str]) -> ReceiptField:
    first: ReceiptField | None = None
    for r, row in enumerate(row_list):
        date = _find_date(texts[r])
        if date is None:
            continue
        idx = tuple(i for i in row if date in str(lines.text[i])) or tuple(row)
        if _DATE_CUE.search(texts[r]):
            return ReceiptField(date, _conf(lines, idx, 1.0), idx)
        if first is None:
            first = ReceiptField(date, _conf(lines, idx, 0.8), idx)
    return first or ReceiptField(None)


_ONLY_CUE = re.compile(r"^\W*(?:(?:SDN\.?\s*BHD\.?|S/B|BHD\.?|ENTERPRISES?|TRADING|\(M\))\s*)+\W*$", re.IGNORECASE)
_CONTINUED = re.compile(r"^\W*(?:CO\.|\(M\)|SDN|BHD|S/B|ENTERPRISE|TRADING)", re.IGNORECASE)
_TRAILING_REGISTRATION = re.compile(r"[\s,]*(?:[(\[]?\s*(?:CO\.?\s*(?:REG\.?\s*)?NO\.?\s*:?\s*)?"
                                    r"[A-Z]{0,2}\d{4,}[\w\-]*\s*[)\]]?"
                                    r"(?:\s*\([A-Z]{2,4}\))?[\s,.]*)$", re.IGNORECASE)


def _strip_registration(text: str) -> str:
    """``T.A.S LEISURE SDN BHD (256864-P)`` -> ``T.A.S LEISURE SDN BHD``."""
    return _TRAILING_REGISTRATION.sub("", text).strip(" ,") or text


def _letters_ratio(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def _extract_company(lines: TextLines, row_list: list[list[int]], texts: list[str]) -> tuple[ReceiptField, int]:
    """The company and the index of its row (-1 when not found)."""
    top: list[int] = []
    for r, text in enumerate(texts):
        if _find_date(text) or _AMOUNT.search(text) or len(top) >= 8:
            break
        top.append(r)
    for r in top:
        if (_COMPANY_CUE.search(texts[r]) and not _HEADING.search(texts[r])
                and _letters_ratio(_strip_registration(texts[r])) >= 0.5):
            used = [r]
            if r + 1 < len(texts) and _ONLY_CUE.match(texts[r + 1]):
                used.append(r + 1)  # "TSH POWER HARDWARE" / "TRADING"
            if r > 0 and r - 1 in top and _CONTINUED.match(texts[r]) and _letters_ratio(texts[r - 1]) >= 0.8:
                used.insert(0, r - 1)  # "POPULAR BOOK" / "CO. (M) SDN BHD"
            idx = tuple(i for k in used for i in row_list[k])
            value = _strip_registration(" ".join(texts[k] for k in used))
            return ReceiptField(value, _conf(lines, idx, 1.0), idx), used[-1]
    for r in top:
        text = texts[r]
        letters = [c for c in text if c.isalpha()]
        if (len(letters) >= 3 and _letters_ratio(text) >= 0.6 and not _HEADING.search(text)
                and sum(c.isupper() for c in letters) >= 0.8 * len(letters)):
            return ReceiptField(text, _conf(lines, row_list[r], 0.6), tuple(row_list[r])), r
    return ReceiptField(None), -1


_PRE_ADDRESS = re.compile(r"\bGST\b.*\d{6,}|\bWWW\.|\.COM\b|@", re.IGNORECASE)
_ADDRESS_START = re.compile(r"^\W*(?:JALAN|JLN|LOT|NO\b|LEVEL|LORONG|LRG|TAMAN|BLOCK|BLK|UNIT|WISMA|PLAZA|KOMPLEKS|"
                            r"MENARA|BANGUNAN|KM\b|BATU\b|LOBBY|GROUND|SHOP)", re.IGNORECASE)
_TRAILING_PHONE = re.compile(r"\s+\(?0\d{1,2}\)?[- ]?\d{3,4}[- ]?\d{3,4}\W*$")


def _extract_address(lines: TextLines, row_list: list[list[int]], texts: list[str], company_row: int) -> ReceiptField:
    if company_row < 0:
        return ReceiptField(None)
    parts: list[str] = []
    idx: list[int] = []
    skipped = 0
    for r in range(company_row + 1, len(row_list)):
        text = texts[r]
        if not parts and skipped < 4 and (
                _REGISTRATION.search(text) or _PRE_ADDRESS.search(text)
                or not (re.search(r"\d", text) or _ADDRESS_START.match(text))):
            skipped += 1  # registration / GST numbers, a web address, a branch name before the street
            continue
        if _ADDRESS_END.search(text) or _find_date(text) or len(parts) >= 5 or (parts and _REGISTRATION.search(text)):
            break
        phone = _TRAILING_PHONE.search(text)
        parts.append(text[:phone.start()] if phone else text)
        idx += row_list[r]
        if phone:
            break
    if not parts:
        return ReceiptField(None)
    return ReceiptField(" ".join(parts), _conf(lines, idx, 0.8), tuple(idx))


def extract_receipt(lines: TextLines) -> ReceiptFields:
    """Company, date, address and total of a receipt from its OCR lines (see the module's rules)."""
    row_list = rows(lines)
    texts = [_row_text(lines, row) for row in row_list]
    company, company_row = _extract_company(lines, row_list, texts)
    return ReceiptFields(
        company=company,
        date=_extract_date(lines, row_list, texts),
        address=_extract_address(lines, row_list, texts, company_row),
        total=_extract_total(lines, row_list, texts),
    )
