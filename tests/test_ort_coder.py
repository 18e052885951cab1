"""The bitstream coder inside ONNX Runtime (onnxruntime-extensions Python ops): a compressed model run with
real bitstreams between encoder and decoder gives exactly what the model without the coder gives, and the
bytes that travel are the reference packer's bytes."""

from __future__ import annotations

from pathlib import Path

import models
import needs
import numpy as np
import pytest
from featcomp.runtime_ops import ort, ort_coder
from onnx import TensorProto

from featcomp import api
from featcomp.quality import OutputSnr

needs.module("onnxruntime_extensions", "pip install 'featcomp[coder]'")


@pytest.mark.parametrize("codec", ["transform-vlc", "dct-cm"])
def test_coded_run_equals_symbol_run(codec: str, calib_npz: Path) -> None:
    result = api.compress(models.residual(), calib_npz, codec=codec, quality=OutputSnr(20.0))
    x = np.load(calib_npz)[models.INPUT]
    plain = ort.session(result.model)
    coded = ort_coder.session(result.model, coded_outputs=True)
    out = result.model.graph.output[0].name
    pairs = api.site_codecs(result.model)
    name = next(iter(pairs))
    probe_names = [out, f"fc/{name}/symbols/coded"]
    for batch in (x[:1], x[2:3]):
        want = plain.run([out], {models.INPUT: batch})[0]
        got, coded_bytes = coded.run(probe_names, {models.INPUT: batch})
        np.testing.assert_array_equal(got, want)
        sym = ort.run(ort.session(ort.with_outputs(result.model, [f"fc/{name}/symbols"], [TensorProto.INT16])),
                      {models.INPUT: batch})[f"fc/{name}/symbols"]
        streams = b"".join(pairs[name].pack(one) for one in sym)
        assert coded_bytes.tobytes().endswith(streams)


@pytest.mark.parametrize("coder", ["own", "rans"])
@pytest.mark.parametrize("codec", ["transform-vlc", "dct-cm"])
def test_coded_batches_hold_sliced_v2_streams(codec: str, coder: str, tmp_path: Path) -> None:
    """Sites big enough for several slices (8 x 64 x 64: four bands of 16 rows): the ops' bytes are the
    reference's v2 streams, slice table included, and decode back to the model's own outputs, with either
    entropy coder."""
    import struct

    from featcomp.codecs import bitstream

    model = models.two_convs(dims=(1, 3, 64, 64))
    x = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{models.INPUT: x})
    result = api.compress(model, tmp_path / "calib.npz", codec=codec, quality=OutputSnr(20.0),
                          codec_options={"coder": coder})
    pairs = api.site_codecs(result.model)
    assert all((site.describe()["coder"] == "rans") == (coder == "rans") for site in pairs.values())
    coded = ort_coder.session(result.model, coded_outputs=True)
    names = [f"fc/{name}/symbols/coded" for name in pairs]
    out = result.model.graph.output[0].name
    sym_model = ort.session(ort.with_outputs(result.model, [f"fc/{n}/symbols" for n in pairs], [TensorProto.INT16] * len(pairs)))
    got = coded.run([out, *names], {models.INPUT: x[:1]})
    want = ort.session(result.model).run([out], {models.INPUT: x[:1]})[0]
    np.testing.assert_array_equal(got[0], want)
    symbols = ort.run(sym_model, {models.INPUT: x[:1]})
    for (name, site), batch in zip(pairs.items(), got[1:]):
        raw = batch.tobytes()
        count, length = struct.unpack_from("<2I", raw)
        stream = raw[8:8 + length]
        assert count == 1 and stream == site.pack(symbols[f"fc/{name}/symbols"][0])
        assert stream[2] == bitstream.FORMAT_VERSION == 2
        assert struct.unpack_from("<H", stream, 14)[0] == len(bitstream.bands(site.shape)) - 1 == 4
