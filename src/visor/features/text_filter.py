"""Dropping recognised text that is not there: wrong script, low confidence, no letters, flat pixels.

A text recogniser reads *something* in every box its detector proposes: PP-OCR's Chinese/English model turns
a watch's crown logo into '业' (0.83), plane windows into '.......' (0.88) and a dog on grass into '1' (0.70).
:func:`filter_lines` removes such lines after recognition; the rules and their thresholds were chosen by
measurement on the 128 coco128 photos (false boxes removed) and on SROIE receipts (word recall kept):

- **Script.** Every letter is assigned its Unicode script (from its character name: LATIN, CJK, HIRAGANA,
  CYRILLIC, ...; digits, punctuation and symbols belong to none and always pass). With ``lang`` (language
  codes, like Cloud Vision's ``languageHints``: ``["en"]``, ``["zh", "en"]``) a line holding any letter outside
  those languages' scripts is dropped. Without it, Latin is kept, and a line with letters of another script
  only when it has at least :data:`MIN_OTHER_SCRIPT_LETTERS` of them: a lone CJK character in a photo is the
  recogniser's commonest invention (every CJK line coco128 produced; none is real), while real CJK text
  comes in words (pass ``lang=["zh"]`` to keep single characters).
- **Confidence.** Lines below ``min_confidence`` are dropped; so are lines of one character below
  :data:`SINGLE_CHAR_MIN_CONFIDENCE` in a photo (fewer than :data:`DOCUMENT_LINES` lines pass the other rules):
  a lone glyph is what a texture is most often read as, while a document's lone characters are quantities and
  column values (receipts: a '6' at 0.62 is a real word).
- **Letters.** A line with no letter or digit and more than one character (``'.......'``, ``'-=-'``) is
  dropped; a single ``'%'`` or ``'+'`` is kept (receipts print them in their own boxes).
- **Size.** A line of at most :data:`MAX_TALL_CHARS` characters taller (its polygon's shorter side) than
  :data:`MAX_LINE_HEIGHT` of the image's shorter side is dropped: the detector boxed a whole texture or the
  whole picture and the recogniser read a glyph or two in it (coco128 with PP-OCRv6 small: a toilet read as '8'
  at 0.80 and a field as '2' at 0.86, 0.56 to 1.0 of the side; real lines there measured 0.30 at most,
  receipts' lines 0.17 at most). Words filling the frame (a banner, a word cropped close) are kept.
- **Pixels.** A box whose crop is flat (its darkest and lightest grey differ by less than :data:`MIN_CONTRAST`
  of the range) cannot hold legible text and is dropped. Only a safety net: on coco128 every false box had a
  spread of 0.3 or more, and finer pixel tests measured there (edge density, Otsu bimodality, stroke
  transitions at a normalised height) did not separate false boxes from real ones. A percentile spread is no
  good either: a thin '1' covers under 5% of its box.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from visor.errors import ConfigError
from visor.types.text import TextLines

#: The confidence floor :func:`filter_lines` applies by default (coco128: removes a remote's buttons read as
#: '388' at 0.54 and a row of cans read as 'HCHHAHHNA' at 0.53; on receipts no word is lost, see the module).
MIN_CONFIDENCE = 0.55
#: The confidence a one-character line needs in a photo (coco128: a dog read as '1' at 0.70).
SINGLE_CHAR_MIN_CONFIDENCE = 0.8
#: The lines (passing the other rules) from which an image is a document, where one-character lines need only
#: ``min_confidence`` (coco128 photos: at most 5 lines at confidence 0.5; 20 SROIE receipts: 39 and more).
DOCUMENT_LINES = 10
#: Without ``lang``, the letters of non-Latin scripts a line needs to be kept.
MIN_OTHER_SCRIPT_LETTERS = 2
#: The largest line height, as a fraction of the image's shorter side, that can be text.
MAX_LINE_HEIGHT = 0.45
#: The most characters a line taller than :data:`MAX_LINE_HEIGHT` may hold and still be dropped as a texture.
MAX_TALL_CHARS = 3
#: The grey-level spread (darkest to lightest, as a fraction of 255) below which a box is flat.
MIN_CONTRAST = 0.08

LATIN = "LATIN"
#: Scripts by language code (ISO 639-1, plus PaddleOCR's ``ch``/``japan``/``korean``); a code's region or
#: variant (``en-US``, ``zh-Hant``) is ignored.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({LATIN}) for code in (
        "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "nb", "nn", "fi", "is", "pl", "cs", "sk",
        "sl", "hr", "bs", "hu", "ro", "tr", "az", "et", "lv", "lt", "ga", "cy", "eu", "ca", "gl", "mt", "sq",
        "id", "ms", "tl", "vi", "sw", "af", "la", "eo", "latin")},
    **{code: frozenset({"CJK"}) for code in ("zh", "ch", "chinese", "chinese_cht")},
    **{code: frozenset({"CJK", "HIRAGANA", "KATAKANA"}) for code in ("ja", "japan")},
    **{code: frozenset({"HANGUL", "CJK"}) for code in ("ko", "korean")},
    **{code: frozenset({"CYRILLIC"}) for code in ("ru", "uk", "be", "bg", "sr", "mk", "kk", "mn", "cyrillic")},
    "el": frozenset({"GREEK"}),
    **{code: frozenset({"ARABIC"}) for code in ("ar", "fa", "ur", "ps", "ug", "arabic")},
    "he": frozenset({"HEBREW"}),
    **{code: frozenset({"DEVANAGARI"}) for code in ("hi", "mr", "ne", "sa", "devanagari")},
    "th": frozenset({"THAI"}),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
}

# The first word(s) of a letter's Unicode name that name a different script than they spell.
_NAME_SCRIPT = {"FULLWIDTH": LATIN, "HALFWIDTH": "KATAKANA", "IDEOGRAPHIC": "CJK", "KANGXI": "CJK"}


def char_script(ch: str) -> str | None:
    """The script of one character (``"LATIN"``, ``"CJK"``, ``"CYRILLIC"``, ...), or ``None`` for a character
    of no script (digits, punctuation, symbols, spaces, combining marks)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    if not name:
        return "UNKNOWN"
    first = name.split(" ", 1)[0]
    if first == "FULLWIDTH" and "LATIN" not in name:
        return "UNKNOWN"
    return _NAME_SCRIPT.get(first, first)


