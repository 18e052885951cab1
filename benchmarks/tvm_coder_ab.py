"""Before/after for the TIR coder kernels: an earlier commit's kernels against the working tree's, timed
interleaved in one process on the same real symbols (the machine is shared, so runs minutes apart are
not comparable).

    .venv/bin/python benchmarks/tvm_coder_ab.py --base COMMIT [--codec transform-vlc|dct-cm] [--photo 1]

Model: the embedded EfficientNet-Lite0, compressed at 20 dB logit SNR on the bundled zoo photos; symbols
from one zoo photo, batch 1. Both versions must give the numpy reference's streams (checked first).
Prints the summed pack and unpack kernel time over all sites (best of 3 x 10 calls, second of two rounds).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILES = {"transform-vlc": "coder_kernels.py", "dct-cm": "dctcm_coder_kernels.py"}
SHARED_MACROS = "stream_tir.py"


def base_kernels(commit: str, codec: str, into: Path) -> object:
    """The kernel module of `codec` as it was at `commit` (and the shared macros it imported then)."""
    def show(name: str) -> str | None:
        done = subprocess.run(["git", "show", f"{commit}:runtime_ops/tvm/{name}"], cwd=ROOT, capture_output=True,
                              text=True)
        return done.stdout if done.returncode == 0 else None

    kernels = show(KERNEL_FILES[codec])
    if kernels is None:
        sys.exit(f"tvm_coder_ab: {commit} has no runtime_ops/tvm/{KERNEL_FILES[codec]}: pick a later commit")
    macros = show(SHARED_MACROS)
    if macros is not None:
        (into / "base_stream_tir.py").write_text(macros)
        kernels = kernels.replace("from featcomp.runtime_ops.tvm.stream_tir import", "from base_stream_tir import")
    (into / "base_kernels.py").write_text(kernels)
    sys.path.insert(0, str(into))
    return importlib.import_module("base_kernels")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit whose kernels are 'before'")
    parser.add_argument("--codec", default="transform-vlc", choices=sorted(KERNEL_FILES))
    parser.add_argument("--photo", type=int, default=1, help="which zoo photo gives the symbols")
    args = parser.parse_args()

    from onnx import TensorProto

    from featcomp import api, zoo
    from featcomp.codecs.dctcm import DctCmSite
    from featcomp.codecs.tvlc import TvlcSite
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec, prepare
    from featcomp.passes.pairs import find_pairs
    from featcomp.preprocess import Preprocess
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import coder

    with tempfile.TemporaryDirectory() as tmp:
        old = base_kernels(args.base, args.codec, Path(tmp))
        model = prepare(zoo.efficientnet_lite0())
        spec = input_spec(model)
        photos = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
        calib = ImageReader(zoo.sample_images(), photos, spec, None, role="calibration")
        compressed = api.compress(model, calib, codec=args.codec, output_snr_db=20.0).model
        pairs = find_pairs(compressed)
        probe = ort.session(ort.with_outputs(compressed, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs)))
        outs = ort.run(probe, {spec.name: photos.load(zoo.sample_images()[args.photo])[None]})
        new = [coder.TirCoder(p.codec) for p in pairs]
        site_type = DctCmSite if args.codec == "dct-cm" else TvlcSite
        coder.KERNELS[site_type] = (coder.KERNELS[site_type][0], old)
        coder._library.cache_clear()
        before = [coder.TirCoder(p.codec) for p in pairs]
        seconds = np.zeros((2, 2))  # [before, after] x [pack, unpack]
        for p, b, a in zip(pairs, before, new):
            s = outs[p.symbols]
            if not b.pack(s) == a.pack(s) == [p.codec.pack(s[0])]:
                sys.exit(f"tvm_coder_ab: {p.site}: the two kernel versions or numpy disagree")
            for round_ in range(2):  # the first round warms caches and clocks
                for i, c in enumerate((b, a)):
                    if round_:
                        seconds[i] += c.kernel_seconds(s, number=10, repeat=3)
                    else:
                        c.kernel_seconds(s, number=2, repeat=1)
    ms = seconds * 1e3
    print(f"{args.codec}, EfficientNet-Lite0, {len(pairs)} sites, one photo, batch 1: "
          f"pack {ms[0, 0]:.1f} -> {ms[1, 0]:.1f} ms ({ms[0, 0] / ms[1, 0]:.2f}x), "
          f"unpack {ms[0, 1]:.1f} -> {ms[1, 1]:.1f} ms ({ms[0, 1] / ms[1, 1]:.2f}x) [{args.base} -> working tree]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
