"""The search's elementwise stand-in for pairs (passes/simulate.py) decodes exactly what the real pairs do."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import models
from featcomp import allocate as alloc
from featcomp import api
from featcomp.codecs.base import Candidate, SiteCodec
from featcomp.codecs.dctcm import DctCm
from featcomp.modelio import prepare
from featcomp.passes.insert import insert_pairs
from featcomp.passes.simulate import elementwise, simulate_pairs
from featcomp.passes.sites import find_sites
from featcomp.runtime_ops import ort


def feeds(n: int, seed: int = 0, spread: float = 1.0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{models.INPUT: rng.normal(0.0, spread, (1, 3, models.SIZE, models.SIZE)).astype(np.float32)}
            for _ in range(n)]


def fronts(model: onnx.ModelProto, family: DctCm) -> dict[str, list[Candidate]]:
    stats = api.calibrate(model, feeds(4), sites=find_sites(model), stats_options=family.stats_options)
    return {name: family.candidates(s) for name, s in stats.items()}


def decoded(model: onnx.ModelProto, codecs: dict[str, SiteCodec], inputs: list[dict[str, np.ndarray]]
            ) -> list[dict[str, np.ndarray]]:
    """Every site's decoded tensor and the logits, per input."""
    names = [alloc.logits_name(model)] + [f"fc/{s}/decoded" for s in codecs]
    sess = ort.session(ort.with_outputs(model, names))
    return [ort.run(sess, f, names) for f in inputs]


@pytest.mark.parametrize("family", [DctCm(groups=(1, 8)), DctCm(groups=(1,), channel_steps=0.5)],
                         ids=["mask-and-dct", "per-channel-steps"])
@pytest.mark.parametrize("build", [models.two_convs, models.residual], ids=["two_convs", "residual"])
def test_simulated_pairs_decode_bit_for_bit(build, family: DctCm) -> None:
    model = prepare(build())
    front = fronts(model, family)
    # inputs 4x larger than calibration's too, so the clips at qmax and cmin/cmax are exercised, and 1e6x, so
    # values beyond 2^22 steps reach the rounding (passes/simulate.py MAGIC)
    inputs = feeds(3, seed=1) + feeds(2, seed=2, spread=4.0) + feeds(1, seed=3, spread=1e6)
    tried = set()
    middle = len(min(front.values(), key=len)) // 2
    choices = [{name: cands[pick].site for name, cands in front.items()} for pick in (0, middle, -1)]
    # and a mix: the first site on its finest channel-DCT candidate (G > 1) where it has one
    first = next(iter(front))
    dct = [c.site for c in front[first] if not elementwise(c.site)]
    choices += [{**choices[-1], first: dct[-1]}] if dct else []
    for codecs in choices:
        tried.update(elementwise(c) for c in codecs.values())
        real = decoded(insert_pairs(model, codecs).model, codecs, inputs)
        sim = decoded(simulate_pairs(model, codecs), codecs, inputs)
        for a, b in zip(real, sim, strict=True):
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert True in tried  # the elementwise path ran
    assert (False in tried) == (family.groups != (1,))  # and a real pair next to it, where there was one


def test_only_zero_mask_sites_are_replaced() -> None:
    model = prepare(models.two_convs())
    front = fronts(model, DctCm(groups=(8,)))
    dct = {name: [c.site for c in cands if c.site.group == 8][-1] for name, cands in front.items()}
    assert not any(elementwise(c) for c in dct.values())
    sim = simulate_pairs(model, dct)
    assert sim.graph.node[:] == insert_pairs(model, dct).model.graph.node[:]  # a dct site keeps its real pair
    mask = {name: DctCm(groups=(1,)).candidates(api.calibrate(model, feeds(2), sites=find_sites(model))[name])[-1].site
            for name in front}
    ops = {n.op_type for n in simulate_pairs(model, mask).graph.node}
    assert not ops & {"DctCmEncode", "DctCmDecode", "MatMul", "Cast"}


def test_search_on_simulated_pairs_matches_real_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accuracy search judges candidates on simulated pairs: the same choice and scores as on real ones."""
    model = prepare(models.residual())
    sites = find_sites(model)
    family = DctCm()
    inputs = feeds(8)
    stats = api.calibrate(model, inputs, sites=sites, stats_options=family.stats_options)
    front = {s.name: family.candidates(stats[s.name]) for s in sites}
    gains = alloc.sensitivities(model, sites, inputs[:4], front)
    fast = alloc.search(model, front, gains, stats, inputs, max_drop=1.0)
    monkeypatch.setattr(alloc, "simulate_pairs", lambda m, c: insert_pairs(m, c).model)
    assert alloc.sensitivities(model, sites, inputs[:4], front) == gains
    slow = alloc.search(model, front, gains, stats, inputs, max_drop=1.0)
    assert {n: c.param_id for n, c in fast.codecs.items()} == {n: c.param_id for n, c in slow.codecs.items()}
    assert (fast.output_snr_db, fast.score, fast.estimate) == (slow.output_snr_db, slow.score, slow.estimate)
