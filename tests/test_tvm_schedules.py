"""Schedules keyed by target: the featcomp kernels and the rest of the network really get parallel
and vectorized loops on aarch64 (NEON) and x86 (AVX-512), small tensors stay on one thread, and
the aarch64 code uses NEON vector FMAs."""

from __future__ import annotations

import re

import pytest

import models
from tvm_tools import AARCH64, X86, need_tvm


@pytest.fixture(scope="module", params=["aarch64", "x86"])
def target(request: pytest.FixtureRequest):  # noqa: ANN201 - a tvm.target.Target
    build = need_tvm()
    return build.make_target(AARCH64 if request.param == "aarch64" else X86)


def _loops(script: str) -> dict[str, int]:
    return {kind: len(re.findall(rf"in T\.{kind}\(", script)) for kind in ("parallel", "vectorized")}


def test_rule_follows_the_target(target) -> None:
    from featcomp.runtime_ops.tvm import schedules

    rule = schedules.rule_for(target)
    arch = str(target.attrs["mtriple"]).split("-")[0]
    assert (rule.name, rule.lanes) == (("aarch64 NEON + parallel", 4) if arch == "aarch64" else ("x86 AVX-512 + parallel", 16))


@pytest.mark.parametrize("op", ["encode", "decode"])
def test_grouped_kernels_are_parallel_and_vectorized(target, op: str) -> None:
    from featcomp.runtime_ops.tvm import kernels, schedules

    rule = schedules.rule_for(target)
    make = kernels.encode_kernel if op == "encode" else kernels.decode_kernel
    big = (schedules.schedule_encode if op == "encode" else schedules.schedule_decode)(
        make("DctCmEncode" if op == "encode" else "DctCmDecode", 1, 64, 56, 56, 8), rule)
    loops = _loops(big.script())
    assert loops["parallel"] == 1, big.script()
    assert loops["vectorized"] >= (4 if op == "encode" else 2)
    assert big.attrs["tirx.is_scheduled"]
    small = (schedules.schedule_encode if op == "encode" else schedules.schedule_decode)(
        make("DctCmEncode" if op == "encode" else "DctCmDecode", 1, 64, 8, 8, 8), rule)
    assert _loops(small.script())["parallel"] == 0  # 4096 elements: threads cost more than they save
    assert _loops(small.script())["vectorized"] >= 1


def test_the_rest_of_the_network_is_scheduled(target) -> None:
    """After legalize + FuseOps/FuseTIR, every conv function gets the default CPU schedule."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(models.residual()), target)
    mod, done, naive = schedules.schedule_rest(mod, target)
    assert naive == 0 and done >= 3
    convs = [f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint]
    assert convs
    for script in convs:
        assert "tirx.is_scheduled" in script
        loops = _loops(script)
        assert loops["vectorized"] >= 1, script


def test_default_schedule_parallel_on_big_convs(target) -> None:
    from featcomp.runtime_ops.tvm import schedules
    from tvm import te, tirx

    data = te.placeholder((1, 32, 56, 56), name="x")
    weight = te.placeholder((32, 32, 3, 3), name="w")
    rc, ry, rx = te.reduce_axis((0, 32)), te.reduce_axis((0, 3)), te.reduce_axis((0, 3))
    conv = te.compute((1, 32, 54, 54), lambda n, f, y, x: te.sum(data[n, rc, y + ry, x + rx] * weight[f, rc, ry, rx],
                                                                axis=[rc, ry, rx]), name="conv")
    func = te.create_prim_func([data, weight, conv])
    assert isinstance(func, tirx.PrimFunc)
    scheduled = schedules.default_schedule(func, schedules.rule_for(target))
    loops = _loops(scheduled.script())
    assert loops["parallel"] == 1 and loops["vectorized"] >= 1


def test_aarch64_code_uses_neon() -> None:
    build = need_tvm()
    import tvm

    from featcomp.runtime_ops.tvm import kernels, schedules

    target = build.make_target(AARCH64)
    func = schedules.schedule_decode(kernels.decode_kernel("DctCmDecode", 1, 64, 56, 56, 8), schedules.rule_for(target))
    asm = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target).mod.inspect_source("asm")
    assert re.search(r"fmla\s+v\d+\.4s", asm), "no NEON vector FMA in the scheduled decode kernel"


def _conv_pad_model():  # noqa: ANN202 - onnx.ModelProto
    """Conv -> Clip -> asymmetric Pad (MobileNetV2's stride-2 layers) -> Conv: the pad's output is
    bigger than the conv's, so it must not be computed inside the conv's loops."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
             for name, shape in (("w1", (16, 3, 1, 1)), ("w2", (8, 16, 3, 3)))]
    inits += [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"),
              numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"]), helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
             helper.make_node("Pad", ["r1", "pads"], ["p1"]), helper.make_node("Conv", ["p1", "w2"], ["out"], strides=[2, 2])]
    graph = helper.make_graph(nodes, "pad", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 28, 28])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 14, 14])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("make", [_conv_pad_model, models.residual, models.two_convs])
