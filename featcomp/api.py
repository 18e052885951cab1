"""The public API: the one way in for users, the CLI and the examples.

Models may be given as paths or ModelProtos; data as a folder of images (with a Preprocess), an .npz
of ready tensors, or any object with get_next() (ONNX Runtime's CalibrationDataReader protocol).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx

from featcomp import allocate as allocation
from featcomp.codecs import ActivationStats, SiteCodec, make_codec
from featcomp.data import (
    InputReader,
    collect,
    open_inputs,
    read_labels,
    validate_batch,
    validated,
)
from featcomp.errors import FeatcompError
from featcomp.modelio import input_spec, load_model, prepare
from featcomp.passes.insert import insert_pairs, strip_pairs, strip_to_original
from featcomp.passes.original import attach as attach_original
from featcomp.passes.sites import Site, SiteFilter, consumer_weights, find_sites, no_sites_reason, select
from featcomp.preprocess import Preprocess
from featcomp.quality import (
    Allocation,
    BitsPerValue,
    MaxDrop,
    OutputSnr,
    Quality,
    Sqnr,
    Step,
    codec_option,
)
from featcomp.reporting.measure import measure
from featcomp.reporting.schema import Report
from featcomp.runtime_ops import ort

ModelLike = str | os.PathLike[str] | onnx.ModelProto
DataLike = str | os.PathLike[str] | InputReader
Progress = Callable[[Iterable[Any]], Iterable[Any]]
SENSITIVITY_BATCHES = 8  # calibration batches used to measure site sensitivities
CHANNEL_SENSITIVITY_BATCHES = 4  # inputs per channel for measured per-channel sensitivities


@dataclass
class CompressResult:
    model: onnx.ModelProto
    sites: list[Site]
    codecs: dict[str, SiteCodec]
    seconds: dict[str, float]
    allocation: Allocation  # the policy and what it chose; allocation.as_dict() is the report's meta entry


def _model(model: ModelLike, *, need_conv: bool = True) -> onnx.ModelProto:
    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    return prepare(proto, need_conv=need_conv)


def _preprocess(spec: Preprocess | str | None) -> Preprocess | None:
    return Preprocess.parse(spec) if isinstance(spec, str) else spec


def _reader(model: onnx.ModelProto, data: DataLike, preprocess: Preprocess | str | None,
            limit: int | None, role: str) -> InputReader:
    return open_inputs(data, input_spec(model), _preprocess(preprocess), limit, role=role)


def inspect(model: ModelLike) -> list[Site]:
    """The compressible sites of a model (see featcomp.passes.sites for the rule)."""
    return find_sites(_model(model))


def calibrate(model: ModelLike, data: DataLike | Sequence[dict[str, np.ndarray]], *, sites: Sequence[Site] | None = None,
              preprocess: Preprocess | str | None = None, limit: int | None = None,
              progress: Progress | None = None, stats_options: Mapping[str, Any] | None = None) -> dict[str, ActivationStats]:
    """Run the original model on calibration data and collect per-site statistics."""
    proto = _model(model)
    chosen = list(sites) if sites is not None else find_sites(proto)
    if not chosen:
        raise FeatcompError("no sites to calibrate: the selection matched no activation tensor")
    spec = input_spec(proto)
    if isinstance(data, (list, tuple)):
        batches: Iterable[dict[str, np.ndarray]] = [validate_batch(b, spec) for b in data]
    else:
        batches = validated(_reader(proto, cast(DataLike, data), preprocess, limit, "calibration"), spec, "calibration")
    names = [s.name for s in chosen]
    sess = ort.session(ort.with_outputs(proto, names))
    stats = {s.name: ActivationStats(s.name, s.shape, **dict(stats_options or {})) for s in chosen}
    for s in chosen:
        stats[s.name].channel_weights = consumer_weights(proto, s.name, s.shape[0])
    count = 0
    for feeds in (progress(batches) if progress else batches):
        outs = ort.run(sess, feeds, names)
        for name in names:
            stats[name].update(outs[name])
        count += 1
    if count == 0:
        raise FeatcompError("the calibration set is empty: the reader returned no batches; check the folder, .npz or --limit")
    return stats


def compress(model: ModelLike, calib: DataLike, *, codec: str = "dct-cm", quality: Quality | None = None,
             codec_options: Mapping[str, Any] | None = None, preprocess: Preprocess | str | None = None,
             include: Iterable[str] | SiteFilter | None = None, op_types: Iterable[str] | None = None,
             exclude: Iterable[str] = (), limit: int | None = None, labels: str | os.PathLike[str] | None = None,
             label_offset: int = 0, progress: Progress | None = None, fold: bool = False) -> CompressResult:
    """Calibrate a codec per site and insert compress -> decompress pairs. Returns the new model.

    `quality` (featcomp.quality) says how each site's quality is chosen:
    - `Sqnr(db)`: the same SQNR target at every site; `Step(s)` (transform-vlc): the same quantizer step;
    - `BitsPerValue(b)`: sensitivity-weighted targets whose estimated average bits/value (side information
      included) is at most b;
    - `OutputSnr(db)`: sensitivity-weighted targets (featcomp.allocate) for that logit SNR;
    - `MaxDrop(points=1.0, metric=None, bound="upper", estimator="flips")`, the default: sensitivity-weighted targets, with the
      fewest bits whose top-1 loss on the calibration inputs stays within `points` against the model given.
      Without labels the loss is estimated (featcomp.budget: expected top-1 under the original's own softmax;
      bound "upper" holds the top of its 95% interval to the budget, "estimate" the point estimate, which
      lands above it on unseen images, see docs/budget.md; estimator "smooth" scores flip probabilities
      under the margin changes measured on all calibration inputs instead of the flips seen); with `labels` (a labels file for a folder of
      calibration images) measured top-1 accuracy is used. metric="agreement" keeps the strict older form:
      top-1 agreement with the original >= 1 - points/100. The estimate, and what the finest setting (the
      8-bit base quantization) costs alone, are recorded in `allocation`.
    `codec_options` go to the codec family (featcomp.codecs: e.g. transform="dct", groups=(1,)).
    `progress` wraps each long loop in turn (calibration batches, sites being fitted, search steps).
    `fold` (transform-vlc) folds each site's transform into the producing and consuming convs where both
    are plain Convs, so the transform costs nothing at run time (see featcomp.passes.fold).
    """
    t0 = time.perf_counter()
    policy: Quality = MaxDrop() if quality is None else quality
    if isinstance(policy, Step) and codec != "transform-vlc":
        raise FeatcompError("a uniform quantizer step (--step) belongs to --codec transform-vlc")
    given = model if isinstance(model, onnx.ModelProto) else load_model(model)
    proto = prepare(given)
    family = make_codec(codec, **{**(codec_options or {}), **codec_option(policy)})
    found = find_sites(proto)
    if not found:
        raise FeatcompError(no_sites_reason(proto))
    sites = select(found, include, op_types, exclude)
    if not sites:
        raise FeatcompError("the site selection is empty: check --sites/--op-types/--exclude against 'featcomp inspect'")
    if isinstance(policy, MaxDrop):
        policy.check(labelled=labels is not None)
    reader = _reader(proto, calib, preprocess, limit, "calibration")
    feeds = collect(reader, input_spec(proto))
    targets = _label_targets(reader, feeds, labels, label_offset) if labels is not None else None
    t1 = time.perf_counter()
    stats = calibrate(proto, feeds, sites=sites, progress=progress, stats_options=family.stats_options)
    t2 = time.perf_counter()
    if isinstance(policy, BitsPerValue):
        policy.check()
    chosen = Allocation(policy)
    if isinstance(policy, (Sqnr, Step)):
        codecs = {s.name: family.calibrate(stats[s.name]) for s in (progress(sites) if progress else sites)}
    else:
        measured = int(getattr(family, "measured_pixels", 0) or 0)
        if measured and float(getattr(family, "channel_steps", 0)):  # per-channel steps on measured sensitivities
            for s in sites:
                big = s.shape[1] * s.shape[2] >= measured
                stats[s.name].channel_weights = (allocation.channel_sensitivities(
                    proto, s, feeds[:CHANNEL_SENSITIVITY_BATCHES]) if big else None)
        fronts = {s.name: family.candidates(stats[s.name]) for s in (progress(sites) if progress else sites)}
        probe_feeds = feeds[:SENSITIVITY_BATCHES]
        gains = allocation.sensitivities(proto, sites, probe_feeds, fronts, progress=progress)
        if isinstance(policy, OutputSnr):
            power = allocation.output_power(proto, probe_feeds)
            codecs = allocation.allocate(fronts, gains, stats, power, policy.db)
        elif isinstance(policy, BitsPerValue):
            power = allocation.output_power(proto, probe_feeds)
            snr, codecs, bits = allocation.allocate_rate(fronts, gains, stats, power, policy.bits)
            chosen = Allocation(policy, output_snr_db=snr, estimated_bits_per_value=bits,
                                met=bits <= policy.bits + 1e-9)
        else:
            searched = allocation.search(proto, fronts, gains, stats, feeds, policy.points, labels=targets,
                                         progress=progress, metric=policy.metric, bound=policy.bound,
                                         estimator=policy.estimator)
            codecs = searched.codecs
            chosen = _searched(policy, searched)
    t3 = time.perf_counter()
    out = insert_pairs(proto, codecs).model
    if fold:  # transform-vlc: transforms into the conv weights where the graph allows (passes/fold.py)
        from featcomp.passes.fold import fold as fold_transforms

        folded = fold_transforms(out)
        out = folded.model
        chosen.folded = list(folded.notes)
    onnx.checker.check_model(out, full_check=True)
    attach_original(out, given, strip_pairs(out).model)  # strip gives back `given` itself, byte for byte
    t4 = time.perf_counter()
    seconds = {"load": t1 - t0, "calibration_run": t2 - t1, "codec_fit": t3 - t2, "insert": t4 - t3, "total": t4 - t0}
    return CompressResult(model=out, sites=sites, codecs=codecs, seconds=seconds, allocation=chosen)


def _searched(policy: MaxDrop, found: allocation.Allocation) -> Allocation:
    """What the accuracy search judged, for `CompressResult.allocation` (and the report's meta).

    Always the label-free estimate at the chosen setting and at the finest one (the 8-bit base quantization,
    whose cost the budget includes: it is measured against the model given); per metric, its value at both
    and the bound it had to meet.
    """
    chosen = Allocation(policy, output_snr_db=found.output_snr_db, met=found.met, metric=found.metric,
                        calibration_agreement=found.agreement, required=found.required,
                        estimated_drop=None if found.estimate is None else found.estimate.as_dict(),
                        base_estimated_drop=None if found.base is None else found.base.as_dict())
    if found.metric == "agreement":
        chosen.base_agreement = found.base_score
    elif found.metric == "top1":
        chosen.calibration_top1, chosen.original_top1 = found.top1, found.original_top1
        if found.base_score is not None and found.original_top1 is not None:
            chosen.base_top1_drop = round(100.0 * (found.original_top1 - found.base_score), 4)
    return chosen


def _label_targets(reader: InputReader, feeds: Sequence[dict[str, np.ndarray]], labels: str | os.PathLike[str],
                   offset: int) -> list[np.ndarray]:
    """Class indices (in the model's output numbering) for each calibration batch."""
    truth = read_labels(Path(labels))
    paths = list(getattr(reader, "paths", []))
    if len(paths) != len(feeds) or any(len(next(iter(f.values()))) != 1 for f in feeds):
        raise FeatcompError("labels for calibration need a folder of images (one image per batch), not an .npz or a reader")
    missing = [p.name for p in paths if p.name not in truth]
    if missing:
        raise FeatcompError(f"{len(missing)} calibration images have no label in {labels} (first: {missing[0]})")
    return [np.array([truth[p.name] + offset]) for p in paths]


def report(model: ModelLike, data: DataLike, *, preprocess: Preprocess | str | None = None,
           limit: int | None = None, name: str | None = None, progress: Progress | None = None,
           bytes_samples: int | None = None) -> Report:
    """Run a compressed model and measure real coded bytes, SQNR and agreement per site (the bytes on the first
    `bytes_samples` samples only, when given: see featcomp.reporting.measure)."""
    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    label = name or (Path(model).name if not isinstance(model, onnx.ModelProto) else proto.graph.name or "model")
    reader = open_inputs(data, input_spec(proto), _preprocess(preprocess), limit, role="report")
    result = measure(proto, reader, name=label, progress=progress, bytes_samples=bytes_samples)
    from featcomp.passes.jpeg_input import jpeg_tables

    tables = jpeg_tables(proto)
    paths = list(getattr(reader, "paths", []))
    if tables is not None and paths:  # the input node's saving, in real file bytes of the same images
        from featcomp.jpeg.evaluate import input_bytes

        result.totals.input_jpeg = input_bytes(paths, tables, preprocess=_preprocess(preprocess)).as_dict()
    return result


def strip(model: ModelLike) -> onnx.ModelProto:
    """The original model back from a compressed one: the model compress was given, byte for byte (for a
    model edited after compress, e.g. by `featcomp jpeg insert`: the pairs removed, the edit kept)."""
    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    return strip_to_original(proto).model


@dataclass
class EvalResult:
    images: int
    top1: float
    top5: float
    reference_top1: float | None = None
    reference_top5: float | None = None
    agreement: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def evaluate(model: ModelLike, images: str | os.PathLike[str], labels: str | os.PathLike[str], *,
             preprocess: Preprocess | str, reference: ModelLike | None = None, label_offset: int = 0,
             limit: int | None = None, progress: Progress | None = None) -> EvalResult:
    """Top-1/top-5 on labelled images, and top-1 agreement with a reference model when given."""
    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    ref = None
    if reference is not None:
        ref = reference if isinstance(reference, onnx.ModelProto) else load_model(reference)
    truth = read_labels(Path(labels))
    reader = open_inputs(images, input_spec(proto), _preprocess(preprocess), limit, role="evaluation")
    paths = list(getattr(reader, "paths", []))
    if not paths:
        raise FeatcompError("evaluation needs a folder of labelled images (labels name image files)")
    missing = [p.name for p in paths if p.name not in truth]
    if missing:
        raise FeatcompError(f"{len(missing)} images have no label in {labels} (first: {missing[0]})")
    sessions = [ort.session(proto)] + ([ort.session(ref)] if ref is not None else [])
    ranks: list[list[np.ndarray]] = [[] for _ in sessions]
    widths = [0 for _ in sessions]
    batches = validated(reader, input_spec(proto), "evaluation")
    for feeds in (progress(batches) if progress else batches):
        for i, sess in enumerate(sessions):
            y = next(iter(ort.run(sess, feeds).values()))
            widths[i] = int(np.prod(y.shape[1:]))
            ranks[i].append(np.argsort(-y.reshape(len(y), -1), axis=1)[:, :5] - label_offset)
    if not ranks[0]:
        raise FeatcompError("the evaluation set is empty: no images were read")
    target = np.array([truth[p.name] for p in paths])[:, None]
    top = [np.concatenate(r) for r in ranks]
    _check_label_offset(top[0][:, 0] + label_offset, target[:, 0], label_offset, widths[0])
    result = EvalResult(images=len(target), top1=float(np.mean(top[0][:, :1] == target)),
                        top5=float(np.mean(np.any(top[0] == target, axis=1))))
    if ref is not None:
        result.reference_top1 = float(np.mean(top[1][:, :1] == target))
        result.reference_top5 = float(np.mean(np.any(top[1] == target, axis=1)))
        result.agreement = float(np.mean(top[0][:, 0] == top[1][:, 0]))
    return result


def _check_label_offset(predicted: np.ndarray, truth: np.ndarray, offset: int, width: int) -> None:
    """Refuse a top-1 that the label offset alone ruins (e.g. a 1001-class model with a background class at
    index 0 scored against 0..999 labels without --label-offset 1): one line saying what to pass."""
    def accuracy(k: int) -> float:
        return float(np.mean(predicted - k == truth))

    got = accuracy(offset)
    for other in (offset + 1, offset - 1):
        better = accuracy(other)
        if np.sum(predicted - other == truth) >= 3 and better >= 2 * got + 0.1:
            raise FeatcompError(
                f"top-1 is {got:.1%} with --label-offset {offset} but {better:.1%} with --label-offset {other} "
                f"(the model has {width} outputs, the labels go up to {int(truth.max())}): "
                f"pass --label-offset {other}")


def site_codecs(model: ModelLike) -> Mapping[str, SiteCodec]:
    """The frozen per-site codecs stored in a compressed model (for decoding bitstreams offline)."""
    from featcomp.passes.pairs import find_pairs

    proto = model if isinstance(model, onnx.ModelProto) else load_model(model)
    return {p.site: p.codec for p in find_pairs(proto)}
