"""The bitstream coder inside ONNX Runtime (onnxruntime-extensions Python ops): a compressed model run with
real bitstreams between encoder and decoder gives exactly what the model without the coder gives, and the
bytes that travel are the reference packer's bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

import models
import needs
from featcomp import api
from featcomp.runtime_ops import ort

from featcomp.runtime_ops import ort_coder

needs.module("onnxruntime_extensions", "pip install 'featcomp[coder]'")


@pytest.mark.parametrize("codec", ["transform-vlc", "dct-cm"])
def test_coded_run_equals_symbol_run(codec: str, calib_npz: Path) -> None:
    result = api.compress(models.residual(), calib_npz, codec=codec, output_snr_db=20.0)
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
