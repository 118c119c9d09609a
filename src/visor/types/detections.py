"""Detection results: boxes with their scores and classes as arrays side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.types.classifications import _jsonable


@dataclass(frozen=True)
class Detections:
    """N detections in one image.

    ``xyxy`` is ``(N, 4)`` float32 in pixels of the original image (x1, y1, x2, y2);
    ``confidence`` is ``(N,)`` float32; ``class_id`` is ``(N,)`` int64; ``data`` holds
    further per-detection arrays of length N (``class_name``, ``tracker_id``, masks...).
    Indexing with an int, slice, index array or boolean mask returns a new Detections.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cid = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if len(conf) != n or len(cid) != n:
            raise ValueError(f"xyxy has {n} rows but confidence {len(conf)} and class_id {len(cid)}")
        data = {k: np.asarray(v) for k, v in self.data.items()}
        for k, v in data.items():
            if len(v) != n:
                raise ValueError(f"data[{k!r}] has length {len(v)}, expected {n}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cid)
        object.__setattr__(self, "data", data)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def merge(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate detections; every item must carry the same ``data`` keys."""
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
            {k: np.concatenate([d.data[k] for d in items]) for k in keys},
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {k: v[index] for k, v in self.data.items()},
        )

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service)."""
        return {
            "type": "detections",
            "detections": [
                {
                    "xyxy": [round(float(c), 3) for c in self.xyxy[i]],
                    "confidence": round(float(self.confidence[i]), 6),
                    "class_id": int(self.class_id[i]),
                    **{k: _jsonable(v[i]) for k, v in self.data.items()},
                }
                for i in range(len(self))
            ],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detections:
        if d.get("type", "detections") != "detections":
            raise ValueError(f"not a detections object: type={d.get('type')!r}")
        rows = d.get("detections", [])
        if not rows:
            return cls.empty()
        extra = sorted({k for r in rows for k in r} - {"xyxy", "confidence", "class_id"})
        return cls(
            np.array([r["xyxy"] for r in rows], dtype=np.float32),
            np.array([r["confidence"] for r in rows], dtype=np.float32),
            np.array([r["class_id"] for r in rows], dtype=np.int64),
            {k: np.array([r.get(k) for r in rows]) for k in extra},
        )
