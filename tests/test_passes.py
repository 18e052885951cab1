"""The graph passes: which tensors are sites (the documented rule, on models built here), site selection,
and insert/strip of compress -> decompress pairs: valid ONNX, rewired consumers, numerically the 8-bit
quantization when lossless, and strip as the exact inverse."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import models
import needs
from featcomp import api
from featcomp.codecs.dctcm import DctCm
from featcomp.errors import FeatcompError
from featcomp.modelio import default_opset, prepare
from featcomp.passes.insert import insert_pairs, strip_pairs
from featcomp.passes.pairs import find_pairs
from featcomp.passes.sites import find_sites, select
from featcomp.ops.schemas import DOMAIN


def branchy() -> onnx.ModelProto:
    """Relu(input) -> conv1 -> relu1 -> MaxPool -> conv2 -> BN -> relu2 -> {conv3a, conv3b} -> Add -> relu3
    -> GAP -> Flatten -> Gemm, plus a Sigmoid gate: every clause of the site rule, in one graph.

    Sites: relu1 (feeds MaxPool), pool1, relu2 (two convs), relu3 (feeds GAP on the way to the Gemm),
    gap (feeds Flatten, then the Gemm). Not sites: 'pre' (no layer before it), conv outputs feeding only
    BN/Add, bn, add and gated (epilogue-only consumers), flat (rank 2), logits.
    """
    b = models._Builder(seed=5)
    pre = b.op("Relu", [models.INPUT], "pre")
    r1 = b.op("Relu", [b.conv(pre, "conv1", 3, 8)], "relu1")
    p1 = b.op("MaxPool", [r1], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    c2 = b.conv(p1, "conv2", 8, 8)
    rng = np.random.default_rng(6)
    for key, value in {"s": rng.uniform(0.5, 1.5, 8), "b": rng.normal(0, 0.1, 8), "m": rng.normal(0, 0.1, 8),
                       "v": rng.uniform(0.5, 1.5, 8)}.items():
        b.inits.append(numpy_helper.from_array(value.astype(np.float32), f"bn.{key}"))
    bn = b.op("BatchNormalization", [c2, "bn.s", "bn.b", "bn.m", "bn.v"], "bn")
    r2 = b.op("Relu", [bn], "relu2")
    gate = b.op("Sigmoid", [b.conv(r2, "conv3a", 8, 8, k=1)], "gate")
    gated = b.op("Mul", [gate, b.conv(r2, "conv3b", 8, 8)], "gated")
    r3 = b.op("Relu", [b.op("Add", [gated, p1], "add")], "relu3")
    gap = b.op("GlobalAveragePool", [r3], "gap")
    flat = b.op("Flatten", [gap], "flat")
    b.inits.append(numpy_helper.from_array(b.rng.normal(0, 0.3, (4, 8)).astype(np.float32), "fc.w"))
    b.op("Gemm", [flat, "fc.w"], "logits", transB=1)
    return b.model([models._input()], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])


def with_site_as_output(name: str = "relu1") -> onnx.ModelProto:
    """two_convs that also returns relu1 (a site) as a graph output."""
    model = models.two_convs()
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 8, models.SIZE, models.SIZE]))
    return model


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "two_convs": models.two_convs, "residual": models.residual, "branchy": branchy,
    "site_output": with_site_as_output, "opset9": lambda: models.old_opset(9),
}
EXPECTED_SITES = {
    "two_convs": ["relu1", "relu2"],
    "residual": ["relu1", "add", "concat", "pool"],
    "branchy": ["relu1", "pool1", "relu2", "relu3", "gap"],
    "site_output": ["relu1", "relu2"],
    "opset9": ["relu1", "relu2"],
}


def feeds(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{models.INPUT: rng.normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)} for _ in range(n)]


def session(model: onnx.ModelProto, optimize: bool = True) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, batches: list[dict[str, np.ndarray]], optimize: bool = True) -> list[list[np.ndarray]]:
    sess = session(model, optimize)
    return [sess.run(None, f) for f in batches]


def codecs_for(model: onnx.ModelProto, policy: DctCm, names: list[str] | None = None) -> dict:
    sites = find_sites(model)
    if names is not None:
        sites = select(sites, names)
    stats = api.calibrate(model, feeds(4), sites=sites)
    return {s.name: policy.calibrate(stats[s.name]) for s in sites}


@pytest.fixture(scope="module")
def prepared() -> dict[str, onnx.ModelProto]:
    return {name: prepare(build()) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def compressed(prepared) -> dict[str, tuple[onnx.ModelProto, dict]]:
    """Each prepared model with a lossy (25 dB) pair on every site."""
    out = {}
    for name, model in prepared.items():
        codecs = codecs_for(model, DctCm(sqnr_db=25.0))
        out[name] = (insert_pairs(model, codecs).model, codecs)
    return out


# --- the site rule ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED_SITES))
def test_find_sites_follows_the_rule(prepared, name: str) -> None:
    sites = find_sites(prepared[name])
    assert [s.name for s in sites] == EXPECTED_SITES[name]
    model = prepared[name]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output)}
    consumers: dict[str, list[str]] = {}
    producers = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.name)
        for o in node.output:
            producers[o] = node
    for s in sites:
        assert list(s.shape) == shapes[s.name][1:] and s.values == int(np.prod(shapes[s.name][1:]))
        assert sorted(s.consumers) == sorted(consumers[s.name])
        assert s.producer == producers[s.name].name and s.producer_op == producers[s.name].op_type


def test_site_rule_details(prepared) -> None:
    by_name = {s.name: s for s in find_sites(prepared["branchy"])}
    assert by_name["relu1"].consumers == ("pool1",)  # feeds only a MaxPool: written to memory
    assert by_name["gap"].shape == (8, 1, 1)         # pooled to 1x1 but still on the way to the Gemm
    assert sorted(by_name["relu2"].consumers) == ["conv3a", "conv3b"]
    residual = {s.name: s for s in find_sites(prepared["residual"])}
    assert "left_relu" not in residual and "right_relu" not in residual  # feed only the Concat
    assert "conv2" not in residual                                     # feeds only the residual Add
    assert residual["relu1"].consumers == ("conv2", "add")  # a skip source is written once, read twice
    assert residual["concat"].producer_op == "Concat" and residual["add"].producer_op == "Add"
    assert find_sites(prepare(models.no_conv(), need_conv=False)) == []


def test_select(prepared) -> None:
    sites = find_sites(prepared["residual"])
    names = lambda chosen: [s.name for s in chosen]  # noqa: E731
    assert names(select(sites)) == names(sites)
    assert names(select(sites, ["pool", "relu1", "missing"])) == ["relu1", "pool"]
    assert names(select(sites, op_types=["Add", "Concat"])) == ["add", "concat"]
    assert names(select(sites, lambda s: s.shape[1] < models.SIZE)) == ["pool"]
    assert names(select(sites, exclude=["add"])) == ["relu1", "concat", "pool"]
    assert names(select(sites, ["add", "pool"], op_types=["MaxPool"], exclude=["relu1"])) == ["pool"]
    assert select(sites, []) == []


# --- insert -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_insert_is_valid_and_rewires_every_consumer(prepared, compressed, name: str) -> None:
    original = prepared[name]
    model, codecs = compressed[name]
    onnx.checker.check_model(model, full_check=True)
    pairs = {p.site: p for p in find_pairs(model)}
    assert set(pairs) == set(codecs) == set(EXPECTED_SITES[name])
    for site, pair in pairs.items():
        assert pair.codec.param_id == codecs[site].param_id
        assert pair.encode.domain == pair.decode.domain == DOMAIN
    new_nodes = {n.name: n for n in model.graph.node}
    positions = {n.name: i for i, n in enumerate(model.graph.node)}
    for node in original.graph.node:
        rewired = new_nodes[node.name]
        assert rewired.op_type == node.op_type and list(rewired.output) == list(node.output)
        for before, after in zip(node.input, rewired.input, strict=True):
            if before in pairs:
                assert after == pairs[before].decoded
                assert positions[pairs[before].decode.name] < positions[node.name]  # still topological
            else:
                assert after == before
    for site, pair in pairs.items():
        readers = [n.name for n in model.graph.node if site in n.input]
        assert readers == [pair.encode.name]
    assert [o.name for o in model.graph.output] == [o.name for o in original.graph.output]
    assert {o.domain: o.version for o in model.opset_import}[DOMAIN] == 1
    assert {f.name for f in model.functions} == {"DctCmEncode", "DctCmDecode"}


def test_compressed_models_run_and_stay_close(prepared, compressed) -> None:
    batches = feeds(3, seed=9)
    for name, (model, _) in compressed.items():
        ref, out = run(prepared[name], batches), run(model, batches)
        for r, o in zip(ref, out):
            span = float(np.abs(r[0]).max())
            assert np.max(np.abs(o[0] - r[0])) <= 0.25 * span, name


def qdq_simulation(model: onnx.ModelProto, codecs: dict) -> onnx.ModelProto:
    """The model with standard QuantizeLinear/DequantizeLinear (8-bit, zero point 0, the codec's scale) on
    every site: what lossless zero-mask coding must compute, written without any featcomp op. int8 saturates
    at -128 and the codec's symmetric range at -127, so signed sites get a Clip after the DequantizeLinear."""
    sim = onnx.ModelProto()
    sim.CopyFrom(model)
    graph = sim.graph
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in codecs:
                node.input[i] = f"{name}/dq"
        graph.node.append(node)
        for out in node.output:
            if out in codecs:
                codec = codecs[out]
                zp = np.zeros((), np.int8 if codec.qmin < 0 else np.uint8)
                graph.initializer.extend([numpy_helper.from_array(np.asarray(codec.scale, np.float32), f"{out}/s"),
                                          numpy_helper.from_array(zp, f"{out}/zp")])
                signed = codec.qmin < 0
                graph.node.extend([
                    helper.make_node("QuantizeLinear", [out, f"{out}/s", f"{out}/zp"], [f"{out}/q"]),
                    helper.make_node("DequantizeLinear", [f"{out}/q", f"{out}/s", f"{out}/zp"],
                                     [f"{out}/dq8" if signed else f"{out}/dq"]),
                ])
                if signed:
                    low = np.float32(codec.qmin) * np.float32(codec.scale)
                    graph.initializer.append(numpy_helper.from_array(np.asarray(low, np.float32), f"{out}/low"))
                    graph.node.append(helper.make_node("Max", [f"{out}/dq8", f"{out}/low"], [f"{out}/dq"]))
    return sim


@pytest.mark.parametrize("name", ["two_convs", "residual", "branchy"])
def test_lossless_pairs_equal_8bit_quantize_dequantize(prepared, name: str) -> None:
    original = prepared[name]
    codecs = codecs_for(original, DctCm(groups=()))
    for codec in codecs.values():
        assert codec.group == 1 and float(codec.step[0]) == 1.0 and float(codec.transform[0, 0]) == 1.0
    assert any(c.qmin < 0 for c in codecs.values()) == (name == "residual")  # the residual Add is signed
    model = insert_pairs(original, codecs).model
    onnx.checker.check_model(model, full_check=True)
    sim = qdq_simulation(original, codecs)
    onnx.checker.check_model(sim, full_check=True)
    batches = feeds(4) + feeds(2, seed=12)  # the calibration inputs and two more
    # ORT's graph optimizations rewrite Q/DQ pairs into quantized kernels, which is not what the plain
    # ONNX semantics (the simulation) say, so the simulation runs unoptimized.
    ref, out, expected = run(original, batches), run(model, batches), run(sim, batches, optimize=False)
    for r, o, e in zip(ref, out, expected):
        span = float(np.abs(e[0]).max())
        np.testing.assert_allclose(o[0], e[0], rtol=0, atol=1e-5 * span)
        assert not np.array_equal(o[0], r[0])  # the quantization really happens...
        # ...and moves the logits by far less than the sites' 8-bit step could at most
        assert np.max(np.abs(o[0] - r[0])) <= 0.05 * span


def test_lossless_symbols_are_the_8bit_values(prepared) -> None:
    """Inside the compressed model, each site's symbols are round(x / scale) of the tensor it receives."""
    original = prepared["residual"]
    codecs = codecs_for(original, DctCm(groups=()))
    model = insert_pairs(original, codecs).model
    pairs = find_pairs(model)
    names = [p.site for p in pairs] + [p.symbols for p in pairs]
    for p in pairs:
        model.graph.output.append(helper.make_tensor_value_info(p.site, TensorProto.FLOAT, None))
        model.graph.output.append(helper.make_tensor_value_info(p.symbols, TensorProto.INT16, None))
    sess = session(model)
    for f in feeds(2, seed=3):
        values = dict(zip(names, sess.run(names, f)))
        for p in pairs:
            x, sym = values[p.site], values[p.symbols]
            q = np.clip(np.rint(x / p.codec.scale), p.codec.qmin, p.codec.qmax)
            np.testing.assert_array_equal(sym, q.astype(np.int16))


# --- strip ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_strip_is_the_exact_inverse(prepared, compressed, name: str) -> None:
    original = prepared[name]
    model, _ = compressed[name]
    stripped = strip_pairs(model).model
    assert stripped.SerializeToString() == original.SerializeToString()
    assert find_pairs(stripped) == []
    batches = feeds(2, seed=4)
    for a, b in zip(run(original, batches), run(stripped, batches)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_strip_of_an_unprepared_model_and_of_a_plain_model() -> None:
    raw = models.two_convs()
    codecs = codecs_for(prepare(raw), DctCm(sqnr_db=20.0))
    assert strip_pairs(insert_pairs(raw, codecs).model).model.SerializeToString() == raw.SerializeToString()
    assert strip_pairs(raw).model.SerializeToString() == raw.SerializeToString()


def test_strip_drops_a_probes_symbol_outputs(prepared, compressed) -> None:
    model, _ = compressed["two_convs"]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    pairs = find_pairs(probe)
    probe.graph.output.extend(helper.make_tensor_value_info(p.symbols, onnx.TensorProto.INT16, None) for p in pairs)
    stripped = strip_pairs(probe).model
    assert [o.name for o in stripped.graph.output] == [o.name for o in prepared["two_convs"].graph.output]
    onnx.checker.check_model(stripped, full_check=True)


def test_partial_selection_only_touches_chosen_sites(prepared) -> None:
    original = prepared["residual"]
    codecs = codecs_for(original, DctCm(sqnr_db=20.0), names=["add"])
    model = insert_pairs(original, codecs).model
    assert [p.site for p in find_pairs(model)] == ["add"]
    assert len(model.graph.node) == len(original.graph.node) + 2
    assert strip_pairs(model).model.SerializeToString() == original.SerializeToString()


def test_inserting_twice_is_refused(compressed) -> None:
    model, codecs = compressed["two_convs"]
    with pytest.raises(FeatcompError, match="already"):
        insert_pairs(model, codecs)
    with pytest.raises(FeatcompError):
        insert_pairs(model, {})


def test_inserting_on_an_unknown_tensor_is_refused(prepared, compressed) -> None:
    _, codecs = compressed["two_convs"]
    with pytest.raises(FeatcompError, match="nope"):
        insert_pairs(prepared["two_convs"], {"nope": codecs["relu1"]})


def test_graph_output_site_keeps_its_name(prepared, compressed) -> None:
    original = prepared["site_output"]
    model, _ = compressed["site_output"]
    assert [o.name for o in model.graph.output] == ["logits", "relu1"]
    batches = feeds(2, seed=6)
    for (ref_logits, ref_relu1), (logits, relu1) in zip(run(original, batches), run(model, batches)):
        np.testing.assert_array_equal(relu1, ref_relu1)  # the graph still returns the tensor itself
        assert logits.shape == ref_logits.shape
        assert not np.array_equal(logits, ref_logits)  # while conv2 reads the decoded one
    pair = next(p for p in find_pairs(model) if p.site == "relu1")
    conv2 = next(n for n in model.graph.node if n.name == "conv2")
    assert conv2.input[0] == pair.decoded


def test_old_opset_is_upgraded_and_compresses(prepared, compressed) -> None:
    raw = models.old_opset(9)
    assert default_opset(raw) == 9
    assert default_opset(prepared["opset9"]) >= 11
    model, _ = compressed["opset9"]
    onnx.checker.check_model(model, full_check=True)
    fn_opsets = {o.version for f in model.functions for o in f.opset_import if o.domain == ""}
    assert fn_opsets == {default_opset(prepared["opset9"])}
    batches = feeds(2, seed=8)
    ref = run(raw, batches)  # the original, un-upgraded model
    for r, o in zip(ref, run(model, batches)):
        assert o[0].shape == r[0].shape
        assert np.max(np.abs(o[0] - r[0])) <= 0.25 * float(np.abs(r[0]).max())


def test_lrn_passes_through_like_a_pool() -> None:
    """AlexNet/ZFNet: conv1 -> ReLU -> LRN -> MaxPool -> conv2; the maps around the LRN are sites."""
    names = [s.name for s in find_sites(prepare(models.lrn_block()))]
    assert names[:3] == ["relu1", "norm1", "pool1"]


def test_light_alexnet_has_sites_at_its_two_largest_maps() -> None:
    from pathlib import Path

    path = Path(onnx.__file__).parent / "backend/test/data/light/light_bvlc_alexnet.onnx"
    if not path.is_file():
        needs.missing(f"onnx's light model zoo is not installed ({path})")
    model = prepare(onnx.load(str(path)))
    producers = {o: n for n in model.graph.node for o in n.output}
    sites = find_sites(model)
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    fed = set()  # the conv each site's value comes from, walking back through its single-input ops
    for site in sites:
        name = site.name
        while producers[name].op_type != "Conv":
            name = producers[name].input[0]
        fed.add(name)
    assert {convs[0], convs[1]} <= fed


def test_no_sites_in_a_1d_conv_model_says_why() -> None:
    model = models.conv1d()
    with pytest.raises(FeatcompError, match="1-D") as info:
        api.compress(model, [{models.INPUT: np.zeros((1, 3, models.SIZE), np.float32)}])  # type: ignore[arg-type]
    assert "--sites" not in str(info.value)


def test_every_pass_returns_a_typed_result(prepared, compressed) -> None:
    """PassResult: a new model (the input untouched), whether it changed, and the sites it changed."""
    from featcomp.passes.edit import PassResult
    from featcomp.passes.insert import EXACT, strip_to_original

    original = prepared["two_convs"]
    before = original.SerializeToString()
    _, codecs = compressed["two_convs"]
    inserted = insert_pairs(original, codecs)
    assert isinstance(inserted, PassResult) and inserted.changed and inserted.notes == tuple(codecs)
    assert original.SerializeToString() == before
    stripped = strip_pairs(inserted.model)
    assert stripped.changed and set(stripped.notes) == set(codecs)
    assert not strip_pairs(original).changed and strip_pairs(original).notes == ()
    assert EXACT not in strip_to_original(inserted.model).notes  # insert_pairs alone records no original


def test_insert_coder_puts_the_runtime_nodes_between_each_pair(compressed) -> None:
    from featcomp.passes.coder import CoderNodes, insert_coder

    model, codecs = compressed["two_convs"]
    seen: list[str] = []

    def build(pair, unpacked: str) -> CoderNodes:
        seen.append(pair.site)
        return CoderNodes([helper.make_node("Identity", [pair.symbols], [unpacked], name=pair.site + "/copy")])

    coded = insert_coder(model, "test.domain", build)
    assert coded.changed and list(coded.notes) == seen == [p.site for p in find_pairs(model)]
    order = [n.name for n in coded.model.graph.node]
    for pair in find_pairs(model):
        assert order.index(pair.site + "/copy") == order.index(pair.decode.name) - 1
        decode = next(n for n in coded.model.graph.node if n.name == pair.decode.name)
        assert decode.input[0] == pair.symbols + "/unpacked"
    assert any(o.domain == "test.domain" for o in coded.model.opset_import)
    with pytest.raises(FeatcompError, match="no featcomp pairs: compress it first, or not"):
        insert_coder(strip_pairs(model).model, "test.domain", build, why="or not")
