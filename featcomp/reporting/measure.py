"""Measure a compressed model: run it, pack every site's symbols with the reference coder, count.

One ONNX Runtime pass returns, per site, the activation entering the encoder and the symbols leaving
it; the bytes are the real bitstream bytes the numpy packer writes. The original model (the exact
strip of the compressed one) runs on the same inputs for top-1 agreement and the logit SNR (centred
logits, as featcomp.allocate targets it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from featcomp.allocate import centered_logits, logits_name, top1
from featcomp.data import InputReader, validated
from featcomp.errors import FeatcompError
from featcomp.modelio import input_spec
from featcomp.passes.insert import strip_pairs
from featcomp.passes.pairs import Pair, find_pairs
from featcomp.passes.sites import Site, find_sites
from featcomp.reporting.graph import graph_of
from featcomp.reporting.schema import Report, SiteReport, Totals
from featcomp.runtime_ops import ort

PENDING_VALUES = 1 << 21  # symbols a site holds back before counting their bytes in one pass
Progress = Callable[[Iterable[dict[str, np.ndarray]]], Iterable[dict[str, np.ndarray]]]


class _SiteAccumulator:
    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.sizes: list[int] = []
        self.signal = 0.0
        self.noise = 0.0
        self.zeros = 0
        self.values = 0
        self.histogram = _ChannelHistogram()
        self._pending: list[np.ndarray] = []

    def flush(self) -> None:
        """Count the bytes of the samples held back: coders that code many samples in one pass (rANS) get them
        together; every size is the exact len(pack(sample)) (tested), without writing bits."""
        if not self._pending:
            return
        symbols, self._pending = np.concatenate(self._pending), []
        codec = self.pair.codec
        batch = getattr(codec, "coded_bytes_batch", None)
        self.sizes += batch(symbols) if batch else [codec.coded_bytes(one) for one in symbols]

    def add(self, x: np.ndarray, symbols: np.ndarray, count_bytes: bool = True) -> None:
        """One batch: its SQNR terms always; its coded bytes and symbol histogram when `count_bytes`."""
        codec = self.pair.codec
        if count_bytes:
            self._pending.append(symbols.reshape((-1,) + tuple(codec.shape)))
            if sum(p.size for p in self._pending) >= PENDING_VALUES:
                self.flush()
            self.histogram.add(symbols)
        approx = codec.dequantize(symbols)
        self.signal += float(np.sum(np.square(x, dtype=np.float64)))
        self.noise += float(np.sum(np.square(x.astype(np.float64) - approx)))
        self.zeros += int(np.count_nonzero(x == 0))
        self.values += x.size


class _ChannelHistogram:
    """Counts of (channel, symbol) over all samples, kept sparse: entropies need no dense C x 65536 table."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self.samples = 0

    def add(self, symbols: np.ndarray) -> None:
        n, c = symbols.shape[:2]
        keys = (np.arange(c, dtype=np.int64)[None, :, None] << 16) + symbols.reshape(n, c, -1).astype(np.int64) + 32768
        new, counts = np.unique(keys, return_counts=True)
        merged, inverse = np.unique(np.concatenate([self.keys, new]), return_inverse=True)
        self.counts = np.bincount(inverse, weights=np.concatenate([self.counts, counts]),
                                  minlength=len(merged)).astype(np.int64)
        self.keys = merged
        self.samples += n

    def entropy_bits(self) -> float:
        """Sum over channels of the order-0 entropy of that channel's symbols, per sample."""
        if not len(self.keys):
            return 0.0
        channel = self.keys >> 16
        totals = np.bincount(channel, weights=self.counts)[channel]
        return float(-np.sum(self.counts * np.log2(self.counts / totals))) / max(1, self.samples)


