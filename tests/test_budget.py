"""The label-free top-1 budget: the estimator's maths, the search that holds it to --max-drop, the CLI lines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from featcomp.passes.insert import insert_pairs
from featcomp.passes.sites import find_sites
from featcomp.runtime_ops import ort
from onnx import TensorProto, helper, numpy_helper
from test_allocate import feeds, two_branches

from featcomp import allocate as alloc
from featcomp import api
from featcomp.budget import (
    DropEstimate,
    estimate,
    is_probabilities,
    Z95,
    measured_drop,
    probabilities,
    smooth_estimate,
)
from featcomp.cli import budget_lines, build_parser, quality_of
from featcomp.codecs.dctcm import DctCm
from featcomp.modelio import prepare
from featcomp.quality import MaxDrop

# ---------------------------------------------------------------------------------------------- estimator


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_unchanged_predictions_cost_nothing_and_are_certain() -> None:
    logits = np.random.default_rng(0).normal(size=(50, 10))
    est = estimate(logits, logits.argmax(axis=1))
    assert est.drop == 0.0 and est.se == 0.0 and est.upper == 0.0 and est.agreement == 1.0 and est.changed == 0
    assert est.inputs == 50
    assert est.expected_top1 == est.expected_top1_original == pytest.approx(np.mean(_softmax(logits).max(axis=1)))


def test_a_hand_computed_case() -> None:
    """Per-input costs 0, 10 and 50 points: mean 20, s.e. sqrt(var/3) with var = (400 + 100 + 900) / 2."""
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]])
    est = estimate(p, np.array([0, 1, 2]))
    assert est.drop == pytest.approx(20.0)
    assert est.se == pytest.approx(math.sqrt(700.0 / 3.0))
    assert est.upper == pytest.approx(20.0 + 1.96 * math.sqrt(700.0 / 3.0))
    assert est.agreement == pytest.approx(1 / 3)
    assert est.expected_top1_original == pytest.approx(0.6) and est.expected_top1 == pytest.approx(0.4)
    assert est.changed == 2
    assert est.describe() == (f"estimated top-1 drop 20.00 ± {1.96 * math.sqrt(700 / 3):.2f} points "
                              "(label-free, 3 inputs, 2 top-1 changed)")


def test_probabilities_and_their_logits_give_the_same_estimate() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, size=(40, 7))
    classes = rng.integers(0, 7, 40)
    probs = _softmax(logits).astype(np.float32)  # as a model ending in Softmax gives them
    assert is_probabilities(probs) and not is_probabilities(logits)
    from_logits, from_probs = estimate(logits, classes), estimate(probs, classes)
    assert from_probs.drop == pytest.approx(from_logits.drop, abs=1e-4)
    assert from_probs.se == pytest.approx(from_logits.se, abs=1e-4)
    # a temperature acts on probabilities as it does on their logits
    np.testing.assert_allclose(probabilities(probs, 2.0), _softmax(logits / 2.0), atol=1e-5)
    assert estimate(probs, classes, 2.0).drop == pytest.approx(estimate(logits, classes, 2.0).drop, abs=1e-3)
    # [N, K, 1, 1] as SqueezeNet gives them
    assert estimate(probs[:, :, None, None], classes).drop == pytest.approx(from_probs.drop)


@pytest.mark.parametrize("rows", [
    np.array([[0.2, 0.9], [0.5, 0.5]]),      # a row not summing to 1
    np.array([[-0.5, 1.5], [0.5, 0.5]]),     # negative: logits that happen to sum to 1
    np.array([[1.0], [1.0]]),                # one output per input: a score, not a distribution
])
def test_what_is_not_a_distribution(rows: np.ndarray) -> None:
    assert not is_probabilities(rows)


def test_flips_away_from_confident_classes_cost_more() -> None:
    """Two models flip the same number of inputs; the one flipping confident inputs loses more."""
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, size=(100, 5))
    p = _softmax(logits)
    top = p.argmax(axis=1)
    second = np.argsort(-p, axis=1)[:, 1]
    order = np.argsort(p.max(axis=1))
    unsure, sure = top.copy(), top.copy()
    unsure[order[:10]] = second[order[:10]]
    sure[order[-10:]] = second[order[-10:]]
    assert estimate(logits, unsure).agreement == estimate(logits, sure).agreement == 0.9
    assert estimate(logits, unsure).drop < estimate(logits, sure).drop


def test_measured_drop_is_paired() -> None:
    labels = np.array([0, 1, 2, 3])
    drop, se = measured_drop(np.array([0, 1, 2, 0]), np.array([0, 1, 0, 3]), labels)
    assert drop == 0.0  # one image lost, one gained
    assert se == pytest.approx(np.std([0, 0, 100, -100], ddof=1) / 2)


def test_a_bad_temperature_is_refused() -> None:
    with pytest.raises(ValueError, match="temperature"):
        probabilities(np.zeros((2, 3)), 0.0)


# ---------------------------------------------------------------------------------------------- smooth


def _pairs(margin: float, changes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-class logits [m/2, -m/2] (negative: not read as probabilities) per input, and compressed ones whose
    top-1 minus runner-up margin changed by `changes` [N] (split between the two classes)."""
    z = np.tile([margin / 2, -margin / 2], (len(changes), 1))
    return z, z + np.stack([changes / 2, -changes / 2], axis=1)


