"""FCOS training targets and losses (focal classification, GIoU boxes, centerness)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from visor.models.architectures.fcos import level_points

#: Object size (max of l, t, r, b in input pixels) each pyramid level is responsible for.
SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, float("inf")))


def flatten_raw(raw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-level maps to (B, N, nc) class logits, (B, N, 4) distances (log-space), (B, N) centerness logits."""
    cls = torch.cat([c.flatten(2) for c, _, _ in raw], 2).transpose(1, 2)
    reg = torch.cat([r.flatten(2) for _, r, _ in raw], 2).transpose(1, 2)
    ctr = torch.cat([t.flatten(2) for _, _, t in raw], 2)[:, 0]
    return cls, reg, ctr


def points_and_strides(raw, strides: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 2) point centres, (N,) strides, (N, 2) size ranges for all levels, in the order of flatten_raw."""
    pts, st, rng = [], [], []
    for (cls, _, _), stride, size_range in zip(raw, strides, SIZE_RANGES, strict=False):
        h, w = cls.shape[-2:]
        p = level_points(h, w, stride, cls.device)
        pts.append(p)
        st.append(torch.full((len(p),), float(stride), device=cls.device))
        rng.append(torch.tensor(size_range, device=cls.device).expand(len(p), 2))
    return torch.cat(pts), torch.cat(st), torch.cat(rng)


def assign(points: torch.Tensor, strides: torch.Tensor, ranges: torch.Tensor, boxes: torch.Tensor,
           labels: torch.Tensor, num_classes: int, radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """FCOS assignment with centre sampling for one image.

    Returns (N,) class targets (``num_classes`` = background) and (N, 4) l, t, r, b distance targets.
    A point is positive for a box when it lies within ``radius`` strides of the box centre and inside
    the box, and the box's size suits the point's level; ties go to the smallest box.
    """
    n = len(points)
    if len(boxes) == 0:
        return torch.full((n,), num_classes, dtype=torch.long, device=points.device), points.new_zeros((n, 4))
    px, py = points[:, 0:1], points[:, 1:2]
    ltrb = torch.stack([px - boxes[:, 0], py - boxes[:, 1], boxes[:, 2] - px, boxes[:, 3] - py], dim=2)  # (N, M, 4)
    inside = ltrb.min(dim=2).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = strides[:, None] * radius
    near = ((px - cx).abs() < r) & ((py - cy).abs() < r)
    size = ltrb.max(dim=2).values
    fits = (size >= ranges[:, 0:1]) & (size <= ranges[:, 1:2])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(n, -1).clone()
    area[~(inside & near & fits)] = float("inf")
    best_area, best = area.min(dim=1)
    cls_t = labels[best].clone()
    cls_t[torch.isinf(best_area)] = num_classes
    reg_t = ltrb[torch.arange(n, device=points.device), best]
    return cls_t, reg_t


def centerness(ltrb: torch.Tensor) -> torch.Tensor:
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    return torch.sqrt((lr.min(1).values / lr.max(1).values).clamp(min=0) *
                      (tb.min(1).values / tb.max(1).values).clamp(min=0))


def giou_loss_ltrb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU for boxes given as distances from the same point."""
    pa = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    ta = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    iw = torch.min(pred[:, 0], target[:, 0]) + torch.min(pred[:, 2], target[:, 2])
    ih = torch.min(pred[:, 1], target[:, 1]) + torch.min(pred[:, 3], target[:, 3])
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    union = pa + ta - inter
    ew = torch.max(pred[:, 0], target[:, 0]) + torch.max(pred[:, 2], target[:, 2])
    eh = torch.max(pred[:, 1], target[:, 1]) + torch.max(pred[:, 3], target[:, 3])
    enclose = ew * eh + 1e-7
    giou = inter / union.clamp(min=1e-7) - (enclose - union) / enclose
    return 1 - giou


def fcos_loss(raw, strides: list[int], targets: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
              *, focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> dict[str, torch.Tensor]:
    """Total and component losses for a batch. ``targets``: per image (boxes xyxy (M, 4), labels (M,))."""
    cls, reg, ctr = flatten_raw(raw)
    points, point_strides, ranges = points_and_strides(raw, strides)
    cls_t, reg_t = zip(*(assign(points, point_strides, ranges, b, lab, num_classes) for b, lab in targets),
                       strict=True)
    cls_t, reg_t = torch.stack(cls_t), torch.stack(reg_t)  # (B, N), (B, N, 4)
    pos = cls_t < num_classes
    num_pos = max(float(pos.sum()), 1.0)

    onehot = F.one_hot(cls_t, num_classes + 1)[..., :num_classes].to(cls.dtype)
    cls_loss = _sigmoid_focal(cls, onehot, focal_alpha, focal_gamma).sum() / num_pos

    if pos.any():
        stride_b = point_strides[None].expand_as(cls_t)[pos]
        pred_d = torch.exp(reg[pos].clamp(max=12.0)) * stride_b[:, None]
        tgt_d = reg_t[pos]
        ctr_t = centerness(tgt_d)
        box_loss = (giou_loss_ltrb(pred_d, tgt_d) * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
        ctr_loss = F.binary_cross_entropy_with_logits(ctr[pos], ctr_t, reduction="sum") / num_pos
    else:
        box_loss = reg.sum() * 0.0
        ctr_loss = ctr.sum() * 0.0
    total = cls_loss + box_loss + ctr_loss
    return {"loss": total, "cls": cls_loss.detach(), "box": box_loss.detach(), "ctr": ctr_loss.detach()}


def _sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return loss * (alpha * targets + (1 - alpha) * (1 - targets))
