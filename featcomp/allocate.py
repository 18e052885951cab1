"""Give each site its own quality target: spend bits where the network is sensitive.

A site's sensitivity g_i is measured, not guessed: the site's own codec is inserted at that one
site and the change of the logits is measured in ONNX Runtime (g_i = output error energy per unit of
the codec's error energy at the site). With output error ~ sum_i g_i n_i D_i and rate ~ sum_i n_i/2 log2(P_i / D_i), the
Lagrangian optimum is D_i = lambda / g_i: every site gets the noise its sensitivity allows, and the
one knob lambda is fixed by a target output SNR or searched for an accuracy budget (`max_drop`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from featcomp.codecs.base import ActivationStats, Candidate, SiteCodec, pick
from featcomp.passes.insert import insert_pairs
from featcomp.passes.sites import Site
from featcomp.runtime_ops import ort

Feeds = Sequence[dict[str, np.ndarray]]
PROBE_SNR_DB = 25.0  # quality of the codec candidate that probes a site's sensitivity
MIN_SITE_SQNR_DB = 12.0  # below this a codec's error is no longer noise-like (it erases structure)
SNR_RANGE_DB = (10.0, 70.0)
SEARCH_STEPS = 8


@dataclass(frozen=True)
class Allocation:
    codecs: dict[str, SiteCodec]
    output_snr_db: float
    agreement: float | None  # top-1 agreement (or accuracy, with labels) on the calibration inputs
    required: float | None = None  # what max_drop asked for; agreement < required means it could not be met


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
        probe = pick(fronts[site.name], PROBE_SNR_DB).site
        one = insert_pairs(model, {site.name: probe})
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
           progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> Allocation:
    """The lowest output SNR (fewest bits) that keeps accuracy within `max_drop` points.

    Without labels the accuracy is top-1 agreement with the original model on `feeds` (which must
    stay >= 1 - max_drop/100); with labels (class indices in the model's output numbering) it is
    top-1 accuracy, which must stay >= the original's accuracy - max_drop/100.
    """
    out, logit = model.graph.output[0].name, logits_name(model)
    ref_sess = ort.session(ort.with_outputs(model, [logit]))
    runs = [ort.run(ref_sess, f, [out, logit]) for f in feeds]
    original = [top1(r[out]) for r in runs]
    power = float(np.mean([np.sum(np.square(_centered(r[logit]))) / len(r[logit]) for r in runs]))
    if labels is None:
        target, need = original, 1.0 - max_drop / 100.0
    else:
        target = list(labels)
        hits = sum(int(np.sum(o == t)) for o, t in zip(original, target))
        need = hits / max(1, sum(len(t) for t in target)) - max_drop / 100.0
    lo, hi = SNR_RANGE_DB
    best = Allocation(codecs=allocate(fronts, gains, stats, power, hi), output_snr_db=hi, agreement=None)
    steps = range(SEARCH_STEPS)
    for _ in (progress(steps) if progress else steps):
        mid = 0.5 * (lo + hi)
        codecs = allocate(fronts, gains, stats, power, mid)
        score = agreement(insert_pairs(model, codecs), feeds, target)
        if score >= need - 1e-12:
            best, hi = Allocation(codecs, mid, score, need), mid
        else:
            lo = mid
    if best.agreement is None:
        best = Allocation(best.codecs, hi, agreement(insert_pairs(model, best.codecs), feeds, target), need)
    return best


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
