"""FCOS-style anchor-free detector on an EfficientNet-Lite backbone with a small FPN.

Layout (as in timm): layers, model, checkpoint filter, builder.

Training uses the raw per-level maps (:meth:`FCOS.forward_raw`); inference and export
use :meth:`FCOS.forward`, which decodes to the YOLOv8 ONNX layout ``[B, 4 + nc, N]``
(cx, cy, w, h in input pixels, then per-class scores), so trained visor detectors run
through the same ONNX Runtime decoder as imported YOLO models.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from visor.models.architectures import efficientnet_lite

# --------------------------------------------------------------------------- layers


class ConvGNAct(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, groups: int = 16) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.GroupNorm(groups, out_ch),
            nn.ReLU(inplace=True),
        )


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, nearest upsampling, 3x3 smoothing."""

    def __init__(self, in_channels: list[int], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        return [s(x) for s, x in zip(self.smooth, laterals, strict=True)]


class Head(nn.Module):
    """Shared FCOS head: classification, box distances (l, t, r, b) and centerness."""

    def __init__(self, width: int, num_classes: int, num_levels: int, depth: int = 2) -> None:
        super().__init__()
        self.cls_tower = nn.Sequential(*[ConvGNAct(width, width) for _ in range(depth)])
        self.reg_tower = nn.Sequential(*[ConvGNAct(width, width) for _ in range(depth)])
        self.cls = nn.Conv2d(width, num_classes, 3, padding=1)
        self.reg = nn.Conv2d(width, 4, 3, padding=1)
        self.ctr = nn.Conv2d(width, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        prior = 0.01  # focal-loss initialisation: start by predicting background
        nn.init.constant_(self.cls.bias, -math.log((1 - prior) / prior))
        for conv in (self.cls, self.reg, self.ctr):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(self.reg.bias)
        nn.init.zeros_(self.ctr.bias)

    def forward(self, feats: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        out = []
        for i, f in enumerate(feats):
            c, r = self.cls_tower(f), self.reg_tower(f)
            out.append((self.cls(c), self.reg(r) * self.scales[i], self.ctr(r)))
        return out


# --------------------------------------------------------------------------- model


def level_points(h: int, w: int, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h*w, 2) centres (x, y) in input pixels of one level's cells."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


class FCOS(nn.Module):
    """EfficientNet-Lite backbone (strides 8, 16, 32) + FPN + FCOS head."""

    def __init__(self, num_classes: int, backbone: str = "efficientnet_lite0", width: int = 64,
                 head_depth: int = 2, drop_path: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = efficientnet_lite.build(backbone, num_classes=0, drop_path=drop_path)
        self.backbone.head = nn.Identity()  # the 1x1 1280-channel classifier head is not used for detection
        self.level_blocks, channels, self.strides = self.backbone.pyramid_info(min_stride=8)
        self.fpn = FPN(channels, width)
        self.head = Head(width, num_classes, len(self.strides), head_depth)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.fpn(self.backbone.forward_levels(x, self.level_blocks))

    def forward_raw(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level: class logits (B, nc, H, W), box distances (B, 4, H, W) before exp, centerness logits."""
        return self.head(self.features(x))

    def decode(self, raw, image_hw: tuple[int, int]) -> torch.Tensor:
        """Raw maps to ``[B, 4 + nc, N]``: cx, cy, w, h (input pixels) and sqrt(cls * centerness) scores."""
        boxes, scores = [], []
        for (cls, reg, ctr), stride in zip(raw, self.strides, strict=True):
            h, w = cls.shape[-2:]
            pts = level_points(h, w, stride, cls.device, cls.dtype)
            dist = torch.exp(reg.clamp(max=12.0)).flatten(2) * stride  # (B, 4, HW)
            x1 = pts[:, 0] - dist[:, 0]
            y1 = pts[:, 1] - dist[:, 1]
            x2 = pts[:, 0] + dist[:, 2]
            y2 = pts[:, 1] + dist[:, 3]
            boxes.append(torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=1))
            scores.append(torch.sqrt(torch.sigmoid(cls.flatten(2)) * torch.sigmoid(ctr.flatten(2))))
        return torch.cat([torch.cat(boxes, 2), torch.cat(scores, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.forward_raw(x), tuple(x.shape[-2:]))


# --------------------------------------------------------------------------- checkpoint filter


def checkpoint_filter(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """visor FCOS checkpoints are stored in this module's own names."""
    return dict(state_dict)


def backbone_filter(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ImageNet EfficientNet-Lite state dict as ``backbone.*`` keys, without its classifier and 1x1 head."""
    mapped = efficientnet_lite.checkpoint_filter(state_dict)
    return {f"backbone.{k}": v for k, v in mapped.items() if not k.startswith(("classifier.", "head."))}


# --------------------------------------------------------------------------- builder

_VARIANTS = {"fcos_efficientnet_lite0": "efficientnet_lite0"}


def build(variant: str, *, num_classes: int, **kwargs) -> FCOS:
    if variant not in _VARIANTS:
        raise ValueError(f"unknown FCOS variant {variant!r}; one of {sorted(_VARIANTS)}")
    return FCOS(num_classes, backbone=_VARIANTS[variant], **kwargs)
