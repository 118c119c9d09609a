"""Preprocessing built from a card's :class:`~visor.models.card.Preprocess`. Pure functions.

:func:`prepare_batch` is the one entry every predictor uses: resize (centre crop, squash or
letterbox), normalise with the card's mean/std (given per RGB channel), reorder the channels
(``channel_order``) and lay the batch out as the model takes it (``layout``: NCHW or NHWC),
with each image's :class:`Geometry` (how its pixels map into the model input).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from visor.models.card import Preprocess

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def crop_box(width: int, height: int, cfg: Preprocess) -> tuple[float, float, float, float]:
    """The region (left, top, right, bottom) of a ``width`` x ``height`` image that is
    resized to the model input."""
    if cfg.resize == "squash":
        return (0.0, 0.0, float(width), float(height))
    out_h, out_w = cfg.input_size
    # Largest centred box with the input's aspect ratio, scaled by crop_pct.
    scale = min(width / out_w, height / out_h) * cfg.crop_pct
    bw, bh = out_w * scale, out_h * scale
    left, top = (width - bw) / 2, (height - bh) / 2
    return (left, top, left + bw, top + bh)


def draft_size(cfg: Preprocess) -> tuple[int, int]:
    """The smallest (width, height) a decoder may reduce an image to without losing
    detail the resize would keep: the input size divided by crop_pct."""
    out_h, out_w = cfg.input_size
    return (int(np.ceil(out_w / cfg.crop_pct)), int(np.ceil(out_h / cfg.crop_pct)))


def resize(image: Image.Image, cfg: Preprocess) -> np.ndarray:
    """Crop and resize one RGB image to the model input: ``HxWx3`` uint8."""
    out_h, out_w = cfg.input_size
    box = crop_box(image.width, image.height, cfg)
    resized = image.resize((out_w, out_h), _RESAMPLE[cfg.interpolation], box=box)
    return np.asarray(resized)


def normalize(batch: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """``NxHxWx3`` RGB uint8 to the normalized float32 model input.

    ``(x - mean) / std`` per RGB channel (``cfg.mean``/``cfg.std`` on the 0..1 scale), then the
    channels in ``cfg.channel_order`` and the axes in ``cfg.layout`` (``Nx3xHxW`` for ``nchw``,
    ``NxHxWx3`` for ``nhwc``), C-contiguous. Always a new array.

    The values are exactly ``(float32(x) - mean) * (1 / std)`` in float32; the channels and axes are
    reordered while the pixels are still uint8 (a quarter of the bytes), converted once, and a zero
    mean or a unit scale is skipped (``x - 0`` and ``x * 1`` are exact).
    """
    mean = np.asarray(cfg.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, np.float32) * 255.0)
    x = np.asarray(batch)
    if cfg.channel_order == "bgr":
        x, mean, inv_std = x[..., ::-1], mean[::-1], inv_std[::-1]
    shape = (1, 1, 1, 3)
    if cfg.layout == "nchw":
        x, shape = x.transpose(0, 3, 1, 2), (1, 3, 1, 1)
    x = np.ascontiguousarray(x).astype(np.float32)  # astype copies: the caller's batch is never written
    if mean.any():
        x -= mean.reshape(shape)
    if (inv_std != 1).any():
        x *= inv_std.reshape(shape)
    return x


def empty_batch(cfg: Preprocess) -> np.ndarray:
    """A batch of no images with the model input's shape otherwise."""
    h, w = cfg.input_size
    return np.zeros((0, 3, h, w) if cfg.layout == "nchw" else (0, h, w, 3), np.float32)


def preprocess(images: Sequence[Image.Image], cfg: Preprocess) -> np.ndarray:
    """RGB images to the normalized float32 batch the card describes (see :func:`prepare_batch`)."""
    return prepare_batch(images, cfg)[0]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """How one decoded image sits in the model input: ``input = original * scale + pad`` per axis.

    ``scale_y`` is None when both axes share ``scale`` (letterbox); a centre crop or a squash
    scales them apart. :meth:`to_original` maps input pixels back to the image's pixels.
    """

    width: int
    height: int
    scale: float
    pad_x: float
    pad_y: float
    scale_y: float | None = None

    @property
    def scales(self) -> tuple[float, float]:
        """(x scale, y scale)."""
        return self.scale, self.scale if self.scale_y is None else self.scale_y

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes ``(N, 4)`` in input pixels to original pixels, clipped to the image."""
        sx, sy = self.scales
        pad = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float64)
        scale = np.array([sx, sy, sx, sy], np.float64)
        out = (np.asarray(xyxy, np.float64) - pad) / scale
        return np.clip(out, 0, [self.width, self.height, self.width, self.height]).astype(np.float32)


def geometry(width: int, height: int, cfg: Preprocess) -> Geometry:
    """The :class:`Geometry` of a ``width`` x ``height`` image under ``cfg``."""
    if cfg.resize == "letterbox":
        scale, pad_x, pad_y = letterbox_params(width, height, cfg)
        return Geometry(int(width), int(height), float(scale), float(pad_x), float(pad_y))
    out_h, out_w = cfg.input_size
    left, top, right, bottom = crop_box(width, height, cfg)
    sx, sy = out_w / (right - left), out_h / (bottom - top)
    return Geometry(int(width), int(height), float(sx), float(-left * sx), float(-top * sy), float(sy))


def _size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    return (image.width, image.height) if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])


def prepare_batch(
    images: Sequence[Image.Image | np.ndarray], cfg: Preprocess
) -> tuple[np.ndarray, list[Geometry]]:
    """RGB images (PIL or ``HxWx3`` uint8) to the model's float32 input batch, built only from ``cfg``,
    with each image's :class:`Geometry`."""
    if not images:
        return empty_batch(cfg), []
    if cfg.resize == "letterbox":
        pixels = [letterbox(im, cfg)[0] for im in images]
    else:
        pixels = [resize(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8)), cfg)
                  for im in images]
    return normalize(np.stack(pixels), cfg), [geometry(*_size(im), cfg) for im in images]