def test_smooth_unchanged_logits_cost_nothing() -> None:
    z = np.random.default_rng(0).normal(size=(50, 30))
    est = smooth_estimate(z, z + 3.0)  # a common shift is no error: softmax ignores it
    assert est.drop == 0.0 and est.se == 0.0 and est.agreement == 1.0 and est.inputs == 50
    assert est.expected_top1 == pytest.approx(est.expected_top1_original)


def test_smooth_common_mode_noise_adds_no_flips() -> None:
    """A large error that moves every top class alike (per input) cancels in the margins; i.i.d. noise of the
    same size does not."""
    rng = np.random.default_rng(5)
    z = rng.normal(scale=2.0, size=(80, 40))
    common = rng.normal(scale=50.0, size=(80, 1)) * np.ones((1, 40))
    assert smooth_estimate(z, z + common).drop == pytest.approx(0.0, abs=1e-9)
    assert smooth_estimate(z, z + rng.normal(scale=50.0, size=z.shape)).drop > 10.0


def test_smooth_a_margin_well_inside_the_noise_flips_half_the_time() -> None:
    """Symmetric margin changes of +-1 on a margin of 0.01: every input flips under half of them."""
    z, zc = _pairs(0.01, np.tile([1.0, -1.0], 100))
    p1 = 1.0 / (1.0 + math.exp(-0.01))
    est = smooth_estimate(z, zc)
    assert est.drop == pytest.approx(100.0 * 0.5 * (2.0 * p1 - 1.0), rel=1e-9)
    assert est.expected_top1 == pytest.approx(0.5, abs=1e-3)


def test_smooth_matches_the_measured_changes_distribution() -> None:
    """Margin 1, changes uniform on [-2, 0): each input flips under the half of them below -1."""
    margin = 1.0
    z, zc = _pairs(margin, -np.linspace(0.0, 2.0, 200, endpoint=False)[::-1])
    p1 = 1.0 / (1.0 + math.exp(-margin))
    est = smooth_estimate(z, zc)
    assert est.drop == pytest.approx(100.0 * (99 / 200) * (2.0 * p1 - 1.0), rel=1e-9)
    assert est.agreement == pytest.approx(1 - 99 / 200)  # the measured flips: changes strictly below -1


def test_smooth_noise_that_swamps_the_logits_spreads_the_top1_over_the_top_classes() -> None:
    z = np.random.default_rng(1).normal(size=(200, 25))
    zc = z + np.random.default_rng(2).normal(scale=1e4, size=z.shape)
    p = _softmax(z)
    est = smooth_estimate(z, zc)
    top10 = np.sort(p, axis=1)[:, -10:]
    assert est.expected_top1 == pytest.approx(float(np.mean(top10.mean(axis=1))), rel=0.1)
    assert est.expected_top1 < 0.8 * est.expected_top1_original


def test_smooth_reads_probabilities_like_logits() -> None:
    z = np.random.default_rng(6).normal(size=(30, 12))
    zc = z + np.random.default_rng(7).normal(scale=0.7, size=z.shape)
    assert smooth_estimate(_softmax(z), _softmax(zc)).drop == pytest.approx(smooth_estimate(z, zc).drop, abs=1e-6)


def test_smooth_grows_with_the_noise() -> None:
    z = np.random.default_rng(3).normal(scale=2.0, size=(60, 50))
    e = np.random.default_rng(4).normal(size=z.shape)
    drops = [smooth_estimate(z, z + s * e).drop for s in (0.05, 0.2, 0.5, 1.0, 3.0)]
    assert all(a < b for a, b in zip(drops, drops[1:])), drops


