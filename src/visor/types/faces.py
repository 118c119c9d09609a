"""Face results: boxes, scores, landmarks and embeddings as arrays side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.types.classifications import _jsonable


@dataclass(frozen=True)
class Faces:
    """N faces in one image.

    ``xyxy`` is ``(N, 4)`` float32 in pixels of the original image; ``confidence`` is ``(N,)``
    float32 (the HOG detector's SVM score or the CNN detector's confidence; NaN where the
    detector gives none); ``landmarks`` is ``(N, K, 2)`` float32 (K = 5 or 68, or 0 when not
    computed); ``embeddings`` is ``(N, 128)`` float32 (or ``(N, 0)`` when not computed).
    ``data`` holds further per-face arrays of length N, such as ``name`` and ``distance``
    after identification, or ``matches`` (an object array of per-face lists).
    Indexing with an int, slice, index array or boolean mask returns a new Faces.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray
    embeddings: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        marks = np.asarray(self.landmarks, dtype=np.float32)
        marks = marks.reshape(n, -1, 2) if marks.size else np.zeros((n, 0, 2), np.float32)
        emb = np.asarray(self.embeddings, dtype=np.float32)
        emb = emb.reshape(n, -1) if emb.size else np.zeros((n, 0), np.float32)
        if len(conf) != n:
            raise ValueError(f"xyxy has {n} rows but confidence {len(conf)}")
        data: dict[str, np.ndarray] = {}
        for k, v in self.data.items():
            arr = v if isinstance(v, np.ndarray) else _object_array(v)
            if len(arr) != n:
                raise ValueError(f"data[{k!r}] has length {len(arr)}, expected {n}")
            data[k] = arr
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "landmarks", marks)
        object.__setattr__(self, "embeddings", emb)
        object.__setattr__(self, "data", data)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 0, 2), np.float32),
                   np.zeros((0, 0), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Faces:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Faces(
            self.xyxy[index],
            self.confidence[index],
            self.landmarks[index],
            self.embeddings[index],
            {k: v[index] for k, v in self.data.items()},
        )

    def with_data(self, **data: Any) -> Faces:
        """A copy with these per-face ``data`` entries added or replaced."""
        return Faces(self.xyxy, self.confidence, self.landmarks, self.embeddings, {**self.data, **data})

    def to_dict(self, *, embeddings: bool = True) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service): a list of per-face objects.

        Each face has ``xyxy``, ``confidence`` (null where the detector gives none),
        ``landmarks`` (a list of [x, y]), ``embedding`` (128 floats; left out when not
        computed or ``embeddings=False``) and one key per ``data`` entry.
        """
        faces = []
        for i in range(len(self)):
            conf = float(self.confidence[i])
            face: dict[str, Any] = {
                "xyxy": [round(float(c), 3) for c in self.xyxy[i]],
                "confidence": None if np.isnan(conf) else round(conf, 6),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks[i]],
            }
            if embeddings and self.embeddings.shape[1]:
                face["embedding"] = [round(float(e), 6) for e in self.embeddings[i]]
            face.update({k: _json_value(v[i]) for k, v in self.data.items()})
            faces.append(face)
        return {"type": "faces", "faces": faces}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Faces:
        if d.get("type", "faces") != "faces":
            raise ValueError(f"not a faces object: type={d.get('type')!r}")
        rows = d.get("faces", [])
        if not rows:
            return cls.empty()
        core = {"xyxy", "confidence", "landmarks", "embedding"}
        extra = sorted({k for r in rows for k in r} - core)
        conf = [np.nan if r.get("confidence") is None else r["confidence"] for r in rows]
        has_emb = all("embedding" in r for r in rows)
        return cls(
            np.array([r["xyxy"] for r in rows], dtype=np.float32),
            np.array(conf, dtype=np.float32),
            np.array([r.get("landmarks", []) for r in rows], dtype=np.float32),
            np.array([r["embedding"] for r in rows], dtype=np.float32) if has_emb else np.zeros((len(rows), 0)),
            {k: _object_array([r.get(k) for r in rows]) if k == "matches" else np.array([r.get(k) for r in rows])
             for k in extra},
        )


def _json_value(value: Any) -> Any:
    """A JSON-ready value; NaN (e.g. the distance to an empty collection) becomes null."""
    value = _jsonable(value)
    return None if isinstance(value, float) and np.isnan(value) else value


def _object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of ``values`` (lists stay lists instead of becoming a 2-D array)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
