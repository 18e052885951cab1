"""`featcomp sweep`: bits/value vs top-1 curves (JSON, optional PNG). Top level imports argparse only."""

from __future__ import annotations

import argparse
from typing import Any


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an ONNX classifier")
    p.add_argument("--codec", default="dct-cm,transform-vlc", metavar="A,B",
                   help="codecs to sweep (default: dct-cm,transform-vlc)")
    p.add_argument("--transform", choices=("pca", "dct", "none"), help="transform-vlc's transform (default pca)")
    p.add_argument("--calib", metavar="SRC", required=True, help="calibration images (folder) or .npz")
    p.add_argument("--images", metavar="DIR", required=True, help="labelled evaluation images")
    p.add_argument("--labels", metavar="FILE", help="'FILENAME CLASS_INDEX' lines (default: DIR/labels.txt)")
    p.add_argument("--label-offset", type=int, default=0, metavar="K",
                   help="model class index minus label index (e.g. 1 for 1001-class models)")
    p.add_argument("--preprocess", metavar="SPEC", required=True, help="how images become tensors")
    p.add_argument("--snr", default=None, metavar="DB,DB", help="logit SNR targets of the points (default 10..30)")
    p.add_argument("--limit", type=int, metavar="N", help="use at most N evaluation images")
    p.add_argument("--calib-limit", type=int, metavar="N", help="use at most N calibration images")
    p.add_argument("-o", "--output", metavar="FILE.json", required=True, help="where to write the curve")
    p.add_argument("--plot", metavar="FILE.png", help="also plot the curves")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, bars: Any) -> int:
    import sys
    from pathlib import Path

    from featcomp.cli_common import checked_output, comma_list
    from featcomp.errors import FeatcompError

    output, plot_path = checked_output(args.output), checked_output(args.plot)
    assert output is not None
    from featcomp import sweep as sweeping
    from featcomp.modelio import write_bytes

    codecs = comma_list(args.codec) or []
    try:
        snrs = [float(v) for v in (comma_list(args.snr) or [])] if args.snr else list(sweeping.DEFAULT_SNRS)
    except ValueError:
        raise FeatcompError(f"--snr takes numbers in dB separated by commas, got '{args.snr}'") from None
    labels = args.labels or str(Path(args.images) / "labels.txt")
    result = sweeping.sweep(args.model, args.calib, args.images, labels, preprocess=args.preprocess, codecs=codecs,
                            snrs=snrs, label_offset=args.label_offset, limit=args.limit, calib_limit=args.calib_limit,
                            progress=bars.track("sweeping"), transform=args.transform)
    write_bytes(output, (result.to_json() + "\n").encode("utf-8"))
    if plot_path is not None:
        sweeping.plot(result, plot_path)
    for p in result.points:
        print(f"{p.codec:14s} snr {p.output_snr_db:5.1f} dB  {p.bits_per_value:5.2f} b/v (payload {p.payload_bits_per_value:.2f}, "
              f"entropy {p.entropy_bits_per_value:.2f})  {p.ratio_vs_int8:4.2f}x int8  top-1 {p.top1:.1%} "
              f"(ref {p.top1_reference:.1%}, agree {p.agreement:.1%})")
    print(f"curve: {output}" + (f", plot: {plot_path}" if plot_path else ""), file=sys.stderr)
    return 0
