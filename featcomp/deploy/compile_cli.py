"""`featcomp compile MODEL --target T -o BUNDLE/` (top level imports argparse only; TVM is optional)."""

from __future__ import annotations

import argparse
from typing import Any


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an ONNX model, compressed ('featcomp compress') or not")
    p.add_argument("--target", "-t", required=True, metavar="TARGET",
                   help="rasp4b64 (Raspberry Pi 4, 64-bit), aarch64, x86_64, host, any TVM target tag "
                        "(e.g. arm/rk3399) or a JSON target dict")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--tune", type=int, default=0, metavar="N",
                   help="MetaSchedule trials for the network's layers (0: default schedules, no tuning)")
    p.add_argument("--tune-dir", metavar="DIR",
                   help="tuning database to reuse and extend (default with --tune: BUNDLE.tuning next to the bundle)")
    p.add_argument("--rpc", metavar="HOST:PORT",
                   help="with --tune: measure candidates on the board through its TVM RPC server "
                        "(needed when the target is not this machine's architecture)")
    p.add_argument("--runtime", metavar="DIR",
                   help="folder with the target's TVM runtime (the aarch64 wheels or their .so files); "
                        "default: $FEATCOMP_TVM_RUNTIME or ~/.cache/featcomp/")
    p.add_argument("--preprocess", metavar="SPEC", help="preprocessing to record in the manifest, e.g. "
                                                        "'resize=256,crop=224,order=rgb,mean=128,std=128'")
    p.add_argument("--coder", action="store_true",
                   help="run the sites' bitstream coder in the model (TIR pack -> unpack between each "
                        "encode and decode); each site's coded bytes become extra outputs")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size when the model's batch is symbolic")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace, bars: Any) -> int:
    import sys

    from featcomp.deploy.compile import compile_bundle
    from featcomp.errors import FeatcompError

    if args.tune < 0 or args.batch < 1:
        raise FeatcompError("--tune must be >= 0 and --batch >= 1")
    manifest = compile_bundle(args.model, args.target, args.output, tune=args.tune, tune_dir=args.tune_dir,
                              runtime_dir=args.runtime, preprocess=args.preprocess, batch=args.batch,
                              coder=args.coder, rpc=args.rpc)
    info = manifest["compile"]
    memory = info.get("memory", {}).get("activation_bytes", 0)
    original = info.get("memory_without_pairs", {}).get("activation_bytes")
    without = f" ({original / 1e6:.2f} MB without pairs)" if original else ""
    scratch = info.get("memory", {}).get("coder_scratch_bytes_per_thread")
    if scratch:  # the coder kernels' workspace, outside the plan
        without += f" + {scratch / 1e6:.2f} MB coder scratch per thread"
    print(f"{args.output}: {manifest['target']['arch']} bundle of {manifest['model']} for {args.target} "
          f"({len(manifest['codec_sites'])} codec sites, {manifest['bytes'] / 1e6:.1f} MB, planned activation memory "
          f"{memory / 1e6:.2f} MB{without}, compiled in {info['seconds']['total']:.1f}s)", file=sys.stdout)
    return 0
