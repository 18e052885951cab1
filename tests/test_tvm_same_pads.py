"""SAME convs get explicit pads before TVM's importer (no separate pad op fused into the producer);
ONNX Runtime gives the same outputs before and after, and stride-2 padded widths come out even."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import needs
from featcomp.runtime_ops import ort


def _model(size: int, stride: int, mode: str, group: int):  # noqa: ANN202 - onnx.ModelProto
    rng = np.random.default_rng(size)
    w = numpy_helper.from_array(rng.normal(size=(8, 8 // group, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=mode, strides=[stride, stride], group=group)
    out = -(-size // stride)
    graph = helper.make_graph([node], "same", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, out, out])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("size,stride,mode,group", [(112, 2, "SAME_UPPER", 8), (15, 2, "SAME_LOWER", 1),
                                                    (14, 1, "SAME_UPPER", 8), (7, 2, "SAME_UPPER", 1)])
def test_explicit_pads_keep_outputs(size: int, stride: int, mode: str, group: int) -> None:
    needs.module("tvm", "pip install 'featcomp[tvm]'")
    from featcomp.runtime_ops.tvm.same_pads import explicit_same_pads

    model = _model(size, stride, mode, group)
    rewritten = explicit_same_pads(model)
    attrs = {a.name: helper.get_attribute_value(a) for a in rewritten.graph.node[0].attribute}
    assert "auto_pad" not in attrs and len(attrs["pads"]) == 4
    assert model.graph.node[0].attribute[0].name == "auto_pad"  # the input model is left alone
    if stride == 2:
        assert (size + attrs["pads"][1] + attrs["pads"][3]) % 2 == 0  # even padded width
    x = np.random.default_rng(1).normal(size=(1, 8, size, size)).astype(np.float32)
    before = next(iter(ort.run(ort.session(model), {"x": x}).values()))
    after = next(iter(ort.run(ort.session(rewritten), {"x": x}).values()))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
