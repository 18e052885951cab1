"""The LearnedJpeg node in ONNX Runtime equals the numpy reference and Pillow's decode of the file, bit for
bit; insert/strip are exact inverses; models it cannot serve are refused with one line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import models
import needs
from featcomp.errors import FeatcompError
from featcomp.jpeg import dct
from featcomp.jpeg.encode import decode, encode
from featcomp.jpeg.tables import Tables, standard
from featcomp.modelio import prepare
from featcomp.ops.jpeg import LEARNED_JPEG
from featcomp.passes.jpeg_input import find_jpeg, insert_jpeg, jpeg_tables, strip_jpeg
from featcomp.preprocess import Preprocess
from featcomp.runtime_ops import ort

ALLOWED_OPS = {"Constant", "Cast", "Gather", "Round", "Clip", "Pad", "Transpose", "MatMul", "Add", "Sub", "Mul", "Div",
               "Floor", "Reshape", "Concat", "Abs", "Sign", "Slice"}
ALLOWED_OPS_420 = ALLOWED_OPS | {"SpaceToDepth", "DepthToSpace"}


def _identity(shape: list[int | str]) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("layout, order, h, w", [("nchw", "rgb", 16, 16), ("nchw", "bgr", 37, 45),
                                                 ("nhwc", "rgb", 24, 17), ("nhwc", "bgr", 8, 8)])
def test_node_equals_reference_and_file(layout: str, order: str, h: int, w: int) -> None:
    spec = Preprocess.parse(f"resize=none,crop=none,order={order},mean=104/117/123,std=58/57.1/60,layout={layout}")
    shape: list[int | str] = ["N", 3, h, w] if layout == "nchw" else ["N", h, w, 3]
    tables = Tables(np.random.default_rng(h).integers(1, 120, (8, 8)), standard(20).chroma)
    model = insert_jpeg(_identity(shape), tables, spec).model
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(w)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    x = np.stack([spec.apply(Image.fromarray(i)) for i in images])
    got = ort.run(ort.session(model), {"x": x})["y"]
    from_files = np.stack([spec.apply(Image.fromarray(decode(encode(i, tables)))) for i in images])
    reference = np.stack([spec.apply(Image.fromarray(dct.roundtrip(i, tables))) for i in images])
    assert np.array_equal(got, from_files)
    assert np.array_equal(got, reference)


@pytest.mark.parametrize("layout, order, h, w", [("nchw", "rgb", 16, 16), ("nchw", "bgr", 37, 45),
                                                 ("nhwc", "rgb", 24, 17), ("nhwc", "bgr", 8, 8),
                                                 ("nchw", "rgb", 9, 31), ("nchw", "bgr", 40, 33)])
def test_420_node_equals_reference_and_file(layout: str, order: str, h: int, w: int) -> None:
    """4:2:0: libjpeg's downsampling and fancy upsampling in the body; exact against Pillow's decode, odd sizes
    and sizes that are not multiples of 16 included."""
    spec = Preprocess.parse(f"resize=none,crop=none,order={order},mean=104/117/123,std=58/57.1/60,layout={layout}")
    shape: list[int | str] = ["N", 3, h, w] if layout == "nchw" else ["N", h, w, 3]
    tables = Tables(np.random.default_rng(h).integers(1, 120, (8, 8)), standard(20).chroma, subsampling="4:2:0")
    model = insert_jpeg(_identity(shape), tables, spec).model
    onnx.checker.check_model(model, full_check=True)
    node = find_jpeg(model)
    assert node is not None and [(a.name, a.s) for a in node.attribute] == [("subsampling", b"4:2:0")]
    rng = np.random.default_rng(w)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.clip(np.stack([np.sin(xx / 3 + c) * 90 + yy * 3 for c in range(3)], -1) + 100, 0, 255)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)] + [smooth.astype(np.uint8)]
    x = np.stack([spec.apply(Image.fromarray(i)) for i in images])
    got = ort.run(ort.session(model), {"x": x})["y"]
    from_files = np.stack([spec.apply(Image.fromarray(decode(encode(i, tables)))) for i in images])
    reference = np.stack([spec.apply(Image.fromarray(dct.roundtrip(i, tables))) for i in images])
    assert np.array_equal(got, from_files)
    assert np.array_equal(got, reference)
    at_444 = np.stack([spec.apply(Image.fromarray(dct.roundtrip(i, replace(tables, subsampling="4:4:4"))))
                       for i in images])
    assert not np.array_equal(got, at_444)


def test_444_node_is_the_op_without_attribute() -> None:
    """4:4:4 stays the op it was: no attribute, the ten inputs; 4:2:0 adds the attribute and five chroma inputs."""
    spec = Preprocess.parse("mean=0,std=1")
    plain = find_jpeg(insert_jpeg(_identity([1, 3, 16, 16]), standard(50), spec).model)
    sub = find_jpeg(insert_jpeg(_identity([1, 3, 16, 16]), standard(50, "4:2:0"), spec).model)
    assert plain is not None and sub is not None
    assert len(plain.attribute) == 0 and len(plain.input) == len(LEARNED_JPEG.inputs) == 10
    assert len(sub.input) == 15
    model = insert_jpeg(_identity([1, 3, 16, 16]), standard(50, "4:2:0"), spec).model
    assert jpeg_tables(model).subsampling == "4:2:0"  # type: ignore[union-attr]
    assert strip_jpeg(model).model.SerializeToString() == _identity([1, 3, 16, 16]).SerializeToString()


def test_body_uses_standard_ops_only() -> None:
    model = insert_jpeg(_identity([1, 3, 16, 16]), standard(50), Preprocess.parse("mean=0,std=1")).model
    (function,) = [f for f in model.functions if f.name == LEARNED_JPEG.name]
    assert {n.op_type for n in function.node} <= ALLOWED_OPS
    assert all(n.domain in ("", "ai.onnx") for n in function.node)
    model = insert_jpeg(_identity([1, 3, 16, 16]), standard(50, "4:2:0"), Preprocess.parse("mean=0,std=1")).model
    (function,) = [f for f in model.functions if f.name == LEARNED_JPEG.name]
    assert {n.op_type for n in function.node} <= ALLOWED_OPS_420
    assert all(n.domain in ("", "ai.onnx") for n in function.node)


def test_insert_then_strip_is_exact_and_tables_read_back() -> None:
    model = prepare(models.two_convs(), need_conv=False)
    spec = Preprocess.parse("resize=16,crop=16,mean=128,std=128")
    inserted = insert_jpeg(model, standard(42), spec).model
    assert find_jpeg(inserted) is not None
    assert (jpeg_tables(inserted).luma == standard(42).luma).all()  # type: ignore[union-attr]
    assert strip_jpeg(inserted).model.SerializeToString() == model.SerializeToString()
    with pytest.raises(FeatcompError, match="already has a JPEG"):
        insert_jpeg(inserted, standard(42), spec)
    with pytest.raises(FeatcompError, match="no JPEG input node"):
        strip_jpeg(model)


def test_fine_tables_change_the_model_output_little() -> None:
    model = prepare(models.two_convs(), need_conv=False)
    spec = Preprocess.parse("resize=16,crop=16,mean=128,std=128")
    x = spec.apply(Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)))[None]
    base = ort.run(ort.session(model), {models.INPUT: x})
    fine = ort.run(ort.session(insert_jpeg(model, Tables(np.ones((8, 8)), np.ones((8, 8))), spec).model), {models.INPUT: x})
    coarse = ort.run(ort.session(insert_jpeg(model, standard(5), spec).model), {models.INPUT: x})
    name = next(iter(base))
    err_fine, err_coarse = (float(np.abs(r[name] - base[name]).max()) for r in (fine, coarse))
    assert 0 < err_fine < err_coarse


@pytest.mark.parametrize("shape, dtype, layout, why", [
    ([1, 10], TensorProto.FLOAT, "nchw", "not a 3-channel"),
    ([1, 1, 16, 16], TensorProto.FLOAT, "nchw", "not a 3-channel"),
    ([1, 3, 16, 16], TensorProto.FLOAT, "nhwc", "not a 3-channel"),
    ([1, 3, 4, 16], TensorProto.FLOAT, "nchw", "at least 8x8"),
    ([1, 3, 16, 16], TensorProto.UINT8, "nchw", "not a float image"),
    ([1, 3, "h", 16], TensorProto.FLOAT, "nchw", "no fixed height"),
])
def test_models_without_an_image_input_are_refused(shape: list[int | str], dtype: int, layout: str, why: str) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(FeatcompError, match=why):
        insert_jpeg(model, standard(50), Preprocess.parse(f"layout={layout}"))


def test_old_opset_is_refused_until_prepared() -> None:
    old = models.two_convs(opset=9)
    with pytest.raises(FeatcompError, match="opset 9"):
        insert_jpeg(old, standard(50), Preprocess())
    assert find_jpeg(insert_jpeg(prepare(old), standard(50), Preprocess.parse("resize=16,crop=16")).model) is not None


@pytest.mark.shared
@pytest.mark.slow
def test_real_model_with_node_equals_model_on_decoded_files() -> None:
    """SqueezeNet (opset 7, BGR, mean-only): the node in front gives exactly the outputs of the plain model
    fed the decoded JPEG files."""
    path, images = needs.shared("models", "squeezenet1.1.onnx"), needs.shared("data", "imagenet-val-100")
    from featcomp.data import image_files
    from featcomp.jpeg.encode import load_rgb, model_view

    spec = Preprocess.parse("resize=256,crop=224,order=bgr,mean=104/117/123,std=1")
    model = prepare(onnx.load(str(path)))
    tables = Tables(np.random.default_rng(0).integers(4, 90, (8, 8)), standard(30).chroma)
    with_node = ort.session(insert_jpeg(model, tables, spec).model)
    plain = ort.session(model)
    name = model.graph.input[0].name
    tensor = replace(spec, resize=None, crop=None)  # the view is already resized and cropped
    for p in image_files(images)[:3]:
        view = model_view(load_rgb(p), spec)
        x = tensor.apply(Image.fromarray(view))[None]
        decoded = tensor.apply(Image.fromarray(decode(encode(view, tables))))[None]
        assert not np.array_equal(x, decoded)
        a, b = ort.run(with_node, {name: x}), ort.run(plain, {name: decoded})
        for key in a:
            assert np.array_equal(a[key], b[key])
