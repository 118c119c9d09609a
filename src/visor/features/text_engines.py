"""Selectable OCR engines: the registry :class:`~visor.features.text.TextReader` dispatches ``engine=`` to,
and the Tesseract 5 engine.

Engines (:data:`ENGINES`):

- ``pp-ocr`` -- PP-OCR ONNX models run through RapidOCR (:mod:`visor.features.text`; the default: PP-OCRv4's
  detector with PP-OCRv6 small's recogniser).
- ``tesseract`` -- Tesseract 5's LSTM recogniser (:class:`TesseractReader`): through the ``tesserocr`` binding
  (the C API in-process, models loaded once) when it is installed, else by running the ``tesseract`` program
  (Debian's ``tesseract-ocr``) once per image with the image on its standard input (no temporary files).
  Its language data comes from Debian's ``tesseract-ocr-<lang>`` packages (``TESSDATA_PREFIX`` overrides).

Tesseract returns text lines (``level`` 4 of its TSV) made of words (level 5) with a 0..100 confidence; a
line is kept with the words scoring at least ``min_word_confidence``, its polygon is the line's box and its
confidence the mean of its kept words' (0..1).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from visor.errors import ConfigError, InvalidInput
from visor.io import ImageLimits, ImageSource, bounded_copy, open_image
from visor.io.image import DEFAULT_LIMITS
from visor.types.text import TextLines


@dataclass(frozen=True)
class EngineInfo:
    """One OCR engine: its ``name`` (``TextReader(engine=name)``), what it is, and what it needs installed."""

    name: str
    description: str
    install: str


#: The OCR engines by name; the first is the default.
ENGINES: Mapping[str, EngineInfo] = MappingProxyType({
    "pp-ocr": EngineInfo("pp-ocr", "PP-OCRv4 detection + PP-OCRv6 small recognition (RapidOCR, ONNX Runtime)",
                         "pip install 'rapidocr-onnxruntime>=1.4,<1.5' 'rapidocr>=3.10,<4' (visor dependencies)"),
    "tesseract": EngineInfo("tesseract", "Tesseract 5 LSTM (Debian's tesseract-ocr; tesserocr binding when installed)",
                            "apt-get install tesseract-ocr tesseract-ocr-eng (and pip install tesserocr)"),
})
#: The engine a :class:`~visor.features.text.TextReader` uses when none is named.
DEFAULT_ENGINE = "pp-ocr"
#: The name Tesseract's results carry in ``model``.
TESSERACT_MODEL = "tesseract-5"
#: Where Debian (and most Linux distributions) put Tesseract's language data, newest first.
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                 "/usr/share/tessdata", "/usr/local/share/tessdata")
#: visor's language codes (ISO 639-1, as elsewhere in visor) to Tesseract's (ISO 639-2/T); others pass as they are.
LANGUAGES: Mapping[str, str] = MappingProxyType({
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "pt": "por", "nl": "nld", "ms": "msa",
    "id": "ind", "pl": "pol", "sv": "swe", "da": "dan", "fi": "fin", "no": "nor", "cs": "ces", "tr": "tur",
    "ru": "rus", "uk": "ukr", "el": "ell", "ar": "ara", "he": "heb", "hi": "hin", "ja": "jpn", "ko": "kor",
    "zh": "chi_sim", "zh-cn": "chi_sim", "zh-tw": "chi_tra", "vi": "vie", "th": "tha",
})
#: Tesseract's ``thresholding_method`` per binarization name (Sauvola reads receipts best: word F1 0.77 vs 0.75
#: for Otsu on 20 SROIE receipts).
BINARIZATION: Mapping[str, int] = MappingProxyType({"otsu": 0, "local-otsu": 1, "sauvola": 2})
#: The word confidence (0..100) below which a Tesseract word is dropped by default (measured on receipts).
MIN_WORD_CONFIDENCE = 50.0
#: Images whose shorter side (as read, after any downscaling) is below this many pixels hold no legible text: every
#: engine reads them as no lines (RapidOCR's resizing fails on, say, a 1 x 10000 image, Tesseract refuses them).
MIN_TEXT_SIDE = 8
_LANG = re.compile(r"^[a-z]{2,3}(_[a-z]{3,4})?$")


def engine_names() -> tuple[str, ...]:
    """The engines ``TextReader(engine=...)`` accepts, the default first."""
    return tuple(ENGINES)


def open_engine(name: str, **options: Any) -> Any:
    """A reader for engine ``name`` other than the default (``read(image) -> TextLines``): the default, PP-OCR,
    is :class:`visor.features.text.TextReader` itself, which opens the others through this function (imports
    point one way: text -> text_engines). An unknown name is a :class:`ConfigError` listing the known ones.
    ``options`` go to the engine's reader."""
    key = str(name).strip().lower()
    if key not in ENGINES:
        raise ConfigError(f"unknown OCR engine {name!r}; choose one of: {', '.join(ENGINES)}")
    if key == DEFAULT_ENGINE:
        raise ConfigError(f"{DEFAULT_ENGINE} is visor.features.text.TextReader itself: open that")
    return TesseractReader(**options)


