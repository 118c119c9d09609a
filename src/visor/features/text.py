"""Text recognition (OCR) with PP-OCRv4 through RapidOCR's ONNX Runtime pipeline.

:class:`TextReader` opens the detection, orientation and recognition models once (RapidOCR
is imported only then); reuse it for many images. :func:`read_text` is the one-call form.
Images are decoded by :func:`visor.io.open_image` (size caps, format allow-list, EXIF) and
handed to RapidOCR as BGR arrays; boxes come back in the original image's pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visor.errors import ConfigError
from visor.io import ImageLimits, ImageSource, bounded_copy, open_image
from visor.io.image import DEFAULT_LIMITS
from visor.types.text import TextLines

#: The name results carry in ``model`` (RapidOCR 1.4's bundled PP-OCRv4 detection and recognition models).
MODEL_NAME = "pp-ocrv4"
#: The default longest side a :class:`TextReader` reads at (larger images are downscaled to it).
MAX_SIDE = 2048


class TextReader:
    """PP-OCRv4 text detection + recognition.

    ``min_confidence`` drops recognised lines scoring below it (RapidOCR's ``text_score``);
    ``use_angle_cls`` runs the 0/180 degree orientation classifier on each line;
    ``detection_side`` is the longest side the text detector sees: larger images are scaled
    down to it, smaller ones are left as they are (RapidOCR's default instead scales every
    image *up* to 736 px on its short side, which is ~8x slower on small images and no more
    accurate on rendered text; raise it for small print in large photos);
    ``threads`` caps ONNX Runtime's intra-op threads (default: ONNX Runtime's choice);
    ``max_side`` bounds the work per image: a larger image is read from a copy box-downscaled
    to that long side (lines are cropped for recognition from that copy) and the boxes are
    scaled back to the original pixels (``None``: no bound; a 6000 px photo otherwise takes
    ~9 s in RapidOCR's full-resolution steps).
    """

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        use_angle_cls: bool = True,
        detection_side: int = 960,
        threads: int | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        max_side: int | None = MAX_SIDE,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        if detection_side < 32:
            raise ConfigError(f"detection_side must be at least 32, got {detection_side}")
        if max_side is not None and max_side < 32:
            raise ConfigError(f"max_side must be at least 32, got {max_side}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ConfigError(
                f"text recognition needs rapidocr-onnxruntime ({e}); install it with "
                "pip install 'rapidocr-onnxruntime>=1.4,<1.5'"
            ) from None
        options: dict[str, Any] = {"text_score": float(min_confidence), "use_cls": bool(use_angle_cls),
                                   "print_verbose": False, "det_limit_type": "max",
                                   "det_limit_side_len": int(detection_side)}
        if threads is not None:
            options["intra_op_num_threads"] = int(threads)
        self.min_confidence = float(min_confidence)
        self.limits = limits
        self.max_side = None if max_side is None else int(max_side)
        self._engine = RapidOCR(**options)

    def read(self, image: ImageSource) -> TextLines:
        """Find and read the text in one image."""
        img = open_image(image, limits=self.limits)
        w, h = img.size
        rgb = np.asarray(bounded_copy(img, max_side=self.max_side))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        result, _ = self._engine(bgr)
        lines = lines_from_rapidocr(result)
        if (rgb.shape[1], rgb.shape[0]) != (w, h) and len(lines):
            scale = np.array([w / rgb.shape[1], h / rgb.shape[0]], np.float32)
            lines = TextLines(lines.polygons * scale, lines.text, lines.confidence)
        return TextLines(lines.polygons, lines.text, lines.confidence, model=MODEL_NAME)

    def __call__(self, image: ImageSource) -> TextLines:
        return self.read(image)

    def __repr__(self) -> str:
        return f"TextReader(min_confidence={self.min_confidence})"


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
