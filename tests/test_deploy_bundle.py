"""End to end: the embedded EfficientNet-Lite0, compressed, compiled for a Raspberry Pi 4 (aarch64)
and for this x86 host, run on the emulated board (qemu-aarch64) and natively, against ONNX Runtime
on real photos; plus the bundle layout and manifest, and the RPC path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tvm_tools import need_runtime, need_tools, need_tvm

from featcomp.quality import Sqnr

pytestmark = pytest.mark.slow


@dataclass
class Case:
    model: Path
    images: np.ndarray      # [6, 3, 224, 224], the zoo's sample photos
    ort: np.ndarray         # ONNX Runtime logits of the compressed model
    rpi: Path               # bundle for rasp4b64, batch 6
    host: Path              # bundle for this host (x86_64), batch 1


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    need_tvm()
    need_tools("aarch64-linux-gnu-g++", "qemu-aarch64", "g++")
    need_runtime("aarch64")
    from featcomp.runtime_ops import ort as fort

    from featcomp import api, zoo
    from featcomp.cli import main
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec, prepare, save_model
    from featcomp.preprocess import Preprocess

    out = tmp_path_factory.mktemp("deploy")
    model = prepare(zoo.efficientnet_lite0())
    spec = input_spec(model)
    reader = ImageReader(zoo.sample_images(), Preprocess.parse(zoo.DEFAULT_PREPROCESS), spec, None, role="calibration")
    result = api.compress(model, reader, quality=Sqnr(30.0))
    path = save_model(result.model, out / "effnet.fc.onnx")
    reader = ImageReader(zoo.sample_images(), Preprocess.parse(zoo.DEFAULT_PREPROCESS), spec, None, role="report")
    images = np.concatenate([feed[spec.name] for feed in iter(reader.get_next, None)])
    logits = fort.run(fort.session(result.model), {spec.name: images})
    ort = np.asarray(next(iter(logits.values())) if isinstance(logits, dict) else logits[0])
    assert main(["compile", str(path), "--target", "rasp4b64", "-o", str(out / "rpi"), "--batch", str(len(images)),
                 "--preprocess", zoo.DEFAULT_PREPROCESS, "-q"]) == 0
    assert main(["compile", str(path), "--target", "host", "-o", str(out / "host"), "-q"]) == 0
    return Case(path, images, ort, out / "rpi", out / "host")


def test_emulated_board_gives_onnx_runtime_predictions(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    from featcomp.deploy import bundle

    result = bundle.run(case.rpi, case.images, emulate=True)
    logits = result.outputs[0]
    assert logits.shape == case.ort.shape == (len(case.images), 1000)
    np.testing.assert_array_equal(logits.argmax(1), case.ort.argmax(1))
    diff = float(np.abs(logits - case.ort).max())
    with capsys.disabled():
        print(f"\nrasp4b64 under qemu vs ONNX Runtime, {len(case.images)} photos: same top-1, "
              f"max |logit diff| {diff:.3g} (logit range {float(np.ptp(case.ort)):.1f})")
    assert diff < 0.05 * float(np.ptp(case.ort))


def test_host_bundle_through_the_cli(case: Case, cli, tmp_path: Path) -> None:
    x = case.images[:1]
    np.save(tmp_path / "x.npy", x)
    run = cli("run", case.host, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--iters", "2")
    assert run.code == 0, run.err
    y = np.load(tmp_path / "y.npy")
    assert y.argmax() == case.ort[0].argmax()
    assert f"top-1 index {case.ort[0].argmax()}" in run.out
    assert np.abs(y - case.ort[:1]).max() < 0.05 * float(np.ptp(case.ort))


def test_run_an_image_with_the_recorded_preprocessing(case: Case, cli) -> None:
    """`featcomp run BUNDLE --input photo.png` preprocesses with the spec given at compile time."""
    from featcomp import zoo

    run = cli("run", case.host, "--input", zoo.sample_images()[0], "--preprocess", zoo.DEFAULT_PREPROCESS)
    assert run.code == 0, run.err
    assert f"top-1 index {case.ort[0].argmax()}" in run.out


def test_bundle_layout_and_manifest(case: Case) -> None:
    manifest = json.loads((case.rpi / "manifest.json").read_text())
    assert manifest["target"]["arch"] == "aarch64" and "cortex-a72" in manifest["target"]["tvm"]
    assert manifest["inputs"] == [{"name": "input", "shape": [6, 3, 224, 224], "dtype": "float32"}]
    assert manifest["outputs"][0]["shape"] == [6, 1000]
    assert manifest["preprocess"].startswith("resize=256")
    assert len(manifest["codec_sites"]) > 10 and {s["codec"] for s in manifest["codec_sites"]} == {"dct-cm"}
    assert manifest["versions"]["tvm"] == "0.27.0.post1"
    for name, size in manifest["files"].items():
        assert (case.rpi / name).stat().st_size == size
    assert {"model.so", "runner", "run.sh", "lib/libtvm_runtime.so", "lib/libtvm_ffi.so"} <= set(manifest["files"])
    stats = manifest["compile"]
    assert stats["naive"] == 0 and stats["default_scheduled"] > 10
    assert stats["fusion"]["encode_fused"] + stats["fusion"]["encode_alone"] == len(manifest["codec_sites"])
    assert stats["memory"]["activation_bytes"] > 0
    elf = (case.rpi / "runner").read_bytes()[:20]
    assert elf[:4] == b"\x7fELF" and elf[18] == 183  # e_machine EM_AARCH64


def test_rpc_runs_the_host_bundle(case: Case) -> None:
    from featcomp.runtime_ops.tvm import rpc
    from tvm import rpc as tvm_rpc

    from featcomp.deploy import bundle

    server = tvm_rpc.Server(host="127.0.0.1", port=9190, port_end=9290)
    try:
        manifest = bundle.load_manifest(case.host)
        outputs, ms = rpc.run(case.host, manifest, case.images[:1], f"127.0.0.1:{server.port}")
    finally:
        server.terminate()
    assert outputs[0].argmax() == case.ort[0].argmax() and ms > 0