def tesseract_language(lang: str) -> str:
    """Tesseract's language string for ``lang``: ``en`` -> ``eng``; ``eng+deu`` and ``en+de`` combine."""
    parts = [p.strip().lower() for p in str(lang).split("+")]
    out = [LANGUAGES.get(p, p) for p in parts]
    for raw, code in zip(parts, out, strict=True):
        if not _LANG.match(code):
            raise ConfigError(f"not a Tesseract language: {raw!r} (e.g. eng, deu, chi_sim; or en, de)")
    return "+".join(out)


def _apt_package(code: str) -> str:
    return "tesseract-ocr-" + code.replace("_", "-")


def find_tessdata(langs: str, *, tessdata: str | os.PathLike | None = None) -> Path:
    """The folder holding ``<lang>.traineddata`` for every language of ``langs`` (``eng+deu``): ``tessdata``
    when given, else ``$TESSDATA_PREFIX``, else Debian's and the usual places. None found, or a language
    missing, is a :class:`ConfigError` naming the apt package to install."""
    codes = langs.split("+")
    if tessdata is not None:
        candidates = [Path(tessdata)]
    else:
        env = os.environ.get("TESSDATA_PREFIX")
        candidates = ([Path(env), Path(env) / "tessdata"] if env else []) + [Path(d) for d in TESSDATA_DIRS]
    folders = [c for c in candidates if c.is_dir() and any(c.glob("*.traineddata"))]
    for folder in folders:
        if all((folder / f"{c}.traineddata").is_file() for c in codes):
            return folder
    if not folders:
        raise ConfigError("Tesseract's language data is not installed; install it with apt-get install "
                          f"tesseract-ocr {' '.join(_apt_package(c) for c in codes)}"
                          + (f" (or check {tessdata})" if tessdata is not None else ""))
    missing = [c for c in codes if not (folders[0] / f"{c}.traineddata").is_file()]
    raise ConfigError(f"Tesseract has no {'+'.join(missing)} language data in {folders[0]}; install it with "
                      f"apt-get install {' '.join(_apt_package(c) for c in missing)}")


