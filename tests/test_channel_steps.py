"""Per-channel steps in DCT-CM zero-mask mode (DctCm.channel_steps): the candidates, the site they make and
the ops that run it. Steps follow each channel's consumer sensitivity (passes.sites.consumer_weights); the
SQNR of every candidate is sensitivity-weighted then, so that the front compares like with like."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import activation_stats, relu_sparse, signed_smooth
from featcomp.codecs.dctcm import DctCm, DctCmSite, weighted_sqnr_db
from featcomp.errors import FeatcompError
from featcomp.passes.sites import consumer_weights
from test_ops_ort import check_against_reference, inputs_for, pair_model, session


def _stats(make: object, seed: int, spread: float) -> tuple[object, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    calib, fresh = make(rng, 8), make(rng, 4)  # type: ignore[operator]
    stats = activation_stats("x", calib)
    stats.channel_weights = 10.0 ** rng.uniform(-spread, spread, calib.shape[1])
    return stats, calib, fresh


@pytest.fixture(scope="module")
def fronts() -> list[tuple[list, np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for seed, make in enumerate((relu_sparse, signed_smooth)):
        stats, calib, fresh = _stats(make, 300 + seed, 1.0)
        out.append((DctCm(channel_steps=0.5, groups=(1,)).candidates(stats), calib, fresh, stats.channel_weights))
    return out


def test_front_holds_per_channel_sites_that_win_on_weighted_sqnr(fronts: list) -> None:
    for front, *_ in fronts:
        per = [c for c in front if c.site.per_channel]
        assert per, "no per-channel candidate on the front"
        for c in per:
            steps = c.site.step[c.site.kinds != 0] / c.site.transform[0, 0]
            assert len(np.unique(steps)) > 1
            assert np.all(steps >= 1.0 - 1e-3)


def test_per_channel_sites_roundtrip_and_rebuild_exactly(fronts: list) -> None:
    for front, calib, fresh, _ in fronts:
        for cand in (c for c in front if c.site.per_channel):
            site = cand.site
            assert isinstance(site, DctCmSite)
            again = DctCmSite.from_arrays({k: v.copy() for k, v in site.side_arrays().items()}, site.attributes())
            assert again.param_id == site.param_id and again.per_channel
            sym = site.symbols(fresh)
            np.testing.assert_array_equal(again.symbols(fresh), sym)
            for one in sym:
                np.testing.assert_array_equal(site.unpack(site.pack(one)), one)
                assert len(site.pack(one)) == site.coded_bytes(one)
            # per channel, symbols are x / (scale * step_c / 128), rounded and clipped
            c = site.shape[0]
            q = np.clip(np.rint(fresh / site.scale), site.qmin, site.qmax).astype(np.float32)
            ref = np.rint(q * site.transform[0, 0] / site.step.reshape(1, c, 1, 1))
            ref = np.clip(ref, site.cmin.reshape(1, c, 1, 1), site.cmax.reshape(1, c, 1, 1))
            np.testing.assert_array_equal(sym, ref.astype(np.int16))


def test_candidate_sqnr_is_the_weighted_sqnr_of_the_calibration_sample(fronts: list) -> None:
    for front, calib, _, weights in fronts:
        for cand in front[::3]:
            sample = calib.transpose(0, 2, 3, 1).reshape(-1, calib.shape[1])
            recon = cand.site.dequantize(cand.site.symbols(calib)).transpose(0, 2, 3, 1).reshape(sample.shape)
            # the front's sample is a random subset of the same data: close, not equal
            w = weights / np.exp(np.mean(np.log(weights)))
            assert abs(weighted_sqnr_db(sample, recon.astype(np.float64), w) - cand.sqnr_db) < 1.5


def test_ort_ops_match_the_reference_for_per_channel_sites(fronts: list) -> None:
    rng = np.random.default_rng(5)
    for front, calib, fresh, _ in fronts:
        site = next(c.site for c in front if c.site.per_channel)
        model = pair_model(site, 13)
        onnx.checker.check_model(model, full_check=True)
        check_against_reference(session(model), site, inputs_for(site, np.concatenate([calib, fresh]), rng))


def test_channel_steps_option_is_checked() -> None:
    with pytest.raises(FeatcompError, match="channel_steps"):
        DctCm(channel_steps=-1.0)
    stats, *_ = _stats(signed_smooth, 1, 1.0)
    stats.channel_weights = None  # no weights: no per-channel candidates, unweighted SQNR
    assert not any(c.site.per_channel for c in DctCm(channel_steps=0.5, groups=(1,)).candidates(stats))


def test_consumer_weights_from_conv_weights() -> None:
    rng = np.random.default_rng(0)
    w_full = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)
    w_dw = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b")]
    nodes = [helper.make_node("Conv", ["x", "wf"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "wd"], ["b"], group=4, pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [x], outs, [numpy_helper.from_array(w_full, "wf"),
                                                      numpy_helper.from_array(w_dw, "wd")])
    model = helper.make_model(graph)
    got = consumer_weights(model, "x", 4)
    expected = np.square(w_full.astype(np.float64)).sum(axis=(0, 2, 3)) + np.square(w_dw.astype(np.float64)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    nodes.append(helper.make_node("Relu", ["x"], ["c"]))
    graph = helper.make_graph(nodes, "g", [x], outs, list(graph.initializer))
    assert consumer_weights(helper.make_model(graph), "x", 4) is None  # a consumer that is not a conv


def test_measured_channel_sensitivities_follow_the_downstream_weights() -> None:
    """relu2 -> 1x1 conv3 -> global average: a channel's logit error is linear in its conv3 column, so a
    zeroed column gives ~0 and a column 10x larger ~100x the typical sensitivity."""
    import models
    from featcomp.allocate import channel_sensitivities
    from featcomp.modelio import prepare
    from featcomp.passes.sites import find_sites

    model = prepare(models.two_convs())
    w3 = next(t for t in model.graph.initializer if t.name.startswith("conv3") and len(t.dims) == 4)
    w = numpy_helper.to_array(w3).copy()
    w[:, 0] *= 10.0
    w[:, 2] = 0.0
    w3.CopyFrom(numpy_helper.from_array(w, w3.name))
    site = next(s for s in find_sites(model) if s.name == "relu2")
    rng = np.random.default_rng(0)
    feeds = [{models.INPUT: rng.normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)} for _ in range(8)]
    sens = channel_sensitivities(model, site, feeds)
    typical = float(np.median(sens))
    assert sens.shape == (8,) and typical > 1e-9
    assert sens[0] > 10.0 * typical
    assert sens[2] < 1e-6 * typical
