"""The traffic report: every number recomputed here from an independent ORT run and the packer, the JSON
round trip, the renderers, and refusal of reports written for another schema."""

from __future__ import annotations

import json
import math
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from featcomp.passes.insert import strip_pairs
from featcomp.passes.pairs import find_pairs
from featcomp.passes.sites import find_sites
from featcomp.runtime_ops import ort
from onnx import TensorProto

from featcomp import api
from featcomp.errors import FeatcompError
from featcomp.quality import Sqnr
from featcomp.reporting.render import FORMATS, render
from featcomp.reporting.schema import SCHEMA, Report

SAMPLES = 5


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(31)
    x = rng.normal(size=(SAMPLES, 3, models.SIZE, models.SIZE)).astype(np.float32)
    path = tmp_path_factory.mktemp("report") / "inputs.npz"
    np.savez(path, **{models.INPUT: x})
    return path, x


@pytest.fixture(scope="module")
def compressed(data) -> onnx.ModelProto:
    path, _ = data
    return api.compress(models.residual(), path, quality=Sqnr(22.0)).model


@pytest.fixture(scope="module")
def report(compressed, data) -> Report:
    path, _ = data
    return api.report(compressed, path, name="residual")


@pytest.fixture(scope="module")
def independent(compressed, data) -> dict:
    """Per site, from our own ORT run: the encoder inputs, the symbols and the packed sizes per sample."""
    _, x = data
    pairs = find_pairs(compressed)
    names = [p.site for p in pairs] + [p.symbols for p in pairs]
    probe = ort.with_outputs(compressed, names, [TensorProto.FLOAT] * len(pairs) + [TensorProto.INT16] * len(pairs))
    sess = ort.session(probe)
    ref_sess = ort.session(strip_pairs(compressed).model)
    out_name = compressed.graph.output[0].name
    result = {p.site: {"x": [], "sizes": [], "approx": []} for p in pairs}
    agree = 0
    for sample in x:
        feeds = {models.INPUT: sample[None]}
        outs = dict(zip([out_name, *names], sess.run([out_name, *names], feeds)))
        ref = ref_sess.run([out_name], feeds)[0]
        agree += int(outs[out_name].argmax() == ref.argmax())
        for p in pairs:
            symbols = outs[p.symbols]
            assert symbols.dtype == np.int16
            result[p.site]["x"].append(outs[p.site])
            result[p.site]["sizes"].append(len(p.codec.pack(symbols[0])))
            result[p.site]["approx"].append(p.codec.decode(p.codec.pack(symbols[0]))[None])
    result["agreement"] = agree / len(x)
    return result


def test_sites_and_samples(report: Report, compressed) -> None:
    assert report.schema == SCHEMA and report.model == "residual" and report.codec == "dct-cm"
    assert report.samples == SAMPLES
    assert [s.name for s in report.sites] == [p.site for p in find_pairs(compressed)]
    assert {s.name for s in report.sites} == {"relu1", "add", "concat", "pool"}


def test_coded_bytes_are_the_real_bitstream_sizes(report: Report, independent) -> None:
    for s in report.sites:
        sizes = independent[s.name]["sizes"]
        assert s.coded_bytes_mean == pytest.approx(float(np.mean(sizes)), rel=1e-12)
        assert s.coded_bytes_max == max(sizes)


def test_site_ratios_are_consistent_with_the_bytes(report: Report, compressed) -> None:
    pairs = {p.site: p for p in find_pairs(compressed)}
    inits = {t.name: t for t in compressed.graph.initializer}
    for s in report.sites:
        values = int(np.prod(s.shape))
        assert s.values == values and s.int8_bytes == values and s.fp32_bytes == 4 * values
        assert list(pairs[s.name].codec.shape) == s.shape
        # side information at least covers the parameter tensors the decoder reads
        side_tensors = sum(onnx.numpy_helper.to_array(inits[t]).nbytes for t in pairs[s.name].side_tensors)
        assert s.side_bytes >= side_tensors
        per_inference = s.coded_bytes_mean + s.side_bytes
        assert s.ratio_vs_int8 == pytest.approx(s.int8_bytes / per_inference, rel=1e-12)
        assert s.ratio_vs_fp32 == pytest.approx(s.fp32_bytes / per_inference, rel=1e-12)
        assert s.bits_per_value == pytest.approx(8 * per_inference / values, rel=1e-12)
        assert s.mode == pairs[s.name].codec.describe()["mode"] and s.codec == "dct-cm"


def test_site_quality_numbers(report: Report, independent) -> None:
    for s in report.sites:
        x = np.concatenate(independent[s.name]["x"]).astype(np.float64)
        approx = np.concatenate(independent[s.name]["approx"]).astype(np.float64)
        expected = 10 * math.log10(np.sum(x * x) / np.sum((x - approx) ** 2))
        assert s.sqnr_db == pytest.approx(expected, abs=1e-3)
        assert s.zero_fraction == pytest.approx(np.count_nonzero(x == 0) / x.size, abs=1e-12)
    assert report.accuracy["top1_agreement"] == pytest.approx(independent["agreement"])
    assert report.accuracy["samples"] == SAMPLES