def test_smooth_bound_widens_with_fewer_inputs() -> None:
    rng = np.random.default_rng(8)
    z = rng.normal(scale=2.0, size=(400, 30))
    zc = z + rng.normal(scale=0.8, size=z.shape)
    wide, narrow = smooth_estimate(z[:25], zc[:25]), smooth_estimate(z, zc)
    assert wide.se > 2.0 * narrow.se > 0.0
    assert abs(wide.drop - narrow.drop) < Z95 * wide.se  # the same noise: the estimates agree within the bound


def test_smooth_refuses_mismatched_outputs() -> None:
    with pytest.raises(ValueError, match="do not match"):
        smooth_estimate(np.zeros((3, 4)), np.zeros((3, 5)))


# ---------------------------------------------------------------------------------------------- search


class Branches:
    def __init__(self, n: int = 16) -> None:
        self.model = prepare(two_branches())
        self.sites = find_sites(self.model)
        self.feeds = feeds(n, seed=3)
        self.stats = api.calibrate(self.model, self.feeds, sites=self.sites)
        self.fronts = {s.name: DctCm().candidates(self.stats[s.name]) for s in self.sites}
        self.gains = alloc.sensitivities(self.model, self.sites, self.feeds, self.fronts)
        self.sizes = {s.name: s.values for s in self.sites}

    def bits(self, codecs: dict) -> float:
        per = {n: next(c.bits_per_value for c in self.fronts[n] if c.site is codecs[n]) for n in codecs}
        return sum(per[n] * self.sizes[n] for n in codecs) / sum(self.sizes.values())

    def search(self, max_drop: float, **kw: object) -> alloc.Allocation:
        return alloc.search(self.model, self.fronts, self.gains, self.stats, self.feeds, max_drop, **kw)

    def estimated(self, codecs: dict) -> DropEstimate:
        """The estimate recomputed from scratch: both models run here, not inside the search."""
        original, compressed = ort.session(self.model), ort.session(insert_pairs(self.model, codecs).model)
        ref = np.concatenate([original.run(None, f)[0] for f in self.feeds])
        got = np.concatenate([compressed.run(None, f)[0].argmax(axis=1) for f in self.feeds])
        return estimate(ref, got)


@pytest.fixture(scope="module")
def branches() -> Branches:
    return Branches()


@pytest.mark.parametrize("bound", ["estimate", "upper"])
def test_the_chosen_setting_keeps_the_estimated_drop_within_the_budget(branches: Branches, bound: str) -> None:
    for max_drop in (0.5, 2.0, 8.0):
        found = branches.search(max_drop, bound=bound)
        assert found.metric == "expected" and found.met
        again = branches.estimated(found.codecs)
        held = again.drop if bound == "estimate" else again.upper
        assert held <= max_drop + 1e-9, max_drop
        assert found.estimate is not None and found.estimate.drop == pytest.approx(again.drop)
        assert found.score == pytest.approx(held)
        assert found.base is not None and found.base.drop <= found.estimate.drop + 1e-9


def test_the_smooth_search_keeps_its_estimate_within_the_budget(branches: Branches) -> None:
    found = branches.search(2.0, estimator="smooth")
    assert found.met and found.estimate is not None and found.estimate.upper <= 2.0 + 1e-9
    assert found.score == pytest.approx(found.estimate.upper)
    flips = branches.estimated(found.codecs)
    assert found.estimate.agreement == pytest.approx(flips.agreement)  # the measured agreement is kept
    with pytest.raises(ValueError, match="unknown estimator"):
        branches.search(2.0, estimator="magic")


def test_the_upper_bound_is_the_default(branches: Branches) -> None:
    found = branches.search(4.0)
    assert found.estimate is not None and found.score == pytest.approx(found.estimate.upper)


def test_a_tighter_budget_spends_more_bits(branches: Branches) -> None:
    budgets = [0.0, 1.0, 4.0, 16.0, 100.0]
    found = [branches.search(p) for p in budgets]
    bits = [branches.bits(f.codecs) for f in found]
    snrs = [f.output_snr_db for f in found]
    assert all(a >= b - 1e-12 for a, b in zip(bits, bits[1:])), bits
    assert all(a >= b for a, b in zip(snrs, snrs[1:])), snrs
    assert bits[0] > bits[-1]


def test_the_upper_bound_is_stricter_than_the_estimate(branches: Branches) -> None:
    point, upper = branches.search(4.0, bound="estimate"), branches.search(4.0, bound="upper")
    assert upper.estimate is not None and upper.estimate.upper <= 4.0 + 1e-9
    assert branches.bits(upper.codecs) >= branches.bits(point.codecs)