def scripts_for(lang: Sequence[str] | str | None) -> frozenset[str] | None:
    """The scripts ``lang``'s codes are written in (``None`` for ``None``); an unknown code is a
    :class:`~visor.errors.ConfigError`."""
    if lang is None:
        return None
    codes = [lang] if isinstance(lang, str) else list(lang)
    scripts: set[str] = set()
    for code in codes:
        key = str(code).strip().lower().replace("_", "-")
        base = key if key in LANGUAGE_SCRIPTS else key.split("-", 1)[0]
        if base not in LANGUAGE_SCRIPTS:
            known = ", ".join(sorted(k for k in LANGUAGE_SCRIPTS if len(k) == 2))
            raise ConfigError(f"unknown language code {code!r} (known: {known})")
        scripts |= LANGUAGE_SCRIPTS[base]
    if not scripts:
        raise ConfigError("lang is empty: give at least one language code, or None for the default")
    return frozenset(scripts)


def script_ok(text: str, scripts: frozenset[str] | None) -> bool:
    """Whether ``text`` passes the script rule: every letter in ``scripts``; for ``None`` (no language
    given), Latin, or at least :data:`MIN_OTHER_SCRIPT_LETTERS` letters of other scripts."""
    found = [s for s in map(char_script, text) if s is not None]
    if scripts is not None:
        return all(s in scripts for s in found)
    other = sum(s != LATIN for s in found)
    return other == 0 or other >= MIN_OTHER_SCRIPT_LETTERS


def crop_contrast(image: np.ndarray, polygon: np.ndarray) -> float:
    """The grey spread (lightest minus darkest, 0-1) inside ``polygon``'s axis-aligned box (0 when it holds
    no pixel) of ``image`` (RGB or grey; only the box is converted to grey)."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int)
    crop = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    if not crop.size:
        return 0.0
    crop = _gray(crop)
    return float(crop.max() - crop.min()) / 255.0


def line_height(polygon: np.ndarray) -> float:
    """A text box's height: the shorter of its first two edges (corners clockwise from the top left)."""
    p = np.asarray(polygon, np.float64)
    return float(min(np.hypot(*(p[1] - p[0])), np.hypot(*(p[3] - p[0]))))


def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return a.astype(np.float32)


def filter_lines(
    lines: TextLines,
    image: np.ndarray | None,
    *,
    lang: Sequence[str] | str | None = None,
    min_confidence: float = MIN_CONFIDENCE,
) -> TextLines:
    """The lines of ``lines`` that are text (see the module for the rules), in their order.

    ``image`` is the RGB (or grey) array ``lines``' polygons are in pixels of; ``None`` skips the size and
    pixel tests.
    ``lang`` is language codes (``"en"``, ``["zh", "en"]``) whose scripts alone are kept; ``None`` keeps Latin
    and words of other scripts. ``min_confidence`` is the confidence floor (0 to 1).
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    scripts = scripts_for(lang)
    if not len(lines):
        return lines
    pixels = None if image is None else np.asarray(image)  # grey per box only, not the whole image
    keep: list[int] = []
    for i, (text, conf) in enumerate(zip(lines.text, lines.confidence, strict=True)):
        text, conf = str(text).strip(), float(conf)
        if not text or conf < min_confidence:
            continue
        if len(text) > 1 and not any(ch.isalnum() for ch in text):
            continue
        if not script_ok(text, scripts):
            continue
        tall = pixels is not None and line_height(lines.polygons[i]) > MAX_LINE_HEIGHT * min(pixels.shape[:2])
        if (tall and len(text) <= MAX_TALL_CHARS) or (pixels is not None
                                                      and crop_contrast(pixels, lines.polygons[i]) < MIN_CONTRAST):
            continue
        keep.append(i)
    if len(keep) < DOCUMENT_LINES:  # a photo: lone characters are mostly textures
        keep = [i for i in keep if len(str(lines.text[i]).strip()) > 1
                or float(lines.confidence[i]) >= SINGLE_CHAR_MIN_CONFIDENCE]
    if len(keep) == len(lines):
        return lines
    return lines[keep]
