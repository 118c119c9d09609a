"""A mini ImageNet-C: seeded, deterministic image corruptions and a classifier robustness evaluation.

:func:`corrupt` damages one ``HxWx3`` uint8 RGB image with one of :data:`CORRUPTIONS` at a
severity 1..5, in the spirit of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (ICLR 2019). The implementation is visor's own (numpy
and OpenCV); the parameters follow the paper's but are not bit-compatible with its code.
:func:`evaluate_corruptions` measures a classifier's top-1 accuracy on a dataset under every
(corruption, severity) and returns a :class:`CorruptionReport`.

Parameters per severity (1 .. 5). They are defined for a 224 px short side; the lengths in
pixels (px) scale with ``short_side / 224`` so that a large photo gets damage
comparable to a 224 px one (``pixelate`` keeps its block size, ``1 / factor`` px at 224, the same
way). Values are in [0, 1] intensity units unless stated.

==================  ==========================================  ============================
corruption          parameter                                   severity 1 .. 5
==================  ==========================================  ============================
gaussian_noise      noise sigma (per pixel and channel)         0.08, 0.12, 0.18, 0.26, 0.38
defocus_blur        disk radius, px (antialiased disk kernel)   1, 2, 3, 4, 6
motion_blur         line length, px, at a seeded angle          4, 8, 12, 16, 20
jpeg_compression    JPEG quality (OpenCV / libjpeg, 4:2:0)      25, 18, 15, 10, 7
brightness          added to HSV value                          0.1, 0.2, 0.3, 0.4, 0.5
contrast            factor around the per-channel mean          0.4, 0.3, 0.2, 0.1, 0.05
pixelate            downscale factor (box), nearest upscale     0.6, 0.5, 0.4, 0.3, 0.25
fog                 strength (fractal map, decay 2 per octave)  1.5, 2.0, 2.5, 3.0, 3.5
==================  ==========================================  ============================

Fog adds ``strength * F`` to the image and rescales by ``max / (max + strength)``, where ``F`` is a
seeded fractal noise map in [0, 1]: random grids with cells of 256, 128, ... 2 px, each
upsampled bicubically and weighted ``decay ** -octave``, summed and min-max normalized.

Fog keeps one roughness for every severity (ImageNet-C also makes the map rougher with severity;
here only the strength grows, so every pixel moves further from the clean image as the severity
rises).

Randomness (the noise, the motion angle, the fog map) comes from ``np.random.default_rng`` seeded
with a stable hash of ``(seed, name)``, so the same arguments give identical bytes in every
process. The severity is left out of the seed on purpose: the severities of one image share their
random draws (the same noise pattern, scaled; the same blur direction; the same fog map), so they
differ only in strength and the damage grows with the severity instead of varying with the draw.
Evaluation corrupts image ``i`` of the dataset with seed ``image_seed(seed, i)``, so results do not
depend on the batch size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visor.config import suggest
from visor.data import ClassificationDataset
from visor.errors import ConfigError, InvalidInput
from visor.models.batching import split_decoded
from visor.models.classifier import Classifier

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "defocus_blur",
    "motion_blur",
    "jpeg_compression",
    "brightness",
    "contrast",
    "pixelate",
    "fog",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 224
"""The short side, in pixels, at which the pixel-sized parameters are defined."""

GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
DEFOCUS_RADIUS = (1.0, 2.0, 3.0, 4.0, 6.0)
MOTION_LENGTH = (4.0, 8.0, 12.0, 16.0, 20.0)
JPEG_QUALITY = (25, 18, 15, 10, 7)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)
PIXELATE_FACTOR = (0.6, 0.5, 0.4, 0.3, 0.25)
FOG_STRENGTH_DECAY = ((1.5, 2.0), (2.0, 2.0), (2.5, 2.0), (3.0, 2.0), (3.5, 2.0))
_FOG_LARGEST_CELL = 256.0  # px at the reference side; octaves halve it down to _FOG_SMALLEST_CELL
_FOG_SMALLEST_CELL = 2.0
_DISK_SUPERSAMPLE = 8  # sub-samples per kernel cell side for the antialiased defocus disk


# --------------------------------------------------------------------------- validation and seeds


def stable_seed(*parts: object) -> int:
    """A 64-bit non-negative integer derived from ``parts`` (by their ``repr``) with BLAKE2b: the
    same in every process and on every platform, unlike Python's ``hash``."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def image_seed(seed: int, index: int) -> int:
    """The seed :func:`evaluate_corruptions` corrupts image ``index`` of the dataset with."""
    return stable_seed("image", int(seed), int(index))


