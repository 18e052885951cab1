"""Tiny ONNX models built in code, so CLI and error tests run in milliseconds without model files.

All but no_input_shape() are checker-valid, ir_version 8, opset 13 unless stated, 16x16 inputs, seeded weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Dims = Sequence[int | str] | None
INPUT = "input"
SIZE = 16


class _Builder:
    """Collects nodes and initializers; conv weights are He-scaled normals from one seeded RNG."""

    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.rng = np.random.default_rng(seed)

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def conv(self, x: str, out: str, cin: int, cout: int, k: int = 3, weight: float | None = None) -> str:
        shape = (cout, cin, k, k)
        w = (np.full(shape, weight) if weight is not None
             else self.rng.normal(0.0, np.sqrt(2.0 / (cin * k * k)), shape))
        b = self.rng.normal(0.0, 0.1, cout) if weight is None else np.zeros(cout)
        self.inits += [numpy_helper.from_array(w.astype(np.float32), f"{out}.w"),
                       numpy_helper.from_array(b.astype(np.float32), f"{out}.b")]
        return self.op("Conv", [x, f"{out}.w", f"{out}.b"], out, pads=[k // 2] * 4)

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
              opset: int = 13) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "tiny", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        model.producer_name = "featcomp-tests"
        return model


def _input(dims: Dims = (1, 3, SIZE, SIZE), name: str = INPUT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None if dims is None else list(dims))


def two_convs(*, dims: Dims = (1, 3, SIZE, SIZE), opset: int = 13, first_weight: float | None = None,
              seed: int = 0) -> onnx.ModelProto:
    """Conv(8)-Relu-Conv(8)-Relu-Conv(4)-GAP-Flatten -> [1, 4]: two sites (the Relu outputs).

    ``first_weight`` fills the first conv's weights with one value (1e38 makes activations overflow).
    """
    b = _Builder(seed)
    x = b.op("Relu", [b.conv(INPUT, "conv1", 3, 8, weight=first_weight)], "relu1")
    x = b.op("Relu", [b.conv(x, "conv2", 8, 8)], "relu2")
    x = b.op("GlobalAveragePool", [b.conv(x, "conv3", 8, 4, k=1)], "gap")
    b.op("Flatten", [x], "logits")
    batch = dims[0] if dims is not None else "N"
    return b.model([_input(dims)], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])], opset)


def one_conv(seed: int = 0) -> onnx.ModelProto:
    """Conv(8)-Relu -> [1, 8, 16, 16]: one tunable task, for short MetaSchedule runs."""
    b = _Builder(seed)
    b.op("Relu", [b.conv(INPUT, "conv1", 3, 8)], "relu1")
    return b.model([_input()], [helper.make_tensor_value_info("relu1", TensorProto.FLOAT, [1, 8, SIZE, SIZE])])


def residual(seed: int = 1) -> onnx.ModelProto:
    """conv-relu, conv + skip Add, two branches concatenated, maxpool, final 1x1 conv: four sites."""
    b = _Builder(seed)
    r1 = b.op("Relu", [b.conv(INPUT, "conv1", 3, 8)], "relu1")
    added = b.op("Add", [b.conv(r1, "conv2", 8, 8), r1], "add")
    left = b.op("Relu", [b.conv(added, "left", 8, 4, k=1)], "left_relu")
    right = b.op("Relu", [b.conv(added, "right", 8, 4)], "right_relu")
    cat = b.op("Concat", [left, right], "concat", axis=1)
    pooled = b.op("MaxPool", [cat], "pool", kernel_shape=[2, 2], strides=[2, 2])
    x = b.op("GlobalAveragePool", [b.conv(pooled, "head", 8, 4, k=1)], "gap")
    b.op("Flatten", [x], "logits")
    return b.model([_input()], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])


def no_conv() -> onnx.ModelProto:
    """Relu and Add only: nothing for featcomp to compress."""
    b = _Builder()
    b.op("Add", [b.op("Relu", [INPUT], "relu"), INPUT], "out")
    return b.model([_input()], [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, SIZE, SIZE])])


def dynamic_input() -> onnx.ModelProto:
    """two_convs with input dims ['N', 3, 'H', 'W']: the spatial size is not fixed."""
    return two_convs(dims=("N", 3, "H", "W"))


def no_input_shape() -> onnx.ModelProto:
    """two_convs whose input carries no shape at all (the only builder the ONNX checker rejects)."""
    return two_convs(dims=None)


def old_opset(opset: int = 6) -> onnx.ModelProto:
    """two_convs declared at an old opset (6 is below featcomp's minimum, 9 gets upgraded)."""
    return two_convs(opset=opset)


def two_inputs() -> onnx.ModelProto:
    """Two image inputs added together before the convs: featcomp needs exactly one input."""
    b = _Builder()
    x = b.op("Relu", [b.conv(b.op("Add", [INPUT, "other"], "sum"), "conv1", 3, 8)], "relu1")
    x = b.op("GlobalAveragePool", [b.conv(x, "conv2", 8, 4, k=1)], "gap")
    b.op("Flatten", [x], "logits")
    return b.model([_input(), _input(name="other")],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])


