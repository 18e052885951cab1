"""EfficientNet-Lite0 as an ONNX graph, built from a PyTorch state dict with onnx.helper.

Why: it gives featcomp a real pretrained ImageNet model that needs no torch and no network: the
weights come from a registry package, the graph from the table below. BatchNorm is folded into each
conv, so the graph is only Conv, Clip (ReLU6), Add, GlobalAveragePool, Flatten and Gemm.

The weights were trained in TensorFlow with "SAME" padding: a stride-2 conv pads one pixel less at
the top/left than at the bottom/right. Symmetric padding runs, but shifts every strided feature map
by a pixel and costs accuracy, so the pads below are computed exactly as TensorFlow does.
"""

from __future__ import annotations

import math

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from featcomp.errors import FeatcompError

__all__ = ["build_efficientnet_lite0"]

IMAGE_SIZE = 224
BN_EPS = 1e-3  # batch_norm_epsilon of the TensorFlow original
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")

# One row per stage: (repeats, kernel, first stride, expand ratio, output channels). Lite0 keeps the
# EfficientNet-B0 stages, drops squeeze-excite, uses ReLU6 and a fixed 32-channel stem / 1280 head.
_LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TensorFlow "SAME": pads [top, left, bottom, right] (odd pixel at the end), output size."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2], out


class _Builder:
    """Collects nodes and folded initializers; checks each weight it takes against its expected shape."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state
        self.unused = {k for k in state if not k.endswith("num_batches_tracked")}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = [
            numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"),
            numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"),
        ]
        self.size = IMAGE_SIZE  # spatial size of the current feature map, for the SAME pads

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self.state.get(key)
        if value is None or value.shape != shape:
            found = "missing" if value is None else f"{value.shape}"
            raise FeatcompError(f"not an EfficientNet-Lite0 state dict: {key!r} is {found}, expected {shape}")
        self.unused.discard(key)
        return value.astype(np.float64)

    def add_init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Append a node whose single output tensor has the node's name."""
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv_bn(self, name: str, x: str, conv: str, bn: str, shape: tuple[int, ...],
                stride: int = 1, groups: int = 1, relu6: bool = True) -> str:
        """Conv `conv` with BatchNorm `bn` folded into its weight and bias, then ReLU6 (as Clip)."""
        w = self.take(f"{conv}.weight", shape)
        gamma, beta, mean, var = (self.take(f"{bn}.{p}", shape[:1]) for p in _BN_PARAMS)
        scale = gamma / np.sqrt(var + BN_EPS)
        weight = self.add_init(f"{name}.weight", w * scale[:, None, None, None])
        bias = self.add_init(f"{name}.bias", beta - mean * scale)
        k = shape[-1]
        pads, self.size = _same_pads(self.size, k, stride)
        y = self.node("Conv", [x, weight, bias], name, kernel_shape=[k, k], strides=[stride, stride],
                      pads=pads, group=groups)
        return self.node("Clip", [y, "relu6.min", "relu6.max"], f"{name}.relu6") if relu6 else y


def build_efficientnet_lite0(state: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The ONNX model (IR 8, opset 13): `input` [N,3,224,224] float32 -> `logits` [N,1000]."""
    b = _Builder(state)
    x = b.conv_bn("conv_stem", "input", "_conv_stem", "_bn0", (32, 3, 3, 3), stride=2)
    cin, index = 32, 0
    for s, (repeats, k, first_stride, expand, cout) in enumerate(_LITE0_STAGES):
        for r in range(repeats):
            name, key, mid = f"blocks.{s}.{r}", f"_blocks.{index}", cin * expand
            stride = first_stride if r == 0 else 1
            y = x
            if expand != 1:
                y = b.conv_bn(f"{name}.conv_pw", y, f"{key}._expand_conv", f"{key}._bn0", (mid, cin, 1, 1))
            y = b.conv_bn(f"{name}.conv_dw", y, f"{key}._depthwise_conv", f"{key}._bn1", (mid, 1, k, k),
                          stride=stride, groups=mid)
            y = b.conv_bn(f"{name}.conv_pwl", y, f"{key}._project_conv", f"{key}._bn2", (cout, mid, 1, 1),
                          relu6=False)
            x = b.node("Add", [y, x], f"{name}.add") if stride == 1 and cin == cout else y
            cin, index = cout, index + 1
    x = b.conv_bn("conv_head", x, "_conv_head", "_bn1", (1280, cin, 1, 1))
    x = b.node("GlobalAveragePool", [x], "global_pool")
    x = b.node("Flatten", [x], "flatten", axis=1)
    fc_weight = b.add_init("classifier.weight", b.take("_fc.weight", (1000, 1280)))
    fc_bias = b.add_init("classifier.bias", b.take("_fc.bias", (1000,)))
    b.nodes.append(helper.make_node("Gemm", [x, fc_weight, fc_bias], ["logits"], name="classifier", transB=1))
    if b.unused:
        raise FeatcompError(f"not an EfficientNet-Lite0 state dict: unexpected {sorted(b.unused)[:3]}")

    graph = helper.make_graph(
        b.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="featcomp")
    model.ir_version = 8
    model.doc_string = "EfficientNet-Lite0, ImageNet-1k logits. Preprocess: RGB, resize 256, crop 224, (x-127)/128"
    return model
