"""Detection results: boxes with their scores and classes as arrays side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from visor.errors import InvalidInput
from visor.ops import rle as rle_ops
from visor.types.base import Columns, Field

_NO_MASK = object()  # a detection without a mask, in a document where others have one (JSON null)


@dataclass(frozen=True, eq=False)
class Detections(Columns):
    """N detections in one image.

    ``xyxy`` is ``(N, 4)`` float32 in pixels of the original image (x1, y1, x2, y2);
    ``confidence`` is ``(N,)`` float32; ``class_id`` is ``(N,)`` int64; ``data`` holds
    further per-detection arrays of length N (``class_name``, ``tracker_id``...).
    Indexing with an int, slice, index array or boolean mask returns a new Detections.

    ``masks`` (optional instance masks) is ``(N,)`` object: per detection a COCO RLE
    ``{"size": [H, W], "counts": str}`` of the whole image (:mod:`visor.ops.rle`) or None. The
    constructor takes RLE dicts (compressed or with a list of counts), ``(H, W)`` bool arrays or
    None per box, or an ``(N, H, W)`` array, and keeps compressed RLEs; every mask has the same size.
    :meth:`mask` decodes one. In JSON each detection gets ``"mask"`` (an RLE, or null) when any has
    a mask; without masks JSON is as it was.
    """

    TYPE: ClassVar[str] = "detections"
    ITEMS: ClassVar[str] = "detections"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("xyxy", np.float32, (4,), decimals=3), Field("confidence", np.float32, decimals=6),
        Field("class_id", np.int64), Field("masks", object, key="mask", optional=True))

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)
    model: str = field(default="", kw_only=True)
    masks: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        masks = self.masks  # None: no masks, one None per detection (their count is confidence's)
        n = np.asarray(self.confidence).size
        object.__setattr__(self, "masks", np.full(n, None, dtype=object) if masks is None else _mask_column(masks))
        super().__post_init__()

    @property
    def has_masks(self) -> bool:
        """Whether any detection has a mask."""
        return any(m is not None for m in self.masks)

    def mask(self, i: int) -> np.ndarray | None:
        """The ``(H, W)`` bool mask of detection ``i``, or None when it has none."""
        rle = self.masks[i]
        return None if rle is None else rle_ops.decode(rle)

    def _rows(self, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
        rows = super()._rows((*skip, "masks"))
        if "masks" in skip or not self.has_masks:
            return rows
        out = []
        for row, rle in zip(rows, self.masks, strict=True):
            mask = None if rle is None else {"size": list(rle["size"]), "counts": rle["counts"]}
            items = list(row.items())
            at = [k for k, _ in items].index("class_id") + 1
            out.append(dict([*items[:at], ("mask", mask), *items[at:]]))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detections:
        rows = d.get(cls.ITEMS) if isinstance(d, Mapping) else None
        if isinstance(rows, list) and all(isinstance(r, Mapping) for r in rows):
            # no "mask" (or null): no mask; the base would refuse the first and turn the second into NaN
            d = {**d, cls.ITEMS: [{**r, "mask": _NO_MASK if r.get("mask") is None else r["mask"]} for r in rows]}
        return super().from_dict(d)

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
            masks=np.concatenate([d.masks for d in items]),
        )

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]


def _mask_column(masks: Any) -> np.ndarray:
    """Per-detection masks as an ``(N,)`` object array of compressed COCO RLE dicts or None, all of one size."""
    if isinstance(masks, np.ndarray) and masks.dtype != object:
        if masks.ndim != 3:
            raise ValueError(f"Detections: masks as an array must be (N, H, W), got shape {masks.shape}")
        items: list[Any] = list(masks)
    elif isinstance(masks, (Sequence, np.ndarray)) and not isinstance(masks, (str, bytes, Mapping)):
        items = list(masks)
    else:
        raise ValueError(f"Detections: masks must be a sequence (one RLE, array or None per box), "
                         f"got {type(masks).__name__}")
    out = np.empty(len(items), dtype=object)
    sizes = set()
    for i, m in enumerate(items):
        if m is None or m is _NO_MASK:
            out[i] = None
            continue
        if isinstance(m, Mapping):
            try:
                rle = rle_ops.canonical(m)
            except InvalidInput as e:
                raise InvalidInput(f"Detections: mask {i}: {e}") from e
        elif isinstance(m, np.ndarray):
            if m.ndim != 2:
                raise ValueError(f"Detections: mask {i} must be (H, W), got shape {m.shape}")
            rle = rle_ops.encode(m)
        else:
            raise ValueError(f"Detections: mask {i} must be a COCO RLE dict, an (H, W) array or None, "
                             f"got {type(m).__name__}")
        sizes.add(tuple(rle["size"]))
        out[i] = rle
    if len(sizes) > 1:
        raise ValueError(f"Detections: masks of one image must have one size, got {sorted(sizes)}")
    return out
