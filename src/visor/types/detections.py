"""Detection results: boxes with their scores and classes as arrays side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from visor.types.base import Columns, Field


@dataclass(frozen=True, eq=False)
class Detections(Columns):
    """N detections in one image.

    ``xyxy`` is ``(N, 4)`` float32 in pixels of the original image (x1, y1, x2, y2);
    ``confidence`` is ``(N,)`` float32; ``class_id`` is ``(N,)`` int64; ``data`` holds
    further per-detection arrays of length N (``class_name``, ``tracker_id``, masks...).
    Indexing with an int, slice, index array or boolean mask returns a new Detections.
    """

    TYPE: ClassVar[str] = "detections"
    ITEMS: ClassVar[str] = "detections"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("xyxy", np.float32, (4,), decimals=3), Field("confidence", np.float32, decimals=6),
        Field("class_id", np.int64))

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    model: str = field(default="", kw_only=True)

    @classmethod
    def merge(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate detections (``model`` from the first); every item must carry the same ``data`` keys."""
        items = [d for d in items if len(d)] or list(items[:1])
        if not items:
            return cls.empty()
        keys = set(items[0].data)
        if any(set(d.data) != keys for d in items):
            raise ValueError("cannot merge Detections with different data keys")
        return cls(
            np.concatenate([d.xyxy for d in items]),
            np.concatenate([d.confidence for d in items]),
            np.concatenate([d.class_id for d in items]),
            {k: np.concatenate([d.data[k] for d in items]) for k in items[0].data},
            model=items[0].model,
        )

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]
