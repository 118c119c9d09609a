"""Text found in an image (OCR): one quadrilateral, string and confidence per text line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from visor.types.base import Columns, Field


def skew_angle(polygons: np.ndarray) -> float:
    """The median slope (radians) of the boxes' top edges: the page's text skew, within +-45 degrees."""
    polys = np.asarray(polygons, dtype=np.float32).reshape(-1, 4, 2)
    if not len(polys):
        return 0.0
    d = polys[:, 1] - polys[:, 0]
    angles = np.arctan2(d[:, 1], np.where(np.abs(d[:, 0]) < 1e-6, 1e-6, d[:, 0]))
    return float(np.clip(np.median(angles), -np.pi / 4, np.pi / 4))


def reading_order(polygons: np.ndarray) -> list[list[int]]:
    """Group boxes into lines and order them for reading.

    The boxes are first rotated by the page's skew (:func:`skew_angle`) so that slanted lines
    become horizontal. Taking boxes top to bottom, a box joins the first line whose band (the mean
    top and mean bottom of the boxes in it, so a line does not widen as it grows and swallow the
    next one) overlaps its vertical extent by at least half of the shorter of the two; lines go top
    to bottom (by mean centre y) and boxes left to right (by left edge). Returns the box indices per
    line.
    """
    polys = np.asarray(polygons, dtype=np.float32).reshape(-1, 4, 2).astype(np.float64)
    if not len(polys):
        return []
    a = skew_angle(polys)
    cos, sin = np.cos(a), np.sin(a)
    x = cos * polys[:, :, 0] + sin * polys[:, :, 1]
    y = -sin * polys[:, :, 0] + cos * polys[:, :, 1]
    top, bottom = y.min(axis=1), y.max(axis=1)
    lines: list[list[int]] = []
    sums: list[list[float]] = []  # per line: sum of tops, sum of bottoms
    for i in np.argsort((top + bottom) / 2, kind="stable"):
        t, b = float(top[i]), float(bottom[i])
        for k, (st, sb) in enumerate(sums):
            lt, lb = st / len(lines[k]), sb / len(lines[k])
            overlap = min(b, lb) - max(t, lt)
            if overlap >= 0.5 * max(min(b - t, lb - lt), 1e-6):
                lines[k].append(int(i))
                sums[k][0] += t
                sums[k][1] += b
                break
        else:
            lines.append([int(i)])
            sums.append([t, b])
    left = x.min(axis=1)
    centre = (top + bottom) / 2
    lines = [sorted(line, key=lambda j: float(left[j])) for line in lines]
    return sorted(lines, key=lambda line: float(np.mean(centre[line])))


@dataclass(frozen=True, eq=False)
class TextLines(Columns):
    """N pieces of text in one image.

    ``polygons`` is ``(N, 4, 2)`` float32: the corners (x, y) of each text box in pixels of
    the original image, clockwise from the top left; ``text`` is ``(N,)`` object (str);
    ``confidence`` is ``(N,)`` float32. JSON adds ``full_text`` (all text in reading order).
    """

    TYPE: ClassVar[str] = "text"
    ITEMS: ClassVar[str] = "lines"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("polygons", np.float32, (4, 2), key="polygon", decimals=2), Field("text", str),
        Field("confidence", np.float32, decimals=6))

    polygons: np.ndarray
    text: np.ndarray
    confidence: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    model: str = field(default="", kw_only=True)

    @property
    def xyxy(self) -> np.ndarray:
        """``(N, 4)`` axis-aligned boxes around the polygons."""
        if not len(self):
            return np.zeros((0, 4), np.float32)
        return np.concatenate([self.polygons.min(axis=1), self.polygons.max(axis=1)], axis=1)

    def lines(self) -> list[str]:
        """The text of each reading line (boxes on one line joined by a space), top to bottom."""
        return [" ".join(str(self.text[i]) for i in line) for line in reading_order(self.polygons)]

    @property
    def full_text(self) -> str:
        """All text in reading order: lines top to bottom, left to right within a line."""
        return "\n".join(self.lines())

    def _header(self) -> dict[str, Any]:
        return {"full_text": self.full_text}
