"""Semantic segmentation on an EfficientNet-Lite backbone: a light FPN decoder with LR-ASPP's global context.

Layout (as in timm): layers, model, checkpoint filters, builder.

The backbone's levels at strides 4, 8, 16 and 32 are merged top-down (1x1 laterals, bilinear
upsampling, sums); the stride-32 level is gated by a squeeze-style global context (as in LR-ASPP,
Howard et al. 2019) before it enters the pyramid. One 3x3 conv at stride 4 and a 1x1 classifier give
logits, upsampled to the input size, so the exported graph maps ``[B, 3, H, W]`` to ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from visor.models.architectures import efficientnet_lite

# --------------------------------------------------------------------------- layers


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class GlobalContext(nn.Module):
    """LR-ASPP's two branches on the deepest level: a 1x1 conv, scaled by a sigmoid of the pooled input."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch)
        self.gate = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.sigmoid(self.gate(x.mean(dim=(2, 3), keepdim=True)))


class FPNDecoder(nn.Module):
    def __init__(self, in_channels: list[int], width: int, num_classes: int) -> None:
        super().__init__()
        self.context = GlobalContext(in_channels[-1], width)
        self.lateral = nn.ModuleList(ConvBNReLU(c, width) for c in in_channels[:-1])
        self.fuse = ConvBNReLU(width, width, 3)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.context(feats[-1])
        for lateral, f in zip(reversed(self.lateral), reversed(feats[:-1]), strict=True):
            x = lateral(f) + F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(x))


# --------------------------------------------------------------------------- model


class SegFPN(nn.Module):
    """EfficientNet-Lite backbone (strides 4, 8, 16, 32) + FPN decoder; logits at the input size."""

    def __init__(self, num_classes: int, backbone: str = "efficientnet_lite0", width: int = 96,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = efficientnet_lite.build(backbone, num_classes=0, drop_path=drop_path)
        self.backbone.head = nn.Identity()  # the 1x1 1280-channel classifier head is not used
        self.level_blocks, channels, self.strides = self.backbone.pyramid_info(min_stride=4)
        self.decoder = FPNDecoder(channels, width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(self.backbone.forward_levels(x, self.level_blocks))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- checkpoint filters


def checkpoint_filter(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """visor segmentation checkpoints are stored in this module's own names."""
    return dict(state_dict)


def backbone_filter(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ImageNet EfficientNet-Lite state dict as ``backbone.*`` keys, without its classifier and 1x1 head."""
    mapped = efficientnet_lite.checkpoint_filter(state_dict)
    return {f"backbone.{k}": v for k, v in mapped.items() if not k.startswith(("classifier.", "head."))}


# --------------------------------------------------------------------------- builder

_VARIANTS = {"segfpn_efficientnet_lite0": "efficientnet_lite0"}


def build(variant: str, *, num_classes: int, **kwargs) -> SegFPN:
    if variant not in _VARIANTS:
        raise ValueError(f"unknown segmentation variant {variant!r}; one of {sorted(_VARIANTS)}")
    return SegFPN(num_classes, backbone=_VARIANTS[variant], **kwargs)
