"""Box IoU and greedy non-maximum suppression, in numpy (or torch, for torch tensors).

Boxes are ``(N, 4)`` ``x1, y1, x2, y2``. Results are deterministic: boxes are visited by
descending score, ties broken by the lower index, and kept indices come back in that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas of ``(N, 4)`` boxes; inverted boxes have area 0."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(N, M)`` of ``(N, 4)`` and ``(M, 4)`` boxes (0 where both are empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


#: Boxes whose IoUs with every later box are computed together (256 x N float64 at a time).
_BLOCK = 256


def _order(scores: np.ndarray) -> np.ndarray:
    # Stable sort of the negated scores: descending, ties by index.
    return np.argsort(-scores, kind="stable")


def nms(xyxy: Any, scores: Any, iou_threshold: float) -> Any:
    """Indices of the boxes greedy NMS keeps, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box is greater than
    ``iou_threshold``. Torch tensors in give a torch ``int64`` tensor out (same device).
    """
    if _is_torch(xyxy):
        return _nms_torch(xyxy, scores, iou_threshold)
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    order = _order(scores)
    boxes = boxes[order]
    areas = box_area(boxes)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    n = len(boxes)
    alive = np.ones(n, bool)
    keep: list[int] = []
    # Greedy in score order. The IoUs of a block of still-alive boxes with every later box are computed at
    # once (the same float64 operations as box_iou), leaving one Python step per kept box: 1000 candidates
    # 35 -> 12 ms on this machine's Xeon.
    for start in range(0, n, _BLOCK):
        r = np.flatnonzero(alive[start:start + _BLOCK]) + start
        if not r.size:
            continue
        w = np.minimum(x2[r, None], x2[None, start:]) - np.maximum(x1[r, None], x1[None, start:])
        h = np.minimum(y2[r, None], y2[None, start:]) - np.maximum(y1[r, None], y1[None, start:])
        inter = np.maximum(w, 0, out=w) * np.maximum(h, 0, out=h)
        union = areas[r, None] + areas[None, start:] - inter
        apart = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0) <= iou_threshold
        for k, i in enumerate(r.tolist()):
            if alive[i]:
                keep.append(i)
                alive[i + 1:] &= apart[k, i + 1 - start:]
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(xyxy: Any, scores: Any, class_ids: Any, iou_threshold: float) -> Any:
    """Class-aware NMS: boxes only suppress boxes of their own class.

    Returns kept indices ordered by descending score (ties by index), like :func:`nms`.
    """
    if _is_torch(xyxy):
        import torch

        if xyxy.numel() == 0:
            return torch.zeros(0, dtype=torch.int64, device=xyxy.device)
        offset = class_ids.to(xyxy.dtype)[:, None] * (xyxy.abs().max() * 2 + 1)
        return _nms_torch(xyxy + offset, scores, iou_threshold)
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1)
    if len(class_ids) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(class_ids)} class ids")
    if not len(boxes):
        return np.zeros(0, np.int64)
    # Shift each class to its own region of the plane so boxes of different classes never overlap.
    offset = class_ids.astype(np.float64)[:, None] * (np.abs(boxes).max() * 2 + 1)
    return nms(boxes + offset, scores, iou_threshold)


def _nms_torch(xyxy: Any, scores: Any, iou_threshold: float) -> Any:
    import torch

    boxes = xyxy.reshape(-1, 4).double()
    scores = scores.reshape(-1).double()
    order = torch.sort(-scores, stable=True).indices
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[rest, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        union = areas[i] + areas[rest] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
        order = rest[iou <= iou_threshold]
    if not keep:
        return torch.zeros(0, dtype=torch.int64, device=xyxy.device)
    return torch.stack(keep).to(torch.int64)
