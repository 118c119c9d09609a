"""Classification results: one image's top-k classes as arrays side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Classifications:
    """The top-k classes for one image, best first.

    ``class_id``, ``confidence`` and ``label`` are parallel arrays of length k.
    ``model`` names the model that produced them (empty when unknown).
    """

    class_id: np.ndarray
    confidence: np.ndarray
    label: np.ndarray
    model: str = ""
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cid = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        label = np.asarray(self.label, dtype=object).reshape(-1)
        if not (len(cid) == len(conf) == len(label)):
            raise ValueError(
                f"class_id ({len(cid)}), confidence ({len(conf)}) and label ({len(label)}) "
                "must have the same length"
            )
        for key, value in self.data.items():
            if len(value) != len(cid):
                raise ValueError(f"data[{key!r}] has length {len(value)}, expected {len(cid)}")
        object.__setattr__(self, "class_id", cid)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "label", label)

    # ------------------------------------------------------------------ construction

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

    @classmethod
    def empty(cls, model: str = "") -> Classifications:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, object), model)

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.class_id)

    @property
    def top(self) -> tuple[str, float] | None:
        """The best (label, confidence), or None when empty."""
        return (str(self.label[0]), float(self.confidence[0])) if len(self) else None

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service)."""
        return {
            "type": "classifications",
            "model": self.model,
            "predictions": [
                {
                    "class_id": int(c),
                    "label": str(lbl),
                    "confidence": round(float(p), 6),
                    **{k: _jsonable(v[i]) for k, v in self.data.items()},
                }
                for i, (c, lbl, p) in enumerate(zip(self.class_id, self.label, self.confidence, strict=True))
            ],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Classifications:
        if d.get("type", "classifications") != "classifications":
            raise ValueError(f"not a classifications object: type={d.get('type')!r}")
        preds = d.get("predictions", [])
        core = {"class_id", "label", "confidence"}
        extra = sorted({k for p in preds for k in p} - core)
        return cls(
            np.array([p["class_id"] for p in preds], dtype=np.int64),
            np.array([p["confidence"] for p in preds], dtype=np.float32),
            np.array([p["label"] for p in preds], dtype=object),
            d.get("model", ""),
            {k: np.array([p.get(k) for p in preds], dtype=object) for k in extra},
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
