"""Per-site quality allocation: measured sensitivities, targets that follow them, and the accuracy search."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import models
from featcomp import allocate as alloc
from featcomp import api
from featcomp.codecs.base import Candidate, sqnr_db
from featcomp.codecs.dctcm import DctCm
from featcomp.modelio import prepare
from featcomp.passes.insert import insert_pairs
from featcomp.passes.sites import find_sites
from featcomp.runtime_ops import ort

GAIN = 10.0  # the downstream multiplier of the loud branch
WIDTH, CLASSES = 32, 64  # many channels and logits: error energies average over many independent directions


def two_branches(gain: float = GAIN) -> onnx.ModelProto:
    """Two identical branches (shared weights) summed into the logits; one is multiplied by `gain` first.

    input -> conv1 -> loud   -> head (1x1) -> Mul(gain) -+
    input -> conv1' -> quiet -> head' (1x1) -------------+-> Add -> GAP -> Flatten -> logits [1, 64]
    The two sites (loud, quiet) carry the same activations; only their effect on the logits differs.
    """
    rng = np.random.default_rng(12)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.4, (WIDTH, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.1, WIDTH).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (CLASSES, WIDTH, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.float32(gain), "gain"),
    ]
    node = helper.make_node
    nodes = [
        node("Conv", [models.INPUT, "w1", "b1"], ["conv_loud"], name="conv_loud", pads=[1, 1, 1, 1]),
        node("Relu", ["conv_loud"], ["loud"], name="loud"),
        node("Conv", ["loud", "w2"], ["head_loud"], name="head_loud"),
        node("Mul", ["head_loud", "gain"], ["louder"], name="louder"),
        node("Conv", [models.INPUT, "w1", "b1"], ["conv_quiet"], name="conv_quiet", pads=[1, 1, 1, 1]),
        node("Relu", ["conv_quiet"], ["quiet"], name="quiet"),
        node("Conv", ["quiet", "w2"], ["head_quiet"], name="head_quiet"),
        node("Add", ["louder", "head_quiet"], ["sum"], name="sum"),
        node("GlobalAveragePool", ["sum"], ["gap"], name="gap"),
        node("Flatten", ["gap"], ["logits"], name="logits"),
    ]
    graph = helper.make_graph(nodes, "branches", [models._input()],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def feeds(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{models.INPUT: rng.normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)} for _ in range(n)]


class Setup:
    def __init__(self, model: onnx.ModelProto, n: int = 6) -> None:
        self.model = prepare(model)
        self.sites = find_sites(self.model)
        self.feeds = feeds(n)
        self.stats = api.calibrate(self.model, self.feeds, sites=self.sites)
        self.fronts = {s.name: DctCm().candidates(self.stats[s.name]) for s in self.sites}
        self.gains = alloc.sensitivities(self.model, self.sites, self.feeds, self.fronts)
        self.power = alloc.output_power(self.model, self.feeds)


@pytest.fixture(scope="module")
def branches() -> Setup:
    return Setup(two_branches())


def chosen_candidate(front: list[Candidate], site) -> Candidate:
    return next(c for c in front if c.site is site)


def test_branch_model_sites_share_their_activations(branches: Setup) -> None:
    assert [s.name for s in branches.sites] == ["loud", "quiet"]
    loud, quiet = branches.stats["loud"], branches.stats["quiet"]
    np.testing.assert_array_equal(loud.sample, quiet.sample)
    assert loud.maximum == quiet.maximum


@pytest.mark.parametrize("build", [models.two_convs, models.residual], ids=["two_convs", "residual"])
def test_sensitivities_are_positive_and_finite(build) -> None:
    setup = Setup(build(), n=3)
    assert set(setup.gains) == {s.name for s in setup.sites}
    for name, g in setup.gains.items():
        assert np.isfinite(g) and g > 0, name
    assert setup.power > 0 and np.isfinite(setup.power)


def test_downstream_gain_shows_in_the_sensitivity(branches: Setup) -> None:
    ratio = branches.gains["loud"] / branches.gains["quiet"]
    # output error energy scales with the square of the downstream gain; one noise draw per site
    assert GAIN**2 / 3 <= ratio <= GAIN**2 * 3, ratio


def test_sensitivity_is_reproducible(branches: Setup) -> None:
    again = alloc.sensitivities(branches.model, branches.sites, branches.feeds, branches.fronts)
    assert again == branches.gains


def test_allocate_gives_the_sensitive_site_more_quality(branches: Setup) -> None:
    for snr in (10.0, 25.0, 40.0):
        codecs = alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, snr)
        assert set(codecs) == {"loud", "quiet"}
        loud = chosen_candidate(branches.fronts["loud"], codecs["loud"])
        quiet = chosen_candidate(branches.fronts["quiet"], codecs["quiet"])
        assert loud.sqnr_db >= quiet.sqnr_db, snr
        assert loud.bits_per_value >= quiet.bits_per_value, snr
    # 20 dB of sensitivity difference is more than one step of the front apart somewhere in the range
    strictly = []
    for snr in np.linspace(20.0, 60.0, 9):
        codecs = alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, float(snr))
        strictly.append(chosen_candidate(branches.fronts["loud"], codecs["loud"]).sqnr_db
                        > chosen_candidate(branches.fronts["quiet"], codecs["quiet"]).sqnr_db)
    assert any(strictly)


def test_allocation_is_monotonic_in_the_output_snr(branches: Setup) -> None:
    previous = None
    for snr in np.linspace(0.0, 60.0, 7):
        codecs = alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, float(snr))
        snrs = {n: chosen_candidate(branches.fronts[n], c).sqnr_db for n, c in codecs.items()}
        if previous is not None:
            assert all(snrs[n] >= previous[n] for n in snrs), (snr, snrs, previous)
        previous = snrs


def _logit_snr(setup: Setup, codecs: dict) -> float:
    compressed = ort.session(insert_pairs(setup.model, codecs).model)
    original = ort.session(setup.model)
    ref = np.concatenate([original.run(None, f)[0] for f in setup.feeds])
    out = np.concatenate([compressed.run(None, f)[0] for f in setup.feeds])
    return sqnr_db(ref, out)


def test_higher_output_snr_gives_a_better_model(branches: Setup) -> None:
    low = _logit_snr(branches, alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, 20.0))
    high = _logit_snr(branches, alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, 50.0))
    assert high > low + 10.0


def test_allocated_model_meets_the_output_snr(branches: Setup) -> None:
    """The contract of output_snr_db: the logits' SNR against the original is (about) the target."""
    for target in (20.0, 25.0, 30.0, 35.0, 40.0, 50.0):
        codecs = alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, target)
        assert _logit_snr(branches, codecs) >= target - 3.0, target


