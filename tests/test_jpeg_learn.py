"""Table learning: the sensitivity probe against an analytic model, the R-D ladder, the searches and the
evaluation maths (BD-rate, rate at equal accuracy, input bytes)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import models
from featcomp.errors import FeatcompError
from featcomp.jpeg import evaluate as ev
from featcomp.jpeg import learn
from featcomp.jpeg.encode import encode
from featcomp.jpeg.measure import Classifier, Reference, rate
from featcomp.jpeg.tables import STANDARD_LUMA, Tables, standard
from featcomp.preprocess import Preprocess

SPEC = Preprocess.parse("resize=16,crop=16,order=rgb,mean=128,std=128")


def _views(n: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:16, 0:16]
    return [np.clip(np.stack([np.sin(x / (2 + i) + c) * 70 + y * 4 for c in range(3)], -1) + 90
                    + rng.normal(0, 8, (16, 16, 3)), 0, 255).astype(np.uint8) for i in range(n)]


def _flatten_model() -> Classifier:
    """'Logits' = the normalised pixels themselves: every gain has a closed form."""
    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 768])])
    return Classifier(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), SPEC)


@pytest.mark.parametrize("probe", ["quantize", "noise"])
def test_luma_gain_matches_the_closed_form(probe: str) -> None:
    """An AC luma error e moves R, G and B by e each: ||dz||^2 = 3 ||e||^2 / std^2 (orthonormal basis)."""
    g_luma, g_chroma = learn.sensitivities(_flatten_model(), _views(), probe=probe)
    np.testing.assert_allclose(g_luma.reshape(-1)[1:], 3 / 128 ** 2, rtol=1e-4)
    assert g_luma[0, 0] < 3 / 128 ** 2  # DC shifts are partly a common shift, which centring removes
    expected = (1.772 ** 2 + 0.344136 ** 2 + 1.402 ** 2 + 0.714136 ** 2) / 128 ** 2
    assert np.all(np.abs(g_chroma.reshape(-1)[1:] / expected - 1) < 0.35)


def test_rd_ladder_goes_from_fine_to_coarse() -> None:
    views = _views(6)
    ladder = learn.rd_ladder(views, np.ones((8, 8)), np.ones((8, 8)))
    assert ladder.shape[1:] == (2, 8, 8) and len(ladder) > 10
    assert (np.diff(ladder.reshape(len(ladder), -1), axis=0) >= 0).all()  # every step only grows
    assert ladder[0].max() <= 2 and ladder[-1].min() == 255
    rates = [rate(views, Tables(r[0], r[1])) for r in ladder[:: max(1, len(ladder) // 6)]]
    assert rates == sorted(rates, reverse=True)


def test_sensitive_frequencies_get_finer_steps() -> None:
    views = _views(6)
    g = np.ones((8, 8))
    g_hot = g.copy()
    g_hot[0, 1] = 1000.0
    plain, hot = learn.rd_ladder(views, g, g), learn.rd_ladder(views, g_hot, g)
    middle = lambda lad: lad[len(lad) // 2]  # noqa: E731
    assert middle(hot)[0, 0, 1] < middle(plain)[0, 0, 1]


def test_deepn_mapping() -> None:
    sigma = np.array([0.0, 10.0, 20.0, 40.0, 61.0, 500.0])
    assert learn._deepn_map(sigma).tolist() == [255.0, 157.5, 60.0, 40.0, 5.0, 5.0]


def test_learn_hits_a_rate_target_from_below() -> None:
    views = _views(4)
    target = rate(views, standard(50))
    tables = learn.learn("deepn", views, target_bpp=target)
    assert tables.meta["bpp"] <= target
    finer = tables.scaled(tables.scale * 0.9)  # type: ignore[operator]
    assert rate(views, finer) > tables.meta["bpp"] or (finer.luma == tables.luma).all()
    with pytest.raises(FeatcompError, match="below what JPEG can reach"):
        learn.learn("deepn", views, target_bpp=0.01)


def test_learn_max_drop_keeps_agreement() -> None:
    classifier = Classifier(models.two_convs(), SPEC)
    views = _views(5)
    tables = learn.learn("learned", views, classifier, max_drop=0.0, metric="agreement")
    assert tables.meta["agreement"] == 1.0 and tables.meta["target"] == {"max_drop": 0.0, "metric": "agreement"}
    assert tables.ladder is not None and tables.sweepable


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_max_drop_is_measured_on_top1_or_expected_top1(subsampling: str) -> None:
    """With labels the loss is top-1 against them; without, the expected top-1 under the uncompressed model's
    probabilities. Either way the chosen tables meet it on the images, at the asked subsampling."""
    classifier = Classifier(models.two_convs(), SPEC)
    views = _views(8)
    reference = Reference.of(classifier, views)
    labels = reference.classes.copy()
    labels[:2] = (labels[:2] + 1) % 4  # two wrong: uncompressed top-1 is 75%
    with_labels = learn.learn("deepn", views, classifier, max_drop=20.0, labels=labels, subsampling=subsampling)
    assert with_labels.meta["target"] == {"max_drop": 20.0, "metric": "top1"}
    assert with_labels.meta["top1_uncompressed"] == 0.75 and with_labels.meta["top1"] >= 0.55 - 1e-9
    assert with_labels.subsampling == subsampling and with_labels.meta["bpp"] == pytest.approx(
        rate(views, with_labels), abs=1e-4)
    free = learn.learn("deepn", views, classifier, max_drop=2.0, subsampling=subsampling)
    assert free.meta["target"]["metric"] == "expected" and free.meta["expected_top1_drop"] <= 0.02 + 1e-9
    with pytest.raises(FeatcompError, match="needs labels"):
        learn.learn("deepn", views, classifier, max_drop=1.0, metric="top1")


def test_smallest_looks_past_a_failing_member() -> None:
    """A test that fails in a window and passes again beyond it (what noise does to top-1 on few images):
    bisection alone stops at the window; the smallest passing file is found past it."""
    views = _views(3)
    family = Tables.from_profile(STANDARD_LUMA, STANDARD_LUMA, 1.0, "custom")
    window = lambda t: not (25 <= t.luma[0, 0] <= 45) and t.luma[0, 0] <= 80  # noqa: E731
    found, tried = learn.smallest(family, window, views)
    assert found is not None and window(found) and found.luma[0, 0] > 45
    bisected = learn.search_scale(family, window)
    assert bisected is not None and bisected.luma[0, 0] < 25
    assert rate(views, found) < rate(views, bisected) and tried > 10


@pytest.mark.parametrize("kwargs, why", [
    ({"method": "jpeg2000"}, "unknown method"), ({"target_bpp": 1.0, "max_drop": 1.0}, "not both"),
    ({"target_bpp": -1.0}, "positive"), ({"max_drop": 150.0}, "0..100"), ({"method": "learned"}, "needs the model"),
])
def test_learn_refuses_bad_requests(kwargs: dict, why: str) -> None:
    args = {"method": "deepn", **kwargs}
    method = args.pop("method")
    with pytest.raises(FeatcompError, match=why):
        learn.learn(method, _views(2), **args)


def test_search_finds_the_boundary() -> None:
    family = Tables.from_profile(STANDARD_LUMA, STANDARD_LUMA, 1.0, "custom")
    coarsest = learn.search_scale(family, lambda t: t.luma[0, 0] <= 40)
    assert coarsest is not None and coarsest.luma[0, 0] == 40
    finest = learn.search_scale(family, lambda t: t.luma[0, 0] >= 40, finest=True)
    assert finest is not None and finest.luma[0, 0] == 40
    assert learn.search_scale(family, lambda t: False) is None


def test_bd_rate_of_a_curve_at_half_the_rate() -> None:
    rates, accs = [0.4, 0.6, 0.9, 1.3, 2.0, 3.0], [0.40, 0.55, 0.63, 0.68, 0.71, 0.72]
    half = [r / 2 for r in rates]
    for fit in ("cubic", "linear"):
        assert ev.bd_rate((rates, accs), (rates, accs), fit) == pytest.approx(0.0, abs=1e-9)
        assert ev.bd_rate((rates, accs), (half, accs), fit) == pytest.approx(-50.0, abs=1e-6)
    assert ev.bd_rate((rates, accs), (rates, [a + 0.5 for a in accs]), "linear") is None
    with pytest.raises(FeatcompError, match="unknown BD-rate fit"):
        ev.bd_rate((rates, accs), (rates, accs), "spline")


def test_rate_at_uses_the_monotone_envelope() -> None:
    rates, accs = [1.0, 2.0, 4.0], [0.5, 0.45, 0.7]
    assert ev.rate_at(rates, accs, 0.5) == 1.0
    assert ev.rate_at(rates, accs, 0.6) == pytest.approx(2.0 * np.sqrt(2.0))  # halfway from 0.5 @ 2 to 0.7 @ 4
    assert ev.rate_at(rates, accs, 0.9) is None


def test_input_bytes_are_real_file_sizes() -> None:
    views = _views(3)
    learned = Tables(np.full((8, 8), 60), np.full((8, 8), 90), method="learned")
    got = ev.input_bytes(views, learned, quality=75)
    assert got.raw == 16 * 16 * 3 and got.images == 3
    assert got.standard == pytest.approx(np.mean([len(encode(v, standard(75))) for v in views]))
    assert got.learned == pytest.approx(np.mean([len(encode(v, learned)) for v in views]))
    assert got.learned < got.standard < got.raw


def _points(rates: list[float], accs: list[float], qualities: list[int] | None = None) -> list[ev.Point]:
    return [ev.Point("p", "m", None, r, a, 1.0, [], [], None if qualities is None else qualities[i])
            for i, (r, a) in enumerate(zip(rates, accs))]


def test_operating_points_interpolate_and_say_when_unreached() -> None:
    """Bytes at 0.5 / 1 / 2 points below uncompressed 72%: interpolated in log-rate on each curve; a level the
    curve never gets to is None, and a level its cheapest point already meets is flagged as a bound."""
    std = _points([1.0, 2.0, 4.0], [0.69, 0.705, 0.72], [50, 75, 90])
    test = _points([1.0, 2.0], [0.70, 0.712])
    ops = {o.loss: o for o in ev.operating_points(std, test, 0.72, "top1")}
    assert ops[2.0].standard_bpp == pytest.approx(2.0 ** (1 / 1.5)) and ops[2.0].standard_quality == 75
    assert ops[2.0].bpp == 1.0 and ops[2.0].below_range and not ops[2.0].standard_below_range
    assert ops[1.0].bpp == pytest.approx(2.0 ** (5 / 6)) and ops[1.0].standard_bpp == pytest.approx(2.0 ** (4 / 3))
    assert ops[1.0].saving == pytest.approx(1 - 2.0 ** (5 / 6 - 4 / 3))
    assert ops[0.5].bpp is None and ops[0.5].saving is None and ops[0.5].standard_quality == 90
