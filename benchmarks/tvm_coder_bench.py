"""The bitstream coders (DCT-CM and transform-VLC): TIR kernels vs the numpy reference, per site of real
models, and what running the coder costs a whole compiled model (TVM) and an ONNX Runtime session.

    .venv/bin/python benchmarks/tvm_coder_bench.py [--threads 2] [--images 8] [--codecs dct-cm,transform-vlc]

Writes benchmarks/results/tvm/coder.json and coder.md. Models: the embedded EfficientNet-Lite0 and, with
../shared, MobileNetV2, compressed with each codec at 20 dB logit SNR (calibrated on 16 images of
imagenet-calib-200, or on the 6 zoo photos without ../shared). Symbols: ONNX Runtime's, on the first
--images photos of imagenet-val-100 (or the zoo photos). Coder rows: batch 1 (one stream per site; its
slices, bitstream v2, run on the --threads threads), each site's
kernels timed with buffers allocated once (best of 5 x 20 calls) next to the site's pack/unpack (best of 5),
summed over sites and photos; the TIR streams are checked equal to numpy's before timing. Model rows: batch
1, --threads threads, TVM with and without the coder interleaved (median of 7 x 10 runs), ORT with and
without its Python-op coder (median of 20 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.quality import OutputSnr

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "tvm"
sys.path.insert(0, str(ROOT / "benchmarks"))


def cases() -> list[tuple[str, str, Any, Any, np.ndarray]]:
    """(name, codec, compressed model, its input name, photos [k, 3, 224, 224])."""
    from featcomp import api, modelio, zoo
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec
    from featcomp.preprocess import Preprocess

    todo: list[tuple[str, Any, str]] = [("efficientnet-lite0", zoo.efficientnet_lite0(), zoo.DEFAULT_PREPROCESS)]
    if (SHARED / "models/mobilenet_v2_1.0_224.onnx").exists():
        todo.append(("mobilenet_v2_1.0_224", modelio.load_model(SHARED / "models/mobilenet_v2_1.0_224.onnx"),
                     "resize=256,crop=224,order=rgb,mean=128,std=128"))
    out = []
    for name, model, pre in todo:
        model = modelio.prepare(model)
        spec = input_spec(model)
        photos = Preprocess.parse(pre)
        calib: Any = SHARED / "data/imagenet-calib-200"
        if not calib.exists():
            calib = ImageReader(zoo.sample_images(), photos, spec, None, role="calibration")
        val = SHARED / "data/imagenet-val-100/images"
        files = sorted(val.iterdir()) if val.exists() else list(zoo.sample_images())
        x = np.stack([photos.load(f) for f in files[:ARGS.images]])
        for codec in ARGS.codecs.split(","):
            result = api.compress(model, calib, codec=codec, preprocess=None if isinstance(calib, ImageReader) else pre,
                                  limit=16, quality=OutputSnr(20.0),
                                  codec_options={"coder": "own"})  # the TIR coder has no rANS kernels
            out.append((name, codec, result.model, spec.name, x))
    return out


def coder_rows(name: str, codec: str, model: Any, input_name: str, x: np.ndarray) -> dict[str, Any]:
    from featcomp.passes.pairs import find_pairs
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm.coder import TirCoder
    from onnx import TensorProto

    pairs = find_pairs(model)
    probe = ort.session(ort.with_outputs(model, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs)))
    symbols: dict[str, list[np.ndarray]] = {p.symbols: [] for p in pairs}
    for one in x:
        outs = ort.run(probe, {input_name: one[None]})
        for p in pairs:
            symbols[p.symbols].append(outs[p.symbols])
    t = {"numpy_pack": 0.0, "tir_pack": 0.0, "numpy_unpack": 0.0, "tir_unpack": 0.0}
    values = coded = 0
    for p in pairs:
        coder = TirCoder(p.codec)  # type: ignore[arg-type]
        for s in symbols[p.symbols]:
            streams = coder.pack(s)
            assert streams == [p.codec.pack(s[0])], f"{p.site}: TIR and numpy streams differ"
            pack_s, unpack_s = coder.kernel_seconds(s)
            t["tir_pack"] += pack_s
            t["tir_unpack"] += unpack_s
            t["numpy_pack"] += best(lambda: p.codec.pack(s[0]))
            t["numpy_unpack"] += best(lambda: p.codec.unpack(streams[0]))
            values += s.size
            coded += len(streams[0])
    k = len(x)
    return {"model": name, "codec": codec, "sites": len(pairs), "photos": k, "values_per_photo": values // k,
            "coded_bytes_per_photo": coded / k, **{key: v / k * 1e3 for key, v in t.items()}}


def best(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def model_rows(name: str, codec: str, model: Any, input_name: str, x: np.ndarray, threads: int) -> dict[str, Any]:
    from featcomp.runtime_ops import ort, ort_coder
    from featcomp.runtime_ops.tvm import build

    target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]), "num-cores": threads})
    one = x[:1]
    plain = build.compile_model(model, target, shape_dict={input_name: list(one.shape)})
    coded = build.compile_model(model, target, shape_dict={input_name: list(one.shape)}, coder=True)
    tvm_plain, tvm_coded = [], []
    for _ in range(3):  # interleaved: the machine's load drifts
        tvm_plain += build.time_local(plain, [one], number=10, repeat=7)
        tvm_coded += build.time_local(coded, [one], number=10, repeat=7)
    sessions = {"ort_plain": ort.session(model, threads=threads), "ort_coded": ort_coder.session(model, threads=threads)}
    ort_ms: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(20):
        for key, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {input_name: one})
            ort_ms[key].append((time.perf_counter() - t0) * 1e3)
    return {"model": name, "codec": codec, "threads": threads, "tvm_plain_ms": statistics.median(tvm_plain) * 1e3,
            "tvm_coded_ms": statistics.median(tvm_coded) * 1e3,
            **{f"{k}_ms": statistics.median(v) for k, v in ort_ms.items()}}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"host: {result['host']}; command: `.venv/bin/python benchmarks/tvm_coder_bench.py`", "",
             f"Coder kernels, batch 1 (one stream per site, its slices on {result['threads']} threads), per photo summed "
             f"over all sites (ms); load average {result.get('load', 'n/a')} when the run ended:", "",
             "| model | codec | sites | values | coded bytes | numpy pack | TIR pack | speed-up | numpy unpack | TIR unpack | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["coder"]:
        lines.append(f"| {r['model']} | {r['codec']} | {r['sites']} | {r['values_per_photo']:,} | {r['coded_bytes_per_photo']:,.0f} | "
                     f"{r['numpy_pack']:.2f} | {r['tir_pack']:.2f} | {r['numpy_pack'] / r['tir_pack']:.1f}x | "
                     f"{r['numpy_unpack']:.2f} | {r['tir_unpack']:.2f} | {r['numpy_unpack'] / r['tir_unpack']:.1f}x |")
    lines += ["", f"Whole model, batch 1, {result['threads']} threads (ms per inference):", "",
              "| model | codec | TVM pairs | TVM pairs + TIR coder | coder cost | ORT pairs | ORT pairs + Python-op coder | coder cost |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        lines.append(f"| {r['model']} | {r['codec']} | {r['tvm_plain_ms']:.1f} | {r['tvm_coded_ms']:.1f} | "
                     f"+{100 * (r['tvm_coded_ms'] / r['tvm_plain_ms'] - 1):.0f}% | {r['ort_plain_ms']:.1f} | "
                     f"{r['ort_coded_ms']:.1f} | +{100 * (r['ort_coded_ms'] / r['ort_plain_ms'] - 1):.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--codecs", default="dct-cm,transform-vlc", help="comma-separated")
    ARGS = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(ARGS.threads)  # read when TVM's thread pool starts
    result: dict[str, Any] = {"host": platform.processor() or platform.machine(), "threads": ARGS.threads,
                              "coder": [], "models": []}
    todo = cases()
    for case in todo:
        result["coder"].append(coder_rows(*case))
        print(result["coder"][-1], flush=True)
        result["models"].append(model_rows(*case, ARGS.threads))
        print(result["models"][-1], flush=True)
    result["load"] = round(os.getloadavg()[0], 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "coder.json").write_text(json.dumps(result, indent=1))
    (OUT / "coder.md").write_text(markdown(result))
    print(markdown(result))
    return 0


ARGS: argparse.Namespace
if __name__ == "__main__":
    sys.exit(main())