def save(model: onnx.ModelProto, path: object) -> str:
    """Write ``model`` to ``path``; returns the path as a string for argv lists."""
    onnx.save_model(model, str(path))
    return str(path)


def linear_bottleneck(seed: int = 3) -> onnx.ModelProto:
    """Conv(16)-Relu, then a linear 1x1 Conv(16) of rank 2 (a foldable site: Conv in, Conv out), then
    Conv(32)-Relu-Conv(4)-GAP-Flatten -> [1, 4]."""
    b = _Builder(seed)
    x = b.op("Relu", [b.conv(INPUT, "conv1", 3, 16)], "relu1")
    low = b.rng.normal(size=(16, 2)) @ b.rng.normal(size=(2, 16)) / 4.0
    b.inits += [numpy_helper.from_array(low.reshape(16, 16, 1, 1).astype(np.float32), "proj.w"),
                numpy_helper.from_array(b.rng.normal(0.0, 0.1, 16).astype(np.float32), "proj.b")]
    x = b.op("Conv", [x, "proj.w", "proj.b"], "proj")
    x = b.op("Relu", [b.conv(x, "conv3", 16, 32)], "relu3")
    x = b.op("GlobalAveragePool", [b.conv(x, "conv4", 32, 4, k=1)], "gap")
    b.op("Flatten", [x], "logits")
    return b.model([_input()], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])


def single_output(seed: int = 4, constant: bool = False) -> onnx.ModelProto:
    """Conv(8)-Relu-Conv(8)-Relu-Conv(1)-GAP-Flatten -> [1, 1]: one score per sample (two sites).

    ``constant`` zeroes the last conv's weights, so the output never changes (centred power 0 either way).
    """
    b = _Builder(seed)
    x = b.op("Relu", [b.conv(INPUT, "conv1", 3, 8)], "relu1")
    x = b.op("Relu", [b.conv(x, "conv2", 8, 8)], "relu2")
    x = b.op("GlobalAveragePool", [b.conv(x, "conv3", 8, 1, k=1, weight=0.0 if constant else None)], "gap")
    b.op("Flatten", [x], "logits")
    return b.model([_input()], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1])])


def initializers_as_inputs() -> onnx.ModelProto:
    """two_convs as an IR-3 era exporter writes it: IR 3, opset 9, every initializer also a graph input,
    listed before the image input."""
    model = two_convs(opset=9)
    model.ir_version = 3
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer]
    image = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend([*weights, *image])
    return model


def lrn_block(seed: int = 5) -> onnx.ModelProto:
    """AlexNet's first stage in small: Conv(8)-Relu-LRN-MaxPool-Conv(8)-Relu-GAP-Flatten -> [1, 8]."""
    b = _Builder(seed)
    x = b.op("Relu", [b.conv(INPUT, "conv1", 3, 8)], "relu1")
    x = b.op("LRN", [x], "norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = b.op("MaxPool", [x], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    x = b.op("Relu", [b.conv(x, "conv2", 8, 8)], "relu2")
    b.op("Flatten", [b.op("GlobalAveragePool", [x], "gap")], "logits")
    return b.model([_input()], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8])])


