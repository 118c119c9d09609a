"""Classification results: one image's top-k classes as arrays side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from visor.types.base import Columns, Field


@dataclass(frozen=True, eq=False)
class Classifications(Columns):
    """The top-k classes for one image, best first.

    ``class_id`` (int64), ``confidence`` (float32) and ``label`` (str) are parallel arrays of length k;
    ``data`` holds further per-class arrays. ``model`` names the model that produced them (empty when unknown).
    """

    TYPE: ClassVar[str] = "classifications"
    ITEMS: ClassVar[str] = "predictions"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("class_id", np.int64), Field("label", str), Field("confidence", np.float32, decimals=6))

    class_id: np.ndarray
    confidence: np.ndarray
    label: np.ndarray
    model: str = ""
    data: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_probabilities(
        cls, probs: np.ndarray, labels: Sequence[str], top_k: int = 5, model: str = ""
    ) -> Classifications:
        """Take the ``top_k`` highest entries of one probability vector."""
        probs = np.asarray(probs, dtype=np.float32).reshape(-1)
        if len(labels) != len(probs):
            raise ValueError(f"{len(probs)} scores but {len(labels)} labels")
        k = max(0, min(int(top_k), len(probs)))
        idx = np.argpartition(-probs, k - 1)[:k] if 0 < k < len(probs) else np.arange(len(probs))[:k]
        # Sort by score, ties by class id, so the order is deterministic.
        idx = idx[np.lexsort((idx, -probs[idx]))]
        return cls(idx, probs[idx], np.array([labels[i] for i in idx], dtype=object), model)

    @property
    def top(self) -> tuple[str, float] | None:
        """The best (label, confidence), or None when empty."""
        return (str(self.label[0]), float(self.confidence[0])) if len(self) else None