def check_corruptions(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` validated, without repeats, in :data:`CORRUPTIONS` order.

    Raises ConfigError for an unknown name (with the closest known one) or an empty list.
    """
    if isinstance(names, str):
        names = (names,)
    given = list(names)
    for name in given:
        if name not in CORRUPTIONS:
            raise ConfigError(
                f"unknown corruption {name!r}.{suggest(str(name), CORRUPTIONS)} Known: {', '.join(CORRUPTIONS)}"
            )
    if not given:
        raise ConfigError("no corruptions given")
    return tuple(c for c in CORRUPTIONS if c in given)


def check_severity(severity: int) -> int:
    """``severity`` as an int, or ConfigError unless it is an integer in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or not 1 <= severity <= 5:
        raise ConfigError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")
    return int(severity)


def check_severities(severities: Iterable[int]) -> tuple[int, ...]:
    """``severities`` validated (each 1..5), without repeats, ascending; ConfigError if empty."""
    values = sorted({check_severity(s) for s in severities})
    if not values:
        raise ConfigError("no corruption severities given")
    return tuple(values)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidInput(f"an image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInput(f"an image must be HxWx3 (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InvalidInput(f"an image must be uint8, got {image.dtype}")
    return image


# --------------------------------------------------------------------------- the corruptions


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) * np.float32(1 / 255)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x * 255.0, 0.0, 255.0)).astype(np.uint8)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` (uint8) convolved with ``kernel`` (sums to 1), reflecting at the borders."""
    import cv2

    out = cv2.filter2D(_to_float(image), -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return _to_uint8(out)


def disk_kernel(radius: float) -> np.ndarray:
    """A normalized disk of ``radius`` px, each cell weighted by the fraction of it inside the disk
    (antialiased by supersampling), so fractional radii blur smoothly."""
    half = int(np.ceil(radius + 0.5))
    n = _DISK_SUPERSAMPLE
    sub = (np.arange(n) + 0.5) / n - 0.5
    coords = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    inside = (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, n, size, n).mean(axis=(1, 3))
    if kernel.sum() == 0:  # a radius too small to cover any sub-sample: the identity
        kernel[half, half] = 1.0
    return kernel / kernel.sum()


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalized line of ``length`` px through the centre at ``angle`` degrees, drawn with
    bilinear splatting of densely spaced points (uniform exposure along the path)."""
    half = int(np.ceil(length / 2)) + 1
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float64)
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(length * 4)) + 1))
    rad = np.deg2rad(angle)
    xs, ys = half + t * np.cos(rad), half - t * np.sin(rad)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    return kernel / kernel.sum()


