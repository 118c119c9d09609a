"""Image properties: dominant colours, brightness, sharpness, exposure; crop hints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from visor.types.base import Columns, Field, Record


@dataclass(frozen=True)
class DominantColor(Record):
    """One of an image's main colours: mean sRGB of its pixels and their share of the image."""

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("rgb", int, (3,)), Field("hex", str, computed=True), Field("fraction", float, decimals=6))

    rgb: tuple[int, int, int]
    fraction: float

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


@dataclass(frozen=True)
class Exposure(Record):
    """Fractions of clipped dark and bright pixels."""

    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("dark_fraction", float, decimals=6), Field("bright_fraction", float, decimals=6),
        Field("score", float, decimals=6, computed=True))

    dark_fraction: float
    bright_fraction: float

    @property
    def score(self) -> float:
        """1 when nothing is clipped, falling to 0 when half the pixels are."""
        return float(np.clip(1 - 2 * (self.dark_fraction + self.bright_fraction), 0, 1))


@dataclass(frozen=True)
class ImageProperties(Record):
    """Size, dominant colours (largest first), brightness (mean luma 0..1), sharpness, exposure of one image."""

    TYPE: ClassVar[str] = "properties"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("width", int), Field("height", int), Field("dominant_colors", DominantColor, many=True),
        Field("brightness", float, decimals=6), Field("sharpness", float, decimals=6), Field("exposure", Exposure))

    width: int
    height: int
    dominant_colors: tuple[DominantColor, ...]
    brightness: float
    sharpness: float
    exposure: Exposure
    model: str = field(default="", kw_only=True)


@dataclass(frozen=True, eq=False)
class CropHints(Columns):
    """Crops of one image: per hint its ``aspect_ratio`` (width / height, float64) and ``box``
    (``(N, 4)`` float64, x1, y1, x2, y2 in pixels of the original image)."""

    TYPE: ClassVar[str] = "crop_hints"
    ITEMS: ClassVar[str] = "hints"
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("aspect_ratio", np.float64, decimals=6),
                                           Field("box", np.float64, (4,)))

    aspect_ratio: np.ndarray
    box: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    model: str = field(default="", kw_only=True)
