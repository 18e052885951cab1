"""``--method e2e``: the torch graph equals ONNX Runtime, the proxy follows the exact JPEG path, its gradient
equals finite differences, the rate proxy tracks real bytes, and learn/CLI give a valid ladder (small models
built in code; the real-model numbers are benchmarks/jpeg_e2e.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import models
import needs
import numpy as np
import onnx
import pytest
from featcomp.runtime_ops import ort
from onnx import TensorProto, helper, numpy_helper

from featcomp.errors import FeatcompError
from featcomp.jpeg import dct
from featcomp.jpeg.encode import decode, encode
from featcomp.jpeg.measure import Classifier
from featcomp.jpeg.tables import Tables, standard
from featcomp.preprocess import Preprocess

torch = needs.module("torch", "pip install 'featcomp[e2e]'")

from featcomp.jpeg import e2e
from featcomp.jpeg.learn import learn
from featcomp.jpeg.torch_graph import TorchGraph

SPEC = Preprocess.parse("resize=16,crop=16,order=rgb,mean=128,std=128")


def _views(n: int = 4, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    return [np.clip(np.stack([np.sin(x / (2 + i) + c) * 70 + y * 4 for c in range(3)], -1) + 90
                    + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8) for i in range(n)]


def _pool_concat_model(opset: int) -> onnx.ModelProto:
    """SqueezeNet-like ops: Conv, Relu, MaxPool, Concat, AveragePool (asymmetric pads), Flatten, Gemm, Softmax."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, s).astype(np.float32), n) for n, s in
             (("w1", (4, 3, 3, 3)), ("w2", (4, 3, 1, 1)), ("b2", (4,)), ("g", (5, 8)), ("gb", (5,)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["input", "w2", "b2"], ["c2"]),
             helper.make_node("Concat", ["c1", "c2"], ["cat"], axis=1),
             helper.make_node("Relu", ["cat"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
             helper.make_node("GlobalAveragePool", ["ap"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "g", "gb"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "sq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3, 16, 16])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [2, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


@pytest.mark.parametrize("build", [models.two_convs, models.mobile_block, lambda: _pool_concat_model(11),
                                   lambda: _pool_concat_model(13)], ids=["two_convs", "mobile_block", "pool11", "pool13"])
def test_torch_graph_equals_onnx_runtime(build: Callable[[], onnx.ModelProto]) -> None:
    model = build()
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    out = model.graph.output[0].name
    want = ort.run(ort.session(model), {model.graph.input[0].name: x}, [out])[out]
    got = TorchGraph(model, out)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_torch_graph_names_an_unsupported_op() -> None:
    graph = helper.make_graph([helper.make_node("LRN", ["x"], ["y"], size=3)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    with pytest.raises(FeatcompError, match="LRN"):
        TorchGraph(helper.make_model(graph), "y")


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_proxy_forward_follows_the_real_file(subsampling: str) -> None:
    """Straight-through rounding gives what a decoder shows, but for float IDCT/upsampling and pixel rounding."""
    views = _views(3, size=21)  # odd size: padding, chroma edges
    proxy = e2e.Proxy(views, None, subsampling, dtype=torch.float64, preprocess=SPEC)
    for q in (30, 90):
        t = standard(q, subsampling)
        got = proxy.rgb(e2e.log_steps(t, torch.float64)).numpy()
        real = np.stack([decode(encode(v, t)) for v in views]).astype(np.float64)
        assert np.mean(np.abs(got - real)) < 1.0
        assert np.mean(np.abs(got - real)) < 0.2 * np.mean(np.abs(real - np.stack(views)))


def test_float_upsampling_is_libjpegs_fancy_filter() -> None:
    """The proxy's chroma upsampling equals dct.upsample (the exact libjpeg one) up to its integer rounding."""
    rng = np.random.default_rng(3)
    h, w = 13, 22
    plane = rng.integers(0, 256, (1, 2, 8, 16)).astype(np.float64)
    proxy = e2e.Proxy(_views(1, size=8), None, "4:2:0", dtype=torch.float64, preprocess=SPEC)
    proxy.h, proxy.w = h, w
    got = proxy.upsample(torch.tensor(plane)).numpy()
    exact = dct.upsample(plane.astype(np.int64), h, w)
    assert got.shape == exact.shape
    assert np.abs(got - exact).max() < 1.0


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_proxy_gradient_equals_finite_differences(subsampling: str) -> None:
    """d(task loss + lambda x rate)/d(log steps) through the proxy and a model, soft rounding, float64."""
    clf = Classifier(models.two_convs(), SPEC)
    views = _views(2)
    proxy = e2e.Proxy(views, clf, subsampling, dtype=torch.float64)
    graph = TorchGraph(clf.model, clf.logit, dtype=torch.float64)
    target = torch.softmax(torch.tensor(np.random.default_rng(1).normal(0, 1, (2, 4))), dim=1)
    rate = e2e.RateModel(0.2, 0.3, 10.0, 0.0)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        logits = graph(proxy.inputs(theta, rounding="soft")).reshape(2, -1)
        kl = (target * (torch.log(target) - torch.log_softmax(logits, dim=1))).sum(dim=1).mean()
        return kl + 0.01 * 8 * proxy.bytes(theta, rate).mean() / 256

    theta = e2e.log_steps(standard(60, subsampling), torch.float64).requires_grad_(True)
    grad = torch.autograd.grad(loss(theta), theta)[0]
    rng = np.random.default_rng(4)
    eps = 1e-6
    # central differences along single steps (luma DC, a luma AC, a chroma AC) and two random directions
    directions = [torch.zeros_like(theta) for _ in range(3)]
    directions[0][0, 0, 0], directions[1][0, 1, 2], directions[2][1, 0, 1] = 1.0, 1.0, 1.0
    directions += [torch.tensor(rng.normal(0, 1, (2, 8, 8))) for _ in range(2)]
    with torch.no_grad():
        for v in directions:
            numeric = float(loss(theta + eps * v) - loss(theta - eps * v)) / (2 * eps)
            analytic = float((grad * v).sum())
            assert abs(numeric - analytic) <= 1e-3 * abs(numeric) + 1e-7, (numeric, analytic)
    assert float(grad.abs().sum()) > 0  # the comparisons above are not vacuous


def test_straight_through_gradient_is_the_quantization_error() -> None:
    """STE: d(dequantized)/d(step) = round(y) - y (forward: libjpeg's rounding), here through the rate-free loss."""
    proxy = e2e.Proxy(_views(1), None, "4:4:4", dtype=torch.float64, preprocess=SPEC)
    theta = e2e.log_steps(standard(50), torch.float64).requires_grad_(True)
    coef = proxy.luma
    steps = torch.exp(theta[0])
    y = coef / steps
    deq = (y + (torch.round(y) - y).detach()) * steps
    g = torch.autograd.grad(deq.sum(), theta)[0][0]
    want = ((torch.round(y) - y) * steps).sum(dim=(0, 1, 2)).detach()  # d/dlogT = T d/dT
    np.testing.assert_allclose(g.numpy(), want.numpy(), atol=1e-9)


def test_rate_proxy_tracks_real_bytes() -> None:
    views = _views(6, size=48)
    proxy = e2e.Proxy(views, None, "4:2:0", dtype=torch.float64, preprocess=SPEC)
    model = e2e.calibrate(proxy, views)
    assert model.rel_error < 0.15
    fine, coarse = (proxy.bytes(e2e.log_steps(standard(q, "4:2:0"), torch.float64), model).mean() for q in (90, 30))
    assert float(fine) > float(coarse)


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_learn_e2e_gives_a_ladder_of_baseline_tables(subsampling: str) -> None:
    clf = Classifier(models.two_convs(), SPEC)
    settings = e2e.Settings(lambdas=(0.01, 1.0, 100.0), steps=3, batch=2)
    tables = learn("e2e", _views(4), clf, target_bpp=14.0, subsampling=subsampling, e2e_settings=settings)
    assert tables.method == "e2e" and tables.subsampling == subsampling and tables.ladder is not None
    rungs = tables.ladder
    assert rungs.min() >= 1 and rungs.max() <= 255 and rungs.dtype.kind == "i"
    assert np.all(np.diff(rungs, axis=0) >= 0)  # finest to coarsest, so the target searches are bisections
    assert (rungs[-1] == 255).all()
    assert tables.meta["bpp"] <= 14.0
    assert tables.meta["e2e"]["rate_model"]["rel_error"] < 0.5


def test_cli_learn_e2e(cli: Callable[..., object], model_file: Callable[..., str], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    full = e2e.Settings
    monkeypatch.setattr(e2e, "Settings", lambda: full(lambdas=(0.01, 1.0), steps=2, batch=2))  # a short descent

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, v in enumerate(_views(3)):
        Image.fromarray(v).save(folder / f"p{i}.png")
    model = model_file(models.two_convs())
    done = cli("jpeg", "learn", model, "--images", folder, "--preprocess", "resize=16,crop=16,order=rgb,mean=128,std=128",
               "--method", "e2e", "--max-drop", "50", "--metric", "agreement", "-o", tmp_path / "t.json", "-q")
    assert done.code == 0, done.err  # type: ignore[attr-defined]
    saved = Tables.load(tmp_path / "t.json")
    assert saved.method == "e2e" and saved.meta["target"]["max_drop"] == 50


def test_missing_torch_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(FeatcompError, match=r"featcomp\[e2e\]"):
        e2e.import_torch()
    with pytest.raises(FeatcompError, match="needs torch"):
        learn("e2e", _views(2), Classifier(models.two_convs(), SPEC), max_drop=1.0, metric="agreement")


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_annexk_parameterisation_gradient_equals_finite_differences(subsampling: str) -> None:
    """Steps = Annex K x exp(g + theta): d(task loss + lambda x rate + shape penalties)/d(g, theta) through the
    proxy (annealed soft quantizer at T 0.3, float64) against central differences."""
    clf = Classifier(models.two_convs(), SPEC)
    views = _views(2)
    proxy = e2e.Proxy(views, clf, subsampling, dtype=torch.float64)
    proxy.temperature = 0.3
    graph = TorchGraph(clf.model, clf.logit, dtype=torch.float64)
    target = torch.softmax(torch.tensor(np.random.default_rng(1).normal(0, 1, (2, 4))), dim=1)
    rate = e2e.RateModel(0.2, 0.3, 10.0, 0.0)
    settings = e2e.Settings(param="annexk", start_quality=60, shape_penalty=0.5, smooth_penalty=0.2)
    steps = e2e.Steps(torch, settings, subsampling, torch.float64)
    with torch.no_grad():  # off Annex K's shape, so the penalties have a gradient too
        steps.theta += torch.tensor(np.random.default_rng(5).normal(0, 0.2, (2, 8, 8)))
    np.testing.assert_allclose(steps.raw().mean().item(), np.mean(np.log(standard(60).luma.tolist() + standard(60).chroma.tolist())),
                               atol=0.3)  # g starts at the start quality's scale

    def loss() -> torch.Tensor:
        theta = steps.log_steps()
        logits = graph(proxy.inputs(theta, rounding="anneal")).reshape(2, -1)
        kl = (target * (torch.log(target) - torch.log_softmax(logits, dim=1))).sum(dim=1).mean()
        return kl + 0.01 * 8 * proxy.bytes(theta, rate).mean() / 256 + steps.penalty(settings)

    grads = torch.autograd.grad(loss(), steps.params)
    rng = np.random.default_rng(6)
    eps = 1e-6
    directions = [(1.0, torch.zeros(2, 8, 8)), (0.0, torch.zeros(2, 8, 8)), (0.0, torch.zeros(2, 8, 8))]
    directions[1][1][0, 0, 0], directions[2][1][1, 2, 1] = 1.0, 1.0
    directions += [(float(rng.normal()), torch.tensor(rng.normal(0, 1, (2, 8, 8)))) for _ in range(2)]
    with torch.no_grad():
        for dg, dtheta in directions:
            values = []
            for sign in (1, -1):
                steps.scale += sign * eps * dg
                steps.theta += sign * eps * dtheta
                values.append(float(loss()))
                steps.scale -= sign * eps * dg
                steps.theta -= sign * eps * dtheta
            numeric = (values[0] - values[1]) / (2 * eps)
            analytic = float(grads[0] * dg + (grads[1] * dtheta).sum())
            assert abs(numeric - analytic) <= 1e-3 * abs(numeric) + 1e-7, (numeric, analytic)
    assert abs(float(grads[0])) > 0 and float(grads[1].abs().sum()) > 0


def test_annealed_soft_quantizer_becomes_rounding() -> None:
    """At a low temperature the soft quantizer is libjpeg's rounding; at a high one it is smooth (not a staircase)."""
    y = torch.tensor(np.random.default_rng(7).uniform(-40, 40, 5000))
    y = y[(y - torch.floor(y) - 0.5).abs() > 0.02]  # away from the ties, where rounding itself jumps
    np.testing.assert_allclose(e2e.soft_round(torch, y, 0.001).numpy(), torch.round(y).numpy(), atol=1e-6)
    hot = e2e.soft_round(torch, y, 0.3)
    assert float((hot - torch.round(y)).abs().max()) > 0.05
    ramp = torch.linspace(2.0, 4.0, 2001, dtype=torch.float64)
    assert float(torch.diff(e2e.soft_round(torch, ramp, 0.3)).max()) < 0.01  # continuous across the integers
    assert bool((torch.diff(e2e.soft_round(torch, ramp, 0.3)) >= 0).all())  # and increasing


@pytest.mark.parametrize("options", [
    {"param": "annexk", "optimizer": "gd", "batch": 0, "shape_penalty": 0.1, "smooth_penalty": 0.1},
    {"param": "annexk", "rounding": "anneal", "temperature": (0.3, 0.02)}], ids=["annexk-gd-full", "anneal"])
def test_learn_e2e_options_give_a_ladder(options: dict[str, object]) -> None:
    clf = Classifier(models.two_convs(), SPEC)
    settings = e2e.Settings(**{"lambdas": (0.01, 1.0, 100.0), "steps": 3, "batch": 2, "chunk": 3, **options})  # type: ignore[arg-type]
    tables = learn("e2e", _views(4), clf, target_bpp=14.0, subsampling="4:2:0", e2e_settings=settings)
    rungs = tables.ladder
    assert rungs is not None and rungs.min() >= 1 and (rungs[-1] == 255).all()
    assert np.all(np.diff(rungs, axis=0) >= 0)
    assert tables.meta["e2e"]["settings"]["param"] == "annexk"


def test_bad_e2e_setting_is_one_line() -> None:
    with pytest.raises(FeatcompError, match="optimizer 'sgd'"):
        e2e.Settings(optimizer="sgd").check()


def test_e2e_spec_parses_and_refuses_in_one_line() -> None:
    got = e2e.Settings.parse("param=annexk,optimizer=gd,batch=0,lambdas=0.01/0.1,shape-penalty=0.2,temperature=0.5/0.02")
    assert (got.param, got.optimizer, got.batch, got.lambdas, got.shape_penalty, got.temperature) == (
        "annexk", "gd", 0, (0.01, 0.1), 0.2, (0.5, 0.02))
    assert e2e.Settings.parse("") == e2e.Settings()
    for bad, says in (("optimizer=sgd", "optimizer 'sgd'"), ("steps=many", "not a int"), ("speed=1", "KEY one of"),
                      ("batch=1,batch=2", "once each"), ("temperature=0.3", "two values")):
        with pytest.raises(FeatcompError, match=says):
            e2e.Settings.parse(bad)


def test_cli_learn_e2e_spec(cli: Callable[..., object], model_file: Callable[..., str], tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, v in enumerate(_views(3)):
        Image.fromarray(v).save(folder / f"p{i}.png")
    model = model_file(models.two_convs())
    common = ("jpeg", "learn", model, "--images", folder, "--preprocess", "resize=16,crop=16,order=rgb,mean=128,std=128",
              "--max-drop", "50", "--metric", "agreement", "-o", tmp_path / "t.json", "-q")
    done = cli(*common, "--method", "e2e", "--e2e", "lambdas=0.01/1,steps=2,batch=0,param=annexk,optimizer=gd")
    assert done.code == 0, done.err  # type: ignore[attr-defined]
    assert Tables.load(tmp_path / "t.json").meta["e2e"]["settings"]["optimizer"] == "gd"
    wrong = cli(*common, "--method", "learned", "--e2e", "param=annexk")
    assert wrong.code == 1 and "--method e2e" in wrong.err and "Traceback" not in wrong.err  # type: ignore[attr-defined]
