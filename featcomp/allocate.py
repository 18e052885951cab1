"""Give each site its own quality target: spend bits where the network is sensitive.

A site's sensitivity g_i is measured, not guessed: Gaussian noise is injected at that one site and
the change of the logits is measured in ONNX Runtime (g_i = output error energy per unit of injected
noise energy). With output error ~ sum_i g_i n_i D_i and rate ~ sum_i n_i/2 log2(P_i / D_i), the
Lagrangian optimum is D_i = lambda / g_i: every site gets the noise its sensitivity allows, and the
one knob lambda is fixed by a target output SNR or searched for an accuracy budget (`max_drop`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from featcomp.codecs.base import ActivationStats, Candidate, SiteCodec, pick
from featcomp.passes.insert import insert_pairs
from featcomp.passes.sites import Site
from featcomp.runtime_ops import ort

Feeds = Sequence[dict[str, np.ndarray]]
PROBE_SNR_DB = 30.0
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
                  stats: Mapping[str, ActivationStats], seed: int = 0,
                  progress: Callable[[Iterable[Site]], Iterable[Site]] | None = None) -> dict[str, float]:
    """g_i per site: logit error energy per unit of noise energy injected at site i alone."""
    probe, noise_inputs = _noise_probe(model, sites)
    out = logits_name(model)
    sess = ort.session(ort.with_outputs(probe, [out]))
    rng = np.random.default_rng(seed)

    def feed(f: dict[str, np.ndarray], noisy: str | None = None, noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
        n = len(next(iter(f.values())))
        full = {noise_inputs[s.name]: np.zeros((n, *s.shape), np.float32) for s in sites}
        if noisy is not None:
            full[noise_inputs[noisy]] = noise
        return {**f, **full}

    base = [ort.run(sess, feed(f), [out])[out].astype(np.float64) for f in feeds]
    gains = {}
    for site in (progress(sites) if progress else sites):
        power = float(np.mean(np.square(stats[site.name].sample, dtype=np.float64)))
        sigma = np.sqrt(max(power, 1e-30) * 10 ** (-PROBE_SNR_DB / 10))
        err = injected = 0.0
        for f, y0 in zip(feeds, base):
            n = len(next(iter(f.values())))
            noise = (rng.standard_normal((n, *site.shape)) * sigma).astype(np.float32)
            y = ort.run(sess, feed(f, site.name, noise), [out])[out]
            err += float(np.sum(np.square(y - y0)))
            injected += float(np.sum(np.square(noise, dtype=np.float64)))
        gains[site.name] = max(err / max(injected, 1e-30), 1e-12)
    return gains


def _noise_probe(model: onnx.ModelProto, sites: Sequence[Site]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of the model with `site + noise_input` feeding every consumer of each site."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    names = {s.name: f"fc/noise/{s.name}" for s in sites}
    noisy = {s: f"{n}/out" for s, n in names.items()}
    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in noisy:
                node.input[i] = noisy[name]
        graph.node.append(node)
        for out in node.output:
            if out in names:
                graph.node.append(helper.make_node("Add", [out, names[out]], [noisy[out]], name=noisy[out]))
    graph.input.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names.values())
    return probe, names


def allocate(fronts: Mapping[str, list[Candidate]], gains: Mapping[str, float], stats: Mapping[str, ActivationStats],
             output_power: float, output_snr_db: float) -> dict[str, SiteCodec]:
    """Per site, the cheapest candidate whose SQNR meets 10 log10(P_i g_i / lambda)."""
    total = sum(int(np.prod(stats[name].shape)) for name in fronts)
    lam = output_power * 10 ** (-output_snr_db / 10) / max(total, 1)
    chosen = {}
    for name, front in fronts.items():
        power = float(np.mean(np.square(stats[name].sample, dtype=np.float64)))
        target = 10 * np.log10(max(power * gains[name], 1e-30) / lam)
        chosen[name] = pick(front, float(target)).site
    return chosen


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
    out = model.graph.output[0].name
    ref_sess = ort.session(model)
    original = [top1(ort.run(ref_sess, f, [out])[out]) for f in feeds]
    if labels is None:
        target, need = original, 1.0 - max_drop / 100.0
    else:
        target = list(labels)
        hits = sum(int(np.sum(o == t)) for o, t in zip(original, target))
        need = hits / max(1, sum(len(t) for t in target)) - max_drop / 100.0
    power = output_power(model, feeds)
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
    logit = logits_name(model)
    probe = ort.session(ort.with_outputs(model, [logit]))
    energies = [np.sum(np.square(ort.run(probe, f, [logit])[logit], dtype=np.float64)) / len(next(iter(f.values())))
                for f in feeds]
    return float(np.mean(energies))
