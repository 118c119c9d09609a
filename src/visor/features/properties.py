"""Image properties: dominant colours, sharpness, brightness, exposure and crop hints (numpy only).

* Dominant colours: pixels (of a copy at most :data:`ANALYSIS_SIDE` px on its long side) go to
  CIE Lab (sRGB, D65); seeded k-means++ runs on a subsample, every pixel is then assigned to
  its nearest centre; centres closer than ``merge_delta_e`` are merged. Each colour is the mean
  sRGB of its pixels, with its hex code and pixel fraction, largest first.
* Sharpness: variance of the 4-neighbour Laplacian of the 0..1 grayscale image box-downscaled
  to :data:`ANALYSIS_SIDE` px on its long side, so values compare across image sizes (smaller
  images are not upscaled, which would blur them).
* Brightness: mean Rec. 601 luma on 0..1 (:func:`image_properties`: of a copy at most
  :data:`PROPERTIES_SIDE` px on its long side, as are the exposure fractions).
* Exposure: fractions of clipped dark (luma <= 8) and bright (luma >= 247) pixels;
  score = 1 - 2 * (dark + bright), clipped to 0..1 (1 = nothing clipped).
* Crop hints: the largest crop of the requested aspect ratio, centred on the salient boxes
  (faces, text) when any are given, else placed where the Sobel edge energy is highest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from visor.errors import InvalidInput
from visor.io import ImageLimits, ImageSource, bounded_copy, open_image
from visor.io.image import DEFAULT_LIMITS
from visor.types.properties import DominantColor, Exposure, ImageProperties

ANALYSIS_SIDE = 256
#: The long side :func:`image_properties` measures at (larger images are box-downscaled to it).
PROPERTIES_SIDE = 512
DARK_LUMA, BRIGHT_LUMA = 8, 247

Box = tuple[int, int, int, int]


# --------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (``uint8`` 0..255, or float 0..1) ``(..., 3)`` to CIE L*a*b* (D65 white) ``(..., 3)`` float64."""
    rgb = np.asarray(rgb)
    c = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _sq_dist(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Seeded k-means++ then Lloyd iterations; returns up to ``k`` centres (fewer when the
    points have fewer distinct values)."""
    rng = np.random.default_rng(seed)
    points = np.asarray(points, dtype=np.float64)
    centres = [points[rng.integers(len(points))]]
    d2 = _sq_dist(points, np.array(centres))[:, 0]
    while len(centres) < k and d2.sum() > 1e-9:
        centres.append(points[rng.choice(len(points), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((points - centres[-1]) ** 2).sum(axis=1))
    c = np.array(centres)
    for _ in range(iterations):
        assign = _sq_dist(points, c).argmin(axis=1)
        new = np.array([points[assign == j].mean(axis=0) if (assign == j).any() else c[j] for j in range(len(c))])
        if np.allclose(new, c, atol=1e-4):
            break
        c = new
    return c


def dominant_colors(
    image: ImageSource, k: int = 5, *, seed: int = 0, sample: int = 5000, merge_delta_e: float = 6.0,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> tuple[DominantColor, ...]:
    """The image's main colours, largest pixel fraction first (fractions sum to 1)."""
    if k < 1:
        raise InvalidInput(f"k must be at least 1, got {k}")
    rgb = np.asarray(bounded_copy(open_image(image, limits=limits), max_side=ANALYSIS_SIDE)).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    rng = np.random.default_rng(seed)
    fit = lab if len(lab) <= sample else lab[rng.choice(len(lab), sample, replace=False)]
    centres = kmeans(fit, k, seed=seed)
    assign = _sq_dist(lab, centres).argmin(axis=1)
    groups = [np.flatnonzero(assign == j) for j in range(len(centres))]
    groups = sorted((g for g in groups if len(g)), key=len, reverse=True)
    merged: list[list[np.ndarray]] = []
    for g in groups:
        centre = lab[g].mean(axis=0)
        for m in merged:
            if np.linalg.norm(lab[np.concatenate(m)].mean(axis=0) - centre) < merge_delta_e:
                m.append(g)
                break
        else:
            merged.append([g])
    out = []
    for m in merged:
        idx = np.concatenate(m)
        mean = tuple(int(v) for v in np.clip(np.round(rgb[idx].mean(axis=0)), 0, 255))
        out.append(DominantColor((mean[0], mean[1], mean[2]), len(idx) / len(rgb)))
    return tuple(sorted(out, key=lambda c: -c.fraction))


# --------------------------------------------------------------------------- tone and focus


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an ``HxWx3`` uint8 array, float64 on 0..255."""
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


def laplacian(gray: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian with edge replication."""
    p = np.pad(gray, 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    p = np.pad(gray, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy)


def _gray_at_analysis_size(image: Image.Image) -> np.ndarray:
    """0..1 grayscale, box-downscaled to :data:`ANALYSIS_SIDE` on the long side (smaller images as they are)."""
    return luma(np.asarray(bounded_copy(image, max_side=ANALYSIS_SIDE))) / 255.0


def sharpness(image: ImageSource, *, limits: ImageLimits = DEFAULT_LIMITS) -> float:
    """Variance of the Laplacian (0..1 grayscale, long side box-downscaled to 256 px): higher is sharper."""
    return float(laplacian(_gray_at_analysis_size(open_image(image, limits=limits))).var())


def brightness_exposure(image: ImageSource, *, limits: ImageLimits = DEFAULT_LIMITS) -> tuple[float, Exposure]:
    """Mean luma on 0..1, and the clipped-pixel fractions."""
    y = luma(np.asarray(open_image(image, limits=limits)))
    return float(y.mean() / 255.0), Exposure(float((y <= DARK_LUMA).mean()), float((y >= BRIGHT_LUMA).mean()))


def brightness(image: ImageSource, *, limits: ImageLimits = DEFAULT_LIMITS) -> float:
    """Mean Rec. 601 luma on 0..1 (0 black, 1 white)."""
    return brightness_exposure(image, limits=limits)[0]


# --------------------------------------------------------------------------- crop hints


def crop_size(width: int, height: int, aspect_ratio: float) -> tuple[int, int]:
    """The largest ``(w, h)`` with ``w / h == aspect_ratio`` (rounded) inside ``width x height``."""
    if not aspect_ratio > 0 or not np.isfinite(aspect_ratio):
        raise InvalidInput(f"aspect_ratio must be a positive number, got {aspect_ratio}")
    if width / height >= aspect_ratio:
        return max(1, min(width, round(height * aspect_ratio))), height
    return width, max(1, min(height, round(width / aspect_ratio)))


def _place(centre: float, size: int, limit: int) -> int:
    return int(np.clip(round(centre - size / 2), 0, limit - size))


def _salient_crop(width: int, height: int, cw: int, ch: int, boxes: Sequence[Sequence[float]]) -> Box:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    union = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
    if union[2] - union[0] > cw or union[3] - union[1] > ch:
        union = b[0]  # the boxes do not fit together: keep the first (most salient) one
    x = _place((union[0] + union[2]) / 2, cw, width)
    y = _place((union[1] + union[3]) / 2, ch, height)
    return x, y, x + cw, y + ch


def _energy_crop(image: Image.Image, cw: int, ch: int) -> Box:
    gray = _gray_at_analysis_size(image)
    h, w = gray.shape
    sx, sy = image.width / w, image.height / h
    ww, wh = max(1, min(w, round(cw / sx))), max(1, min(h, round(ch / sy)))
    energy = sobel_magnitude(gray)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]
    # ties (e.g. a flat image) go to the window nearest the centre
    yy, xx = np.mgrid[0:sums.shape[0], 0:sums.shape[1]]
    off_centre = np.hypot(yy - (h - wh) / 2, xx - (w - ww) / 2)
    best = np.lexsort((off_centre.ravel(), -np.round(sums.ravel(), 6)))[0]
    wy, wx = divmod(int(best), sums.shape[1])
    x = _place((wx + ww / 2) * sx, cw, image.width)
    y = _place((wy + wh / 2) * sy, ch, image.height)
    return x, y, x + cw, y + ch


def crop_hints(
    image: ImageSource, aspect_ratio: float, *, salient_boxes: Sequence[Sequence[float]] = (),
    scales: Sequence[float] = (1.0,), limits: ImageLimits = DEFAULT_LIMITS,
) -> list[Box]:
    """Crops ``(x1, y1, x2, y2)`` in pixels with ``width / height == aspect_ratio``, one per scale
    (a fraction of the largest such crop). Salient boxes (faces, text: most important first)
    are kept in the crop when they fit; without them the crop goes where the edges are."""
    img = open_image(image, limits=limits)
    cw0, ch0 = crop_size(img.width, img.height, aspect_ratio)
    hints: list[Box] = []
    for s in scales:
        if not 0 < s <= 1:
            raise InvalidInput(f"crop scales must be in (0, 1], got {s}")
        cw, ch = max(1, round(cw0 * s)), max(1, round(ch0 * s))
        hint = _salient_crop(img.width, img.height, cw, ch, salient_boxes) if len(salient_boxes) \
            else _energy_crop(img, cw, ch)
        hints.append(hint)
    return hints


# --------------------------------------------------------------------------- all together


def image_properties(image: ImageSource, *, colors: int = 5, seed: int = 0,
                     limits: ImageLimits = DEFAULT_LIMITS) -> ImageProperties:
    """Dominant colours, brightness, sharpness and exposure of one image (decoded once).

    All are measured on a copy box-downscaled to :data:`PROPERTIES_SIDE` px on its long side
    (smaller images as they are): brightness and clipping fractions of a box average are
    within a fraction of a percent of the full image's, at a bounded cost for huge images.
    """
    img = open_image(image, limits=limits)
    small = bounded_copy(img, max_side=PROPERTIES_SIDE)
    bright, exposure = brightness_exposure(small, limits=limits)
    return ImageProperties(img.width, img.height, dominant_colors(small, colors, seed=seed, limits=limits), bright,
                           sharpness(small, limits=limits), exposure)
