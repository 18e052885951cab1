"""Conv auto_pad SAME_UPPER/SAME_LOWER -> explicit pads, before TVM's importer sees the model.

The importer lowers a SAME conv to a separate pad op in front of an unpadded conv. FuseOps then fuses
that pad into the *producer's* function, which writes the whole padded tensor in an extra pass after
its conv (MobileNetV2's stride-2 layers). With explicit pads the padding lives in the consuming
conv's own input stage, which the conv schedule computes per row band (conv_schedules.py).
No TVM import here: an ONNX rewrite on the static spatial shapes (left alone when they are unknown).
"""

from __future__ import annotations

import onnx
from onnx import helper, shape_inference


def _spatial(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static H, W of every 4-D tensor shape inference can see (graph inputs, value_info)."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - custom ops or odd models: fall back to what the model declares
        inferred = model
    out = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            out[vi.name] = [d.dim_value for d in dims[2:]]
    return out


def _pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """ONNX SAME padding: output ceil(size / stride); the odd pixel goes at the end (UPPER) or start.
    Stride 2: one more zero column at the end when the padded size is odd (no output reads it), so
    the depthwise schedule can keep its padded input as even/odd columns (conv_schedules.py)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    begin, end = (small, total - small) if upper else (total - small, small)
    if stride == 2 and (size + begin + end) % 2:
        end += 1  # (size + total + 1 - extent) // 2 + 1 is still `out`: the column is never read
    return begin, end


def explicit_same_pads(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model whose SAME-padded 2-D convs carry explicit pads (unchanged if none do)."""
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.domain in ("", "ai.onnx")
             and any(a.name == "auto_pad" and a.s in (b"SAME_UPPER", b"SAME_LOWER") for a in n.attribute)]
    if not convs:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    shapes = _spatial(model)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[0] not in shapes or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("auto_pad", b"NOTSET")
        if mode not in (b"SAME_UPPER", b"SAME_LOWER") or len(inits[node.input[1]]) != 4:
            continue
        kernel = inits[node.input[1]][2:]
        strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
        pairs = [_pads(s, k, st, d, mode == b"SAME_UPPER")
                 for s, k, st, d in zip(shapes[node.input[0]], kernel, strides, dilations)]
        keep = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.append(helper.make_attribute("pads", [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]]))
    return model
