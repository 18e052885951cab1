"""DRAM bytes per inference, measured on the built artifact: the bundle's native runner (or a one-thread
ONNX Runtime session) under valgrind cachegrind with a last-level cache like a Cortex-A72's
(1 MiB, 16-way, 64-byte lines), one thread.

    DRAM bytes per inference = 64 x (LL data read misses + LL data write misses),
    taken as (run of N inferences - run of 1 inference) / (N - 1), so loading drops out.

Deterministic (a cache simulator, no hardware counters), about 50x slower than native: a benchmark,
not a timed test. The result can be kept next to the bundle (TRAFFIC_FILE, a sidecar: the manifest
stays as compile wrote it) for `featcomp report --bundle`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.deploy import bundle
from featcomp.errors import FeatcompError

LL = (1048576, 16, 64)  # size, ways, line bytes: a Cortex-A72's shared L2
LINE = LL[2]
TRAFFIC_FILE = bundle.TRAFFIC_FILE
SCHEMA = "featcomp.traffic/1"
MISSES = ("DLmr", "DLmw")  # LL data read and write misses: each moves one line from or to DRAM


def valgrind_command(out_file: Path) -> list[str]:
    """The valgrind line (toolchain notes: 'Measuring what a compiled model moves')."""
    if shutil.which("valgrind") is None:
        raise FeatcompError("valgrind not found on PATH: the DRAM traffic measurement needs it "
                            "(Debian: apt-get install valgrind)")
    return ["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--LL={LL[0]},{LL[1]},{LL[2]}",
            f"--cachegrind-out-file={out_file}"]


def parse(text: str) -> dict[str, int]:
    """Event totals of a cachegrind output file (its 'events:' and 'summary:' lines)."""
    events: list[str] = []
    summary: list[str] = []
    for line in text.splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            summary = line.split()[1:]
    if not events or len(events) != len(summary):
        raise FeatcompError("the cachegrind output has no 'events:'/'summary:' lines of equal length; "
                            "was valgrind run with --tool=cachegrind --cache-sim=yes?")
    counts = dict(zip(events, (int(v) for v in summary)))
    missing = [e for e in MISSES if e not in counts]
    if missing:
        raise FeatcompError(f"the cachegrind output lacks {', '.join(missing)}: run it with --cache-sim=yes")
    return counts


def dram_bytes(counts: dict[str, int]) -> int:
    return LINE * sum(counts[e] for e in MISSES)


@dataclass
class Traffic:
    """One measurement: DRAM bytes per inference and the counts it comes from."""

    what: str
    dram_bytes_per_inference: float
    calls: int  # N of the longer run (the shorter runs one inference)
    counts_1: dict[str, int] = field(default_factory=dict)
    counts_n: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of both runs under valgrind
    method: dict[str, Any] = field(default_factory=dict)

    @property
    def mb(self) -> float:
        return self.dram_bytes_per_inference / 1e6

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def method(calls: int) -> dict[str, Any]:
    return {"tool": "valgrind cachegrind", "LL": {"bytes": LL[0], "ways": LL[1], "line": LL[2]}, "threads": 1,
            "formula": f"{LINE} x (DLmr + DLmw), run of {calls} minus run of 1, divided by {calls - 1}"}


def _counted(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="featcomp-cg-") as tmp:
        out = Path(tmp) / "cachegrind.out"
        cmd = [*valgrind_command(out), *argv]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FeatcompError(f"cachegrind did not finish within {timeout:.0f}s") from None
        if done.returncode != 0 or not out.exists():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise FeatcompError(f"the process under cachegrind failed: {last}")
        return parse(out.read_text())


def measure(what: str, argv_for: Callable[[int], list[str]], env: dict[str, str], *, calls: int = 2,
            timeout: float = 3600) -> Traffic:
    """Run argv_for(1) and argv_for(calls) under cachegrind, one thread; the difference per inference."""
    if calls < 2:
        raise FeatcompError("the traffic measurement needs N >= 2 inferences (it subtracts a run of 1)")
    env = {**env, "TVM_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    one = _counted(argv_for(1), env, timeout)
    many = _counted(argv_for(calls), env, timeout)
    per = (dram_bytes(many) - dram_bytes(one)) / (calls - 1)
    return Traffic(what, per, calls, one, many, time.perf_counter() - t0, method(calls))


def measure_bundle(bundle_dir: str | Path, x: np.ndarray, *, calls: int = 2, timeout: float = 3600) -> Traffic:
    """The bundle's runner (this machine's architecture), `calls` inferences vs one."""
    from featcomp.deploy import targets

    folder = Path(bundle_dir).resolve()
    manifest = bundle.load_manifest(folder)
    arch = manifest["target"]["arch"]
    if arch != targets.host_arch():
        raise FeatcompError(f"{bundle_dir} is built for {arch}; cachegrind measures bundles for this machine "
                            f"({targets.host_arch()}): compile one with --target {targets.host_arch()}")
    x = bundle.check_input(manifest, x, "the input")
    runner, env = bundle.command(folder, manifest, emulate=False)
    with tempfile.TemporaryDirectory(prefix="featcomp-traffic-") as tmp:
        x.tofile(Path(tmp) / "input.bin")
        dims = "x".join(map(str, x.shape))

        def argv(n: int) -> list[str]:  # the runner's ITERS: 0 is one call, k > 0 a warm-up and k calls
            return [*runner, str(folder / "model.so"), f"{tmp}/out", str(n - 1), f"{tmp}/input.bin:{dims}"]

        return measure(f"bundle {folder.name}", argv, env, calls=calls, timeout=timeout)


def measure_ort(model_path: str | Path, x: np.ndarray, *, calls: int = 2, timeout: float = 3600) -> Traffic:
    """A one-thread ONNX Runtime session on the model (featcomp.runtime_ops.ort_traffic), same method."""
    with tempfile.TemporaryDirectory(prefix="featcomp-traffic-") as tmp:
        np.save(Path(tmp) / "input.npy", np.ascontiguousarray(x))

        def argv(n: int) -> list[str]:
            return [sys.executable, "-m", "featcomp.runtime_ops.ort_traffic", str(model_path), f"{tmp}/input.npy", str(n)]

        return measure(f"onnxruntime {Path(model_path).name}", argv, dict(os.environ), calls=calls, timeout=timeout)


def write_sidecar(bundle_dir: str | Path, measured: Traffic, original: Traffic | None = None) -> Path:
    """Keep the measurement in the bundle (TRAFFIC_FILE; temp file + rename)."""
    data: dict[str, Any] = {"schema": SCHEMA, "bundle": measured.as_dict()}
    if original is not None:
        data["original"] = original.as_dict()
    path = Path(bundle_dir) / TRAFFIC_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_sidecar(bundle_dir: str | Path) -> dict[str, Any] | None:
    """The bundle's stored measurement, or None when it has none."""
    path = Path(bundle_dir) / TRAFFIC_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FeatcompError(f"{path} is not valid JSON; measure again with 'featcomp run --measure-traffic'") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise FeatcompError(f"{path} is not a {SCHEMA} file; measure again with 'featcomp run --measure-traffic'")
    return data
