"""`featcomp run BUNDLE --input x.npy --output y.npy [--emulate | --rpc HOST:PORT]` (top level: argparse only)."""

from __future__ import annotations

import argparse
from typing import Any


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="a folder written by 'featcomp compile'")
    p.add_argument("--input", "-i", required=True, metavar="X",
                   help="the input: a tensor (.npy, the manifest's shape) or an image file, preprocessed with the "
                        "manifest's spec (or --preprocess)")
    p.add_argument("--preprocess", metavar="SPEC", help="preprocessing for an image --input (default: the manifest's)")
    p.add_argument("--output", "-o", metavar="Y.npy", help="write the (first) output here (.npy; .npz for all outputs)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--emulate", action="store_true", help="run a foreign-architecture (aarch64) bundle under qemu-user; "
                                                         "a bundle for this machine runs natively")
    where.add_argument("--rpc", metavar="HOST:PORT", help="run on a board through a TVM RPC server")
    p.add_argument("--iters", type=int, default=0, metavar="N",
                   help="timed runs after one warm-up (default 0: a single run, as the board would do it)")
    p.add_argument("--measure-traffic", action="store_true",
                   help="measure DRAM bytes per inference under valgrind cachegrind (1 MiB 16-way LL, one thread, "
                        "N inferences minus one) instead of running; kept in BUNDLE/traffic.json for 'report --bundle'")
    p.add_argument("--calls", type=int, default=2, metavar="N",
                   help="--measure-traffic: inferences of the longer run (default 2; the shorter runs 1)")
    p.add_argument("--original", metavar="BUNDLE",
                   help="--measure-traffic: also measure this bundle of the original model, side by side")


def run(args: argparse.Namespace, bars: Any) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from featcomp.deploy import bundle, targets
    from featcomp.errors import FeatcompError
    from featcomp.modelio import check_writable, write_bytes

    if args.measure_traffic or args.original:
        _check_traffic_flags(args)  # flags first: they are wrong whatever the bundle holds
    output = check_writable(args.output) if args.output else None
    manifest = bundle.load_manifest(args.bundle)
    if args.emulate and manifest["target"]["arch"] == targets.host_arch():
        print(f"featcomp: note: {args.bundle} is built for {targets.host_arch()}, this machine's architecture: "
              "running it natively (--emulate is for bundles of another architecture)", file=sys.stderr)
    if Path(args.input).suffix.lower() == ".npy":
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FeatcompError(f"cannot read {args.input} as .npy: {exc}") from None
    else:
        from featcomp.preprocess import Preprocess

        spec = args.preprocess or manifest.get("preprocess")
        if not spec:
            raise FeatcompError(f"{args.bundle} records no preprocessing: pass --preprocess SPEC for an image "
                                "input, or a preprocessed .npy")
        x = Preprocess.parse(spec).load(Path(args.input))[None]
    if args.measure_traffic or args.original:
        return _measure_traffic(args, x)
    if args.rpc:
        from featcomp.deploy.compile import adapter

        adapter()  # the install hint when TVM is missing
        from featcomp.runtime_ops.tvm import rpc

        bundle.verify_files(Path(args.bundle), manifest)
        outputs, ms = rpc.run(Path(args.bundle), manifest, bundle.check_input(manifest, x, args.input), args.rpc,
                              iters=args.iters)
        bundle.check_outputs(Path(args.bundle), manifest, [(str(o.dtype), list(o.shape)) for o in outputs])
    else:
        result = bundle.run(args.bundle, x, emulate=args.emulate, iters=args.iters)
        outputs, ms = result.outputs, result.ms_per_run
    if output is not None:
        import io

        buf = io.BytesIO()
        if output.suffix == ".npz":
            np.savez(buf, *outputs)
        else:
            np.save(buf, outputs[0])
        write_bytes(output, buf.getvalue())
    first = outputs[0]
    top = f", top-1 index {int(first.reshape(first.shape[0], -1)[0].argmax())}" if first.ndim >= 1 and first.size else ""
    print(f"{len(outputs)} output(s), first {'x'.join(map(str, first.shape))}{top}, {ms:.2f} ms/run")
    specs = manifest["outputs"]
    coded = [int(out.sum()) for spec, out in zip(specs, outputs) if spec["name"].endswith("/coded_bytes")]
    if coded:
        print(f"feature maps coded on the device: {sum(coded)} bytes over {len(coded)} sites "
              f"(largest {max(coded)}), real bitstreams with headers")
    return 0


def _check_traffic_flags(args: argparse.Namespace) -> None:
    from featcomp.errors import FeatcompError

    if not args.measure_traffic:
        raise FeatcompError("--original belongs to --measure-traffic")
    if args.emulate or args.rpc or args.output:
        raise FeatcompError("--measure-traffic runs the bundle under valgrind here: drop --emulate, --rpc and --output")
    if args.calls < 2:
        raise FeatcompError("--calls must be >= 2 (the measurement subtracts a run of one inference)")


def _measure_traffic(args: argparse.Namespace, x: Any) -> int:
    """`--measure-traffic`: one line of MB/inference; the numbers go to the bundle's sidecar file."""
    from featcomp.deploy import bundle, traffic

    if args.original:
        bundle.load_manifest(args.original)  # fail before the slow part
    measured = traffic.measure_bundle(args.bundle, x, calls=args.calls)
    original = traffic.measure_bundle(args.original, x, calls=args.calls) if args.original else None
    traffic.write_sidecar(args.bundle, measured, original)
    line = f"DRAM traffic: {measured.mb:.2f} MB/inference"
    if original is not None:
        ratio = f" ({measured.mb / original.mb:.2f}x)" if original.dram_bytes_per_inference > 0 else ""
        line += f", original bundle {original.mb:.2f} MB/inference{ratio}"
    print(line + f" (cachegrind, LL 1 MiB 16-way 64 B, 1 thread, {args.calls} inferences minus 1)")
    return 0
