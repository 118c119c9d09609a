"""EfficientNet-Lite as an ONNX graph, built from a state dict with numpy and ``onnx.helper``: no PyTorch.

The graph is what ``torch.onnx.export`` makes of ``efficientnet_lite.EfficientNetLite`` in eval
mode, from the same description (``efficientnet_lite_spec``): each Conv + BatchNorm is one
``Conv`` with the BatchNorm folded into its weights and bias, ReLU6 is ``Clip(0, 6)``, the
TensorFlow "SAME" padding of stride-2 layers is the ``Conv``'s own asymmetric ``pads`` (the
torch export has a separate ``Pad`` node; the result is the same), global pooling is
``ReduceMean`` over H and W, and the classifier a ``Gemm``. Input ``images`` [batch, 3, H, W]
float32 and output ``logits`` [batch, num_classes], as the torch export names them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from visor.errors import WeightsError
from visor.models.architectures.efficientnet_lite_spec import (
    BASE_STAGES,
    BN_EPS,
    HEAD_CHANNELS,
    STEM_CHANNELS,
    block_specs,
    round_channels,
    same_padding,
    variant_specs,
)

OPSET = 17
#: ONNX IR version 8 (what torch 2.x writes at opset 17): readable by every ONNX Runtime visor supports.
IR_VERSION = 8


class _Graph:
    """Collects nodes and initializers; checks each weight's shape against the description."""

    def __init__(self, state: Mapping[str, np.ndarray]) -> None:
        self.state = state
        self.used: set[str] = set()
        self.nodes: list = []
        self.initializers: list = []
        self._clip_bounds: tuple[str, str] | None = None

    def param(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self.state:
            raise WeightsError(f"the weights lack {key}")
        value = np.asarray(self.state[key])
        if tuple(value.shape) != shape:
            raise WeightsError(f"{key} has shape {tuple(value.shape)}, the architecture needs {shape}")
        self.used.add(key)
        return value.astype(np.float64)

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        from onnx import helper

        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def relu6(self, x: str, name: str) -> str:
        if self._clip_bounds is None:
            self._clip_bounds = (self.const("relu6_min", np.array(0.0, np.float32)),
                                 self.const("relu6_max", np.array(6.0, np.float32)))
        return self.node("Clip", [x, *self._clip_bounds], f"{name}/act/Clip")

    def conv_bn(self, x: str, prefix: str, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int,
                act: bool, hw: tuple[int, int]) -> tuple[str, tuple[int, int]]:
        """Conv (no bias) + BatchNorm (+ ReLU6), folded into one Conv; returns the output and its H, W."""
        w = self.param(f"{prefix}.conv.weight", (out_ch, in_ch // groups, kernel, kernel))
        gamma = self.param(f"{prefix}.bn.weight", (out_ch,))
        beta = self.param(f"{prefix}.bn.bias", (out_ch,))
        mean = self.param(f"{prefix}.bn.running_mean", (out_ch,))
        var = self.param(f"{prefix}.bn.running_var", (out_ch,))
        if f"{prefix}.bn.num_batches_tracked" in self.state:
            self.used.add(f"{prefix}.bn.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        weight = self.const(f"{prefix}.conv.weight", (w * scale[:, None, None, None]).astype(np.float32))
        bias = self.const(f"{prefix}.conv.bias", (beta - mean * scale).astype(np.float32))
        h, w_ = hw
        if stride == 1:  # odd kernels: symmetric, as nn.Conv2d(padding=k // 2)
            pads = [kernel // 2] * 4
            out_hw = hw
        else:  # TensorFlow SAME: more at the bottom/right
            top, bottom = same_padding(h, kernel, stride)
            left, right = same_padding(w_, kernel, stride)
            pads = [top, left, bottom, right]
            out_hw = (-(-h // stride), -(-w_ // stride))
        y = self.node("Conv", [x, weight, bias], f"/{prefix}/conv/Conv", kernel_shape=[kernel, kernel],
                      strides=[stride, stride], pads=pads, group=groups, dilations=[1, 1])
        return (self.relu6(y, f"/{prefix}") if act else y), out_hw


def build_onnx(variant: str, state: Mapping[str, np.ndarray], *, num_classes: int,
               input_size: tuple[int, int], opset: int = OPSET):
    """The ONNX model (``onnx.ModelProto``) of ``variant`` with the weights ``state`` (visor's key
    names: pass a lukemelas-style dict through ``checkpoint_filter`` first). Raises
    :class:`~visor.errors.WeightsError` when a weight is missing, has the wrong shape, or is left over."""
    from onnx import TensorProto, checker, helper

    width, depth, _ = variant_specs(variant)
    g = _Graph(state)
    hw = tuple(int(v) for v in input_size)
    x, hw = g.conv_bn("images", "stem", 3, STEM_CHANNELS, 3, 2, 1, True, hw)
    for i, b in enumerate(block_specs(width, depth)):
        p = f"blocks.{i}"
        y = x
        if b.expand_ratio != 1:
            y, _ = g.conv_bn(y, f"{p}.expand", b.in_ch, b.mid_ch, 1, 1, 1, True, hw)
        y, hw_out = g.conv_bn(y, f"{p}.dw", b.mid_ch, b.mid_ch, b.kernel, b.stride, b.mid_ch, True, hw)
        y, _ = g.conv_bn(y, f"{p}.project", b.mid_ch, b.out_ch, 1, 1, 1, False, hw_out)
        x = g.node("Add", [x, y], f"/{p}/Add") if b.has_skip else y
        hw = hw_out
    x, hw = g.conv_bn(x, "head", round_channels(BASE_STAGES[-1].out_ch, width), HEAD_CHANNELS, 1, 1, 1, True, hw)
    pooled = g.node("ReduceMean", [x], "/ReduceMean", axes=[2, 3], keepdims=0)
    weight = g.const("classifier.weight", g.param("classifier.weight", (num_classes, HEAD_CHANNELS)).astype(np.float32))
    bias = g.const("classifier.bias", g.param("classifier.bias", (num_classes,)).astype(np.float32))
    g.nodes.append(helper.make_node("Gemm", [pooled, weight, bias], ["logits"], name="/classifier/Gemm",
                                    alpha=1.0, beta=1.0, transB=1))
    left = sorted(set(state) - g.used)
    if left:
        raise WeightsError(f"weights do not fit {variant}: {len(left)} unexpected key(s), e.g. {left[:3]}")
    h, w = (int(v) for v in input_size)
    graph = helper.make_graph(
        g.nodes, f"{variant}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="visor",
                              ir_version=IR_VERSION)
    checker.check_model(model)
    return model
