"""Text found in an image (OCR): one quadrilateral, string and confidence per text line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np


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
    become horizontal. Boxes whose vertical extents then overlap by at least half of the
    shorter one join a line; lines go top to bottom (by mean centre y) and boxes left to
    right (by left edge). Returns the box indices per line.
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
    extents: list[tuple[float, float]] = []
    for i in np.argsort((top + bottom) / 2, kind="stable"):
        t, b = float(top[i]), float(bottom[i])
        for k, (lt, lb) in enumerate(extents):
            overlap = min(b, lb) - max(t, lt)
            if overlap >= 0.5 * max(min(b - t, lb - lt), 1e-6):
                lines[k].append(int(i))
                extents[k] = (min(t, lt), max(b, lb))
                break
        else:
            lines.append([int(i)])
            extents.append((t, b))
    left = x.min(axis=1)
    centre = (top + bottom) / 2
    lines = [sorted(line, key=lambda j: float(left[j])) for line in lines]
    return sorted(lines, key=lambda line: float(np.mean(centre[line])))


@dataclass(frozen=True)
class TextLines:
    """N pieces of text in one image.

    ``polygons`` is ``(N, 4, 2)`` float32: the corners (x, y) of each text box in pixels of
    the original image, clockwise from the top left; ``text`` is ``(N,)`` object (str);
    ``confidence`` is ``(N,)`` float32.
    """

    polygons: np.ndarray
    text: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        polys = np.asarray(self.polygons, dtype=np.float32).reshape(-1, 4, 2)
        n = len(polys)
        text = np.empty(n, dtype=object)
        raw = list(self.text) if not isinstance(self.text, str) else [self.text]
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        if len(raw) != n or len(conf) != n:
            raise ValueError(f"polygons has {n} boxes but text {len(raw)} and confidence {len(conf)}")
        for i, t in enumerate(raw):
            text[i] = str(t)
        object.__setattr__(self, "polygons", polys)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "confidence", conf)

    @classmethod
    def empty(cls) -> TextLines:
        return cls(np.zeros((0, 4, 2), np.float32), np.empty(0, object), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.polygons)

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> TextLines:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return TextLines(self.polygons[index], self.text[index], self.confidence[index])

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service)."""
        return {
            "type": "text",
            "full_text": self.full_text,
            "lines": [
                {
                    "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in self.polygons[i]],
                    "text": str(self.text[i]),
                    "confidence": round(float(self.confidence[i]), 6),
                }
                for i in range(len(self))
            ],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextLines:
        if d.get("type", "text") != "text":
            raise ValueError(f"not a text object: type={d.get('type')!r}")
        rows = d.get("lines", [])
        if not rows:
            return cls.empty()
        return cls(
            np.array([r["polygon"] for r in rows], dtype=np.float32),
            [r["text"] for r in rows],
            np.array([r["confidence"] for r in rows], dtype=np.float32),
        )
