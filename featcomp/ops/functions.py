"""Function bodies of standard ONNX ops for each featcomp op, so ONNX Runtime runs them natively.

ORT inlines model-local functions, so a compressed model needs no custom kernel library and loads
in a plain InferenceSession. Each body follows the numpy reference op for op (Div, Round, Clip,
MatMul on integer-valued floats, Max/Min), which is what makes the symbols bit-exact.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import TensorProto, helper

from featcomp.ops.schemas import DCTCM_DECODE, DCTCM_ENCODE, TVLC_DECODE, TVLC_ENCODE, OpSchema

MIN_OPSET = 11  # Round and Clip-with-inputs


def _group_shape(nodes: list[onnx.NodeProto], x: str, matrix: str, prefix: str) -> tuple[str, str]:
    """Nodes computing [N, C/G, G, H*W] (reshape target) and the original shape of x."""
    def const(name: str, values: list[int]) -> str:
        nodes.append(helper.make_node("Constant", [], [prefix + name],
                                      value=helper.make_tensor(prefix + name, TensorProto.INT64, [len(values)], values)))
        return prefix + name

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [prefix + name], **attrs))
        return prefix + name

    shape = node("Shape", [x], "shape")
    n = node("Gather", [shape, const("i0", [0])], "n", axis=0)
    h = node("Gather", [shape, const("i2", [2])], "h", axis=0)
    w = node("Gather", [shape, const("i3", [3])], "w", axis=0)
    hw = node("Mul", [h, w], "hw")
    g = node("Gather", [node("Shape", [matrix], "mshape"), const("j0", [-1])], "g", axis=0)  # [G,G] or [K,G,G]
    target = node("Concat", [n, const("m1", [-1]), g, hw], "target", axis=0)
    return target, shape


def _encode(op: OpSchema, opset: int) -> onnx.FunctionProto:
    """DctCmEncode and TvlcEncode share their arithmetic; MatMul broadcasts a [K,G,G] transform per group."""
    nodes: list[onnx.NodeProto] = []
    target, shape = _group_shape(nodes, "X", "transform", "_")
    # side arrays are stored compactly (int8/int16 integers, float16 steps): exact in float32 after a Cast
    cast = ("transform", "cmin", "cmax", "centre", "deadzone") if op is TVLC_ENCODE else ("transform", "step", "cmin", "cmax")
    nodes += [helper.make_node("Cast", [name], [f"_{name}f"], to=TensorProto.FLOAT) for name in cast]
    matrix, lo, hi = "_transformf", "_cminf", "_cmaxf"
    step = "_stepf" if "step" in cast else "step"
    nodes += [
        helper.make_node("Div", ["X", "scale"], ["_xs"]),
        helper.make_node("Round", ["_xs"], ["_xr"]),
        helper.make_node("Clip", ["_xr", "qmin", "qmax"], ["_q"]),
        helper.make_node("Reshape", ["_q", target], ["_qg"]),
        helper.make_node("MatMul", [matrix, "_qg"], ["_y"]),
        helper.make_node("Div", ["_y", step], ["_ys"]),
        *(_dead_zone("_ys", "_yr") if op is TVLC_ENCODE else [helper.make_node("Round", ["_ys"], ["_yr"])]),
        helper.make_node("Max", ["_yr", lo], ["_ylo"]),
        helper.make_node("Min", ["_ylo", hi], ["_yc"]),
        helper.make_node("Reshape", ["_yc", shape], ["_yf"]),
        helper.make_node("Cast", ["_yf"], ["Y"], to=TensorProto.INT16),
    ]
    return _function(op, nodes, opset)


def _dead_zone(u: str, out: str) -> list[onnx.NodeProto]:
    """out = max(round(u - deadzone), min(round(u + deadzone), centre)) in float32, as tvlc.dead_zone_round
    computes it (round(u) exactly at deadzone = 0, whatever the centre)."""
    return [
        helper.make_node("Sub", [u, "_deadzonef"], ["_dzlo"]),
        helper.make_node("Round", ["_dzlo"], ["_dzlor"]),
        helper.make_node("Add", [u, "_deadzonef"], ["_dzhi"]),
        helper.make_node("Round", ["_dzhi"], ["_dzhir"]),
        helper.make_node("Min", ["_dzhir", "_centref"], ["_dzc"]),
        helper.make_node("Max", ["_dzlor", "_dzc"], [out]),
    ]


def _decode(op: OpSchema, opset: int) -> onnx.FunctionProto:
    matrix = op.inputs[1].name
    nodes: list[onnx.NodeProto] = [helper.make_node("Cast", ["Y"], ["_yf"], to=TensorProto.FLOAT)]
    target, shape = _group_shape(nodes, "Y", matrix, "_")
    if op is TVLC_DECODE:  # decode = transpose(transform) * gain, per group
        nodes += [
            helper.make_node("Cast", ["transform"], ["_tf"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["_tf"], ["_tt"], perm=[0, 2, 1]),
            helper.make_node("Mul", ["_tt", "gain"], ["_dm"]),
        ]
        matrix = "_dm"
    else:  # the decode matrix may be stored as float16
        nodes.append(helper.make_node("Cast", [matrix], ["_dmf"], to=TensorProto.FLOAT))
        matrix = "_dmf"
    nodes += [
        helper.make_node("Reshape", ["_yf", target], ["_yg"]),
        helper.make_node("MatMul", [matrix, "_yg"], ["_xg"]),
        helper.make_node("Reshape", ["_xg", shape], ["X"]),
    ]
    return _function(op, nodes, opset)


def _function(op: OpSchema, nodes: list[onnx.NodeProto], opset: int) -> onnx.FunctionProto:
    return helper.make_function(
        domain=op.domain,
        fname=op.name,
        inputs=op.input_names,
        outputs=[p.name for p in op.outputs],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=[a.name for a in op.attributes],
        doc_string=op.doc,
    )


BUILDERS = {op.name: (_encode, op) for op in (DCTCM_ENCODE, TVLC_ENCODE)} | {
    op.name: (_decode, op) for op in (DCTCM_DECODE, TVLC_DECODE)}


def function_for(op_name: str, opset: int) -> onnx.FunctionProto:
    build, op = BUILDERS[op_name]
    return build(op, max(opset, MIN_OPSET))