def test_default_schedule_keeps_results(make) -> None:  # noqa: ANN001
    """Scheduled and unscheduled builds agree with ONNX Runtime (a wrong compute location drops outputs)."""
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = make()
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {model.graph.input[0].name: x}).values())))
    compiled = build.compile_model(model, build.make_target("host"))
    assert compiled.stats["naive"] == 0
    np.testing.assert_allclose(build.run_local(compiled, [x])[0], want, rtol=1e-4, atol=1e-4)


def _conv_funcs(target) -> dict[str, str]:  # noqa: ANN001
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(models.mobile_block()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    return {gv.name_hint: f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint}


def test_convs_are_register_tiled(target) -> None:
    """Dense convs: the reduction loop outside an unrolled pixel loop and a vectorized output-channel
    loop as wide as the rule's channel block, accumulating in a local tile; parallel row bands."""
    from featcomp.runtime_ops.tvm import conv_schedules, schedules

    rule = schedules.rule_for(target)
    funcs = _conv_funcs(target)
    dense = [s for s in funcs.values() if 'T.sblock("conv2d_nchw_update")' in s and "_local = T.sblock_alloc_buffer" in s]
    assert len(dense) == 3, list(funcs)  # stem, expand, project (the 7-channel conv is not tiled)
    for script in dense:
        update = script.index('T.sblock("conv2d_nchw_update")')
        nest = script[:update]
        rc, unroll, vec = nest.rindex("for rc"), nest.rindex("T.unroll("), nest.rindex("T.vectorized(")
        assert rc < unroll < vec, script
        width = int(re.search(r"T\.vectorized\(T\.int64\((\d+)\)\)", nest[vec:]).group(1))
        # the channel block: half a vector, or a power-of-two number of vectors (conv_schedules._channel_tile)
        assert width == rule.lanes // 2 or width // rule.lanes in (1, 2, 4, 8) and width % rule.lanes == 0, (width, rule.lanes)
        assert 'T.sblock("T_add")' not in script  # bias (and clip) folded into the tile's write
        assert 'scope="local"' not in script  # the tile on the stack, not a workspace call (stack_scratch)
        assert "T.parallel(" in script
    assert conv_schedules._channel_block(7, rule.lanes) == 0


def test_depthwise_is_a_row_band(target) -> None:
    """Depthwise convs: parallel (channel, row band) loop with the padded input computed in it as a
    per-thread scratch (a separate block a fused decode can join), vectorized pixel loops; stride 2
    keeps its scratch as even/odd columns."""
    funcs = _conv_funcs(target)
    depthwise = [s for s in funcs.values() if 'T.sblock("group_conv2d_nchw_update")' in s]
    assert len(depthwise) == 2
    for script in depthwise:
        band = script.index("T.parallel(")
        pad = script.index('T.sblock("pad_temp")')
        assert band < pad < script.index('T.sblock("group_conv2d_nchw_update")'), script
        assert re.search(r'pad_temp\w* = T\.sblock_alloc_buffer\(.*scope="local"\)', script), script
        assert _loops(script)["vectorized"] >= 3
    even_odd = [s for s in depthwise if re.search(r"pad_temp_local\[[^\]]*\) % T\.int64\(2\), \(v4 \* T\.int64\(2\) \+ v3\) // T\.int64\(2\)\]", s)]
    assert len(even_odd) == 1 and "v_yy * T.int64(2)" in even_odd[0]  # the stride-2 one only
    # the stage runs in storage order (parity unrolled, then contiguous halves vectorized) with no
    # guard: a scatter over every second column would run as scalar stores
    stage = even_odd[0][:even_odd[0].index('T.sblock("pad_temp")')]
    assert re.search(r"for ax3 in T\.unroll\(T\.int64\(2\)\):\s+for ax4 in T\.vectorized\(T\.int64\(\d+\)\)", stage), stage
    assert "T.where" not in even_odd[0].split('T.sblock("group_conv2d_nchw_init")')[0]


def test_tiled_convs_keep_results() -> None:
    """The tiled build of the block agrees with ONNX Runtime and with the generic schedule's build."""
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = models.mobile_block()
    x = np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    tiled = build.compile_model(model, build.make_target("host"))
    assert tiled.stats["conv_tiled"] == 5 and tiled.stats["naive"] == 0
    np.testing.assert_allclose(build.run_local(tiled, [x])[0], want, rtol=1e-4, atol=1e-4)
    generic = build.compile_model(model, build.make_target("host"), tiled=False)
    assert generic.stats["conv_tiled"] == 0
    np.testing.assert_allclose(build.run_local(generic, [x])[0], want, rtol=1e-4, atol=1e-4)


def test_host_rule_reads_llvm_features() -> None:
    """An mcpu missing from the short name lists (this machine's "rocketlake") still gets its vector width."""
    build = need_tvm()
    from featcomp.runtime_ops.tvm import schedules

    assert schedules.rule_for(build.make_target({"kind": "llvm", "mcpu": "rocketlake"})).lanes == 16
    assert schedules.rule_for(build.make_target({"kind": "llvm", "mcpu": "alderlake"})).lanes == 8
    assert schedules.rule_for(build.make_target({"kind": "llvm", "mtriple": "x86_64-linux-gnu"})).lanes == 4


def test_dense_tile_follows_the_map() -> None:
    """Rows that split into (at least half-width) vectors get pixel vectors x unrolled channels; small
    or odd rows (28 and 14 on AVX-512, SqueezeNet's 55/27/13) get pixels x channel vectors."""
    need_tvm()
    from featcomp.runtime_ops.tvm import conv_schedules as cs

    assert [cs._pixel_vector(w, 16) for w in (112, 56, 28, 14, 7, 55)] == [16, 8, 0, 0, 0, 0]
    assert [cs._pixel_vector(w, 4) for w in (112, 56, 28, 14)] == [8, 8, 4, 0]
    assert [cs._pixel_tile(w, 14) for w in (28, 14, 7, 13, 27, 55, 111)] == [14, 14, 7, 13, 9, 11, 3]
    assert [cs._channel_block(c, 16) for c in (960, 144, 24, 1000, 1001)] == [32, 16, 8, 8, 0]


def test_channel_tile_fits_the_registers_and_grows_on_short_rows() -> None:
    """The pixels x channel-vectors tile: FI a power-of-two number of vectors dividing OC, PT dividing
    the row, PT x V accumulators + V weights + a broadcast within the register file; on 7-pixel rows
    one broadcast feeds more than the two vectors of the fixed tile it replaced."""
    need_tvm()
    from featcomp.runtime_ops.tvm import conv_schedules as cs
    from featcomp.runtime_ops.tvm import schedules

    for rule in schedules.RULES.values():
        for oc, ow in ((672, 14), (1152, 7), (1280, 7), (96, 28), (64, 55), (1000, 13)):
            for cast in (False, True):
                fi, pt = cs._channel_tile(oc, ow, rule, cast)
                v = fi // rule.lanes
                assert oc % fi == 0 and ow % pt == 0 and pt * max(v, 1) + max(v, 1) + 1 <= rule.registers, (rule, oc, ow)
                assert fi == rule.lanes // 2 or (fi % rule.lanes == 0 and v in (1, 2, 4, 8))
        fi, _ = cs._channel_tile(1152, 7, rule, True)
        assert fi > 2 * rule.lanes, rule
    assert cs._channel_tile(1001, 7, schedules.RULES["x86_64"], False) == (0, 0)


def _classifier_model():  # noqa: ANN202 - onnx.ModelProto
    """Global pool -> 1x1 conv on the 1x1 map (MobileNetV2's classifier) -> Flatten -> Gemm with a
    transposed weight (EfficientNet-Lite0's): two GEMVs whose outputs (21, 19) are not multiples of 16."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
             for name, shape in (("cw", (21, 40, 1, 1)), ("cb", (21,)), ("gw", (19, 21)), ("gb", (19,)))]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Conv", ["p", "cw", "cb"], ["c"]),
             helper.make_node("Flatten", ["c"], ["f"]), helper.make_node("Gemm", ["f", "gw", "gb"], ["out"], transB=1)]
    graph = helper.make_graph(nodes, "classifier", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 40, 7, 7])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 19])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_classifier_gemv_is_packed(target) -> None:
    """Batch-1 GEMVs with constant weights (a 1x1 conv of a 1x1 map, a Gemm) read their weights packed
    as [blocks, K, 16] (zero-padded past N), with a tile of 16-lane vectorized accumulators in a local
    buffer, the reduction outside the block loop, and the bias add in the same function."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(_classifier_model()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    gemv = [f.script() for gv, f in mod.functions_items() if "matvec_packed" in gv.name_hint]
    assert len(gemv) == 2, [gv.name_hint for gv, _ in mod.functions_items()]
    for script in gemv:
        assert re.search(r"T\.Buffer\(\(T\.int64\(2\), T\.int64\((40|21)\), T\.int64\(16\)\)", script), script
        nest = script[:script.index('T.sblock("matvec_packed_update")')]
        assert nest.rindex("for k in") < nest.rindex("T.unroll(") < nest.rindex("T.vectorized(T.int64(16))"), script
        assert 'matvec_packed_local = T.sblock_alloc_buffer((T.int64(32),))' in script  # global scope: a stack alloca
        assert 'T.sblock("T_add")' in script  # the bias, fused


def test_classifier_gemv_keeps_results() -> None:
    """The packed GEMVs agree with ONNX Runtime (padding rows are zero and never read back)."""
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = _classifier_model()
    x = np.random.default_rng(0).normal(size=(1, 40, 7, 7)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    compiled = build.compile_model(model, build.make_target("host"))
    assert compiled.stats["naive"] == 0
    np.testing.assert_allclose(build.run_local(compiled, [x])[0], want, rtol=1e-4, atol=1e-4)


def _odd_pad_depthwise():  # noqa: ANN202 - onnx.ModelProto
    """Stride-2 depthwise convs whose padded width is odd (pads 0/1 for 3x3, 1/2 for 5x5: EfficientNet-Lite0's)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.normal(size=(32, 1, k, k)).astype(np.float32), f"w{k}") for k in (3, 5)]
    nodes = [helper.make_node("Conv", ["input", "w3"], ["a"], group=32, strides=[2, 2], pads=[0, 0, 1, 1]),
             helper.make_node("Conv", ["a", "w5"], ["out"], group=32, strides=[2, 2], pads=[1, 1, 2, 2])]
    graph = helper.make_graph(nodes, "odd", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 32, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 32, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_odd_padded_width_gets_even_odd_halves(target) -> None:
    """An odd padded width gets one more (never read) zero column, so the stride-2 scratch is stored
    as two equal even/odd halves too, with no guard in its stage."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(_odd_pad_depthwise()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    scripts = [f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint]
    halves = sorted(re.search(r"pad_temp_local = T\.sblock_alloc_buffer\(\(.*T\.int64\(2\), T\.int64\((\d+)\)\)", s).group(1)
                    for s in scripts)
    assert halves == ["18", "33"], scripts  # 64 + 0 + 1 (+1) = 66 = 2 x 33; 32 + 1 + 2 (+1) = 36 = 2 x 18
    assert all("T.where" not in s.split('T.sblock("group_conv2d_nchw_init")')[0] for s in scripts)


def test_odd_padded_width_keeps_results() -> None:
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = _odd_pad_depthwise()
    x = np.random.default_rng(0).normal(size=(1, 32, 64, 64)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    np.testing.assert_allclose(build.run_local(build.compile_model(model, build.make_target("host")), [x])[0], want,
                               rtol=1e-4, atol=1e-4)


def _wide_conv_model():  # noqa: ANN202 - onnx.ModelProto
    """SqueezeNet's last conv in small: 1x1, 1000 output channels (no AVX-512 vector divides it), bias, Relu."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(13)
    inits = [numpy_helper.from_array(rng.normal(size=(1000, 32, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=1000).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["out"])]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 32, 13, 13])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1000, 13, 13])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_output_channels_padded_to_vectors(target) -> None:
    """1000 output channels on AVX-512: computed as 1024 (two-vector channel tiles) and sliced back in
    the tile's output stage under a guard (no write past channel 1000); NEON's 4 lanes divide 1000."""
    from featcomp.runtime_ops.tvm import build, convert, layout, schedules

    rule = schedules.rule_for(target)
    assert [layout.padded_channels(c, 1, 16) for c in (1000, 40, 1001, 64)] == [1024, 40, 1024, 64]
    assert layout.padded_channels(1000, 1000, 16) == 1000  # depthwise: not padded
    mod = build.legalize(convert.import_model(_wide_conv_model()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    (script,) = [f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint]
    padded = 1024 if rule.lanes == 16 else 1000
    # the weight, packed per channel block for the channel-vector tile: [OC / FI, I, 1, 1, FI]
    blocks, fi = map(int, re.search(r"T\.Buffer\(\(T\.int64\((\d+)\), T\.int64\(32\), T\.int64\(1\), T\.int64\(1\), T\.int64\((\d+)\)\), \"float32\"\)",
                                    script).groups())
    assert blocks * fi == padded, script
    if padded == 1024:
        assert "T.where(" in script and 'T.sblock("T_strided_slice_with_axes")' in script
        assert re.search(r"T\.vectorized\(T\.int64\(32\)\)", script)


def test_padded_output_channels_keep_results() -> None:
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = _wide_conv_model()
    x = np.random.default_rng(0).normal(size=(1, 32, 13, 13)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    np.testing.assert_allclose(build.run_local(build.compile_model(model, build.make_target("host")), [x])[0], want,
                               rtol=1e-4, atol=1e-4)


def _pool_model():  # noqa: ANN202 - onnx.ModelProto
    """SqueezeNet's pools in small: a 3x3/2 max pool on an odd width (55 -> 27), a 2x2/2 one with
    ceil_mode whose last window is partial (27 -> 14: no extra column), and a padded 3x3/1 one."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(17).normal(size=(96, 8, 1, 1)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p1"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("MaxPool", ["p1"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
             helper.make_node("MaxPool", ["p2"], ["out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 55, 55])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 96, 14, 14])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_max_pools_are_row_bands(target) -> None:
    """Max pools: a parallel (channel, row band) loop, the band's padded input staged in it on the
    thread's stack (global scope, constant size: an alloca, not a workspace call per band), stride 2
    as equal even/odd halves (an odd width gets one never-read column), the maximum kept in a
    vectorized accumulator; a ceil_mode pool whose last window is partial keeps its width."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(_pool_model()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    pools = {gv.name_hint: f.script() for gv, f in mod.functions_items() if "pool" in gv.name_hint}
    assert len(pools) == 3, list(pools)
    stages = []
    for script in pools.values():
        band = script.index("T.parallel(")
        assert band < script.index('T.sblock("pad_temp")') < script.index('T.sblock("pool_max_update")'), script
        assert 'scope="local"' not in script
        assert re.search(r'pool_max\w* = T\.sblock_alloc_buffer\(\(T\.int64\(1\), T\.int64\(96\)', script)
        assert _loops(script)["vectorized"] >= 3
        stage = re.search(r"pad_temp\w* = T\.sblock_alloc_buffer\(.*", script).group(0)
        stages.append([int(d) for d in re.findall(r"T\.int64\((\d+)\)", stage)])
    # 55 + 1 never-read column = 2 x 28; 27 + TOPI's ceil_mode row and column = 2 x 14; stride 1: 14 + 2 pads
    assert sorted(stages) == [[1, 96, 16, 16], [1, 96, 28, 2, 14], [1, 96, 55, 2, 28]], stages


def test_max_pools_keep_results() -> None:
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = _pool_model()
    x = np.random.default_rng(0).normal(size=(1, 8, 55, 55)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    compiled = build.compile_model(model, build.make_target("host"))
    assert compiled.stats["naive"] == 0
    np.testing.assert_allclose(build.run_local(compiled, [x])[0], want, rtol=1e-5, atol=1e-5)  # the conv rounds


def _fire_model():  # noqa: ANN202 - onnx.ModelProto
    """SqueezeNet's 13x13 layers in small: two 3x3 convs of the same shape (one PrimFunc called
    twice with different weights), bias and Relu, then a 1x1 conv to 1024 channels (4 KB per weight row)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(19)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, size=s).astype(np.float32), n)
             for n, s in (("w1", (64, 64, 3, 3)), ("w2", (64, 64, 3, 3)), ("w3", (1024, 64, 1, 1)), ("b1", (64,)), ("b2", (64,)))]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3"], ["out"])]
    graph = helper.make_graph(nodes, "fire", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64, 13, 13])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1024, 13, 13])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_channel_tile_weights_are_packed_per_block(target) -> None:
    """The channel-vector tile reads its weights as [O/FI, I, KH, KW, FI] (one contiguous stream per
    channel block, FI = the tile's vectorized channel loop): the PrimFunc's weight parameter and the
    constants main passes it (at both call sites of the shared 3x3 function) are repacked."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(_fire_model()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    convs = {gv.name_hint: f for gv, f in mod.functions_items() if "conv2d" in gv.name_hint}
    assert len(convs) == 2, list(convs)
    for name, func in convs.items():
        weight = [[int(d) for d in p.shape] for p in func.params if len(p.shape) == 5]
        assert len(weight) == 1, (name, [p.shape for p in func.params])
        blocks, ic, kh, kw, fi = weight[0]
        script = func.script()
        assert re.search(rf"for \w+ in T\.vectorized\(T\.int64\({fi}\)\):\s+with T\.sblock\(\"conv2d_nchw_update\"\)", script), script
        assert (ic, kh * kw) in ((64, 9), (64, 1)) and blocks * fi in (64, 1024)
        assert kh == 1 or "relu" in name
    calls: dict[str, list[list[int]]] = {}
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if getattr(call, "op", None) is not None and call.op.name == "relax.call_tir" and call.args[0].name_hint in convs:
                calls.setdefault(call.args[0].name_hint, []).append([int(d) for d in call.args[1].fields[1].value.shape])
    for name, func in convs.items():
        want = [int(d) for d in func.params[1].shape]
        assert len(want) == 5 and calls[name] == [want] * (2 if want[2] == 3 else 1), (name, calls)


def test_packed_weights_keep_results() -> None:
    """Both call sites of the shared function get their own repacked weights: results equal ORT's."""
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = _fire_model()
    x = np.random.default_rng(0).normal(size=(1, 64, 13, 13)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    compiled = build.compile_model(model, build.make_target("host"))
    assert compiled.stats["naive"] == 0 and compiled.stats["conv_tiled"] == 2
    np.testing.assert_allclose(build.run_local(compiled, [x])[0], want, rtol=1e-4, atol=1e-4)


def _parallel_loop(script: str) -> str:
    found = re.findall(r"for (\w+) in T\.parallel\(", script)
    assert len(found) == 1, script
    return found[0]


@pytest.mark.parametrize("size", [14, 56])
def test_conv_threads_follow_work_and_band_order_follows_the_biggest_operand(target, size: int) -> None:
    """A projection with few outputs but many multiply-adds is parallel (the element-count rule left
    it on one thread), its band split by rows (n, y, channel block: each thread reads half the input);
    the expansion after it keeps channel blocks outermost."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(models.projection_block(size)), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    convs = {gv.name_hint: f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint}
    project = next(s for name, s in convs.items() if "maximum" not in name)
    expand = next(s for name, s in convs.items() if "maximum" in name)
    assert _parallel_loop(project).startswith("nn_yy_"), project
    assert _parallel_loop(expand).startswith("ff_0_"), expand


def test_big_input_conv_bands_rows_around_channel_blocks(target) -> None:
    """An expansion whose input is more than half a 1 MiB cache (16 x 112 x 112 floats, 0.8 MB) runs
    (n, row band, channel block, row): every block reads the band's few input rows while they are
    cached, instead of streaming the whole input once per block; the band's input fits BAND_BYTES."""
    from featcomp.runtime_ops.tvm import build, conv_schedules, convert, schedules

    mod = build.legalize(convert.import_model(models.projection_block(112)), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    convs = {gv.name_hint: f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint}
    expand = next(s for name, s in convs.items() if "maximum" in name)
    assert _parallel_loop(expand).startswith("nn_yy_0_ff_0"), expand
    rows = re.search(r"for yy_1, xx_0 in T\.grid\(T\.int64\((\d+)\)", expand)
    assert rows is not None and 1 < int(rows.group(1)) and 112 % int(rows.group(1)) == 0, expand
    assert int(rows.group(1)) * 16 * 112 * 4 <= conv_schedules.BAND_BYTES


@pytest.mark.parametrize("size", [14, 56, 112])
def test_conv_band_orders_keep_results(size: int) -> None:
    """The projection (rows outermost), the expansion (channel blocks outermost) and, at 112x112, the
    expansion in row bands around its channel blocks agree with ONNX Runtime."""
    import numpy as np

    from featcomp.runtime_ops import ort as fort

    build = need_tvm()
    model = models.projection_block(size)
    x = np.random.default_rng(2).normal(size=(1, 96, size, size)).astype(np.float32)
    want = np.asarray(next(iter(fort.run(fort.session(model), {"input": x}).values())))
    compiled = build.compile_model(model, build.make_target("host"))
    assert compiled.stats["conv_tiled"] == 2 and compiled.stats["naive"] == 0
    np.testing.assert_allclose(build.run_local(compiled, [x])[0], want, rtol=1e-4, atol=1e-4)


def test_padding_alone_does_not_make_a_conv_a_projection(target) -> None:
    """A padded 3x3 conv C -> C reads a (bordered) input bigger than its output, but keeps channel blocks
    outermost: the rows-first band is for convs with fewer output than input channels."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(models.same_width_conv()), target)
    mod, _, naive = schedules.schedule_rest(mod, target)
    assert naive == 0
    (script,) = [f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint]
    assert _parallel_loop(script).startswith("ff_0_"), script
