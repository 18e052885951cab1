"""Memory and DRAM traffic measured on the artifacts, side by side in one run (issue 12, requirement 4):
ONNX Runtime on the original model, the x86_64 TVM bundle of the original, the x86_64 TVM bundle of
the compressed model; per model the planned activation memory (the bundles' manifests) and DRAM
bytes per inference under valgrind cachegrind (1 MiB 16-way 64 B last-level cache, one thread,
N inferences minus one; featcomp.deploy.traffic).

    .venv/bin/python benchmarks/traffic_bench.py [--calls 2] [--quick] [--keep DIR]

Models: the embedded EfficientNet-Lite0 and, when ../shared is there, MobileNetV2, compressed at the
default setting (20 dB logit SNR, calibrated on 16 images of imagenet-calib-200; tvm_bench.models).
Batch 1, untuned default schedules, --target x86_64. Input: the first zoo sample photo, preprocessed
as the model expects. Writes benchmarks/results/traffic/traffic.json and traffic.md. Slow: each
measurement runs the process twice under cachegrind (~50x native), ORT's with a Python start-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tvm_bench import models  # noqa: E402  (the same compressed models as the latency benchmark)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "traffic"
TARGET = "x86_64"


def _input(model: Any, preprocess: str) -> Any:
    from featcomp import zoo
    from featcomp.preprocess import Preprocess

    return Preprocess.parse(preprocess).load(zoo.sample_images()[0])[None]


def measure(name: str, original: Any, compressed: Any, preprocess: str, calls: int, work: Path) -> dict[str, Any]:
    """One model: compile both bundles, then ORT, TVM original, TVM compressed under cachegrind."""
    from featcomp.deploy import stored, traffic
    from featcomp.deploy.compile import compile_bundle
    from featcomp.modelio import save_model

    x = _input(original, preprocess)
    orig_path = save_model(original, work / f"{name}.onnx")
    fc_path = save_model(compressed, work / f"{name}.fc.onnx")
    row: dict[str, Any] = {"model": name, "target": TARGET, "batch": 1, "calls": calls, "input": "zoo sample photo 0"}
    manifests = {}
    for variant, path in (("original", orig_path), ("compressed", fc_path)):
        t0 = time.perf_counter()
        manifests[variant] = compile_bundle(path, TARGET, work / f"{name}.{variant}", preprocess=preprocess)
        print(f"{name} {variant}: compiled in {time.perf_counter() - t0:.0f} s", flush=True)
    info = manifests["compressed"]["compile"]
    row["planned_bytes"] = {"original": manifests["original"]["compile"]["memory"]["activation_bytes"],
                            "compressed": info["memory"]["activation_bytes"],
                            "compressed_without_pairs": info.get("memory_without_pairs", {}).get("activation_bytes")}
    row["sites"] = len(info["stored_sites"])
    row["stored_bytes"] = stored.total_bytes(info["stored_sites"])
    row["stored_dtypes"] = sorted({s.get("dtype") for s in info["stored_sites"] if s.get("dtype")})
    row["fusion"] = info["fusion"]
    runs = {}
    for variant, run in (("ort", lambda: traffic.measure_ort(orig_path, x, calls=calls)),
                         ("tvm_original", lambda: traffic.measure_bundle(work / f"{name}.original", x, calls=calls)),
                         ("tvm_compressed", lambda: traffic.measure_bundle(work / f"{name}.compressed", x, calls=calls))):
        runs[variant] = run()
        print(f"{name} {variant}: {runs[variant].mb:.1f} MB/inference ({runs[variant].seconds:.0f} s)", flush=True)
    traffic.write_sidecar(work / f"{name}.compressed", runs["tvm_compressed"], runs["tvm_original"])
    row["dram_bytes_per_inference"] = {k: v.dram_bytes_per_inference for k, v in runs.items()}
    row["measurements"] = {k: v.as_dict() for k, v in runs.items()}
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = [f"host: {result['host']}; cachegrind LL 1 MiB 16-way 64 B, one thread, {result['calls']} inferences "
             f"minus 1; target {TARGET}, batch 1, default schedules; command: `{result['command']}`", "",
             "| model | DRAM MB/inf ORT | DRAM MB/inf TVM original | DRAM MB/inf TVM compressed | compressed / original "
             "| compressed / ORT | planned MB original | planned MB compressed | compressed / original "
             "| stored MB (sites, dtype) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        d, p = r["dram_bytes_per_inference"], r["planned_bytes"]
        lines.append(f"| {r['model']} | {d['ort'] / 1e6:.1f} | {d['tvm_original'] / 1e6:.1f} | "
                     f"{d['tvm_compressed'] / 1e6:.1f} | {d['tvm_compressed'] / d['tvm_original']:.2f} | "
                     f"{d['tvm_compressed'] / d['ort']:.2f} | {p['original'] / 1e6:.2f} | {p['compressed'] / 1e6:.2f} | "
                     f"{p['compressed'] / p['original']:.2f} | {r['stored_bytes'] / 1e6:.2f} ({r['sites']}, "
                     f"{'/'.join(r['stored_dtypes'])}) |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2, metavar="N", help="inferences of the longer run (default 2)")
    parser.add_argument("--quick", action="store_true", help="EfficientNet-Lite0 only")
    parser.add_argument("--keep", metavar="DIR", help="keep the models and bundles here (with traffic.json sidecars)")
    args = parser.parse_args()
    command = "python benchmarks/traffic_bench.py" + (f" --calls {args.calls}" if args.calls != 2 else "") + \
        (" --quick" if args.quick else "")
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    result: dict[str, Any] = {"host": platform.processor() or platform.machine(), "valgrind": valgrind,
                              "calls": args.calls, "command": command, "rows": []}
    cases = models(args.quick)
    with tempfile.TemporaryDirectory(prefix="traffic-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, original, compressed, preprocess in cases:
            result["rows"].append(measure(name, original, compressed, preprocess, args.calls, work))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "traffic.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (OUT / "traffic.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
