"""Face results: boxes, scores, landmarks and embeddings as arrays side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from visor.types.base import Columns, Field


@dataclass(frozen=True, eq=False)
class Faces(Columns):
    """N faces in one image.

    ``xyxy`` is ``(N, 4)`` float32 in pixels of the original image; ``confidence`` is ``(N,)``
    float32 (the HOG detector's SVM score or the CNN detector's confidence; NaN where the
    detector gives none); ``landmarks`` is ``(N, K, 2)`` float32 (K = 5 or 68, or 0 when not
    computed); ``embeddings`` is ``(N, 128)`` float32 (or ``(N, 0)`` when not computed).
    ``data`` holds further per-face arrays of length N, such as ``name`` and ``distance``
    after identification, or ``matches`` (an object array of per-face lists).
    Indexing with an int, slice, index array or boolean mask returns a new Faces.
    """

    TYPE: ClassVar[str] = "faces"
    ITEMS: ClassVar[str] = "faces"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("xyxy", np.float32, (4,), decimals=3), Field("confidence", np.float32, decimals=6),
        Field("landmarks", np.float32, (None, 2), decimals=2),
        Field("embeddings", np.float32, (None,), key="embedding", decimals=6, optional=True))

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray
    embeddings: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    model: str = field(default="", kw_only=True)

    def to_dict(self, *, embeddings: bool = True) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service): a list of per-face objects.

        Each face has ``xyxy``, ``confidence`` (null where the detector gives none),
        ``landmarks`` (a list of [x, y]), ``embedding`` (128 floats; left out when not
        computed or ``embeddings=False``) and one key per ``data`` entry.
        """
        return self._document(skip=() if embeddings else ("embeddings",))