def measure(model: onnx.ModelProto, reader: InputReader, *, name: str = "model",
            progress: Progress | None = None, bytes_samples: int | None = None) -> Report:
    """The report of `model` on every input of `reader`; with `bytes_samples`, real coded bytes (and the symbols'
    entropy) are counted on the batches that start within the first that many samples only (the numpy rANS
    encoder costs as much as a compress): SQNR, agreement and the logit SNR still use every input."""
    if bytes_samples is not None and bytes_samples < 1:
        raise FeatcompError(f"bytes_samples must be at least 1 (None: every input), got {bytes_samples}")
    pairs = find_pairs(model)
    if not pairs:
        raise FeatcompError("the model has no featcomp pairs: compress it first ('featcomp compress')")
    original = strip_pairs(model).model
    spec = input_spec(model)
    out_name, logit = model.graph.output[0].name, logits_name(original)
    extra = [logit] if logit != out_name else []
    probe = ort.with_outputs(model, [p.site for p in pairs] + [p.symbols for p in pairs] + extra,
                             [TensorProto.FLOAT] * len(pairs) + [TensorProto.INT16] * len(pairs)
                             + [TensorProto.FLOAT] * len(extra))
    sess, ref_sess = ort.session(probe), ort.session(ort.with_outputs(original, extra) if extra else original)
    acc = {p.site: _SiteAccumulator(p) for p in pairs}
    agree = samples = counted = 0
    signal = noise = 0.0
    batches = validated(reader, spec, "report")
    for feeds in (progress(batches) if progress else batches):
        outs = ort.run(sess, feeds)
        refs = ort.run(ref_sess, feeds, [out_name, *extra])
        ref = refs[out_name]
        count_bytes = bytes_samples is None or samples < bytes_samples
        counted += len(ref) if count_bytes else 0
        for p in pairs:
            acc[p.site].add(outs[p.site], outs[p.symbols], count_bytes)
        agree += int(np.sum(top1(outs[out_name]) == top1(ref)))
        samples += len(ref)
        want = centered_logits(refs[logit])
        signal += float(np.sum(np.square(want)))
        noise += float(np.sum(np.square(centered_logits(outs[logit]) - want)))
    sites = {s.name: s for s in find_sites(original)}
    reports = [_site_report(acc[p.site], sites.get(p.site)) for p in pairs]
    totals = _totals(reports, original, sites)
    report = Report(
        model=name, codec=",".join(sorted({p.codec_name for p in pairs})), samples=samples, sites=reports,
        totals=totals, accuracy={"top1_agreement": agree / max(1, samples), "samples": samples},
        graph=graph_of(original), bytes_samples=counted if counted < samples else None,
    )
    report.accuracy["output_snr_db"] = _snr_db(signal, noise)
    return report


def _snr_db(signal: float, noise: float) -> float:
    return float("inf") if noise == 0 else float(10 * np.log10(max(signal, 1e-300) / noise))


def _site_report(acc: _SiteAccumulator, site: Site | None) -> SiteReport:
    codec = acc.pair.codec
    acc.flush()
    c, h, w = codec.shape
    values = c * h * w
    coded = float(np.mean(acc.sizes))
    side = codec.side_bytes
    per_inference = coded + side
    return SiteReport(
        name=acc.pair.site,
        producer=site.producer if site else "?",
        consumers=list(site.consumers) if site else [],
        shape=[c, h, w], values=values, fp32_bytes=4 * values, int8_bytes=values,
        coded_bytes_mean=coded, coded_bytes_max=int(max(acc.sizes)), side_bytes=side,
        bits_per_value=8.0 * per_inference / values,
        ratio_vs_int8=values / per_inference, ratio_vs_fp32=4 * values / per_inference,
        zero_fraction=acc.zeros / max(1, acc.values),
        sqnr_db=_db(acc.signal, acc.noise), mode=codec.describe()["mode"], codec=codec.codec_name,
        details=codec.describe(), payload_bits_per_value=8.0 * coded / values,
        entropy_bits_per_value=acc.histogram.entropy_bits() / values,
        coder=str(codec.describe().get("coder", "")),
    )


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def _totals(reports: list[SiteReport], original: onnx.ModelProto, sites: dict[str, Site]) -> Totals:
    values = sum(r.values for r in reports)
    coded = sum(r.coded_bytes_mean for r in reports)
    side = sum(r.side_bytes for r in reports)
    compressed = {r.name: r.coded_bytes_mean for r in reports}
    traffic_fp32 = traffic_int8 = 0
    traffic_fc = float(side)
    for s in sites.values():
        touches = 1 + len(s.consumers)
        traffic_fp32 += 4 * s.values * touches
        traffic_int8 += s.values * touches
        traffic_fc += compressed.get(s.name, s.values) * touches
    weights = sum(int(np.prod(t.dims)) for t in original.graph.initializer)
    weight_fp32 = sum(numpy_helper.to_array(t).nbytes for t in original.graph.initializer)
    spec = input_spec(original)
    in_values = int(np.prod([int(d) for d in spec.shape[1:] if d is not None]))
    total_int8 = traffic_int8 + weights + in_values
    total_fc = traffic_fc + weights + in_values
    return Totals(
        sites=len(reports), values=values, fp32_bytes=4 * values, int8_bytes=values, coded_bytes=coded,
        side_bytes=side, bits_per_value=8.0 * (coded + side) / max(1, values),
        ratio_vs_int8=values / max(1e-9, coded + side), ratio_vs_fp32=4 * values / max(1e-9, coded + side),
        activation_traffic_fp32=traffic_fp32, activation_traffic_int8=traffic_int8,
        activation_traffic_compressed=traffic_fc, weight_bytes_fp32=weight_fp32, weight_bytes_int8=weights,
        input_bytes_fp32=4 * in_values, input_bytes_uint8=in_values,
        total_traffic_int8=total_int8, total_traffic_compressed=total_fc,
        traffic_saving_vs_int8=1.0 - total_fc / max(1, total_int8),
        payload_bits_per_value=8.0 * coded / max(1, values),
        entropy_bits_per_value=sum(r.entropy_bits_per_value * r.values for r in reports) / max(1, values),
    )
