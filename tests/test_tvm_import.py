"""The importer adapter: a converter for every op of the domain, the scoped patch and its guard,
and every op TVM cannot lower named at once, before any compile work."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import models
from featcomp.errors import FeatcompError
from featcomp.ops import schemas
from tvm_tools import need_tvm


@pytest.fixture(scope="module")
def convert():  # noqa: ANN201 - the adapter module
    need_tvm()
    from featcomp.runtime_ops.tvm import convert

    return convert


def test_every_op_of_the_domain_has_a_converter(convert) -> None:
    missing = [name for name in schemas.OPS if name not in convert.CONVERTERS]
    assert not missing, f"ops in featcomp.ops.schemas.OPS without a TVM converter: {missing}"
    assert set(convert.CONVERTERS) == set(schemas.OPS)


def test_patch_is_scoped_to_the_block(convert) -> None:
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    original = fe._get_convert_map
    with convert.featcomp_ops():
        inside = fe._get_convert_map()
        assert all(inside[name] is convert.CONVERTERS[name] for name in schemas.OPS)
    assert fe._get_convert_map is original
    assert not set(schemas.OPS) & set(fe._get_convert_map())


def test_guard_fails_loudly_when_the_importer_changes(convert, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    convert.check_importer()  # the installed TVM is what the patch was written for
    monkeypatch.delattr(fe, "_get_convert_map")
    with pytest.raises(RuntimeError, match="_get_convert_map is gone"):
        convert.check_importer()
    with pytest.raises(RuntimeError, match="importer changed"):
        with convert.featcomp_ops():
            pass


def test_guard_notices_tvm_shipping_its_own_converter(convert, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    original = fe._get_convert_map
    monkeypatch.setattr(fe, "_get_convert_map", lambda: {**original(), "DctCmEncode": object})
    with pytest.raises(RuntimeError, match="own converters named \\['DctCmEncode'\\]"):
        convert.check_importer()


def _with_nodes(extra: list[onnx.NodeProto], functions: list[onnx.FunctionProto] = ()) -> onnx.ModelProto:
    model = models.two_convs()
    model.graph.node.extend(extra)
    model.functions.extend(functions)
    for node in extra:
        if node.domain and not any(o.domain == node.domain for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(node.domain, 1))
    return model


def test_unsupported_ops_named_at_once(convert) -> None:
    jpeg = helper.make_function("ai.featcomp.jpeg", "LearnedJpeg", ["X"], ["Y"],
                                [helper.make_node("Identity", ["X"], ["Y"])], [helper.make_opsetid("", 13)])
    model = _with_nodes([
        helper.make_node("LearnedJpeg", ["input"], ["j"], domain="ai.featcomp.jpeg"),
        helper.make_node("FancyCodec", ["j"], ["k"], domain=schemas.DOMAIN),
        helper.make_node("DctCmEncode", ["k"], ["l"], domain="com.example"),
        helper.make_node("Imaginary", ["l"], ["m"]),
    ], [jpeg])
    found = convert.unsupported_ops(model)
    assert found == ["ai.featcomp.jpeg.LearnedJpeg (model-local function, no TVM lowering)",
                     "ai.featcomp.FancyCodec (no TVM kernel for this featcomp op)",
                     "com.example.DctCmEncode (custom op, no TVM lowering)", "Imaginary"]
    from featcomp.runtime_ops.tvm import build

    with pytest.raises(FeatcompError, match="4 op type\\(s\\).*LearnedJpeg.*FancyCodec.*com.example.DctCmEncode.*Imaginary"):
        build.check_supported(model)


def test_supported_model_has_nothing_to_report(convert) -> None:
    assert convert.unsupported_ops(models.two_convs()) == []
    assert convert.unsupported_ops(models.residual()) == []


def test_side_array_of_wrong_size_is_refused(convert) -> None:
    from tvm_tools import pair_model

    arrays = {"scale": np.ones(3, np.float32), "qmin": np.float32(0), "qmax": np.float32(255),
              "transform": np.eye(2, dtype=np.float32), "step": np.ones((2, 1), np.float32),
              "cmin": np.zeros((2, 1), np.float32), "cmax": np.full((2, 1), 9, np.float32),
              "decode": np.eye(2, dtype=np.float32)}
    model = pair_model([("s", arrays, (1, 4, 2, 2))])
    from featcomp.runtime_ops.tvm import build

    with pytest.raises(FeatcompError, match="DctCmEncode scale: expected 1, 2 or 4 values, got 3"):
        build.compile_model(model, build.make_target("host"))


def test_site_after_an_add_imports(convert) -> None:
    """The importer passes an Add output as an un-normalized call; the converter must type it."""
    from tvm_tools import pair_model

    arrays = {"scale": np.float32(0.1), "qmin": np.float32(-127), "qmax": np.float32(127),
              "transform": np.eye(2, dtype=np.float32), "step": np.ones((2, 1), np.float32),
              "cmin": np.full((2, 1), -9, np.float32), "cmax": np.full((2, 1), 9, np.float32),
              "decode": np.eye(2, dtype=np.float32)}
    model = pair_model([("s", arrays, (1, 4, 2, 2))])
    encode = model.graph.node[0]
    model.graph.node.insert(0, helper.make_node("Add", ["x0", "x0"], ["sum"]))
    encode.input[0] = "sum"
    mod = convert.import_model(model)
    assert any("fc_encode" in gv.name_hint for gv in mod.get_global_vars())
