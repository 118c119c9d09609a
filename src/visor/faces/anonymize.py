"""Hide faces and whole people: blur, pixelate or black out each face box (:func:`anonymize`) or every pixel of
a person (:func:`anonymize_people`, from a semantic segmenter's person class), leaving every other pixel
unchanged."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image, ImageFilter

from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, open_image
from visor.types.faces import Faces

if TYPE_CHECKING:
    from visor.types.segmentation import SegmentationMask

METHODS = ("blur", "pixelate", "box")
PERSON = "person"
"""The class :func:`anonymize_people` hides (Pascal VOC's name, which ``deeplabv3_voc`` uses)."""


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


# --------------------------------------------------------------------------- whole people


def default_dilation(width: int, height: int) -> int:
    """Pixels the person mask grows by unless told: 1% of the image's longer side, at least 2.

    ``deeplabv3_voc`` sees the image at 257x257, so on a 640-pixel photo one of its pixels is 2.5 of the
    photo's and the mask's edge can be off by a few pixels: growing it covers the outline of hair, hands and
    clothing (6 px at 640, 40 px on a 4000-pixel photo)."""
    return max(2, round(0.01 * max(width, height)))


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` (bool (H, W)) grown by ``pixels`` in every direction (a disc: OpenCV's elliptical kernel)."""
    mask = np.asarray(mask, bool)
    if pixels <= 0 or not mask.any():
        return mask.copy()
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.view(np.uint8), kernel).astype(bool)


def people_mask(segmentation: SegmentationMask, *, dilate: int | None = None, label: str = PERSON) -> np.ndarray:
    """The pixels :func:`anonymize_people` hides: the ``label`` class of ``segmentation``, grown by ``dilate``
    pixels (default :func:`default_dilation`). bool (H, W)."""
    if label not in segmentation.class_names:
        raise ConfigError(f"the segmentation ({segmentation.model or 'model'}) has no {label!r} class; its classes: "
                          f"{', '.join(segmentation.class_names)}")
    if dilate is not None and dilate < 0:
        raise ConfigError(f"dilate must be 0 or more pixels, got {dilate}")
    grow = default_dilation(segmentation.width, segmentation.height) if dilate is None else int(dilate)
    return grow_mask(segmentation.binary(label), grow)


def hide_mask(image: Image.Image, mask: np.ndarray, method: Literal["blur", "pixelate", "box"] = "blur"
              ) -> Image.Image:
    """A copy of the RGB ``image`` with the pixels of ``mask`` (bool (H, W)) hidden; no other pixel changes.

    Each connected region of the mask (8-connected) is treated on its own, at a strength set by its size (the
    longer side of its bounding box, ``size``): ``"blur"`` replaces it by a Gaussian blur of the image around
    it, radius ``size / 10`` (at least 2), applied twice; ``"pixelate"`` by blocks of about ``size / 12``
    pixels, at least 2 (the average colour of each block of its bounding box); ``"box"`` fills it black.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown anonymize method {method!r}; use one of {', '.join(METHODS)}")
    original = image.convert("RGB")
    mask = np.asarray(mask, bool)
    if mask.shape != (original.height, original.width):
        raise ConfigError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the image {original.width}x{original.height}")
    out = np.array(original)
    if method == "box":
        out[mask] = 0
        return Image.fromarray(out)
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    height, width = mask.shape
    for i in range(1, count):
        x, y, w, h = (int(v) for v in stats[i, :4])
        size = max(w, h)
        if method == "blur":
            radius = max(2.0, size / 10)
            margin = math.ceil(3 * radius)  # the blur reads this far around the region
            x0, y0 = max(0, x - margin), max(0, y - margin)
            x1, y1 = min(width, x + w + margin), min(height, y + h + margin)
            region = original.crop((x0, y0, x1, y1))
            region = region.filter(ImageFilter.GaussianBlur(radius)).filter(ImageFilter.GaussianBlur(radius))
        else:
            x0, y0, x1, y1 = x, y, x + w, y + h
            block = max(2, round(size / 12))
            small = original.crop((x0, y0, x1, y1)).resize((max(1, w // block), max(1, h // block)),
                                                           Image.Resampling.BOX)
            region = small.resize((w, h), Image.Resampling.NEAREST)
        inside = labels[y0:y1, x0:x1] == i
        out[y0:y1, x0:x1][inside] = np.asarray(region)[inside]
    return Image.fromarray(out)


def anonymize_people(
    image: ImageSource,
    method: Literal["blur", "pixelate", "box"] = "blur",
    *,
    segmenter: Any = None,
    dilate: int | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Image.Image:
    """A copy of ``image`` (an RGB PIL image) with every person hidden, whole: body, clothing, hair, not only
    the face.

    The people are the ``"person"`` class of a semantic segmenter (``segmenter``: a loaded
    :class:`~visor.models.segmenter.Segmenter` or a model name or folder; default
    ``models.registry.DEFAULT_SEGMENTER``, ``deeplabv3_voc``; pass a loaded one when calling repeatedly). The
    person mask is grown by ``dilate`` pixels (default :func:`default_dilation`: 1% of the longer side, at
    least 2) to cover the edges the segmenter's coarser mask misses; then :func:`hide_mask` with ``method``.
    Pixels outside the grown mask are exactly the input's. See :func:`people_mask` for the mask alone.
    """
    from visor.models import load
    from visor.models.registry import DEFAULT_SEGMENTER
    from visor.models.segmenter import Segmenter

    if method not in METHODS:
        raise ConfigError(f"unknown anonymize method {method!r}; use one of {', '.join(METHODS)}")
    if segmenter is None or not isinstance(segmenter, Segmenter):
        segmenter = load(segmenter or DEFAULT_SEGMENTER, limits=limits)
        if not isinstance(segmenter, Segmenter):
            raise ConfigError(f"{segmenter.name} is a {segmenter.card.task} model; anonymize_people needs a "
                              "segmentation model")
    picture = open_image(image, limits=limits)
    return hide_mask(picture, people_mask(segmenter.predict(picture), dilate=dilate), method)
