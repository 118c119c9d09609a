"""Text recognition (OCR) with PP-OCR models through RapidOCR's ONNX Runtime pipeline.

:class:`TextReader` opens the detection, orientation and recognition models once (RapidOCR
is imported only then); reuse it for many images. :func:`read_text` is the one-call form.
The models are PP-OCRv6 small (detection and recognition, shipped in the ``rapidocr`` 3.x wheel, Apache-2.0;
their SHA-256 are checked when a reader opens them) and RapidOCR 1.4's bundled PP-OCRv4; the default is PP-OCRv4's
detector with PP-OCRv6 small's recogniser (:data:`DEFAULT_MODELS`, :data:`DEFAULT_DETECTOR`). Nothing is downloaded.
Images are decoded by :func:`visor.io.open_image` (size caps, format allow-list, EXIF) and
handed to RapidOCR as BGR arrays; boxes come back in the original image's pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from visor.errors import ConfigError
from visor.features.text_engines import MIN_TEXT_SIDE, open_engine
from visor.features.text_filter import filter_lines, script_ok, scripts_for
from visor.io import ImageLimits, ImageSource, bounded_copy, open_image
from visor.io.image import DEFAULT_LIMITS
from visor.types.text import TextLines

#: The engine name (:mod:`visor.features.text_engines`) under which this module's PP-OCR pipeline reads.
MODEL_NAME = "pp-ocr"


@dataclass(frozen=True)
class ModelFile:
    """One ONNX model inside an installed distribution, with the SHA-256 it must have."""

    distribution: str
    path: str
    sha256: str


@dataclass(frozen=True)
class PPOCRModels:
    """A PP-OCR detector + recogniser pair: ``None`` is RapidOCR 1.4's bundled PP-OCRv4 model."""

    name: str
    detector: ModelFile | None
    recognizer: ModelFile | None


