"""DRAM bytes per inference of the compiled original model, a base commit's build against the working
tree's, next to ONNX Runtime: the schedule A/B of benchmarks/tvm_model_ab.py for memory traffic.

    .venv/bin/python benchmarks/tvm_dram_ab.py --base COMMIT [--model squeezenet1.1 ...] [--target x86_64] [--calls 2]

Each side compiles a bundle of the original model (no featcomp pairs) in its own process (the base
from `git archive COMMIT`), then runs it under valgrind cachegrind with the method of
`benchmarks/traffic_bench.py` (featcomp.deploy.traffic: 1 MiB 16-way last-level cache, one thread,
N inferences minus one, input the first zoo sample photo). Cachegrind counts are deterministic, so
the sides need no interleaving; the machine's load does not change them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tvm_model_ab import ROOT, SHARED, checkout, load_model  # noqa: E402

PREPROCESS = {"squeezenet1.1": "resize=256,crop=224,order=bgr,mean=104/117/123,std=1",
              "mobilenet_v2_1.0_224": "resize=256,crop=224,order=rgb,mean=128,std=128"}

COMPILE = """
import sys
from featcomp.deploy.compile import compile_bundle
compile_bundle(sys.argv[1], sys.argv[2], sys.argv[3], preprocess=sys.argv[4])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (e.g. HEAD~1)")
    parser.add_argument("--model", nargs="+", default=["squeezenet1.1"])
    parser.add_argument("--target", default="x86_64")
    parser.add_argument("--calls", type=int, default=2, help="inferences of the longer run")
    parser.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime measurement")
    args = parser.parse_args()

    from featcomp import zoo
    from featcomp.deploy import traffic
    from featcomp.modelio import save_model
    from featcomp.preprocess import Preprocess

    with tempfile.TemporaryDirectory(prefix="tvm-dram-ab-") as tmp:
        work = Path(tmp)
        base_tree = checkout(args.base, work / "base")
        for name in args.model:
            pre = PREPROCESS.get(name, zoo.DEFAULT_PREPROCESS)
            path = save_model(load_model(name), work / f"{name}.onnx")
            x = Preprocess.parse(pre).load(zoo.sample_images()[0])[None]
            mb = {}
            for side, tree in (("base", base_tree), ("work", None)):
                env = None if tree is None else {**__import__("os").environ, "PYTHONPATH": str(tree)}
                out = work / f"{name}.{side}"
                done = subprocess.run([sys.executable, "-c", COMPILE, str(path), args.target, str(out), pre],
                                      env=env, cwd=tree or ROOT, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"tvm_dram_ab: compiling {name} ({side}) failed:\n{done.stderr[-2000:]}")
                mb[side] = traffic.measure_bundle(out, x, calls=args.calls).mb
            line = f"{name} ({args.target}, 1 thread, cachegrind 1 MiB LL): base {args.base} {mb['base']:.1f} MB | work tree {mb['work']:.1f} MB"
            if not args.no_ort:
                line += f" | ORT {traffic.measure_ort(path, x, calls=args.calls).mb:.1f} MB"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
