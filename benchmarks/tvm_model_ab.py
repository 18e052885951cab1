"""Whole-model before/after for the default TVM schedules: a base commit's compiled model against the
working tree's, next to ONNX Runtime, timed interleaved call by call in one process (the machine is
shared, so runs minutes apart are not comparable).

    .venv/bin/python benchmarks/tvm_model_ab.py --base COMMIT [--model mobilenet_v2_1.0_224 ...] [--threads 1] [--rounds 40]

Models: squeezenet1.1 and mobilenet_v2_1.0_224 from ../shared/models, efficientnet-lite0 (featcomp.zoo);
the original models (no featcomp pairs), batch 1, host target. Each side is compiled in its own
process (the base from `git archive COMMIT`, the working tree as installed) and exported; both
libraries are then loaded here and run with ORT in turn, one call each per round, after 5 warm-up
rounds; medians. Both outputs are checked against ORT's first. TVM_NUM_THREADS and ORT's
intra-op threads are both --threads.

With more than one thread, a spinning ORT intra-op thread left over from the previous call slows the
next TVM call several times (docs/tvm.md "Traps"). So the interleaved ORT session does not spin
(`session.intra_op.allow_spinning` 0), base and work tree swap places every round, and ORT as shipped
(spinning) is timed in its own slot between two 10 ms pauses, so that neither engine's spinning
threads overlap the other's call. TVM / ORT ratios use the faster of the two ORT medians.
TVM_BIND_THREADS=0 (unless set): TVM otherwise pins its worker threads to cores while the main
thread floats, and a process whose main thread shares the worker's core runs "2 threads" at 1-thread
speed (ORT pins nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

COMPILE = """
import sys
from pathlib import Path
from featcomp import modelio, zoo
from featcomp.runtime_ops.tvm import build
name, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = zoo.efficientnet_lite0() if name == "efficientnet-lite0" else modelio.load_model(Path(sys.argv[4]) / f"{name}.onnx")
model = modelio.prepare(model)
spec = modelio.input_spec(model)
target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]), "num-cores": threads})
compiled = build.compile_model(model, target, shape_dict={spec.name: [1, 3, 224, 224]})
build.export(compiled, out)
print(compiled.stats.get("conv_tiled"), compiled.stats.get("naive"))
"""


def checkout(commit: str, into: Path) -> Path:
    """The commit's tree, laid out so that `import featcomp` finds its runtime_ops and passes too."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        sys.exit(f"tvm_model_ab: git archive {commit} failed: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    for package in ("runtime_ops", "passes"):
        (into / "featcomp" / package).symlink_to(into / package)
    return into


def compile_side(name: str, out: Path, threads: int, tree: Path | None) -> str:
    """Compile and export in a child process; tree None: the working tree (as installed)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    done = subprocess.run([sys.executable, "-c", COMPILE, name, str(out), str(threads), str(SHARED / "models")],
                          env=env, capture_output=True, text=True, cwd=tree or ROOT)
    if done.returncode != 0:
        sys.exit(f"tvm_model_ab: compiling {name} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def load_model(name: str) -> Any:
    from featcomp import modelio, zoo

    model = zoo.efficientnet_lite0() if name == "efficientnet-lite0" else modelio.load_model(SHARED / "models" / f"{name}.onnx")
    return modelio.prepare(model)


def vm_runner(path: Path, x: np.ndarray) -> tuple[Any, np.ndarray]:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    arg = tvm.runtime.tensor(x)
    main = vm["main"]
    out = main(arg)
    first = out if hasattr(out, "numpy") else out[0]
    return (lambda: main(arg)), first.numpy()


def interleaved(runs: dict[str, Any], rounds: int, warmup: int = 5, pause: float = 0.01) -> dict[str, list[float]]:
    """Seconds per call of each engine, in turn every round: the spinning ORT session alone between
    two pauses, then ORT without spinning, then base and work tree in an order that swaps every round."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds + warmup):
        sides = ["base", "work"] if r % 2 == 0 else ["work", "base"]
        for key in ["pause", "ort_spin", "pause", "ort", *sides]:
            if key == "pause":
                time.sleep(pause)
                continue
            t0 = time.perf_counter()
            runs[key]()
            if r >= warmup:
                times[key].append(time.perf_counter() - t0)
    return times


def spinning_order(runs: dict[str, Any], rounds: int, warmup: int = 5) -> dict[str, list[float]]:
    """The protocol before the trap was found: spinning ORT, base, work tree, back to back every round."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds + warmup):
        for key in ("ort_spin", "base", "work"):
            t0 = time.perf_counter()
            runs[key]()
            if r >= warmup:
                times[key].append(time.perf_counter() - t0)
    times["ort"] = times["ort_spin"]
    return times


def ort_runs(model: Any, x: np.ndarray, threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    """ORT's reference output and its two timed slots: without spinning ("ort", what TVM is compared
    with: a spinning thread slows the next TVM call) and as shipped ("ort_spin", timed between pauses)."""
    from featcomp.modelio import input_spec
    from featcomp.runtime_ops import ort

    name = input_spec(model).name
    quiet = ort.session(model, threads=threads, spinning=False)
    spinning = ort.session(model, threads=threads)
    return (np.asarray(quiet.run(None, {name: x})[0]),
            {"ort": lambda: quiet.run(None, {name: x}), "ort_spin": lambda: spinning.run(None, {name: x})})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (e.g. main, HEAD~1)")
    parser.add_argument("--model", nargs="+", default=["mobilenet_v2_1.0_224"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--spinning-order", action="store_true",
                        help="the old, invalid protocol (to show the trap): spinning ORT, base, work tree, no pauses")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TVM_BIND_THREADS", "0")  # read when TVM's thread pool starts (docs/tvm.md "Traps")

    with tempfile.TemporaryDirectory(prefix="tvm_model_ab-") as tmp:
        tree = checkout(args.base, Path(tmp) / "base")
        for name in args.model:
            libs = {side: Path(tmp) / f"{name}-{side}.so" for side in ("base", "work")}
            tiled = {side: compile_side(name, libs[side], args.threads, tree if side == "base" else None) for side in libs}
            model = load_model(name)
            x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
            ref, runs = ort_runs(model, x, args.threads)
            for side, lib in libs.items():
                runs[side], out = vm_runner(lib, x)
                diff = float(np.abs(out.reshape(ref.shape) - ref).max())
                print(f"{name} {side}: conv_tiled/naive {tiled[side]}, max abs diff vs ORT {diff:.1e}", flush=True)
            times = spinning_order(runs, args.rounds) if args.spinning_order else interleaved(runs, args.rounds)
            ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            low = {k: float(np.percentile(v, 10)) * 1e3 for k, v in times.items()}  # least disturbed by other tenants
            best = min(ms["ort"], ms["ort_spin"])
            print(f"{name}, {args.threads} thread(s), {args.rounds} rounds, load {os.getloadavg()[0]:.1f}: "
                  f"ORT {ms['ort']:.2f} ms (spinning {ms['ort_spin']:.2f}) | base {args.base} {ms['base']:.2f} ms "
                  f"({ms['base'] / best:.2f}x) | work tree {ms['work']:.2f} ms ({ms['work'] / best:.2f}x) | "
                  f"base/work {ms['base'] / ms['work']:.2f} (10th percentiles: base {low['base']:.2f}, work tree "
                  f"{low['work']:.2f}, ORT {min(low['ort'], low['ort_spin']):.2f} ms, base/work {low['base'] / low['work']:.2f})",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