def lines_from_tsv(tsv: str, *, min_word_confidence: float = 0.0) -> TextLines:
    """Tesseract's TSV (``level page_num block_num par_num line_num word_num left top width height conf
    text``) as :class:`TextLines`: one per text line (level 4) with words (level 5) scoring at least
    ``min_word_confidence`` (0..100), the line's box as its polygon and the kept words' mean confidence / 100."""
    boxes: dict[tuple[int, ...], tuple[int, int, int, int]] = {}
    words: dict[tuple[int, ...], list[tuple[str, float]]] = {}
    for row in tsv.splitlines():
        f = row.split("\t")
        if len(f) < 12 or not f[0].isdigit():
            continue  # the header, or a short row
        level, key = int(f[0]), tuple(int(v) for v in f[1:5])
        left, top, width, height = (int(v) for v in f[6:10])
        if level == 4:
            boxes[key] = (left, top, width, height)
        elif level == 5:
            conf, text = float(f[10]), "\t".join(f[11:]).strip()
            if text and conf >= min_word_confidence:
                words.setdefault(key, []).append((text, conf))
    keys = [k for k in boxes if words.get(k)]
    if not keys:
        return TextLines.empty()
    polygons = np.array([[[x, y], [x + w, y], [x + w, y + h], [x, y + h]] for x, y, w, h in (boxes[k] for k in keys)],
                        np.float32)
    text = [" ".join(t for t, _ in words[k]) for k in keys]
    conf = np.array([np.mean([c for _, c in words[k]]) / 100.0 for k in keys], np.float32)
    return TextLines(polygons, text, np.clip(conf, 0.0, 1.0))