def test_agreement_is_the_strict_form(branches: Branches) -> None:
    """At the same P agreement may flip at most P% of inputs however cheap the flips: never fewer bits."""
    strict, loose = branches.search(10.0, metric="agreement"), branches.search(10.0, bound="estimate")
    assert strict.metric == "agreement" and strict.agreement is not None and strict.agreement >= 0.9
    assert branches.bits(strict.codecs) >= branches.bits(loose.codecs)


def near_ties() -> onnx.ModelProto:
    """input -> 1x1 conv picking channels 0 and 1 -> Relu (the site) -> GAP -> logits [1, 2].

    Fed inputs whose two channels have the same mean to 1e-6, the two logits tie: the 8-bit quantization at
    the site (independent rounding in the two channels) flips some of them, so even the finest setting costs.
    """
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0, 0] = w[1, 1] = 1.0
    nodes = [helper.make_node("Conv", [models.INPUT, "w"], ["conv"], name="conv"),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
             helper.make_node("Conv", ["relu", "eye"], ["head"], name="head"),
             helper.make_node("GlobalAveragePool", ["head"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["logits"], name="logits")]
    eye = np.eye(2, dtype=np.float32)[:, :, None, None]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(eye, "eye")]
    graph = helper.make_graph(nodes, "ties", [models._input()],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def tie_feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    out = []
    for i in range(n):
        x = rng.uniform(0.0, 3.0, (1, 3, models.SIZE, models.SIZE)).astype(np.float64)
        x[0, 1] += x[0, 0].mean() - x[0, 1].mean() + (1e-6 if i % 2 else -1e-6)
        out.append({models.INPUT: x.astype(np.float32)})
    return out


def test_a_budget_the_base_quantization_already_misses_says_so() -> None:
    model = prepare(near_ties())
    sites = find_sites(model)
    batches = tie_feeds(24)
    stats = api.calibrate(model, batches, sites=sites)
    fronts = {s.name: DctCm().candidates(stats[s.name]) for s in sites}
    gains = alloc.sensitivities(model, sites, batches, fronts)
    found = alloc.search(model, fronts, gains, stats, batches, 0.0)
    assert not found.met
    assert {n: c.param_id for n, c in found.codecs.items()} == {n: f[-1].site.param_id for n, f in fronts.items()}
    assert found.base is not None and found.base.drop > 0 and found.base.agreement < 1.0
    assert found.output_snr_db == alloc.SNR_RANGE_DB[1]


# ---------------------------------------------------------------------------------------------- CLI


def _how(**kw: object) -> dict:
    est = {"points": 0.8, "se": 0.2, "ci95": 0.392, "inputs": 200, "changed": 9}
    base = {"points": 0.1, "se": 0.05, "ci95": 0.098, "inputs": 200, "changed": 2}
    return {"method": "sensitivity", "max_drop": 1.0, "metric": "expected", "met": True, "bound": "estimate",
            "calibration_agreement": 0.95, "estimated_drop": est, "base_estimated_drop": base, **kw}


def test_budget_lines_say_what_was_estimated_and_how_sure() -> None:
    assert budget_lines(_how()) == ["budget: --max-drop 1: estimated top-1 drop 0.80 ± 0.39 points (label-free, "
                                    "200 inputs, 9 top-1 changed); of which the 8-bit base quantization alone: "
                                    "0.10 points, estimated"]
    missed = budget_lines(_how(met=False, max_drop=0.05, estimated_drop=_how()["base_estimated_drop"]))
    assert len(missed) == 1 and missed[0].startswith(
        "note: --max-drop 0.05 cannot be met: the 8-bit base quantization alone (the finest setting) costs "
        "0.10 ± 0.10 points")
    assert "against the model given" in missed[0]
    strict = budget_lines(_how(metric="agreement", met=False, base_agreement=0.97, required=0.99), True)
    assert strict[0].startswith("note: --max-drop-agreement 1 cannot be met: the 8-bit base quantization alone "
                                "(the finest setting) top-1 agreement 97.0% (needed 99.0%)")
    labelled = budget_lines(_how(metric="top1", calibration_top1=0.70, original_top1=0.71, base_top1_drop=0.5))
    assert labelled[0].startswith("budget: --max-drop 1: top-1 on the 200 calibration inputs 70.0% (original 71.0%, "
                                  "measured drop 1.0 points); estimated top-1 drop 0.80")
    upper = budget_lines(_how(bound="upper"))
    assert upper[0].startswith("budget: --max-drop 1: estimated top-1 drop 0.80 ± 0.39 points (label-free, 200 "
                               "inputs, 9 top-1 changed) (its 95% upper bound was held to the budget); ")
    assert budget_lines({"method": "sensitivity", "output_snr_db": 20.0}) == []


def test_max_drop_and_max_drop_agreement_are_exclusive(cli) -> None:
    run = cli("compress", "m.onnx", "-o", "o.onnx", "--calib", "c.npz", "--max-drop", "1", "--max-drop-agreement", "1")
    assert run.code == 2 and "not allowed with argument" in run.err


@pytest.mark.parametrize("flag, metric", [("--max-drop", "expected"), ("--max-drop-agreement", "agreement")])
def test_compress_prints_and_records_the_budget(cli, model_file, calib_npz, tmp_path: Path, flag: str,
                                                metric: str) -> None:
    out, report = tmp_path / "m.fc.onnx", tmp_path / "r.json"
    run = cli("compress", model_file(models.two_convs()), "-o", out, "--calib", calib_npz, flag, "50",
              "--report", report, "--quiet")
    assert run.code == 0, run.err
    how = json.loads(report.read_text())["meta"]["allocation"]
    assert how["metric"] == metric and how["max_drop"] == 50.0 and how["met"] is True
    assert how.get("bound") == ("upper" if metric == "expected" else None)
    assert how["estimated_drop"]["inputs"] == 4 and how["base_estimated_drop"]["inputs"] == 4
    lines = [line for line in run.out.splitlines() if line.startswith("budget:")]
    assert lines == budget_lines(how, flag == "--max-drop-agreement")
    assert f"budget: {flag} 50: " in lines[0] and "(label-free, 4 inputs, " in lines[0]
    assert "could not be met" not in run.err


@pytest.mark.parametrize("options, message", [
    ({"metric": "top5"}, "unknown drop metric 'top5'"),
    ({"metric": "top1"}, "needs labels"),
    ({"bound": "lower"}, "unknown drop bound 'lower'"),
    ({"estimator": "magic"}, "unknown budget estimator 'magic'"),
])
def test_bad_budget_options_are_one_line_errors(calib_npz: Path, options: dict, message: str) -> None:
    from featcomp.errors import FeatcompError

    with pytest.raises(FeatcompError, match=message):
        api.compress(models.two_convs(), calib_npz, quality=MaxDrop(1.0, **options))


@pytest.mark.parametrize("argv, want", [
    ([], None),
    (["--max-drop", "0.5"], MaxDrop(0.5)),
    (["--budget-estimator", "smooth"], MaxDrop(1.0, estimator="smooth")),
    (["--max-drop", "0.5", "--budget-estimator", "smooth"], MaxDrop(0.5, estimator="smooth")),
    (["--max-drop", "2", "--budget-estimator", "flips"], MaxDrop(2.0, estimator="flips")),
])
def test_the_budget_estimator_flag(argv: list[str], want: MaxDrop | None) -> None:
    args = build_parser().parse_args(["compress", "m.onnx", *argv])
    assert quality_of(args) == want


@pytest.mark.parametrize("argv, message", [
    (["--budget-estimator", "magic"], "featcomp: error: unknown --budget-estimator 'magic'; choose flips or smooth"),
    (["--sqnr", "30", "--budget-estimator", "smooth"],
     "featcomp: error: --budget-estimator applies to the label-free --max-drop only"),
])
def test_a_bad_budget_estimator_is_one_line(cli, model_file, calib_npz, tmp_path: Path, argv: list[str],
                                            message: str) -> None:
    run = cli("compress", model_file(models.two_convs()), "-o", tmp_path / "o.onnx", "--calib", calib_npz, *argv)
    assert run.code == 1 and run.err.strip() == message


def test_compress_records_the_smooth_estimator(cli, model_file, calib_npz, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run = cli("compress", model_file(models.two_convs()), "-o", tmp_path / "m.fc.onnx", "--calib", calib_npz,
              "--max-drop", "50", "--budget-estimator", "smooth", "--report", report, "--quiet")
    assert run.code == 0, run.err
    how = json.loads(report.read_text())["meta"]["allocation"]
    assert how["estimator"] == "smooth" and how["bound"] == "upper" and how["met"] is True
    assert "[smooth estimator" in next(line for line in run.out.splitlines() if line.startswith("budget:"))
