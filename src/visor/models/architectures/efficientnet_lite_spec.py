"""EfficientNet-Lite, described without PyTorch: variants, stage table, block list, padding and
checkpoint key mapping.

Both the PyTorch model (``efficientnet_lite.py``, for training) and the ONNX graph builder
(``efficientnet_lite_onnx.py``, for inference without PyTorch) are built from this one
description, so they cannot drift apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
#: TensorFlow's BatchNorm epsilon, which the published weights were trained with.
BN_EPS = 1e-3

VARIANTS: dict[str, tuple[float, float, float]] = {
    # name: (width, depth, dropout)
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 0.3),
}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


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


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual (MBConv) block: 1x1 expand (unless ``expand_ratio`` is 1), kxk
    depthwise with ``stride``, 1x1 project; a skip connection when shapes allow."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    expand_ratio: int
    drop_path: float

    @property
    def mid_ch(self) -> int:
        return self.in_ch * self.expand_ratio

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch


def block_specs(width: float, depth: float, drop_path: float = 0.0,
                stem_ch: int = STEM_CHANNELS) -> list[BlockSpec]:
    """The blocks of a Lite network in order (Lite keeps the first and last stages' depth fixed)."""
    stages = list(BASE_STAGES)
    repeats = [
        s.repeats if i in (0, len(stages) - 1) else math.ceil(s.repeats * depth) for i, s in enumerate(stages)
    ]
    total = sum(repeats)
    blocks: list[BlockSpec] = []
    for i, s in enumerate(stages):
        in_ch = stem_ch if i == 0 else round_channels(s.in_ch, width)
        out_ch = round_channels(s.out_ch, width)
        for r in range(repeats[i]):
            rate = drop_path * len(blocks) / total
            blocks.append(BlockSpec(in_ch if r == 0 else out_ch, out_ch, s.kernel, s.stride if r == 0 else 1,
                                    s.expand_ratio, rate))
    return blocks


def variant_specs(variant: str) -> tuple[float, float, float]:
    """(width, depth, dropout) of a variant; ``ValueError`` for an unknown one."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; one of {sorted(VARIANTS)}")
    return VARIANTS[variant]


# --------------------------------------------------------------------------- checkpoint filter

_LUKEMELAS_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                    "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_LUKEMELAS_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
                  "_bn1": "head.bn", "_fc": "classifier"}


def checkpoint_filter(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Map a lukemelas-style state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``,
    ...) to visor's names. A state dict already in visor's names passes through. Works on
    torch tensors and numpy arrays alike."""
    out: dict[str, T] = {}
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
