"""Before/after for the TIR coder kernels: an earlier commit's kernels against the working tree's, timed
interleaved in one process on the same real symbols (the machine is shared, so runs minutes apart are
not comparable).

    .venv/bin/python benchmarks/tvm_coder_ab.py --base COMMIT [--codec transform-vlc|dct-cm] [--photo 1]

Model: the embedded EfficientNet-Lite0, compressed at 20 dB logit SNR on the bundled zoo photos; symbols
from one zoo photo, batch 1. Both versions must give the numpy reference's streams (checked first).
Prints the summed pack and unpack kernel time over all sites (best of 3 x 10 calls, second of two rounds),
and the numpy reference's (best of 3).

When COMMIT writes another bitstream format (its featcomp/codecs/bitstream.py has another FORMAT_VERSION,
e.g. v1 before the sliced v2), its kernels need its own site arrays and its own numpy reference: the
commit's container, codecs, coder arrays and kernels are loaded as private modules (imports rewired to
them), its sites are rebuilt from the same parameters, and each side is checked against its own numpy
reference (the before streams also unpack to the symbols).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.quality import OutputSnr

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


BASE_MODULES = {  # private module name: (path at COMMIT, import lines rewired to the private modules)
    "base_bitstream": "featcomp/codecs/bitstream.py",
    "base_dctcm": "featcomp/codecs/dctcm.py",
    "base_tvlc": "featcomp/codecs/tvlc.py",
    "base_stream_tir": "runtime_ops/tvm/stream_tir.py",
    "base_ck": "runtime_ops/tvm/coder_kernels.py",
    "base_dk": "runtime_ops/tvm/dctcm_coder_kernels.py",
    "base_coder": "runtime_ops/tvm/coder.py",
}
REWIRE = [
    ("from featcomp.codecs import bitstream, dctcm, tvlc", "import base_bitstream as bitstream, base_dctcm as dctcm, base_tvlc as tvlc"),
    ("from featcomp.codecs import bitstream, huffman", "import base_bitstream as bitstream\nfrom featcomp.codecs import huffman"),
    ("from featcomp.codecs import bitstream, rice", "import base_bitstream as bitstream\nfrom featcomp.codecs import rice"),
    ("from featcomp.codecs.dctcm import DctCmSite", "from base_dctcm import DctCmSite"),
    ("from featcomp.codecs.tvlc import TvlcSite", "from base_tvlc import TvlcSite"),
    ("from featcomp.runtime_ops.tvm import coder_kernels as ck", "import base_ck as ck"),
    ("from featcomp.runtime_ops.tvm import dctcm_coder_kernels as dk", "import base_dk as dk"),
    ("from featcomp.runtime_ops.tvm.stream_tir import", "from base_stream_tir import"),
]


def best_of(fn: Any, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def thread_ticks() -> dict[str, int]:
    """CPU ticks (user + system) of each of this process's threads so far (Linux /proc)."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = int(fields[11]) + int(fields[12])
    return out


