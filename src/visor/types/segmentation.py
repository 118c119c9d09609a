"""Semantic segmentation results: one class index per pixel at the original image size.

:class:`SegmentationMask` holds an ``(H, W)`` array of class indices (``uint8`` when every value fits,
else ``uint16``), the class names (index = class id), an optional ``ignore_index`` (pixels that belong to
no class, such as VOC's 255 or CamVid's void) and an optional per-pixel confidence. Its JSON form has one
COCO RLE (:mod:`visor.ops.rle`) per value present, which together cover every pixel once::

    {"type": "segmentation", "model": "deeplabv3_voc", "width": 640, "height": 480,
     "class_names": ["background", "aeroplane", ...], "ignore_index": null,
     "segments": [{"class_id": 0, "label": "background", "area": 250112,
                   "rle": {"size": [480, 640], "counts": "..."}}, ...]}

``label`` and ``area`` are derived (``from_dict`` ignores them); the confidence is not written. Drawing:
:meth:`SegmentationMask.overlay` (a coloured overlay on the image) and :meth:`SegmentationMask.to_png_bytes`
/ :meth:`SegmentationMask.save_png` (an index PNG with the Pascal VOC palette, as VOC stores its masks).
Nothing loops per pixel in Python: a 4000x3000 mask takes well under a second for any of these.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from visor.errors import InvalidInput
from visor.io.files import atomic_write
from visor.ops import rle as rle_ops
from visor.types.base import Field, Result

MAX_CLASSES = 65_536
IGNORE_LABEL = "ignore"
"""The ``label`` of the segment of ``ignore_index`` pixels in JSON."""


def palette(n: int = 256) -> list[int]:
    """The Pascal VOC palette of ``n`` colours as a flat ``[r0, g0, b0, r1, ...]`` list: the bits of each
    index spread over the colour channels, high bits first (0 black, 1 dark red, ..., 255 VOC's void)."""
    if n < 0:
        raise ValueError(f"palette size must not be negative, got {n}")
    ids = np.arange(n, dtype=np.int64)
    rgb = np.zeros((n, 3), np.int64)
    for j in range(8):
        for c in range(3):
            rgb[:, c] |= ((ids >> (3 * j + c)) & 1) << (7 - j)
    return rgb.reshape(-1).tolist()


def _colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 colours of the VOC palette; indices above 255 wrap around."""
    base = np.asarray(palette(256), np.uint8).reshape(256, 3)
    return base[np.arange(n) % 256]


@dataclass(frozen=True, eq=False, init=False)
class SegmentationMask(Result):
    """A class index per pixel of one image.

    ``mask`` is ``(H, W)`` at the original image size with values in ``[0, len(class_names))`` or
    ``ignore_index``; stored ``uint8`` when they all fit in 8 bits, else ``uint16``. ``class_names`` is a
    tuple of distinct names (index = class id). ``confidence`` is ``None`` or ``(H, W)`` float32 (the
    highest softmax probability per pixel). ``ignore_index`` is ``None`` or a value no class uses
    (``>= len(class_names)``). ``model`` names the model that produced it (empty when unknown).
    Inconsistent values raise ``ValueError``.
    """

    TYPE: ClassVar[str] = "segmentation"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("mask", np.uint8, (None, None)), Field("class_names", str, many=True),
        Field("confidence", np.float32, (None, None), optional=True), Field("ignore_index", int, optional=True))

    mask: np.ndarray
    class_names: tuple[str, ...]
    confidence: np.ndarray | None = None
    ignore_index: int | None = None
    model: str = ""

    def __init__(self, mask: Any, class_names: Sequence[str], *, confidence: Any = None,
                 ignore_index: int | None = None, model: str | None = None) -> None:
        names = (class_names,) if isinstance(class_names, str) else tuple(class_names)
        if not names or not all(isinstance(c, str) for c in names):
            raise ValueError("SegmentationMask: class_names must be a non-empty sequence of strings")
        if len(names) > MAX_CLASSES:
            raise ValueError(f"SegmentationMask: at most {MAX_CLASSES} classes, got {len(names)}")
        if len(set(names)) != len(names):
            dupes = sorted({c for c in names if names.count(c) > 1})
            raise ValueError(f"SegmentationMask: class names must be distinct; repeated: {', '.join(dupes)}")
        if ignore_index is not None:
            if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
                raise ValueError(f"SegmentationMask: ignore_index must be an integer, got {ignore_index!r}")
            ignore_index = int(ignore_index)
            if not len(names) <= ignore_index < MAX_CLASSES:
                raise ValueError(f"SegmentationMask: ignore_index {ignore_index} must be a value no class uses "
                                 f"({len(names)}..{MAX_CLASSES - 1})")
        arr = np.asarray(mask)
        if arr.ndim != 2 or 0 in arr.shape:
            raise ValueError(f"SegmentationMask: mask must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
        if arr.dtype.kind not in "biu":
            raise ValueError(f"SegmentationMask: mask must hold integer class indices, got dtype {arr.dtype}")
        top = max(len(names) - 1, ignore_index or 0)
        dtype = np.uint8 if top <= 255 else np.uint16
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= len(names):
            values = np.unique(arr[(arr < 0) | (arr >= len(names))])
            bad = values[values != ignore_index] if ignore_index is not None else values
            if len(bad):
                shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
                raise ValueError(f"SegmentationMask: mask values {shown} are outside the {len(names)} classes"
                                 + ("" if ignore_index is None else f" and not the ignore index {ignore_index}"))
        arr = np.ascontiguousarray(arr, dtype=dtype)
        conf = None
        if confidence is not None:
            conf = np.ascontiguousarray(confidence, dtype=np.float32)
            if conf.shape != arr.shape:
                raise ValueError(f"SegmentationMask: confidence has shape {conf.shape}, the mask {arr.shape}")
        object.__setattr__(self, "mask", arr)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "ignore_index", ignore_index)
        object.__setattr__(self, "model", str(model or ""))

    # ------------------------------------------------------------------ access

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def _pixel_counts(self) -> np.ndarray:
        return np.bincount(self.mask.reshape(-1), minlength=len(self.class_names))

    @property
    def class_ids_present(self) -> tuple[int, ...]:
        """The class ids with at least one pixel, ascending (the ignore index is no class)."""
        counts = self._pixel_counts()[:len(self.class_names)]
        return tuple(int(i) for i in np.flatnonzero(counts))

    @property
    def areas(self) -> dict[str, int]:
        """Pixels per class present, by class name, in class id order."""
        counts = self._pixel_counts()[:len(self.class_names)]
        return {self.class_names[i]: int(counts[i]) for i in np.flatnonzero(counts)}

    def class_id(self, class_id_or_name: int | str) -> int:
        """The class id of a name or id (the ignore index included); ``ValueError`` for an unknown one."""
        if isinstance(class_id_or_name, str):
            if class_id_or_name not in self.class_names:
                raise ValueError(f"unknown class {class_id_or_name!r}; the classes are {', '.join(self.class_names)}")
            return self.class_names.index(class_id_or_name)
        if isinstance(class_id_or_name, bool) or not isinstance(class_id_or_name, (int, np.integer)):
            raise ValueError(f"a class is an id or a name, got {class_id_or_name!r}")
        i = int(class_id_or_name)
        if not (0 <= i < len(self.class_names) or i == self.ignore_index):
            raise ValueError(f"class id {i} is outside the {len(self.class_names)} classes")
        return i

    def binary(self, class_id_or_name: int | str) -> np.ndarray:
        """``(H, W)`` bool: the pixels of one class (by id or name)."""
        return self.mask == self.class_id(class_id_or_name)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, SegmentationMask)
        same_conf = (self.confidence is None and other.confidence is None) or (
            self.confidence is not None and other.confidence is not None
            and np.array_equal(self.confidence, other.confidence, equal_nan=True))
        return (self.model == other.model and self.class_names == other.class_names
                and self.ignore_index == other.ignore_index and self.mask.dtype == other.mask.dtype
                and np.array_equal(self.mask, other.mask) and same_conf)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"SegmentationMask({self.width}x{self.height}, {len(self.class_names)} classes, "
                f"present={list(self.areas)}, model={self.model!r})")

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service): one COCO RLE per value present."""
        pixels = self._pixel_counts()
        segments = []
        for value, rle in rle_ops.encode_labels(self.mask).items():
            label = self.class_names[value] if value < len(self.class_names) else IGNORE_LABEL
            segments.append({"class_id": value, "label": label, "area": int(pixels[value]), "rle": rle})
        return {**self._head(), "width": self.width, "height": self.height, "class_names": list(self.class_names),
                "ignore_index": self.ignore_index, "segments": segments}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, max_pixels: int = rle_ops.MAX_PIXELS) -> SegmentationMask:
        """Read the JSON form back. A document from outside is checked before anything is allocated for it:
        a positive size of at most ``max_pixels``, well-formed RLEs of that size, segments that cover
        every pixel exactly once; ``InvalidInput`` otherwise."""
        d = cls._check_document(d)
        w, h = d.get("width"), d.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (w, h)):
            raise InvalidInput(f"segmentation: width and height must be integers, got {w!r} and {h!r}")
        assert isinstance(w, int) and isinstance(h, int)
        if h <= 0 or w <= 0:
            raise InvalidInput(f"segmentation: width and height must be positive, got {w}x{h}")
        if h * w > max_pixels:
            raise InvalidInput(f"segmentation: {w}x{h} = {w * h} pixels is more than the limit of {max_pixels}")
        names = d.get("class_names")
        if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
            raise InvalidInput("segmentation: class_names must be a non-empty list of strings")
        if len(names) > MAX_CLASSES:
            raise InvalidInput(f"segmentation: at most {MAX_CLASSES} classes, got {len(names)}")
        ignore = d.get("ignore_index")
        if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
            raise InvalidInput(f"segmentation: ignore_index must be an integer or null, got {ignore!r}")
        if ignore is not None and not len(names) <= ignore < MAX_CLASSES:
            raise InvalidInput(f"segmentation: ignore_index {ignore} must be a value no class uses "
                               f"({len(names)}..{MAX_CLASSES - 1})")
        segments = d.get("segments")
        if not isinstance(segments, list) or not all(isinstance(s, Mapping) for s in segments):
            raise InvalidInput("segmentation: segments must be a list of objects")
        if len(segments) > len(names) + 1:
            raise InvalidInput(f"segmentation: {len(segments)} segments for {len(names)} classes")
        ids, starts, lengths = [], [], []
        for i, seg in enumerate(segments):
            cid = seg.get("class_id")
            if isinstance(cid, bool) or not isinstance(cid, int) or not (0 <= cid < len(names) or cid == ignore):
                raise InvalidInput(f"segmentation: segment {i} has class_id {cid!r}, not one of the "
                                   f"{len(names)} classes" + ("" if ignore is None else f" or {ignore}"))
            size, counts = rle_ops.parse(seg.get("rle"), max_pixels=max_pixels)
            if size != (h, w):
                raise InvalidInput(f"segmentation: segment {i} has an RLE of size {list(size)}, the image is "
                                   f"[{h}, {w}]")
            edges = np.concatenate([[0], np.cumsum(counts)])
            run_starts, run_lengths = edges[1:-1:2], counts[1::2]
            keep = run_lengths > 0
            ids.append(np.full(int(keep.sum()), cid, np.int64))
            starts.append(run_starts[keep])
            lengths.append(run_lengths[keep])
        if len({int(s["class_id"]) for s in segments}) != len(segments):
            raise InvalidInput("segmentation: a class_id appears in more than one segment")
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        all_starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        order = np.argsort(all_starts, kind="stable")
        all_ids, all_starts, all_lengths = all_ids[order], all_starts[order], all_lengths[order]
        ends = all_starts + all_lengths
        if not len(all_starts) or all_starts[0] != 0 or ends[-1] != h * w or (all_starts[1:] != ends[:-1]).any():
            raise InvalidInput("segmentation: the segments must cover every pixel exactly once")
        top = max(len(names) - 1, ignore or 0)
        flat = np.repeat(all_ids.astype(np.uint8 if top <= 255 else np.uint16), all_lengths)
        try:
            return cls(flat.reshape(w, h).T, names, ignore_index=ignore, model=d.get("model", ""))
        except ValueError as e:
            raise InvalidInput(f"malformed segmentation object: {e}") from e

    # ------------------------------------------------------------------ drawing

    def overlay(self, image: Image.Image | np.ndarray, alpha: float = 0.5, *,
                colors: Sequence[int] | None = None) -> Image.Image:
        """The RGB image with each class drawn over it in its colour (``alpha`` of the colour, ``1 - alpha``
        of the image). Background (class 0) and ignored pixels are left exactly as they are. ``colors``: a
        flat ``[r, g, b, ...]`` palette (default: :func:`palette`, the VOC colours). The image must have
        the mask's size."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be within [0, 1], got {alpha}")
        if isinstance(image, Image.Image):
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        else:
            rgb = np.asarray(image)
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[:, :, None], 3, axis=2)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"image must be an RGB PIL image or an (H, W, 3) uint8 array, got {rgb.dtype} "
                                 f"{rgb.shape}")
        if rgb.shape[:2] != self.mask.shape:
            raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]}, the mask {self.width}x{self.height}")
        n = max(len(self.class_names), (self.ignore_index or 0) + 1)
        table = _colors(n) if colors is None else _palette_table(colors, n)
        # a table per class and channel: value -> blended value (identity for class 0 and ignored pixels), so
        # the whole image is one lookup per channel
        a = float(alpha)
        levels = np.arange(256, dtype=np.float64)
        lut = np.rint(levels[None, None, :] * (1.0 - a) + table[:, :, None].astype(np.float64) * a)
        lut = np.clip(lut, 0, 255).astype(np.uint8)
        lut[0] = levels.astype(np.uint8)
        if self.ignore_index is not None:
            lut[self.ignore_index] = levels.astype(np.uint8)
        index = self.mask.astype(np.intp) * (3 * 256)
        out = np.empty(rgb.shape, np.uint8)
        for c in range(3):
            out[:, :, c] = lut.reshape(-1)[index + (c * 256) + rgb[:, :, c]]
        return Image.fromarray(out, "RGB")

    def to_image(self) -> Image.Image:
        """The mask as a PIL image: mode ``"P"`` with the VOC palette (values up to 255), else 16-bit ``"I;16"``."""
        if self.mask.dtype == np.uint8:
            img = Image.frombytes("P", (self.width, self.height), self.mask.tobytes())
            img.putpalette(palette(256))
            return img
        return Image.fromarray(self.mask)  # uint16: mode "I;16"

    def to_png_bytes(self) -> bytes:
        """The index PNG (mode ``"P"`` with the VOC palette; ``"I;16"`` for values above 255)."""
        buf = io.BytesIO()
        self.to_image().save(buf, format="PNG")
        return buf.getvalue()

    def save_png(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_png_bytes` to ``path`` atomically; returns the path."""
        return atomic_write(path, self.to_png_bytes())


def _palette_table(colors: Sequence[int], n: int) -> np.ndarray:
    table = np.asarray(colors, dtype=np.int64).reshape(-1)
    if len(table) % 3 or not len(table) or table.min() < 0 or table.max() > 255:
        raise ValueError("colors must be a flat list of r, g, b values in 0..255")
    table = table.reshape(-1, 3).astype(np.uint8)
    return table[np.arange(n) % len(table)]
