"""Hide faces: blur, pixelate or black out each face box, leaving every other pixel unchanged."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, open_image
from visor.types.faces import Faces

METHODS = ("blur", "pixelate", "box")


def expanded_boxes(faces: Faces | np.ndarray, size: tuple[int, int], expand: float) -> np.ndarray:
    """Integer ``(N, 4)`` boxes grown by ``expand`` x their width/height on each side, clipped to
    ``size`` (width, height), rounded outwards. These are the only pixels :func:`anonymize` changes."""
    xyxy = np.asarray(faces.xyxy if isinstance(faces, Faces) else faces, np.float64).reshape(-1, 4)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    grown = np.concatenate([xyxy[:, :2] - wh * expand, xyxy[:, 2:] + wh * expand], axis=1)
    w, h = size
    out = np.concatenate([np.floor(grown[:, :2]), np.ceil(grown[:, 2:])], axis=1)
    return np.clip(out, 0, [w, h, w, h]).astype(np.int64)


def anonymize(
    image: ImageSource,
    faces: Faces | np.ndarray,
    method: Literal["blur", "pixelate", "box"] = "blur",
    *,
    expand: float = 0.2,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Image.Image:
    """A copy of ``image`` (an RGB PIL image) with every face box hidden.

    ``faces`` is a :class:`Faces` or an ``(N, 4)`` xyxy array in the image's pixels. Each box is
    grown by ``expand`` (a fraction of its width/height on each side, default 0.2) to cover
    hair line and chin, then: ``"blur"`` applies a Gaussian blur with a radius of a quarter of
    the box's longer side; ``"pixelate"`` shrinks it to about 8 blocks across; ``"box"`` fills
    it black. Only pixels inside the grown boxes change.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown anonymize method {method!r}; use one of {', '.join(METHODS)}")
    if expand < 0:
        raise ConfigError(f"expand must be 0 or more, got {expand}")
    out = open_image(image, limits=limits).copy()
    for x1, y1, x2, y2 in expanded_boxes(faces, out.size, expand).tolist():
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        region = out.crop((x1, y1, x2, y2))
        if method == "blur":
            radius = max(2.0, max(w, h) / 4)
            # blur twice: one wide Gaussian still leaves a face-like silhouette for a HOG detector
            region = region.filter(ImageFilter.GaussianBlur(radius)).filter(ImageFilter.GaussianBlur(radius))
        elif method == "pixelate":
            blocks = max(1, round(max(w, h) / 8))
            small = region.resize((max(1, w // blocks), max(1, h // blocks)), Image.Resampling.BOX)
            region = small.resize((w, h), Image.Resampling.NEAREST)
        else:
            region = Image.new("RGB", (w, h), (0, 0, 0))
        out.paste(region, (x1, y1))
    return out


def sensitive_boxes(image: Image.Image, *, analyzer, text_reader=None, **detect_kwargs) -> tuple[np.ndarray, int, int]:
    """(N, 4) boxes to hide in ``image``: every face ``analyzer`` finds (YuNet unless ``detect_kwargs`` pick
    another detector), plus every text region when a
    ``text_reader`` (:class:`visor.features.text.TextReader`) is given. Returns (boxes, faces, texts)."""
    faces = analyzer.detect(image, embeddings=False, **detect_kwargs)
    boxes = [np.asarray(faces.xyxy, np.float64).reshape(-1, 4)]
    texts = 0
    if text_reader is not None:
        lines = text_reader.read(image)
        texts = len(lines)
        boxes.append(np.asarray(lines.xyxy, np.float64).reshape(-1, 4))
    return np.concatenate(boxes), len(faces), texts
