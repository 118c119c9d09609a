"""Draw detections onto an image: a box and a "label 0.87" tag per detection, one colour per class."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visor.errors import InvalidInput
from visor.io import to_rgb
from visor.types import Detections

_GOLDEN = 0.618033988749895


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright RGB colour for a class id; neighbouring ids get far-apart hues."""
    hue = (0.05 + int(class_id) * _GOLDEN) % 1.0
    value = 1.0 if int(class_id) % 2 == 0 else 0.85
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _label(detections: Detections, i: int, labels: Sequence[str] | None) -> str:
    if "class_name" in detections.data:
        return str(detections.data["class_name"][i])
    cid = int(detections.class_id[i])
    if labels is not None and 0 <= cid < len(labels):
        return str(labels[cid])
    return str(cid)


def _as_image(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image).copy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInput(f"annotate needs an RGB PIL image or an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def annotate(
    image: Image.Image | np.ndarray,
    detections: Detections,
    *,
    labels: Sequence[str] | None = None,
    show_confidence: bool = True,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """A new RGB image with each detection's box and tag drawn on ``image`` (left unchanged).

    The tag is ``data["class_name"]`` (else ``labels[class_id]``, else the id), followed by the
    confidence with two decimals. Line width and font size scale with the image unless given.
    """
    out = _as_image(image)
    w, h = out.size
    lw = line_width or max(2, round((w + h) / 2 * 0.003))
    font = ImageFont.load_default(size=font_size or max(12, lw * 6))
    draw = ImageDraw.Draw(out)
    # Draw the lowest scores first so the best boxes and their tags end up on top.
    for i in np.argsort(detections.confidence, kind="stable"):
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        color = class_color(int(detections.class_id[i]))
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=color, width=lw)
        text = _label(detections, int(i), labels)
        if show_confidence:
            text = f"{text} {float(detections.confidence[i]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * lw, bottom - top + 2 * lw
        ty = y1 - th if y1 - th >= 0 else y1  # above the box when there is room, else inside it
        tx = min(max(0.0, x1), max(0.0, w - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        draw.text((tx + lw - left, ty + lw - top), text, fill=_text_color(color), font=font)
    return out
