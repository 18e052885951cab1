"""Per site of a compressed model: payload bits/value of the rANS coder next to the codec's own coder on the same
symbols, and the order-0 entropy of each channel's symbols, with numpy pack/unpack time per stream.

    .venv/bin/python benchmarks/rans_sites.py MODEL.fc.onnx [--images DIR] [--preprocess SPEC] [--limit 16]
        [-o benchmarks/results/rans/NAME.md]

MODEL is the output of `featcomp compress` (any entropy coder). Symbols: ONNX Runtime's, on the first --limit
images of --images (default ../shared/data/imagenet-val-100/images, MobileNetV2's preprocessing). Own coder:
a dct-cm site's Rice planes (the same frozen site with the rANS model removed; rANS-coded transform-VLC sites
carry no Huffman tables, so their own column is empty). Bytes are exact stream lengths (coded_bytes ==
len(pack), tested), container included, side information excluded; entropy is the order-0 entropy of each
channel's symbols over all measured images (the limit of a per-channel static symbol code without side cost).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from onnx import TensorProto

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def entropy_bits(symbols: np.ndarray) -> float:
    """Sum over channels of n * order-0 entropy of the channel's symbols (symbols [N, C, ...])."""
    n, c = symbols.shape[:2]
    flat = symbols.reshape(n, c, -1).transpose(1, 0, 2).reshape(c, -1).astype(np.int64)
    total = 0.0
    for row in flat:
        _, counts = np.unique(row, return_counts=True)
        total -= float(np.sum(counts * np.log2(counts / counts.sum())))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--images", default=str(SHARED / "data/imagenet-val-100/images"))
    ap.add_argument("--preprocess", default="resize=256,crop=224,order=rgb,mean=128,std=128")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("-o", "--output")
    args = ap.parse_args()

    from featcomp.codecs.dctcm import DctCmSite
    from featcomp.modelio import input_spec, load_model
    from featcomp.passes.pairs import find_pairs
    from featcomp.preprocess import Preprocess
    from featcomp.runtime_ops import ort

    model = load_model(args.model)
    pairs = find_pairs(model)
    spec = input_spec(model)
    photos = Preprocess.parse(args.preprocess)
    files = sorted(Path(args.images).iterdir())[:args.limit]
    probe = ort.session(ort.with_outputs(model, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs)))
    got: dict[str, list[np.ndarray]] = {p.symbols: [] for p in pairs}
    for f in files:
        outs = ort.run(probe, {spec.name: photos.load(f)[None]})
        for p in pairs:
            got[p.symbols].append(outs[p.symbols])
    rows = []
    tot = {"values": 0, "own": 0.0, "own_values": 0, "own_rans": 0.0, "rans": 0.0, "entropy": 0.0, "own_entropy": 0.0}
    for p in pairs:
        site = p.codec
        sym = np.concatenate(got[p.symbols])
        n = len(sym)
        values = int(np.prod(site.shape)) * n
        sizes = site.coded_bytes_batch(sym)
        ent = entropy_bits(sym)
        coder = site.describe().get("coder", "")
        own = None
        if isinstance(site, DctCmSite) and site.rans is not None:
            own = sum(replace(site, rans=None).coded_bytes(one) for one in sym)
        elif coder != "rans":
            own = sum(sizes)
        rans_bytes = sum(sizes) if coder == "rans" else None
        t0 = time.perf_counter()
        data = site.pack(sym[0])
        t1 = time.perf_counter()
        site.unpack(data)
        t2 = time.perf_counter()
        rows.append((p.site, "x".join(map(str, site.shape)), site.describe().get("mode", ""), coder,
                     own, rans_bytes, ent / 8, values, 1e3 * (t1 - t0), 1e3 * (t2 - t1)))
        tot["values"] += values
        tot["entropy"] += ent / 8
        tot["rans"] += sum(sizes)
        if own is not None:
            tot["own"] += own
            tot["own_values"] += values
            tot["own_entropy"] += ent / 8
            tot["own_rans"] += sum(sizes)
    bpv = lambda b, v: "" if b is None else f"{8 * b / v:.3f}"  # noqa: E731
    lines = [f"`{Path(args.model).name}`, {len(files)} images of {Path(args.images).parent.name}; payload bits/value "
             "(container included, side information excluded)", "",
             "| site | shape | mode | coder | own coder | rANS | order-0 entropy | pack ms | unpack ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, shape, mode, coder, own, rb, ent, values, tp, tu in rows:
        lines.append(f"| {name} | {shape} | {mode} | {coder} | {bpv(own, values)} | {bpv(rb, values)} | "
                     f"{8 * ent / values:.3f} | {tp:.1f} | {tu:.1f} |")
    v = tot["values"]
    lines += ["", f"All sites: as coded {8 * tot['rans'] / v:.3f} b/v, order-0 entropy {8 * tot['entropy'] / v:.3f} b/v."]
    if tot["own_values"]:
        ov = tot["own_values"]
        lines.append(f"Sites with both coders ({ov / v:.0%} of the values): own coder {8 * tot['own'] / ov:.3f} b/v, "
                     f"as coded {8 * tot['own_rans'] / ov:.3f} b/v, order-0 entropy {8 * tot['own_entropy'] / ov:.3f} b/v.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
