"""The ai.featcomp ops as ONNX functions, run by a plain onnxruntime.InferenceSession, against the numpy
reference: symbols bit for bit (rounding ties and clipping included), decoded values to float precision,
at every default-domain opset featcomp emits, and schemas that match the function protos."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SiteCase
from featcomp.codecs.dctcm import DENSE, DROP, MASK, DctCmSite
from featcomp.ops.functions import MIN_OPSET, function_for
from featcomp.ops.schemas import DCTCM_DECODE, DCTCM_ENCODE, DOMAIN, OPS, PAIRS, VERSION

OPSETS = (11, 13, 17, 21)


def pair_model(site: DctCmSite, opset: int) -> onnx.ModelProto:
    """X -> DctCmEncode -> DctCmDecode, returning both the symbols and the decoded tensor."""
    arrays = site.side_arrays()
    inits = [numpy_helper.from_array(np.asarray(v), f"p/{k}") for k, v in arrays.items()]
    enc = helper.make_node(DCTCM_ENCODE.name, ["X"] + [f"p/{p.name}" for p in DCTCM_ENCODE.inputs[1:]], ["Y"],
                           name="enc", domain=DOMAIN, **site.attributes())
    dec = helper.make_node(DCTCM_DECODE.name, ["Y"] + [f"p/{p.name}" for p in DCTCM_DECODE.inputs[1:]], ["Z"],
                           name="dec", domain=DOMAIN)
    dims = ["N", *site.shape]
    graph = helper.make_graph(
        [enc, dec], "pair", [helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("Y", TensorProto.INT16, dims),
         helper.make_tensor_value_info("Z", TensorProto.FLOAT, dims)], inits)
    return helper.make_model(
        graph, ir_version=8,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, VERSION)],
        functions=[function_for(DCTCM_ENCODE.name, opset), function_for(DCTCM_DECODE.name, opset)])


def session(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def tie_site() -> DctCmSite:
    """G=2 sum/difference transform with step 2: odd sums land exactly on .5 after the step division."""
    t = np.array([[1, 1], [1, -1]], np.float32)
    step = np.array([2, 2], np.float32)
    scale = np.float32(0.25)  # a power of two: (k + 0.5) * scale / scale is exactly k + 0.5
    decode = (scale * np.linalg.inv(t.astype(np.float64)) @ np.diag(step.astype(np.float64))).astype(np.float32)
    return DctCmSite(shape=(4, 3, 5), scale=scale, qmin=np.float32(-127), qmax=np.float32(127), transform=t,
                     step=step, cmin=np.array([-100, -60], np.float32), cmax=np.array([100, 60], np.float32),
                     decode_matrix=decode, kinds=np.array([DENSE, MASK, MASK, DENSE], np.uint8),
                     rice_k=np.array([3, 1, 1, 2], np.uint8))


def inputs_for(site: DctCmSite, base: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Seeded batches: real-looking data, values at rounding ties, beyond the clip range, zeros."""
    scale = np.float32(site.scale)
    shape = (2, *site.shape)
    k = rng.integers(int(site.qmin) - 20, int(site.qmax) + 20, size=shape).astype(np.float32)
    return [
        base[:2], base[2:5],
        (k + np.float32(0.5)) * scale,                       # ties of the 8-bit rounding
        (k - np.float32(0.5)) * scale,
        k * scale,                                           # exact grid points
        base[:2] * np.float32(5.0), -base[:2] * np.float32(3.0),  # clipped at qmin / qmax
        rng.uniform(-1e6, 1e6, shape).astype(np.float32),
        np.zeros(shape, np.float32),
    ]


def check_against_reference(sess: onnxruntime.InferenceSession, site: DctCmSite, batches: list[np.ndarray]) -> None:
    for x in batches:
        x = np.ascontiguousarray(x, np.float32)
        y, z = sess.run(["Y", "Z"], {"X": x})
        assert y.dtype == np.int16 and y.shape == x.shape
        np.testing.assert_array_equal(y, site.symbols(x))
        # the ONNX interface is int16; a runtime keeps site.storage_dtype (8-bit where the range fits):
        # every symbol ORT makes, extreme inputs included, survives that storage unchanged
        np.testing.assert_array_equal(y.astype(site.storage_dtype).astype(np.int16), y)
        if site.mode == "mask":
            assert site.storage_dtype.itemsize == 1
        ref = site.dequantize(y)
        assert z.dtype == np.float32 and z.shape == x.shape
        np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max(initial=0.0)) + 1e-30)


def _pick(site_cases: list[SiteCase]) -> list[SiteCase]:
    """One mask and one dct site (with a masked frequency if there is one) for the opset sweep."""
    mask = next(c for c in site_cases if c.site.mode == "mask" and MASK in c.site.kinds)
    dct = next((c for c in site_cases if c.site.mode == "dct" and MASK in c.site.kinds),
               next(c for c in site_cases if c.site.mode == "dct"))
    return [mask, dct]


