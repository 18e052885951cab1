"""Give each site its own quality target: spend bits where the network is sensitive.

A site's sensitivity g_i is measured, not guessed: the site's own codec is inserted at that one
site and the change of the logits is measured in ONNX Runtime (g_i = output error energy per unit of
the codec's error energy at the site). With output error ~ sum_i g_i n_i D_i and rate ~ sum_i n_i/2 log2(P_i / D_i), the
Lagrangian optimum is D_i = lambda / g_i: every site gets the noise its sensitivity allows, and the
one knob lambda is fixed by a target output SNR or searched for an accuracy budget (`max_drop`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from featcomp.budget import DropEstimate, estimate, smooth_estimate
from featcomp.codecs.base import ActivationStats, Candidate, SiteCodec, pick
from featcomp.passes.simulate import simulate_pairs
from featcomp.passes.sites import Site
from featcomp.quality import ESTIMATORS, METRICS  # what max_drop is measured on, and how (see search)
from featcomp.runtime_ops import ort

Feeds = Sequence[dict[str, np.ndarray]]
PROBE_SNR_DB = 25.0  # quality of the codec candidate that probes a site's sensitivity
MIN_SITE_SQNR_DB = 12.0  # below this a codec's error is no longer noise-like (it erases structure)
SNR_RANGE_DB = (10.0, 70.0)
SEARCH_STEPS = 8


@dataclass(frozen=True)
class Allocation:
    """The chosen codecs and how the search judged them on the calibration inputs.

    `score` is the metric's value at the chosen setting: estimated drop in points ("expected", lower is
    better), top-1 agreement or top-1 accuracy as fractions; `required` is the bound it had to meet.
    `estimate` is the label-free drop estimate at the chosen setting (always computed), `base` the same at
    the finest setting (the 8-bit base quantization at every site) and `base_score` the metric there.
    """

    codecs: dict[str, SiteCodec]
    output_snr_db: float
    agreement: float | None  # top-1 agreement with the original on the calibration inputs
    required: float | None = None
    metric: str = "agreement"
    score: float | None = None
    met: bool = True
    estimate: DropEstimate | None = None
    base: DropEstimate | None = None
    base_score: float | None = None
    top1: float | None = None  # with labels: top-1 accuracy of the chosen setting
    original_top1: float | None = None


def logits_name(model: onnx.ModelProto) -> str:
    """The tensor before a final Softmax (probabilities saturate; logits measure damage linearly)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = model.graph.output[0].name
    while name in producers and producers[name].op_type in ("Identity", "Flatten", "Reshape", "Squeeze"):
        name = producers[name].input[0]
    node = producers.get(name)
    if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
        return node.input[0]
    return model.graph.output[0].name


def sensitivities(model: onnx.ModelProto, sites: Sequence[Site], feeds: Feeds,
                  fronts: Mapping[str, list[Candidate]],
                  progress: Callable[[Iterable[Site]], Iterable[Site]] | None = None) -> dict[str, float]:
    """g_i per site: logit error energy per unit of error energy that site i's own codec makes.

    The probe is the real codec (its candidate nearest PROBE_SNR_DB), inserted at that site alone:
    codec errors are biased and spatially correlated, and white noise would hide that (a global
    pooling averages white noise away but not a shifted mean).
    """
    out = logits_name(model)
    ref_sess = ort.session(ort.with_outputs(model, [out]))
    base = [_centered(ort.run(ref_sess, f, [out])[out]) for f in feeds]
    gains = {}
    for site in (progress(sites) if progress else sites):
        # a probe with one step per site: per-channel steps put more (unweighted) error where the consumers
        # are insensitive, which would understate g against their sensitivity-weighted SQNR
        shared = [c for c in fronts[site.name] if not getattr(c.site, "per_channel", False)]
        probe = pick(shared or fronts[site.name], PROBE_SNR_DB).site
        one = simulate_pairs(model, {site.name: probe})  # the probe's decoded values, from fewer ORT ops
        decoded = f"fc/{site.name}/decoded"
        sess = ort.session(ort.with_outputs(one, [out, site.name, decoded]))
        err = injected = 0.0
        for f, y0 in zip(feeds, base):
            got = ort.run(sess, f, [out, site.name, decoded])
            err += float(np.sum(np.square(_centered(got[out]) - y0)))
            injected += float(np.sum(np.square(got[decoded].astype(np.float64) - got[site.name])))
        gains[site.name] = max(err / injected, 1e-12) if injected > 0 else 1e-12
    return gains


def allocate(fronts: Mapping[str, list[Candidate]], gains: Mapping[str, float], stats: Mapping[str, ActivationStats],
             output_power: float, output_snr_db: float) -> dict[str, SiteCodec]:
    """Per site, the cheapest candidate whose SQNR meets 10 log10(P_i g_i / lambda)."""
    total = sum(int(np.prod(stats[name].shape)) for name in fronts)
    # zero output power (constant logits): no signal to protect, so every site gets its finest candidate
    lam = max(output_power * 10 ** (-output_snr_db / 10) / max(total, 1), 1e-300)
    chosen = {}
    for name, front in fronts.items():
        target = max(10 * np.log10(max(stats[name].mean_square * gains[name], 1e-30) / lam), MIN_SITE_SQNR_DB)
        chosen[name] = pick(front, float(target)).site
    return chosen