def conv1d(seed: int = 6) -> onnx.ModelProto:
    """Conv1d(8)-Relu-Conv1d(4)-GlobalAveragePool-Flatten on a [1, 3, 16] signal: no 2-D feature maps."""
    b = _Builder(seed)
    rng = b.rng
    b.inits += [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3)).astype(np.float32), "c1.w"),
                numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 3)).astype(np.float32), "c2.w")]
    x = b.op("Relu", [b.op("Conv", [INPUT, "c1.w"], "conv1", pads=[1, 1])], "relu1")
    x = b.op("GlobalAveragePool", [b.op("Conv", [x, "c2.w"], "conv2", pads=[1, 1])], "gap")
    b.op("Flatten", [x], "logits")
    return b.model([_input((1, 3, SIZE))], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])


def mobile_block() -> onnx.ModelProto:
    """MobileNetV2-like layers with maps big enough for threads: 3x3 conv (stride 2, SAME_UPPER),
    1x1 expand + clip, depthwise 3x3 stride 1 and 2 (pads 1: an even padded width), 1x1 project, and a
    1x1 conv whose 7 output channels fit no vector (left to the generic schedule)."""
    rng = np.random.default_rng(5)
    inits, nodes = [], []

    def conv(x: str, out: str, cin: int, cout: int, k: int, clip: bool = True, **attrs: object) -> str:
        group = attrs.get("group", 1)
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, (cout, cin // group, k, k)).astype(np.float32), f"{out}.w"))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), f"{out}.b"))
        nodes.append(helper.make_node("Conv", [x, f"{out}.w", f"{out}.b"], [out + ("c" if clip else "")], **attrs))
        if clip:
            nodes.append(helper.make_node("Clip", [out + "c", "lo", "hi"], [out]))
        return out

    inits += [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    x = conv("input", "stem", 3, 16, 3, strides=[2, 2], auto_pad="SAME_UPPER")
    x = conv(x, "expand", 16, 32, 1)
    x = conv(x, "dw1", 32, 32, 3, group=32, pads=[1, 1, 1, 1])
    x = conv(x, "dw2", 32, 32, 3, group=32, strides=[2, 2], pads=[1, 1, 1, 1])
    x = conv(x, "project", 32, 24, 1, clip=False)
    conv(x, "out", 24, 7, 1, clip=False)
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 128, 128])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 7, 32, 32])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def projection_block(size: int = 14) -> onnx.ModelProto:
    """A 1x1 projection (96 -> 16 channels; on a 14x14 map 3136 outputs but 0.3 M multiply-adds, the
    input the biggest operand) and a 1x1 expansion back to 96 (+ clip): the two band orders. 56x56
    rows split into pixel vectors (the other dense tile)."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (16, 96, 1, 1)).astype(np.float32), "p.w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "p.b"),
             numpy_helper.from_array(rng.normal(0, 0.3, (96, 16, 1, 1)).astype(np.float32), "e.w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 96).astype(np.float32), "e.b"),
             numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    nodes = [helper.make_node("Conv", ["input", "p.w", "p.b"], ["p"]),
             helper.make_node("Conv", ["p", "e.w", "e.b"], ["ec"]),
             helper.make_node("Clip", ["ec", "lo", "hi"], ["out"])]
    graph = helper.make_graph(nodes, "projection", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 96, size, size])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 96, size, size])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def same_width_conv(size: int = 56, channels: int = 16) -> onnx.ModelProto:
    """One padded 3x3 conv C -> C: its padded input is its biggest operand, yet it is no projection."""
    b = _Builder(8)
    b.conv(INPUT, "out", channels, channels)
    return b.model([_input((1, channels, size, size))],
                   [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, channels, size, size])])
