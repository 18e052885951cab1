"""An ONNX classifier as a torch function, so torch's autograd can differentiate through it (``--method e2e``).

Only what the end-to-end table search needs: the ops of the ImageNet classifiers featcomp ships and
tests (EfficientNet-Lite0, MobileNetV2, SqueezeNet 1.1: Conv, Clip, Relu, Add, pooling, Concat, Gemm,
Flatten, Softmax, ...), with weights as constant tensors, evaluated up to one named tensor (the logits).
Why not onnx2torch: it imports torchvision at import time, and PyPI's torchvision needs the multi-GB
CUDA build of torch; the CPU wheel featcomp pins (``featcomp[e2e]``) has no matching torchvision.
An op outside the list is one line naming it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper

from featcomp.errors import FeatcompError

if TYPE_CHECKING:
    import torch

__all__ = ["OPS", "TorchGraph"]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(pads: list[int] | None, n: int) -> tuple[list[int], list[int]]:
    pads = list(pads or [0] * (2 * n))
    return pads[:n], pads[n:]


def _conv(t: Any, F: Any, x: Any, w: Any, b: Any, a: dict[str, Any]) -> Any:
    n = w.dim() - 2
    begin, end = _pads(a.get("pads"), n)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    strides, dilations = a.get("strides", [1] * n), a.get("dilations", [1] * n)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            size, k = x.shape[2 + i], (w.shape[2 + i] - 1) * dilations[i] + 1
            total = max((-(-size // strides[i]) - 1) * strides[i] + k - size, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begin.append(lo)
            end.append(total - lo)
    if begin != end:
        x = F.pad(x, [p for i in reversed(range(n)) for p in (begin[i], end[i])])
        begin = [0] * n
    return F.conv2d(x, w, b, stride=strides, padding=begin, dilation=dilations, groups=a.get("group", 1))


def _pool(F: Any, kind: str, x: Any, a: dict[str, Any]) -> Any:
    k = a["kernel_shape"]
    begin, end = _pads(a.get("pads"), len(k))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise FeatcompError(f"{kind} with auto_pad={auto} is not supported by the e2e graph")
    strides = a.get("strides", [1] * len(k))
    ceil = bool(a.get("ceil_mode", 0))
    include = bool(a.get("count_include_pad", 0))
    if begin != end:  # torch pads symmetrically only: pad by hand, and divide by the real count when asked
        pad = [p for i in reversed(range(len(k))) for p in (begin[i], end[i])]
        if kind == "MaxPool":
            return F.max_pool2d(F.pad(x, pad, value=float("-inf")), k, strides, 0, ceil_mode=ceil)
        sums = F.avg_pool2d(F.pad(x, pad), k, strides, 0, ceil_mode=ceil)
        if include:
            return sums
        return sums / F.avg_pool2d(F.pad(x.new_ones((1, 1, *x.shape[2:])), pad), k, strides, 0, ceil_mode=ceil)
    if kind == "MaxPool":
        return F.max_pool2d(x, k, strides, begin, ceil_mode=ceil)
    return F.avg_pool2d(x, k, strides, begin, ceil_mode=ceil, count_include_pad=include)


def _softmax(torch: Any, x: Any, a: dict[str, Any], opset: int) -> Any:
    axis = a.get("axis", -1 if opset >= 13 else 1)
    if opset >= 13:
        return torch.softmax(x, dim=axis)
    shape = x.shape
    return torch.softmax(x.reshape(int(np.prod(shape[:axis])), -1), dim=1).reshape(shape)


def _gemm(x: Any, w: Any, b: Any, a: dict[str, Any]) -> Any:
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    y = a.get("alpha", 1.0) * (x @ w)
    return y if b is None else y + a.get("beta", 1.0) * b


def _clip(torch: Any, ins: list[Any], a: dict[str, Any]) -> Any:
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    return torch.clamp(ins[0], lo, hi)


def _reshape(x: Any, shape: Any) -> Any:
    dims = [int(d) for d in (shape.tolist() if hasattr(shape, "tolist") else shape)]
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


_BINARY: dict[str, Callable[[Any, Any], Any]] = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul,
                                                  "Div": operator.truediv}

#: the ONNX ops the graph evaluates
OPS = ("Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "Div", "Dropout", "Flatten", "Gemm",
       "GlobalAveragePool", "Identity", "MatMul", "MaxPool", "Mul", "Relu", "Reshape", "Sigmoid", "Softmax", "Sub",
       "Transpose")


class TorchGraph:
    """Evaluates an ONNX graph with torch ops from its input up to ``output``; weights become constants."""

    def __init__(self, model: onnx.ModelProto, output: str, dtype: Any = None) -> None:
        import torch

        self.dtype = dtype or torch.float32
        self.input = model.graph.input[0].name
        self.output = output
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.consts: dict[str, Any] = {}
        for init in model.graph.initializer:
            value = numpy_helper.to_array(init)
            self.consts[init.name] = (torch.tensor(value, dtype=self.dtype) if value.dtype.kind == "f"
                                      else torch.tensor(value))
        needed = self._needed(model, output)
        self.nodes = [n for n in model.graph.node if any(o in needed for o in n.output)]
        unknown = sorted({n.op_type for n in self.nodes} - set(OPS) - {"Constant"})
        if unknown:
            raise FeatcompError(f"--method e2e cannot differentiate through {', '.join(unknown)} (supported: "
                                f"{', '.join(OPS)})")

    @staticmethod
    def _needed(model: onnx.ModelProto, output: str) -> set[str]:
        producer = {o: n for n in model.graph.node for o in n.output}
        need, todo = set(), [output]
        while todo:
            name = todo.pop()
            if name in need:
                continue
            need.add(name)
            if name in producer:
                todo.extend(i for i in producer[name].input if i)
        return need

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        env: dict[str, Any] = dict(self.consts)
        env[self.input] = x
        for node in self.nodes:
            a = _attrs(node)
            ins: list[Any] = [env[i] if i else None for i in node.input]
            op = node.op_type
            if op == "Constant":
                value = numpy_helper.to_array(a["value"])
                y = torch.tensor(value, dtype=self.dtype) if value.dtype.kind == "f" else torch.tensor(value)
            elif op == "Conv":
                y = _conv(torch, F, ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
            elif op in ("Clip",):
                y = _clip(torch, ins, a)
            elif op == "Relu":
                y = torch.relu(ins[0])
            elif op == "Sigmoid":
                y = torch.sigmoid(ins[0])
            elif op in _BINARY:
                y = _BINARY[op](ins[0], ins[1])
            elif op == "GlobalAveragePool":
                y = ins[0].mean(dim=(2, 3), keepdim=True)
            elif op in ("MaxPool", "AveragePool"):
                y = _pool(F, op, ins[0], a)
            elif op == "Concat":
                y = torch.cat(ins, dim=a["axis"])
            elif op in ("Dropout", "Identity"):
                y = ins[0]
            elif op == "Flatten":
                axis = a.get("axis", 1)
                y = ins[0].reshape(int(np.prod(ins[0].shape[:axis])), -1)
            elif op == "Gemm":
                y = _gemm(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
            elif op == "MatMul":
                y = ins[0] @ ins[1]
            elif op == "Reshape":
                y = _reshape(ins[0], ins[1] if len(ins) > 1 else a["shape"])
            elif op == "Softmax":
                y = _softmax(torch, ins[0], a, self.opset)
            elif op == "Transpose":
                y = ins[0].permute(*a["perm"]) if "perm" in a else ins[0].permute(*reversed(range(ins[0].dim())))
            else:  # BatchNormalization (inference)
                scale, bias, mean, var = ins[1:5]
                shape = [1, -1] + [1] * (ins[0].dim() - 2)
                y = ((ins[0] - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + a.get("epsilon", 1e-5))
                     * scale.reshape(shape) + bias.reshape(shape))
            env[node.output[0]] = y
        return env[self.output]