def allocate_rate(fronts: Mapping[str, list[Candidate]], gains: Mapping[str, float], stats: Mapping[str, ActivationStats],
                  output_power: float, bits_per_value: float) -> tuple[float, dict[str, SiteCodec], float]:
    """(output SNR, codecs, estimated bits/value): the highest output SNR whose allocation fits the budget.

    The estimate is each chosen candidate's bits/value on the calibration data, weighted by site size. When
    even the coarsest allocation exceeds the budget, that allocation is returned with its (higher) estimate.
    """
    def spend(snr: float) -> tuple[dict[str, SiteCodec], float]:
        chosen = allocate(fronts, gains, stats, output_power, snr)
        sizes = {name: int(np.prod(stats[name].shape)) for name in fronts}
        bits = {name: next(c.bits_per_value for c in fronts[name] if c.site is chosen[name]) for name in fronts}
        return chosen, sum(bits[n] * sizes[n] for n in fronts) / max(1, sum(sizes.values()))

    lo, hi = -20.0, SNR_RANGE_DB[1]
    best = (lo, *spend(lo))
    for _ in range(2 * SEARCH_STEPS):
        mid = 0.5 * (lo + hi)
        codecs, bits = spend(mid)
        if bits <= bits_per_value:
            best, lo = (mid, codecs, bits), mid
        else:
            hi = mid
    return best


def top1(y: np.ndarray) -> np.ndarray:
    return y.reshape(len(y), -1).argmax(axis=1)


def agreement(model: onnx.ModelProto, feeds: Feeds, reference: Sequence[np.ndarray]) -> float:
    """Fraction of inputs whose top-1 class equals `reference` (the original's classes, or labels)."""
    sess = ort.session(model)
    out = model.graph.output[0].name
    hits = total = 0
    for f, ref in zip(feeds, reference):
        y = ort.run(sess, f, [out])[out]
        hits += int(np.sum(top1(y) == ref))
        total += len(ref)
    return hits / max(total, 1)


def search(model: onnx.ModelProto, fronts: Mapping[str, list[Candidate]], gains: Mapping[str, float],
           stats: Mapping[str, ActivationStats], feeds: Feeds, max_drop: float,
           labels: Sequence[np.ndarray] | None = None,
           progress: Callable[[Iterable[int]], Iterable[int]] | None = None, metric: str | None = None,
           bound: str = "upper", estimator: str = ESTIMATORS[0]) -> Allocation:
    """The lowest output SNR (fewest bits) that keeps the top-1 loss within `max_drop` points.

    metric "expected" (the default without labels): the label-free estimated drop (featcomp.budget: the
    original's softmax stands in for the labels) must be <= max_drop: with `bound` "upper" (the default) the
    top of its 95% interval, with "estimate" the point estimate (chosen in-sample, it lands above max_drop
    on unseen inputs: docs/budget.md). "agreement": top-1 agreement with the original on `feeds` must
    stay >= 1 - max_drop/100 (strict: every flip counts). "top1" (the default with labels, class indices in
    the model's output numbering): top-1 accuracy must stay >= the original's - max_drop/100.
    The finest setting (every site at its 8-bit base quantization) is judged first: when it already misses
    the budget it is returned with met=False, and `base`/`base_score` say what the base step alone costs.
    `estimator` is the label-free estimate's ("flips" or "smooth", featcomp.budget), recorded in every case.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}")
    metric = metric or ("top1" if labels is not None else "expected")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    if metric == "top1" and labels is None:
        raise ValueError("metric top1 needs labels")
    if bound not in ("estimate", "upper"):
        raise ValueError(f"unknown bound {bound!r}")
    out, logit = model.graph.output[0].name, logits_name(model)
    ref_sess = ort.session(ort.with_outputs(model, [logit]))
    runs = [ort.run(ref_sess, f, [out, logit]) for f in feeds]
    original = [top1(r[out]) for r in runs]
    reference = np.concatenate([r[logit].reshape(len(r[logit]), -1) for r in runs])
    power = float(np.mean([np.sum(np.square(_centered(r[logit]))) / len(r[logit]) for r in runs]))
    flat_original = np.concatenate(original)
    truth = np.concatenate([np.asarray(t).reshape(-1) for t in labels]) if labels is not None else None
    original_top1 = float(np.mean(flat_original == truth)) if truth is not None else None
    required = {"expected": max_drop, "agreement": 1.0 - max_drop / 100.0,
                "top1": (original_top1 or 0.0) - max_drop / 100.0}[metric]

    def judge(codecs: dict[str, SiteCodec], snr: float) -> Allocation:
        classes, logits = outputs(simulate_pairs(model, codecs), feeds)  # bit for bit the inserted pairs' values
        est = smooth_estimate(reference, logits) if estimator == "smooth" else estimate(reference, classes)
        accuracy = float(np.mean(classes == truth)) if truth is not None else None
        score = {"expected": est.upper if bound == "upper" else est.drop, "agreement": est.agreement,
                 "top1": accuracy}[metric]
        assert score is not None
        ok = score <= required + 1e-9 if metric == "expected" else score >= required - 1e-12
        return Allocation(codecs, snr, est.agreement, required, metric, score, ok, est, top1=accuracy,
                          original_top1=original_top1)

    lo, hi = SNR_RANGE_DB
    finest = judge({name: front[-1].site for name, front in fronts.items()}, hi)
    if not finest.met:
        return replace(finest, base=finest.estimate, base_score=finest.score)
    best = finest
    steps = range(SEARCH_STEPS)
    for _ in (progress(steps) if progress else steps):
        mid = 0.5 * (lo + hi)
        found = judge(allocate(fronts, gains, stats, power, mid), mid)
        if found.met:
            best, hi = found, mid
        else:
            lo = mid
    return replace(best, base=finest.estimate, base_score=finest.score)


def outputs(model: onnx.ModelProto, feeds: Feeds) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 classes [N], the logits [N, K] the estimators read: before a final softmax) of the model."""
    out, logit = model.graph.output[0].name, logits_name(model)
    names = list(dict.fromkeys([out, logit]))
    sess = ort.session(ort.with_outputs(model, [logit]))
    runs = [ort.run(sess, f, names) for f in feeds]
    return (np.concatenate([top1(r[out]) for r in runs]),
            np.concatenate([r[logit].reshape(len(r[logit]), -1) for r in runs]))