def _agreement(model: onnx.ModelProto, codecs: dict, batches: list[dict[str, np.ndarray]]) -> float:
    original, compressed = ort.session(model), ort.session(insert_pairs(model, codecs).model)
    hits = [int(np.argmax(original.run(None, f)[0]) == np.argmax(compressed.run(None, f)[0])) for f in batches]
    return sum(hits) / len(hits)


def test_search_with_no_budget_is_exact_on_the_feeds(branches: Setup) -> None:
    found = alloc.search(branches.model, branches.fronts, branches.gains, branches.stats, branches.feeds, max_drop=0)
    assert found.agreement == 1.0
    assert _agreement(branches.model, found.codecs, branches.feeds) == 1.0
    lo, hi = alloc.SNR_RANGE_DB
    assert lo <= found.output_snr_db <= hi


def test_search_with_full_budget_takes_the_cheapest_end(branches: Setup) -> None:
    found = alloc.search(branches.model, branches.fronts, branches.gains, branches.stats, branches.feeds,
                         max_drop=100)
    lo, hi = alloc.SNR_RANGE_DB
    resolution = (hi - lo) / 2 ** alloc.SEARCH_STEPS
    assert lo <= found.output_snr_db <= lo + resolution + 1e-9
    assert found.agreement is not None and 0.0 <= found.agreement <= 1.0
    assert found.agreement == _agreement(branches.model, found.codecs, branches.feeds)
    cheapest = alloc.allocate(branches.fronts, branches.gains, branches.stats, branches.power, found.output_snr_db)
    assert {n: c.param_id for n, c in cheapest.items()} == {n: c.param_id for n, c in found.codecs.items()}


def test_logits_name_skips_a_final_softmax() -> None:
    model = two_branches()
    model.graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], name="probs", axis=1))
    model.graph.output[0].name = "probs"
    assert alloc.logits_name(model) == "logits"
    assert alloc.logits_name(two_branches()) == "logits"
