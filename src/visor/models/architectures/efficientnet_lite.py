"""EfficientNet-Lite in PyTorch.

Lite variants differ from EfficientNet-B*: no squeeze-excitation, ReLU6 instead of
swish, and a fixed-width stem (32) and head (1280). Convolutions use TensorFlow's
"SAME" padding, which pads more on the bottom/right for stride-2 layers, because
the published weights were trained in TensorFlow.

File layout (as in timm): layers, model, checkpoint filter, builder, configs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------- layers


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


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
        bn_eps: float = 1e-3,
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


@dataclass(frozen=True)
class StageArgs:
    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    in_ch: int
    out_ch: int


# The EfficientNet-B0 stage table, shared by all Lite variants (before scaling).
BASE_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)


def round_channels(ch: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return ch
    scaled = ch * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


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
        stem_ch: int = 32,
        head_ch: int = 1280,
    ) -> None:
        super().__init__()
        self.num_features = head_ch
        self.dropout_rate = dropout
        self.stem = ConvBnAct(3, stem_ch, 3, 2)
        blocks: list[nn.Module] = []
        stages = list(BASE_STAGES)
        # Lite keeps the first and last stages' depth fixed.
        repeats = [
            s.repeats if i in (0, len(stages) - 1) else math.ceil(s.repeats * depth)
            for i, s in enumerate(stages)
        ]
        total = sum(repeats)
        for i, s in enumerate(stages):
            in_ch = stem_ch if i == 0 else round_channels(s.in_ch, width)
            out_ch = round_channels(s.out_ch, width)
            for r in range(repeats[i]):
                rate = drop_path * len(blocks) / total
                blocks.append(
                    MBConv(
                        in_ch if r == 0 else out_ch,
                        out_ch,
                        s.kernel,
                        s.stride if r == 0 else 1,
                        s.expand_ratio,
                        rate,
                    )
                )
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


# --------------------------------------------------------------------------- checkpoint filter

_LUKEMELAS_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                    "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_LUKEMELAS_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
                  "_bn1": "head.bn", "_fc": "classifier"}


def checkpoint_filter(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a lukemelas-style state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``,
    ...) to this module's names. A state dict already in visor's names passes through."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            idx, layer, param = m.groups()
            if layer not in _LUKEMELAS_BLOCK:
                raise KeyError(f"unexpected block layer in checkpoint: {key}")
            out[f"blocks.{idx}.{_LUKEMELAS_BLOCK[layer]}.{param}"] = value
            continue
        layer, _, param = key.partition(".")
        if layer in _LUKEMELAS_TOP:
            out[f"{_LUKEMELAS_TOP[layer]}.{param}"] = value
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- builder and configs

_VARIANTS = {
    # name: (width, depth, dropout)
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 0.3),
}


def build(variant: str, *, num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    """Build an EfficientNet-Lite variant (random weights)."""
    if variant not in _VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; one of {sorted(_VARIANTS)}")
    width, depth, dropout = _VARIANTS[variant]
    kwargs.setdefault("dropout", dropout)
    return EfficientNetLite(num_classes=num_classes, width=width, depth=depth, **kwargs)