_V6 = "rapidocr"  # rapidocr>=3.10,<4 ships PP-OCRv6 small det/rec (MODEL_LICENSES.md: Apache-2.0, Baidu/PaddleOCR)
#: The model sets ``TextReader(models=...)`` accepts.
MODELS: Mapping[str, PPOCRModels] = MappingProxyType({
    "ppocrv6-small": PPOCRModels(
        "pp-ocrv6-small",
        ModelFile(_V6, "rapidocr/models/PP-OCRv6_det_small.onnx",
                  "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
        ModelFile(_V6, "rapidocr/models/PP-OCRv6_rec_small.onnx",
                  "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884")),
    "ppocrv4": PPOCRModels("pp-ocrv4", None, None),
})
#: The recogniser (and, with ``detector=None``, detector) a :class:`TextReader` reads with when none are named.
DEFAULT_MODELS = "ppocrv6-small"
#: The default detector: PP-OCRv4's DB detector with the PP-OCRv6 small recogniser scored word F1 0.847 at 1.7 s per
#: receipt on the 100 SROIE receipts (PP-OCRv6 small's own detector: 0.844 at 2.0 s; at 960 px 0.851 at 2.4 s).
DEFAULT_DETECTOR = "ppocrv4"
#: The default longest side a :class:`TextReader` reads at (larger images are downscaled to it).
MAX_SIDE = 2048
#: The default longest side the text detector sees.
DETECTION_SIDE = 736
#: The DB detector's box score threshold and box growth, from a coarse grid on the 100 SROIE receipts (word F1;
#: RapidOCR's defaults 0.5 and 1.6: 0.847): growth 1.8 alone 0.851, 2.0 0.848; threshold 0.4 alone 0.849; 0.4
#: with growth 1.7 / 1.8 / 2.0: 0.854 / 0.853 / 0.849; 0.3 with 1.8: 0.852. A lower confidence floor (0.3) or a
#: larger detection side (800 px) did not help.
BOX_THRESH = 0.4
UNCLIP_RATIO = 1.7
#: Lines per recognition call, and the narrowest width (in line heights) a batch is padded to (RapidOCR pads
#: every batch to at least 320/48 ~ 6.7 heights, so a short line costs as much as a long one: 1.0 reads each
#: batch at its own widest line, ~1.5x faster on receipts and no less accurate).
REC_BATCH_SIZE = 6
REC_MIN_RATIO = 1.0
#: ONNX Runtime intra-op threads per model when ``threads`` is not given (its own pool was 2.4x slower on a
#: busy 2-core machine: 5.0 s against 2.1 s per receipt).
DEFAULT_THREADS = 1


class TextReader:
    """PP-OCR text detection + recognition (PP-OCRv4 detector, PP-OCRv6 small recogniser by default).

    ``min_confidence`` drops recognised lines scoring below it (RapidOCR's ``text_score``);
    ``use_angle_cls`` checks line orientation with the 0/180 degree classifier: the widest lines
    are classified first and the rest only when one of those is upside down (a page is almost
    always all one way up, and the classifier otherwise costs a pass over every line);
    ``detection_side`` is the longest side the text detector sees: larger images are scaled
    down to it, smaller ones are left as they are (RapidOCR's default instead scales every
    image *up* to 736 px on its short side, which is ~8x slower on small images and no more
    accurate on rendered text; raise it for small print in large photos);
    ``box_thresh`` and ``unclip_ratio`` are the DB detector's box score threshold and box growth;
    ``rec_batch_size`` is how many lines the recogniser reads per call (lines are sorted by aspect
    ratio and each batch is padded only to its own widest line);
    ``threads`` is ONNX Runtime's intra-op threads per model (default :data:`DEFAULT_THREADS`);
    ``max_side`` bounds the work per image: a larger image is read from a copy box-downscaled
    to that long side (lines are cropped for recognition from that copy) and the boxes are
    scaled back to the original pixels (``None``: no bound; a 6000 px photo otherwise takes
    ~9 s in RapidOCR's full-resolution steps).
    ``models`` picks the PP-OCR recogniser (:data:`MODELS`: ``ppocrv6-small``, the default, or ``ppocrv4``) and
    ``detector`` the detector (an entry of :data:`MODELS`, default :data:`DEFAULT_DETECTOR`; ``None``: the
    ``models`` entry's own detector).
    ``engine`` picks another OCR engine (:data:`visor.features.text_engines.ENGINES`, e.g. ``tesseract``):
    it then reads every image, with only ``threads`` and ``limits`` passed on to it.
    ``lang`` (language codes, like Cloud Vision's ``languageHints``: ``"en"``, ``["zh", "en"]``) keeps only
    lines in those languages' scripts; ``filter_text`` (default on) drops lines that are not text (wrong
    script, no letter or digit, a lone low-confidence character in a photo, boxes too tall or too flat to hold
    text: :func:`visor.features.text_filter.filter_lines`), both for every engine.
    """

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        use_angle_cls: bool = True,
        detection_side: int = DETECTION_SIDE,
        threads: int | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_side: int | None = MAX_SIDE,
        box_thresh: float = BOX_THRESH,
        unclip_ratio: float = UNCLIP_RATIO,
        rec_batch_size: int = REC_BATCH_SIZE,
        engine: str = MODEL_NAME,
        models: str = DEFAULT_MODELS,
        detector: str | None = DEFAULT_DETECTOR,
        lang: Sequence[str] | str | None = None,
        filter_text: bool = True,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        if detection_side < 32:
            raise ConfigError(f"detection_side must be at least 32, got {detection_side}")
        if max_side is not None and max_side < 32:
            raise ConfigError(f"max_side must be at least 32, got {max_side}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        if not 0.0 <= box_thresh <= 1.0:
            raise ConfigError(f"box_thresh must be between 0 and 1, got {box_thresh}")
        if not unclip_ratio > 0:
            raise ConfigError(f"unclip_ratio must be positive, got {unclip_ratio}")
        if rec_batch_size < 1:
            raise ConfigError(f"rec_batch_size must be at least 1, got {rec_batch_size}")
        self._delegate: Any = None
        scripts_for(lang)  # an unknown language code is a ConfigError now, not at the first image
        self.lang = None if lang is None else ((lang,) if isinstance(lang, str) else tuple(lang))
        self.filter_text = bool(filter_text)
        if str(engine).strip().lower() != MODEL_NAME:  # another engine reads (visor.features.text_engines)
            self._delegate = open_engine(engine, threads=threads, limits=limits)
            self.min_confidence, self.limits, self.max_side = float(min_confidence), limits, max_side
            return
        chosen = _models(models)
        det_models = chosen if detector is None else _models(detector)
        paths: dict[str, str] = {}
        if det_models.detector is not None:
            paths["det_model_path"] = str(_model_path(det_models.detector))
        if chosen.recognizer is not None:
            paths["rec_model_path"] = str(_model_path(chosen.recognizer))
        try:
            from rapidocr_onnxruntime import RapidOCR
            from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess
            from rapidocr_onnxruntime.ch_ppocr_det.utils import ResizeImgError as DetResizeError
            from rapidocr_onnxruntime.utils.process_img import ResizeImgError
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ConfigError(
                f"text recognition needs rapidocr-onnxruntime ({e}); install it with "
                "pip install 'rapidocr-onnxruntime>=1.4,<1.5'"
            ) from None
        options: dict[str, Any] = {"text_score": float(min_confidence), "use_cls": bool(use_angle_cls),
                                   "print_verbose": False, "det_limit_type": "max",
                                   "det_limit_side_len": int(detection_side), "det_box_thresh": float(box_thresh),
                                   "det_unclip_ratio": float(unclip_ratio), "inter_op_num_threads": 1, **paths}
        options["intra_op_num_threads"] = int(DEFAULT_THREADS if threads is None else threads)
        self.min_confidence = float(min_confidence)
        self.model_name = chosen.name if det_models is chosen else f"{det_models.name}-det+{chosen.name}-rec"
        self.use_angle_cls = bool(use_angle_cls)
        self.detection_side = int(detection_side)
        self.rec_batch_size = int(rec_batch_size)
        self.limits = limits
        self.max_side = None if max_side is None else int(max_side)
        self._engine = RapidOCR(**options)
        det = self._engine.text_det
        # RapidOCR 1.4's "max" limit ignores the configured side (it picks 960/1500/2000 from the image size):
        # build the resize step once, at the side asked for.
        self._det_pre = DetPreProcess(self.detection_side, "max", det.mean, det.std)
        self._resize_errors = (DetResizeError, ResizeImgError)

    def read(self, image: ImageSource, *, lang: Sequence[str] | str | None = None) -> TextLines:
        """Find and read the text in one image; ``lang`` (language codes) overrides the reader's for this image."""
        lang = self.lang if lang is None else lang
        if self._delegate is not None:  # another engine: its own confidence rules, and the script rule
            return _in_scripts(self._delegate.read(image), lang)
        img = open_image(image, limits=self.limits)
        w, h = img.size
        rgb = np.asarray(bounded_copy(img, max_side=self.max_side))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        lines = lines_from_rapidocr(self._run(bgr))
        if self.filter_text:
            lines = filter_lines(lines, rgb, lang=lang, min_confidence=self.min_confidence)
        else:
            lines = _in_scripts(lines, lang)
        if (rgb.shape[1], rgb.shape[0]) != (w, h) and len(lines):
            scale = np.array([w / rgb.shape[1], h / rgb.shape[0]], np.float32)
            lines = TextLines(lines.polygons * scale, lines.text, lines.confidence)
        return TextLines(lines.polygons, lines.text, lines.confidence, model=self.model_name)

    def _run(self, bgr: np.ndarray) -> list[list[Any]]:
        """RapidOCR's pipeline with this reader's detection size, orientation check and recognition batching."""
        eng = self._engine
        raw_h, raw_w = bgr.shape[:2]
        if min(raw_h, raw_w) < MIN_TEXT_SIDE:
            return []
        try:  # a very long thin image can still round to nothing in RapidOCR's resizing: it holds no text
            img, ratio_h, ratio_w = eng.preprocess(bgr)
            img, op_record = eng.maybe_add_letterbox(img, {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}})
            boxes = self._detect(img)
        except self._resize_errors:
            return []
        if not len(boxes):
            return []
        crops = eng.get_crop_img_list(img, boxes)
        if self.use_angle_cls:
            crops = self._orient(crops)
        texts = self._recognize(crops)
        points = eng._get_origin_points(boxes, op_record, raw_h, raw_w)
        return [[box.tolist(), text, score] for box, (text, score) in zip(points, texts, strict=True)
                if score >= self.min_confidence]

    def _detect(self, img: np.ndarray) -> list[np.ndarray]:
        det = self._engine.text_det
        batch = self._det_pre(img)
        if batch is None:
            return []
        boxes, _ = det.postprocess_op(det.infer(batch)[0], img.shape[:2])
        boxes = det.filter_tag_det_res(boxes, img.shape[:2])
        return self._engine.sorted_boxes(boxes) if len(boxes) else []

    def _orient(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Turn upside-down lines round: classify the widest few; the rest only if one of them is flipped."""
        cls = self._engine.text_cls
        widest = sorted(range(len(crops)), key=lambda i: -crops[i].shape[1] / crops[i].shape[0])[:cls.cls_batch_num]
        _, results, _ = cls([crops[i] for i in widest])
        if not any("180" in label and score > cls.cls_thresh for label, score in results):
            return crops
        return cls(crops)[0]

    def _recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        rec = self._engine.text_rec
        ratios = np.array([c.shape[1] / max(c.shape[0], 1) for c in crops])
        order = np.argsort(ratios, kind="stable")
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(crops), self.rec_batch_size):
            idx = order[start:start + self.rec_batch_size]
            widest = max(REC_MIN_RATIO, float(ratios[idx].max()))
            batch = np.stack([rec.resize_norm_img(crops[i], widest) for i in idx]).astype(np.float32)
            decoded = rec.postprocess_op(rec.session(batch)[0], False, wh_ratio_list=list(ratios[idx]),
                                         max_wh_ratio=widest)
            for i, res in zip(idx, decoded, strict=True):
                out[i] = (str(res[0]), float(res[1]))
        return out

    def __call__(self, image: ImageSource) -> TextLines:
        return self.read(image)

    def __repr__(self) -> str:
        return f"TextReader(min_confidence={self.min_confidence}, lang={self.lang})"


def _in_scripts(lines: TextLines, lang: Sequence[str] | str | None) -> TextLines:
    """``lines`` without those holding letters outside ``lang``'s scripts (all of them for ``None``)."""
    if lang is None or not len(lines):
        return lines
    scripts = scripts_for(lang)
    keep = [i for i, text in enumerate(lines.text) if script_ok(str(text), scripts)]
    return lines if len(keep) == len(lines) else lines[keep]


def _models(name: str) -> PPOCRModels:
    key = str(name).strip().lower()
    if key not in MODELS:
        raise ConfigError(f"unknown PP-OCR models {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[key]


def _model_path(model: ModelFile) -> Path:
    """The installed file of ``model``, checked against its SHA-256 (a clear error when missing or different)."""
    install = (f"pip install '{model.distribution}>=3.10,<4' (a visor dependency), "
               "or TextReader(models='ppocrv4') for RapidOCR 1.4's PP-OCRv4")
    try:
        path = Path(str(metadata.distribution(model.distribution).locate_file(model.path)))
    except metadata.PackageNotFoundError:
        raise ConfigError(f"the model {model.path} needs the {model.distribution} package; {install}") from None
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed {model.distribution} package; {install}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != model.sha256:
        raise ConfigError(f"{path} is not the model visor was measured with (SHA-256 {digest.hexdigest()}, "
                          f"expected {model.sha256}); {install}")
    return path


def lines_from_rapidocr(result: list | None) -> TextLines:
    """Convert RapidOCR's ``[[box (4 points), text, score], ...]`` (or ``None``) to :class:`TextLines`."""
    if not result:
        return TextLines.empty()
    polygons = np.array([r[0] for r in result], dtype=np.float32).reshape(-1, 4, 2)
    return TextLines(polygons, [str(r[1]) for r in result], np.array([float(r[2]) for r in result], np.float32))


def read_text(
    image: ImageSource, *, reader: TextReader | None = None, limits: ImageLimits = DEFAULT_LIMITS
) -> TextLines:
    """Read the text in one image. Pass a :class:`TextReader` to reuse its models across calls."""
    return (reader or TextReader(limits=limits)).read(image)