def predictions(model: onnx.ModelProto, feeds: Feeds) -> list[np.ndarray]:
    """The model's top-1 class per input, one array per batch."""
    sess = ort.session(model)
    out = model.graph.output[0].name
    return [top1(ort.run(sess, f, [out])[out]) for f in feeds]


def output_power(model: onnx.ModelProto, feeds: Feeds) -> float:
    """Mean per-sample energy of the centred logits: the signal that decides the class."""
    logit = logits_name(model)
    probe = ort.session(ort.with_outputs(model, [logit]))
    logits = [ort.run(probe, f, [logit])[logit] for f in feeds]
    return float(np.mean([np.sum(np.square(_centered(y))) / len(y) for y in logits]))


def centered_logits(y: np.ndarray) -> np.ndarray:
    """The logits every output SNR of featcomp is measured on (public for the report)."""
    return _centered(y)


def _centered(y: np.ndarray) -> np.ndarray:
    """Logits minus their per-sample mean: softmax ignores a common shift, so errors are measured without it.

    A single output per sample (a score, not class logits) is kept as it is: centring would zero it.
    """
    flat = y.reshape(len(y), -1).astype(np.float64)
    return flat - flat.mean(axis=1, keepdims=True) if flat.shape[1] > 1 else flat


def channel_sensitivities(model: onnx.ModelProto, site: Site, feeds: Feeds, seed: int = 0) -> np.ndarray:
    """[C] per channel of one site: logit error energy per unit of white noise energy injected into that
    channel alone (C runs per input). What per-channel steps (DctCm.channel_steps) weight channels by when
    the consumers' weights are not trusted: a channel the next activation clips away costs nothing."""
    from onnx import TensorProto, helper

    out = logits_name(model)
    noisy = onnx.ModelProto()
    noisy.CopyFrom(model)
    for node in noisy.graph.node:
        for i, name in enumerate(node.input):
            if name == site.name:
                node.input[i] = f"{site.name}/noisy"
    noisy.graph.node.append(helper.make_node("Add", [site.name, "fc_channel_noise"], [f"{site.name}/noisy"]))
    noisy.graph.input.append(helper.make_tensor_value_info("fc_channel_noise", TensorProto.FLOAT, [1, *site.shape]))
    sess = ort.session(ort.with_outputs(noisy, [out, site.name]))
    zero = np.zeros((1, *site.shape), np.float32)
    base = [ort.run(sess, {**f, "fc_channel_noise": zero}, [out, site.name]) for f in feeds]
    # small noise (2% of the site's RMS), so the logits respond linearly
    sigma = 0.02 * max(float(np.sqrt(np.mean(np.square(b[site.name], dtype=np.float64)))) for b in base) or 1e-3
    rng = np.random.default_rng(seed)
    c, h, w = site.shape
    sens = np.zeros(c)
    for ch in range(c):
        err = 0.0
        for f, b in zip(feeds, base):
            noise = zero.copy()
            noise[0, ch] = rng.normal(0.0, sigma, (h, w))
            err += float(np.sum(np.square(ort.run(sess, {**f, "fc_channel_noise": noise}, [out])[out] - b[out],
                                          dtype=np.float64)))
        sens[ch] = err / (len(feeds) * sigma * sigma * h * w)
    return np.maximum(sens, 1e-12)
