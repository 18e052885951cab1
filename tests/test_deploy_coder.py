"""End to end with real bitstreams on the board: the embedded EfficientNet-Lite0 compressed with
each codec, compiled for a Raspberry Pi 4 with its TIR coder (`featcomp compile --coder`), run under
qemu-aarch64 through the CLI on real photos. Every site's stream, packed and unpacked on the board, has
exactly the length the numpy reference packs from the symbols the board's encoder produced, and the
predictions are ONNX Runtime's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tvm_tools import need_runtime, need_tools, need_tvm

from featcomp.quality import Sqnr

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("codec", ["transform-vlc", "dct-cm"])
def test_emulated_board_codes_every_site_as_the_reference_does(tmp_path: Path, cli, codec: str) -> None:
    need_tvm()
    need_tools("aarch64-linux-gnu-g++", "qemu-aarch64")
    need_runtime("aarch64")
    from featcomp.passes.pairs import find_pairs
    from featcomp.runtime_ops import ort
    from onnx import TensorProto

    from featcomp import api, zoo
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec, prepare, save_model
    from featcomp.preprocess import Preprocess

    model = prepare(zoo.efficientnet_lite0())
    spec = input_spec(model)
    photos = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
    compressed = api.compress(model, ImageReader(zoo.sample_images(), photos, spec, None, role="calibration"),
                              codec=codec, quality=Sqnr(25.0),
                              codec_options={"coder": "own"}).model  # own coder: the rANS path is covered by test_tvm_rans_coder.py
    pairs = find_pairs(compressed)
    # the symbols as extra outputs, so the board's own symbols can be packed by the reference
    probe = ort.with_outputs(compressed, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs))
    path = save_model(probe, tmp_path / "effnet.fc.onnx")
    x = photos.load(zoo.sample_images()[0])[None]
    np.save(tmp_path / "x.npy", x)

    built = cli("compile", path, "--target", "rasp4b64", "-o", tmp_path / "rpi", "--coder", "-q")
    assert built.code == 0, built.err
    from featcomp.deploy import bundle

    info = bundle.load_manifest(tmp_path / "rpi")["compile"]  # the coders' workspace, outside the plan
    assert [r["site"] for r in info["coder_scratch"]["sites"]] == [p.site for p in pairs]
    assert info["memory"]["coder_scratch_bytes_per_thread"] == info["coder_scratch"]["bytes_per_thread"] > 0
    run = cli("run", tmp_path / "rpi", "--input", tmp_path / "x.npy", "--emulate", "--output", tmp_path / "y.npz")
    assert run.code == 0, run.err
    with np.load(tmp_path / "y.npz") as z:
        outs = [z[f"arr_{i}"] for i in range(len(z.files))]
    assert len(outs) == 1 + 2 * len(pairs)
    lengths = outs[1 + len(pairs):]
    for p, symbols, coded in zip(pairs, outs[1:1 + len(pairs)], lengths):
        assert coded.tolist() == [len(p.codec.pack(symbols[0]))], p.site
    total = sum(int(c.sum()) for c in lengths)
    assert f"feature maps coded on the device: {total} bytes over {len(pairs)} sites" in run.out
    logits = ort.run(ort.session(compressed), {spec.name: x})
    want = np.asarray(next(iter(logits.values())) if isinstance(logits, dict) else logits[0])
    assert outs[0].argmax() == want.argmax()