def test_totals(report: Report, compressed) -> None:
    t = report.totals
    sites = report.sites
    assert t.sites == len(sites)
    assert t.values == sum(s.values for s in sites) == t.int8_bytes and t.fp32_bytes == 4 * t.values
    assert t.coded_bytes == pytest.approx(sum(s.coded_bytes_mean for s in sites), rel=1e-12)
    assert t.side_bytes == sum(s.side_bytes for s in sites)
    assert t.ratio_vs_int8 == pytest.approx(t.int8_bytes / (t.coded_bytes + t.side_bytes), rel=1e-12)
    assert t.ratio_vs_fp32 == pytest.approx(t.fp32_bytes / (t.coded_bytes + t.side_bytes), rel=1e-12)
    assert t.bits_per_value == pytest.approx(8 * (t.coded_bytes + t.side_bytes) / t.values, rel=1e-12)


def test_traffic_totals_recomputed_from_the_sites(report: Report, compressed) -> None:
    original = strip_pairs(compressed).model
    t = report.totals
    memory = find_sites(original)  # every tensor the deployed network writes to memory
    assert t.activation_traffic_int8 == sum(s.values * (1 + len(s.consumers)) for s in memory)
    assert t.activation_traffic_fp32 == 4 * t.activation_traffic_int8
    coded = {s.name: s.coded_bytes_mean for s in report.sites}
    expected = t.side_bytes + sum(coded.get(s.name, s.values) * (1 + len(s.consumers)) for s in memory)
    assert t.activation_traffic_compressed == pytest.approx(expected, rel=1e-12)
    weights = sum(int(np.prod(w.dims)) for w in original.graph.initializer)
    assert t.weight_bytes_int8 == weights and t.weight_bytes_fp32 == 4 * weights
    inputs = 3 * models.SIZE * models.SIZE
    assert t.input_bytes_uint8 == inputs and t.input_bytes_fp32 == 4 * inputs
    assert t.total_traffic_int8 == t.activation_traffic_int8 + weights + inputs
    assert t.total_traffic_compressed == pytest.approx(t.activation_traffic_compressed + weights + inputs, rel=1e-12)
    assert t.traffic_saving_vs_int8 == pytest.approx(1 - t.total_traffic_compressed / t.total_traffic_int8, rel=1e-9)
    assert t.activation_traffic_compressed < t.activation_traffic_int8  # the codec did save traffic


def test_json_round_trip_is_lossless(report: Report) -> None:
    text = report.to_json()
    again = Report.from_json(text)
    assert again == report
    assert again.to_json() == text
    assert json.loads(text)["schema"] == SCHEMA


def test_renderers_name_every_site(report: Report) -> None:
    names = [s.name for s in report.sites]
    for fmt in FORMATS:
        text = render(report, fmt)
        for name in names:
            assert name in text, (fmt, name)
    rows = render(report, "csv").splitlines()
    assert len(rows) == 1 + len(names) and [r.split(",")[0] for r in rows[1:]] == names
    assert Report.from_json(render(report, "json")) == report
    with pytest.raises(FeatcompError):
        render(report, "xml")


def test_foreign_or_broken_reports_are_refused(report: Report) -> None:
    data = json.loads(report.to_json())
    for schema in ("featcomp.report/2", "", None):
        with pytest.raises(FeatcompError, match="schema"):
            Report.from_json(json.dumps({**data, "schema": schema}))
    without = {k: v for k, v in data.items() if k != "schema"}
    with pytest.raises(FeatcompError):
        Report.from_json(json.dumps(without))
    with pytest.raises(FeatcompError):
        Report.from_json("{not json")
    with pytest.raises(FeatcompError):
        Report.from_json(json.dumps([data]))
    broken = {**data, "totals": {k: v for k, v in data["totals"].items() if k != "sites"}}
    with pytest.raises(FeatcompError):
        Report.from_json(json.dumps(broken))
    extra = {**data, "sites": [{**data["sites"][0], "surprise": 1}]}
    with pytest.raises(FeatcompError):
        Report.from_json(json.dumps(extra))


def test_report_of_an_uncompressed_model_is_refused(data) -> None:
    path, _ = data
    with pytest.raises(FeatcompError, match="no featcomp pairs"):
        api.report(models.residual(), path)


def test_bytes_on_a_subset_are_those_samples_real_sizes(compressed, data, independent, report: Report) -> None:
    path, _ = data
    part = api.report(compressed, path, name="residual", bytes_samples=2)
    assert part.bytes_samples == 2 and report.bytes_samples is None and part.samples == SAMPLES
    for s, full in zip(part.sites, report.sites):
        sizes = independent[s.name]["sizes"][:2]
        assert s.coded_bytes_mean == pytest.approx(float(np.mean(sizes)), rel=1e-12)
        assert s.sqnr_db == full.sqnr_db  # quality still on every sample
    assert part.accuracy == report.accuracy
    assert "coded bytes counted on the first 2" in render(part, "table")
    assert Report.from_json(part.to_json()).bytes_samples == 2


@pytest.mark.parametrize("count", [0, -3])
def test_bytes_on_no_samples_is_refused_in_one_line(compressed, data, count: int) -> None:
    path, _ = data
    with pytest.raises(FeatcompError, match="bytes_samples must be at least 1"):
        api.report(compressed, path, bytes_samples=count)
