"""transform-vlc through the public API and CLI on small models built in code: the compressed model runs in
ONNX Runtime, strips back to the original, and its report's bits, entropy and side information agree with
an independent recomputation from the symbols ONNX Runtime produces."""

from __future__ import annotations

import math
from pathlib import Path

import models
import numpy as np
import pytest
from featcomp.passes.pairs import find_pairs
from featcomp.runtime_ops import ort
from onnx import TensorProto

from featcomp import api
from featcomp.codecs.huffman import entropy_bits
from featcomp.data import NpzReader
from featcomp.modelio import input_spec, load_model
from featcomp.quality import BitsPerValue, OutputSnr


def npz_reader(path: Path, model) -> NpzReader:
    return NpzReader(path, input_spec(model))


def test_compress_report_and_strip(calib_npz: Path) -> None:
    model = models.residual()
    result = api.compress(model, calib_npz, codec="transform-vlc", quality=OutputSnr(25.0))
    pairs = find_pairs(result.model)
    assert pairs and {p.codec_name for p in pairs} == {"transform-vlc"}
    assert api.strip(result.model).SerializeToString() == model.SerializeToString()  # the model as given
    rep = api.report(result.model, calib_npz)
    # recompute per-site payload, entropy and side bytes from ORT's symbols
    probe = ort.session(ort.with_outputs(result.model, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs)))
    data = np.load(calib_npz)[models.INPUT]
    symbols = {p.site: [] for p in pairs}
    for x in data:
        outs = ort.run(probe, {models.INPUT: x[None]})
        for p in pairs:
            symbols[p.site].append(outs[p.symbols][0])
    for p, site_report in zip(pairs, rep.sites):
        s = np.stack(symbols[p.site])
        sizes = [len(p.codec.pack(one)) for one in s]
        assert site_report.coded_bytes_mean == pytest.approx(np.mean(sizes))
        assert site_report.side_bytes == p.codec.side_bytes
        c = s.shape[1]
        h0 = sum(entropy_bits(s[:, ch]) for ch in range(c)) / len(s)
        assert site_report.entropy_bits_per_value == pytest.approx(h0 / site_report.values, rel=1e-9, abs=1e-12)
        assert site_report.payload_bits_per_value == pytest.approx(8 * np.mean(sizes) / site_report.values)
        assert not math.isnan(site_report.sqnr_db)


def test_bits_per_value_budget_is_respected_on_calibration_estimates(calib_npz: Path) -> None:
    model = models.two_convs()
    loose = api.compress(model, calib_npz, codec="transform-vlc", quality=BitsPerValue(6.0))
    tight = api.compress(model, calib_npz, codec="transform-vlc", quality=BitsPerValue(2.0))
    assert loose.allocation.estimated_bits_per_value is not None and loose.allocation.estimated_bits_per_value <= 6.0
    assert tight.allocation.output_snr_db is not None and loose.allocation.output_snr_db is not None
    assert tight.allocation.output_snr_db < loose.allocation.output_snr_db


def test_cli_transform_vlc_and_option_errors(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    path = model_file(models.two_convs())
    out = tmp_path / "out.onnx"
    run = cli("compress", path, "-o", out, "--codec", "transform-vlc", "--transform", "dct", "--calib", calib_npz,
              "--step", "3", "--format", "csv")
    assert run.code == 0, run.err
    assert "transform-vlc" in run.out and out.exists()
    assert all(p.codec.describe()["step"] == 3.0 for p in find_pairs(load_model(out)))
    bad = tmp_path / "bad.onnx"
    run = cli("compress", path, "-o", bad, "--transform", "pca", "--calib", calib_npz)
    assert run.code == 1 and "transform-vlc" in run.err and "Traceback" not in run.err and not bad.exists()
    run = cli("compress", path, "-o", bad, "--codec", "transform-vlc", "--step", "-2", "--calib", calib_npz)
    assert run.code == 1 and "step" in run.err and not bad.exists()
    run = cli("compress", path, "-o", bad, "--codec", "transform-vlc", "--bits-per-value", "0", "--calib", calib_npz)
    assert run.code == 1 and "bits per value" in run.err and not bad.exists()