def busiest(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """(ticks of the busiest thread, ticks of all threads) between two thread_ticks() readings."""
    spent = [after[t] - before.get(t, 0) for t in after]
    return max(spent, default=0), sum(spent)


def other_format(commit: str) -> bool:
    from featcomp.codecs import bitstream

    done = subprocess.run(["git", "show", f"{commit}:featcomp/codecs/bitstream.py"], cwd=ROOT, capture_output=True,
                          text=True)
    return done.returncode == 0 and f"FORMAT_VERSION = {bitstream.FORMAT_VERSION}\n" not in done.stdout


def base_tree(commit: str, into: Path) -> object:
    """COMMIT's coder module (coder.py), on COMMIT's own container, codecs and kernels."""
    for name, path in BASE_MODULES.items():
        done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"tvm_coder_ab: {commit} has no {path}: pick a later commit")
        text = done.stdout
        for a, b in REWIRE:
            text = text.replace(a, b)
        (into / f"{name}.py").write_text(text)
    sys.path.insert(0, str(into))
    return importlib.import_module("base_coder")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit whose kernels are 'before'")
    parser.add_argument("--codec", default="transform-vlc", choices=sorted(KERNEL_FILES))
    parser.add_argument("--photo", type=int, default=1, help="which zoo photo gives the symbols")
    args = parser.parse_args()

    from featcomp.passes.pairs import find_pairs
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import coder
    from onnx import TensorProto

    from featcomp import api, zoo
    from featcomp.codecs.dctcm import DctCmSite
    from featcomp.codecs.tvlc import TvlcSite
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec, prepare
    from featcomp.preprocess import Preprocess

    with tempfile.TemporaryDirectory() as tmp:
        changed = other_format(args.base)
        old: Any = base_tree(args.base, Path(tmp)) if changed else base_kernels(args.base, args.codec, Path(tmp))
        model = prepare(zoo.efficientnet_lite0())
        spec = input_spec(model)
        photos = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
        calib = ImageReader(zoo.sample_images(), photos, spec, None, role="calibration")
        compressed = api.compress(model, calib, codec=args.codec, quality=OutputSnr(20.0),
                                  codec_options={"coder": "own"}).model  # TIR: no rANS
        pairs = find_pairs(compressed)
        probe = ort.session(ort.with_outputs(compressed, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs)))
        outs = ort.run(probe, {spec.name: photos.load(zoo.sample_images()[args.photo])[None]})
        new = [coder.TirCoder(p.codec) for p in pairs]
        if changed:  # COMMIT's own sites (same parameters), coder arrays and kernels
            base_site = importlib.import_module("base_dctcm" if args.codec == "dct-cm" else "base_tvlc")
            kind = base_site.DctCmSite if args.codec == "dct-cm" else base_site.TvlcSite
            olds = [kind.from_arrays(p.codec.side_arrays(), p.codec.attributes()) for p in pairs]
            before = [old.TirCoder(site) for site in olds]
        else:
            site_type = DctCmSite if args.codec == "dct-cm" else TvlcSite
            coder.KERNELS[site_type] = (coder.KERNELS[site_type][0], old)
            coder._library.cache_clear()
            olds = [p.codec for p in pairs]
            before = [coder.TirCoder(p.codec) for p in pairs]
        seconds = np.zeros((2, 2))  # [before, after] x [pack, unpack]
        sizes = np.zeros(2, np.int64)  # bytes before, after
        reference = np.zeros((2, 2))  # numpy reference [before, after] x [pack, unpack], seconds
        ticks = np.zeros((2, 2), np.int64)  # [before, after] x [busiest thread's CPU ticks, all threads']
        for p, o, b, a in zip(pairs, olds, before, new):
            s = outs[p.symbols]
            streams = b.pack(s), a.pack(s)
            if streams[0] != [o.pack(s[0])] or streams[1] != [p.codec.pack(s[0])]:
                sys.exit(f"tvm_coder_ab: {p.site}: a kernel version and its numpy reference disagree")
            back, status = b.unpack(streams[0])
            if status.any() or not np.array_equal(back, s):
                sys.exit(f"tvm_coder_ab: {p.site}: the before kernels do not unpack their own streams")
            sizes += [len(streams[0][0]), len(streams[1][0])]
            for i, (site, stream) in enumerate(((o, streams[0][0]), (p.codec, streams[1][0]))):
                reference[i] += [best_of(lambda: site.pack(s[0])), best_of(lambda: site.unpack(stream))]
            for round_ in range(2):  # the first round warms caches and clocks
                for i, c in enumerate((b, a)):
                    if round_:
                        start = thread_ticks()
                        seconds[i] += c.kernel_seconds(s, number=10, repeat=3)
                        ticks[i] += busiest(start, thread_ticks())
                    else:
                        c.kernel_seconds(s, number=2, repeat=1)
    ms = seconds * 1e3
    share = [f"{top / max(1, total):.0%}" for top, total in ticks]
    np_ms = reference * 1e3
    print(f"{args.codec}, EfficientNet-Lite0, {len(pairs)} sites, one photo, batch 1: "
          f"pack {ms[0, 0]:.1f} -> {ms[1, 0]:.1f} ms ({ms[0, 0] / ms[1, 0]:.2f}x), "
          f"unpack {ms[0, 1]:.1f} -> {ms[1, 1]:.1f} ms ({ms[0, 1] / ms[1, 1]:.2f}x), "
          f"numpy reference pack {np_ms[0, 0]:.0f} -> {np_ms[1, 0]:.0f} ms, unpack {np_ms[0, 1]:.0f} -> {np_ms[1, 1]:.0f} ms, "
          f"coded bytes {sizes[0]:,} -> {sizes[1]:,} ({sizes[1] / sizes[0] - 1:+.2%}) [{args.base} -> working tree, "
          f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}]; busiest thread's share of the kernels' CPU time {share[0]} -> {share[1]} "
          "(1/threads: the work is split evenly; wall-clock gains need idle cores); busiest thread's CPU ticks "
          f"{ticks[0, 0]} -> {ticks[1, 0]} ({ticks[0, 0] / max(1, ticks[1, 0]):.2f}x: about the wall-clock ratio on idle cores; spin-waits count)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