def fog_map(height: int, width: int, decay: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A ``height`` x ``width`` float32 fractal noise map in [0, 1]: a random grid per octave with
    cells from 256 px down to 2 px (times ``scale``), upsampled bicubically, octave ``k`` weighted
    ``decay ** -k``, summed and min-max normalized."""
    import cv2

    total = np.zeros((height, width), np.float32)
    cell, weight = _FOG_LARGEST_CELL * scale, 1.0
    while cell >= _FOG_SMALLEST_CELL * scale - 1e-9:
        gh, gw = int(height / cell) + 3, int(width / cell) + 3
        grid = rng.random((gh, gw), dtype=np.float32)
        up = cv2.resize(grid, (round(gw * cell), round(gh * cell)), interpolation=cv2.INTER_CUBIC)
        oy, ox = round(cell), round(cell)  # skip the first cell, where the cubic is clamped at the edge
        total += np.float32(weight) * up[oy : oy + height, ox : ox + width]
        cell, weight = cell / 2, weight / decay
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(total)


def _gaussian_noise(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    sigma = GAUSSIAN_NOISE_SIGMA[severity - 1]
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return _to_uint8(_to_float(image) + noise)


def _defocus_blur(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    return _filter(image, disk_kernel(DEFOCUS_RADIUS[severity - 1] * scale))


def _motion_blur(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    angle = float(rng.uniform(0.0, 180.0))
    return _filter(image, motion_kernel(MOTION_LENGTH[severity - 1] * scale, angle))


def _jpeg_compression(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    bgr = np.ascontiguousarray(image[:, :, ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY[severity - 1]])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 HxWx3 array
        raise InvalidInput("OpenCV could not JPEG-encode the image")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def _brightness(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(_to_float(image), cv2.COLOR_RGB2HSV)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + np.float32(BRIGHTNESS_SHIFT[severity - 1]), 0.0, 1.0)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def _contrast(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    x = _to_float(image)
    means = x.mean(axis=(0, 1), keepdims=True, dtype=np.float64).astype(np.float32)
    return _to_uint8((x - means) * np.float32(CONTRAST_FACTOR[severity - 1]) + means)


def _pixelate(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    factor = PIXELATE_FACTOR[severity - 1] / scale
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def _fog(image: np.ndarray, severity: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    strength, decay = FOG_STRENGTH_DECAY[severity - 1]
    x = _to_float(image)
    top = float(x.max())
    fog = fog_map(image.shape[0], image.shape[1], decay, scale, rng)
    return _to_uint8((x + np.float32(strength) * fog[:, :, None]) * np.float32(top / (top + strength)))


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "jpeg_compression": _jpeg_compression,
    "brightness": _brightness,
    "contrast": _contrast,
    "pixelate": _pixelate,
    "fog": _fog,
}


def corrupt(image: np.ndarray, name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """A corrupted copy of ``image`` (``HxWx3`` uint8 RGB): corruption ``name`` (one of
    :data:`CORRUPTIONS`) at ``severity`` 1..5 (see the module's table). ``image`` is not modified.

    Deterministic: the same image, name, severity and seed give identical bytes in every process.

    Raises ConfigError for an unknown name (with the closest known one) or a severity outside
    1..5, and InvalidInput for an array that is not ``HxWx3`` uint8.
    """
    if name not in _FUNCTIONS:
        raise ConfigError(
            f"unknown corruption {name!r}.{suggest(str(name), CORRUPTIONS)} Known: {', '.join(CORRUPTIONS)}"
        )
    severity = check_severity(severity)
    image = _check_image(image)
    scale = min(image.shape[:2]) / REFERENCE_SIDE
    rng = np.random.default_rng(stable_seed(int(seed), name))
    out = _FUNCTIONS[name](np.ascontiguousarray(image), severity, scale, rng)
    return out if out is not image else out.copy()


def corruption_grid(
    image: np.ndarray,
    *,
    seed: int = 0,
    corruptions: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    tile: int | None = 224,
    labels: bool = True,
) -> np.ndarray:
    """A uint8 RGB mosaic for previews: one row per corruption, columns the clean image then each
    severity. Each image is corrupted at full size, then shrunk so its short side is ``tile`` px
    (``None``: kept). With ``labels``, a left margin names the rows and a top band the columns."""
    import cv2

    names = check_corruptions(corruptions)
    sevs = check_severities(severities)
    image = _check_image(image)
    h, w = image.shape[:2]
    if tile is not None and min(h, w) != tile:
        if tile < 1:
            raise ConfigError(f"tile must be a positive number of pixels, got {tile}")
        size = (max(1, round(w * tile / min(h, w))), max(1, round(h * tile / min(h, w))))
    else:
        size = (w, h)

    def shrink(arr: np.ndarray) -> np.ndarray:
        return arr if (arr.shape[1], arr.shape[0]) == size else cv2.resize(arr, size, interpolation=cv2.INTER_AREA)

    gap = 4
    tw, th = size
    left, top = (150, 28) if labels else (0, 0)
    rows, cols = len(names), len(sevs) + 1
    canvas = np.full((top + rows * (th + gap) - gap, left + cols * (tw + gap) - gap, 3), 255, np.uint8)
    clean = shrink(image)
    for r, name in enumerate(names):
        y = top + r * (th + gap)
        canvas[y : y + th, left : left + tw] = clean
        for c, severity in enumerate(sevs, start=1):
            x = left + c * (tw + gap)
            canvas[y : y + th, x : x + tw] = shrink(corrupt(image, name, severity, seed=seed))
        if labels:
            cv2.putText(canvas, name, (6, y + th // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if labels:
        for c, title in enumerate(["clean", *(f"severity {s}" for s in sevs)]):
            x = left + c * (tw + gap) + 6
            cv2.putText(canvas, title, (x, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class CorruptionReport:
    """Top-1 accuracy of a classifier on clean and corrupted images.

    ``accuracy[name][j]`` is the accuracy under corruption ``name`` at severity ``severities[j]``.
    """

    seed: int
    num_samples: int
    severities: tuple[int, ...]
    clean_accuracy: float
    accuracy: dict[str, tuple[float, ...]]

    def _cells(self) -> list[tuple[str, int, float]]:
        """Every (corruption, severity, accuracy): corruptions in CORRUPTIONS order (others after,
        in the dict's order), severities ascending."""
        order = {name: i for i, name in enumerate(CORRUPTIONS)}
        names = sorted(self.accuracy, key=lambda n: order.get(n, len(order)))
        by_severity = sorted(range(len(self.severities)), key=lambda j: self.severities[j])
        return [(n, self.severities[j], float(self.accuracy[n][j])) for n in names for j in by_severity]

    @property
    def mean_accuracy(self) -> float:
        """The mean accuracy over every corruption and severity (0 when there are none)."""
        cells = self._cells()
        return float(np.mean([a for _, _, a in cells])) if cells else 0.0

    @property
    def relative_accuracy(self) -> float:
        """``mean_accuracy / clean_accuracy`` (0 when the clean accuracy is 0)."""
        return self.mean_accuracy / self.clean_accuracy if self.clean_accuracy > 0 else 0.0

    @property
    def worst(self) -> tuple[str, int, float] | None:
        """(corruption, severity, accuracy) of the lowest cell; ties go to the corruption first in
        :data:`CORRUPTIONS`, then the lowest severity. None when there are no cells."""
        cells = self._cells()
        if not cells:
            return None
        return min(cells, key=lambda cell: cell[2])  # min keeps the first of equal keys

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst
        order = {name: i for i, name in enumerate(CORRUPTIONS)}
        return {
            "seed": self.seed,
            "num_samples": self.num_samples,
            "severities": list(self.severities),
            "clean_accuracy": self.clean_accuracy,
            "accuracy": {n: [float(a) for a in self.accuracy[n]]
                         for n in sorted(self.accuracy, key=lambda n: order.get(n, len(order)))},
            "mean_accuracy": self.mean_accuracy,
            "relative_accuracy": self.relative_accuracy,
            "worst": None if worst is None else {"corruption": worst[0], "severity": worst[1], "accuracy": worst[2]},
        }

    def format_table(self) -> str:
        """A text table: a row per corruption with the clean accuracy and one column per
        severity, a row of per-severity means, then the mean, relative and worst figures."""
        order = {name: i for i, name in enumerate(CORRUPTIONS)}
        names = sorted(self.accuracy, key=lambda n: order.get(n, len(order)))
        width = max([len("corruption"), len("mean"), *(len(n) for n in names)])
        head = f"{'corruption':<{width}}  {'clean':>6}" + "".join(f"  {'s' + str(s):>6}" for s in self.severities)
        lines = [f"corruption robustness: {self.num_samples} images, seed {self.seed}, top-1 accuracy", head,
                 "-" * len(head)]
        for n in names:
            lines.append(f"{n:<{width}}  {self.clean_accuracy:>6.4f}"
                         + "".join(f"  {a:>6.4f}" for a in self.accuracy[n]))
        if names:
            means = [float(np.mean([self.accuracy[n][j] for n in names])) for j in range(len(self.severities))]
            lines.append("-" * len(head))
            lines.append(f"{'mean':<{width}}  {self.clean_accuracy:>6.4f}" + "".join(f"  {m:>6.4f}" for m in means))
        lines.append(f"mean accuracy {self.mean_accuracy:.4f} (clean {self.clean_accuracy:.4f}), "
                     f"relative {self.relative_accuracy:.4f}")
        worst = self.worst
        if worst is not None:
            lines.append(f"worst: {worst[0]} at severity {worst[1]}: {worst[2]:.4f}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the evaluation


def evaluate_corruptions(
    model: Classifier,
    data: str | os.PathLike | ClassificationDataset,
    *,
    split: str | None = None,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> CorruptionReport:
    """Top-1 accuracy of ``model`` on ``data`` (optionally one split), clean and under each of
    ``corruptions`` at each of ``severities``.

    Each image is decoded once (unreadable ones are skipped, as :func:`evaluate_classifier`
    does) and the images are processed ``batch_size`` at a time, so memory stays bounded. Image
    ``i`` of the dataset is corrupted with seed :func:`image_seed` ``(seed, i)``, so the result
    does not depend on ``batch_size``. Labels are matched to the model's by name.

    Raises ConfigError for unknown corruptions (with the closest name), bad severities, a
    ``batch_size`` below 1 or when no image is readable.
    """
    from PIL import Image
    from tqdm import tqdm

    from visor.evaluate.classifier import evaluation_samples

    names = check_corruptions(corruptions)
    sevs = check_severities(severities)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    ds = evaluation_samples(model, data, split)
    index = {label: i for i, label in enumerate(model.labels)}
    settings = [(n, s) for n in names for s in sevs]
    correct = np.zeros(len(settings), np.int64)
    clean_correct = 0
    evaluated = 0

    def predict(images: list[np.ndarray]) -> np.ndarray:
        return model.logits(model.preprocess([Image.fromarray(a, "RGB") for a in images])).argmax(axis=1)

    total = len(ds.samples) * (1 + len(settings))
    with tqdm(total=total, unit="img", disable=not progress, desc="corruptions") as bar:
        offset = 0
        for chunk, decoded in model.decoded_batches([s.path for s in ds.samples], batch_size):
            positions = range(offset, offset + len(chunk))
            offset += len(chunk)
            good = [(i, np.asarray(d if d.mode == "RGB" else d.convert("RGB"), dtype=np.uint8))
                    for i, d in split_decoded(positions, decoded)[0]]
            bar.update((len(chunk) - len(good)) * (1 + len(settings)))
            if not good:
                continue
            arrays = [a for _, a in good]
            y = np.asarray([index[ds.samples[i].label] for i, _ in good], np.int64)
            clean_correct += int((predict(arrays) == y).sum())
            evaluated += len(good)
            bar.update(len(good))
            for k, (name, severity) in enumerate(settings):
                damaged = [corrupt(a, name, severity, seed=image_seed(seed, i)) for i, a in good]
                correct[k] += int((predict(damaged) == y).sum())
                bar.update(len(good))
    if evaluated == 0:
        raise ConfigError("no readable images to evaluate")
    accuracy = {n: tuple(float(correct[k]) / evaluated for k, (m, _) in enumerate(settings) if m == n)
                for n in names}
    return CorruptionReport(
        seed=int(seed),
        num_samples=evaluated,
        severities=sevs,
        clean_accuracy=clean_correct / evaluated,
        accuracy=accuracy,
    )
