"""Preprocessing built from a card's :class:`~visor.models.card.Preprocess`. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

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
    """``NxHxWx3`` uint8 to normalized ``Nx3xHxW`` float32."""
    mean = np.asarray(cfg.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, np.float32) * 255.0)
    x = (batch.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: Sequence[Image.Image], cfg: Preprocess) -> np.ndarray:
    """RGB PIL images to a normalized ``Nx3xHxW`` float32 batch."""
    if not images:
        h, w = cfg.input_size
        return np.zeros((0, 3, h, w), np.float32)
    return normalize(np.stack([resize(im, cfg) for im in images]), cfg)