class TesseractReader:
    """Tesseract 5 text recognition (see the module).

    ``lang`` is Tesseract's language (``eng``, ``eng+deu``; ``en``/``de`` map to them); ``psm`` its page
    segmentation mode (3: automatic, the best measured on receipts; 4: one column; 6: one block; 11: sparse);
    ``min_word_confidence`` (0..100) drops Tesseract's low-confidence words (mostly rules and dots read as
    ``|``, ``~``, ``—``; 50 measured best on receipts); ``binarization`` is how Tesseract thresholds the page
    (``otsu``, ``local-otsu`` or ``sauvola``, the best on receipts' uneven paper); ``dpi`` is the resolution
    Tesseract is told the image has (scanned receipts have none recorded); ``threads`` caps Tesseract's
    OpenMP threads (``OMP_THREAD_LIMIT``) when it runs as a program (default 1: on 2 cores OpenMP costs 2.5x
    the CPU for no gain; the tesserocr wheel's library has no OpenMP); ``max_pixels`` / ``max_side`` bound the work
    per image (boxes are scaled back to the original pixels); ``binding`` is ``auto`` (``tesserocr`` when
    installed, else the program), ``tesserocr`` or ``program``; ``tessdata`` overrides where the language
    data is looked for. A missing program, binding or language is a :class:`ConfigError` naming what to install.
    """

    def __init__(
        self,
        *,
        lang: str = "eng",
        psm: int = 3,
        min_word_confidence: float = MIN_WORD_CONFIDENCE,
        binarization: str = "sauvola",
        dpi: int = 300,
        threads: int | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_side: int | None = None,
        max_pixels: int | None = 16_000_000,
        binding: str = "auto",
        tessdata: str | os.PathLike | None = None,
    ) -> None:
        if psm not in (1, 3, 4, 5, 6, 7, 11, 12, 13):
            raise ConfigError(f"psm must be a Tesseract page segmentation mode that finds text (1, 3-7, 11-13), "
                              f"got {psm}")
        if not 0.0 <= min_word_confidence <= 100.0:
            raise ConfigError(f"min_word_confidence must be between 0 and 100, got {min_word_confidence}")
        if binarization not in BINARIZATION:
            raise ConfigError(f"binarization must be one of {', '.join(BINARIZATION)}, got {binarization!r}")
        if not 70 <= dpi <= 2400:
            raise ConfigError(f"dpi must be between 70 and 2400, got {dpi}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        if binding not in ("auto", "tesserocr", "program"):
            raise ConfigError(f"binding must be auto, tesserocr or program, got {binding!r}")
        for name, bound in (("max_side", max_side), ("max_pixels", max_pixels)):
            if bound is not None and bound < 32:
                raise ConfigError(f"{name} must be at least 32, got {bound}")
        self.lang = tesseract_language(lang)
        self.psm, self.dpi = int(psm), int(dpi)
        self.min_word_confidence = float(min_word_confidence)
        self.binarization = binarization
        self.threads = threads
        self.limits, self.max_side, self.max_pixels = limits, max_side, max_pixels
        self.tessdata = find_tessdata(self.lang, tessdata=tessdata)
        self._lock = threading.Lock()  # one Tesseract API object: one image at a time
        self._api: Any = None
        self._program: str | None = None
        api_class = _tesserocr_api() if binding in ("auto", "tesserocr") else None
        if api_class is None and binding == "tesserocr":
            raise ConfigError("the tesserocr binding is not installed; install it with pip install 'tesserocr>=2.7'")
        if api_class is not None:
            try:
                self._api = api_class(path=str(self.tessdata) + os.sep, lang=self.lang, psm=self.psm, oem=1)
                self._api.SetVariable("thresholding_method", str(BINARIZATION[binarization]))
            except RuntimeError as e:
                raise ConfigError(f"Tesseract could not load {self.lang} from {self.tessdata}: {e}") from None
            self.binding = "tesserocr"
        else:
            self._program = shutil.which("tesseract")
            if self._program is None:
                raise ConfigError("the tesseract program is not installed; install it with apt-get install "
                                  f"tesseract-ocr {' '.join(_apt_package(c) for c in self.lang.split('+'))} "
                                  "(or pip install tesserocr)")
            self.binding = "program"

    def read(self, image: ImageSource) -> TextLines:
        """Find and read the text in one image."""
        if self._api is None and self._program is None:
            raise ConfigError("this TesseractReader is closed")
        img = open_image(image, limits=self.limits)
        w, h = img.size
        small = bounded_copy(img, max_side=self.max_side, max_pixels=self.max_pixels).convert("L")
        if min(small.size) < MIN_TEXT_SIDE:  # no legible text (and Tesseract refuses such images)
            return TextLines.empty(model=TESSERACT_MODEL)
        tsv = self._tsv_api(small) if self._api is not None else self._tsv_program(small)
        lines = lines_from_tsv(tsv, min_word_confidence=self.min_word_confidence)
        polygons = lines.polygons
        if small.size != (w, h) and len(lines):
            polygons = polygons * np.array([w / small.width, h / small.height], np.float32)
        return TextLines(polygons, lines.text, lines.confidence, model=TESSERACT_MODEL)

    def _tsv_api(self, image: Any) -> str:
        with self._lock:
            self._api.SetImage(image)
            self._api.SetSourceResolution(self.dpi)
            return self._api.GetTSVText(0)

    def _tsv_program(self, image: Any) -> str:
        import io

        buf = io.BytesIO()
        image.save(buf, "PNG", compress_level=1)
        env = {**os.environ, "OMP_THREAD_LIMIT": str(self.threads or 1)}
        cmd = [str(self._program), "stdin", "stdout", "--tessdata-dir", str(self.tessdata), "-l", self.lang,
               "--psm", str(self.psm), "--oem", "1", "--dpi", str(self.dpi),
               "-c", f"thresholding_method={BINARIZATION[self.binarization]}", "tsv"]
        try:
            done = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, env=env, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise InvalidInput(f"tesseract failed on this image: {e}") from None
        if done.returncode != 0:
            why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise InvalidInput(f"tesseract failed on this image (exit {done.returncode}): {why[0]}")
        return done.stdout.decode("utf-8", "replace")

    def __call__(self, image: ImageSource) -> TextLines:
        return self.read(image)

    def __repr__(self) -> str:
        return f"TesseractReader(lang={self.lang!r}, psm={self.psm}, binding={self.binding!r})"

    def close(self) -> None:
        """Free Tesseract's models (the tesserocr binding); the reader is unusable afterwards."""
        if self._api is not None:
            with self._lock:
                self._api.End()
                self._api = None


def _tesserocr_api() -> Any:
    """tesserocr's ``PyTessBaseAPI``, or None when the binding is not installed."""
    try:
        from tesserocr import PyTessBaseAPI
    except ImportError:
        return None
    return PyTessBaseAPI