# --------------------------------------------------------------------------- letterbox (detectors)

# Letterbox resizing uses OpenCV (installed with albumentations), like the Ultralytics, YOLOX and
# nudenet reference pipelines and visor's detector training: detectors are trained on
# cv2-resized images, and PIL's bilinear downscale (which antialiases) shifts their boxes.
_CV2_INTERPOLATION = {
    "nearest": "INTER_NEAREST",
    "bilinear": "INTER_LINEAR",
    "bicubic": "INTER_CUBIC",
    "lanczos": "INTER_LANCZOS4",
    "box": "INTER_AREA",
}


def letterbox_params(width: int, height: int, cfg: Preprocess) -> tuple[float, float, float]:
    """``(scale, pad_x, pad_y)`` of the letterbox of a ``width`` x ``height`` image:
    input pixel = original pixel * scale + pad. Undo with ``(x - pad) / scale``.

    ``center``: the image is resized to ``round(side * scale)`` and padded by whole pixels,
    ``(input - resized) // 2`` before it (Ultralytics ``LetterBox``, albumentations
    ``LongestMaxSize`` + ``PadIfNeeded``). ``top_left``: the pad goes after the image (0, 0).
    """
    out_h, out_w = cfg.input_size
    scale = min(out_w / width, out_h / height)
    if cfg.letterbox_align == "top_left":
        return scale, 0.0, 0.0
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return scale, float((out_w - new_w) // 2), float((out_h - new_h) // 2)


def _resize_array(arr: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize an ``HxWx3`` uint8 array to ``size`` (width, height), with OpenCV where it has the kernel."""
    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    if interpolation in _CV2_INTERPOLATION:
        import cv2

        return cv2.resize(arr, size, interpolation=getattr(cv2, _CV2_INTERPOLATION[interpolation]))
    return np.asarray(Image.fromarray(arr).resize(size, _RESAMPLE[interpolation]))


def letterbox(image: Image.Image | np.ndarray, cfg: Preprocess) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Fit one RGB image into ``cfg.input_size`` keeping its aspect ratio, padding with ``cfg.pad_value``.

    Returns the ``HxWx3`` uint8 input, the scale and the ``(pad_x, pad_y)`` offset (see
    :func:`letterbox_params`). ``center`` resizes the image, then pads it on both sides.
    ``top_left`` pads the image at the bottom and right to the input's aspect ratio and resizes
    the whole canvas, as nudenet does (for a square input its scale is exactly
    ``size / longest side``, and the last row/column blends into the pad like nudenet's).
    """
    arr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"letterbox needs an HxWx3 RGB image, got shape {arr.shape}")
    height, width = arr.shape[:2]
    out_h, out_w = cfg.input_size
    scale, pad_x, pad_y = letterbox_params(width, height, cfg)
    if cfg.letterbox_align == "top_left":
        # The canvas with the input's aspect ratio that holds the image at its top left.
        canvas_w = max(width, round(height * out_w / out_h))
        canvas_h = max(height, round(width * out_h / out_w))
        if (canvas_w, canvas_h) != (width, height):
            canvas = np.full((canvas_h, canvas_w, 3), cfg.pad_value, np.uint8)
            canvas[:height, :width] = arr
            arr = canvas
        return _resize_array(arr, (out_w, out_h), cfg.interpolation), scale, (pad_x, pad_y)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    out = np.full((out_h, out_w, 3), cfg.pad_value, np.uint8)
    x0, y0 = int(pad_x), int(pad_y)
    out[y0 : y0 + new_h, x0 : x0 + new_w] = _resize_array(arr, (new_w, new_h), cfg.interpolation)
    return out, scale, (pad_x, pad_y)


def letterbox_batch(
    images: Sequence[Image.Image | np.ndarray], cfg: Preprocess
) -> tuple[np.ndarray, list[tuple[float, tuple[float, float]]]]:
    """Letterbox and normalize images into a float32 batch (see :func:`normalize`), with each image's
    ``(scale, (pad_x, pad_y))``."""
    if not images:
        return empty_batch(cfg), []
    boxed = [letterbox(im, cfg) for im in images]
    return normalize(np.stack([b[0] for b in boxed]), cfg), [(b[1], b[2]) for b in boxed]
