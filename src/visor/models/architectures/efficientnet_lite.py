"""EfficientNet-Lite in PyTorch.

Lite variants differ from EfficientNet-B*: no squeeze-excitation, ReLU6 instead of
swish, and a fixed-width stem (32) and head (1280). Convolutions use TensorFlow's
"SAME" padding, which pads more on the bottom/right for stride-2 layers, because
the published weights were trained in TensorFlow.

The architecture itself (variants, stage table, block list, padding, checkpoint key mapping)
lives in ``efficientnet_lite_spec.py``, shared with the ONNX builder that needs no PyTorch.

File layout (as in timm): layers, model, builder.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from visor.models.architectures.efficientnet_lite_spec import (
    BASE_STAGES,
    BN_EPS,
    HEAD_CHANNELS,
    STEM_CHANNELS,
    VARIANTS,
    StageArgs,
    block_specs,
    checkpoint_filter,
    round_channels,
    same_padding,
    variant_specs,
)

__all__ = ["BASE_STAGES", "ConvBnAct", "EfficientNetLite", "MBConv", "StageArgs", "build", "checkpoint_filter",
           "round_channels", "same_padding"]
_VARIANTS = VARIANTS

# --------------------------------------------------------------------------- layers


class ConvBnAct(nn.Module):
    """Conv2d with TF-SAME padding, BatchNorm and an optional ReLU6."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        bn_eps: float = BN_EPS,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with an odd kernel is symmetric, so Conv2d can pad by itself.
        pad = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            top, bottom = same_padding(int(x.shape[-2]), self.kernel, self.stride)
            left, right = same_padding(int(x.shape[-1]), self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        mid = in_ch * expand_ratio
        self.expand = ConvBnAct(in_ch, mid) if expand_ratio != 1 else nn.Identity()
        self.dw = ConvBnAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBnAct(mid, out_ch, act=False)
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path
        self.stride, self.out_ch = stride, out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        if not self.has_skip:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.rand((y.shape[0], 1, 1, 1), dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return x + y


# --------------------------------------------------------------------------- model


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier.

    Interface shared by visor architectures: ``forward_features`` (feature map),
    ``forward_head`` (pooled features or logits) and ``reset_classifier``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        depth: float = 1.0,
        dropout: float = 0.2,
        drop_path: float = 0.2,
        stem_ch: int = STEM_CHANNELS,
        head_ch: int = HEAD_CHANNELS,
    ) -> None:
        super().__init__()
        self.num_features = head_ch
        self.dropout_rate = dropout
        self.stem = ConvBnAct(3, stem_ch, 3, 2)
        blocks = [MBConv(b.in_ch, b.out_ch, b.kernel, b.stride, b.expand_ratio, b.drop_path)
                  for b in block_specs(width, depth, drop_path, stem_ch)]
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBnAct(round_channels(BASE_STAGES[-1].out_ch, width), head_ch)
        self.dropout = nn.Dropout(dropout)
        self.classifier: nn.Module = nn.Linear(head_ch, num_classes) if num_classes else nn.Identity()

    def pyramid_info(self, min_stride: int = 8) -> tuple[list[int], list[int], list[int]]:
        """(block indices, channels, strides) of the last block at each output stride >= ``min_stride``."""
        stride = self.stem.stride
        last: dict[int, tuple[int, int]] = {}
        for i, block in enumerate(self.blocks):
            stride *= block.stride
            last[stride] = (i, block.out_ch)
        levels = sorted(s for s in last if s >= min_stride)
        return [last[s][0] for s in levels], [last[s][1] for s in levels], levels

    def forward_levels(self, x: torch.Tensor, block_indices: list[int]) -> list[torch.Tensor]:
        """Outputs of the given blocks (for feature pyramids)."""
        outs, wanted = [], set(block_indices)
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                outs.append(x)
            if i >= block_indices[-1]:
                break
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --------------------------------------------------------------------------- builder


def build(variant: str, *, num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    """Build an EfficientNet-Lite variant (random weights)."""
    width, depth, dropout = variant_specs(variant)
    kwargs.setdefault("dropout", dropout)
    return EfficientNetLite(num_classes=num_classes, width=width, depth=depth, **kwargs)