@pytest.mark.parametrize("opset", OPSETS)
def test_pair_model_is_valid_and_bit_exact(site_cases: list[SiteCase], opset: int) -> None:
    cases = site_cases if opset == 13 else _pick(site_cases)
    assert {c.site.mode for c in cases} == {"mask", "dct"}
    rng = np.random.default_rng(opset)
    for case in cases:
        model = pair_model(case.site, opset)
        onnx.checker.check_model(model, full_check=True)
        base = np.concatenate([case.calib, case.fresh])
        check_against_reference(session(model), case.site, inputs_for(case.site, base, rng))


@pytest.mark.parametrize("opset", OPSETS)
def test_rounding_ties_in_both_stages(opset: int) -> None:
    site = tie_site()
    rng = np.random.default_rng(1)
    base = rng.normal(0, 10, (5, *site.shape)).astype(np.float32)
    batches = inputs_for(site, base, rng)
    # make sure ties really occur, in the 8-bit rounding and after the step division
    x = batches[2]
    ratio = x / site.scale
    assert np.count_nonzero(ratio - np.floor(ratio) == 0.5) > x.size // 2
    q = np.clip(np.rint(ratio), site.qmin, site.qmax).reshape(2, 2, 2, -1)
    y = np.einsum("fg,ngkp->nfkp", site.transform, q.transpose(0, 2, 1, 3)) / 2.0
    assert np.count_nonzero(y - np.floor(y) == 0.5) > 0
    model = pair_model(site, opset)
    onnx.checker.check_model(model, full_check=True)
    check_against_reference(session(model), site, batches)


def test_batch_of_three_matches_per_sample(site_cases: list[SiteCase]) -> None:
    for case in _pick(site_cases):
        sess = session(pair_model(case.site, 13))
        x = np.concatenate([case.fresh[:2], case.calib[:1]])
        assert len(x) == 3
        y, z = sess.run(["Y", "Z"], {"X": x})
        for i in range(3):
            np.testing.assert_array_equal(y[i], case.site.symbols(x[i]))
            y1, z1 = sess.run(["Y", "Z"], {"X": x[i:i + 1]})
            np.testing.assert_array_equal(y1[0], y[i])
            np.testing.assert_allclose(z1[0], z[i], rtol=1e-6, atol=1e-6 * float(np.abs(z[i]).max()))
            # and the symbols pack into the bitstream the reference decodes to the same tensor
            np.testing.assert_allclose(case.site.decode(case.site.pack(y[i])), z[i], rtol=1e-5,
                                       atol=1e-5 * float(np.abs(z[i]).max()))


# --- schemas vs function protos ---------------------------------------------------------------------------

@pytest.mark.parametrize("opset", OPSETS)
def test_schemas_match_function_protos(opset: int) -> None:
    assert set(OPS) == {op.name for pair in PAIRS.values() for op in pair}
    for name, op in OPS.items():
        fn = function_for(name, opset)
        assert fn.name == op.name == name
        assert fn.domain == op.domain == DOMAIN
        assert list(fn.input) == op.input_names
        assert list(fn.output) == [p.name for p in op.outputs]
        assert list(fn.attribute) == [a.name for a in op.attributes]
        imports = {o.domain: o.version for o in fn.opset_import}
        assert imports[""] == max(opset, MIN_OPSET)
        # every tensor a body node reads is a function input, a body output, or empty (optional)
        produced = set(fn.input) | {o for n in fn.node for o in n.output}
        assert all(i in produced or i == "" for n in fn.node for i in n.input), name
        assert set(fn.output) <= {o for n in fn.node for o in n.output}
        assert all(n.domain in ("", "ai.onnx") for n in fn.node)  # only standard ops: plain ORT runs them


def test_pairs_and_side_arrays_cover_the_op_inputs() -> None:
    enc, dec = PAIRS["dct-cm"]
    assert (enc, dec) == (DCTCM_ENCODE, DCTCM_DECODE)
    site = tie_site()
    side = set(site.side_arrays())
    assert side == {p.name for p in enc.inputs[1:]} | {p.name for p in dec.inputs[1:]}
    assert enc.outputs[0].name == "Y" and dec.inputs[0].name == "Y"


def test_encode_node_attributes_are_declared_in_schema() -> None:
    assert set(tie_site().attributes()) == {a.name for a in DCTCM_ENCODE.attributes}


def test_opset_below_minimum_is_raised_to_minimum() -> None:
    fn = function_for(DCTCM_ENCODE.name, 7)
    assert {o.domain: o.version for o in fn.opset_import}[""] == MIN_OPSET
