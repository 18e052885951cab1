"""A deployable bundle: one folder to copy to the board and run, no Python needed there.

    bundle/
      manifest.json   inputs, outputs, preprocessing, codec sites, versions, target, compile stats
      model.so        the model library for the target (TVM Relax VM executable)
      runner          native runner (runtime_ops/tvm/runner/runner.cc), rpath $ORIGIN/lib
      lib/            libtvm_runtime.so, libtvm_ffi.so for the target
      run.sh          ./run.sh x.bin y  ->  y.0.bin ... (what to type on the board)

Running a bundle here needs no TVM: `run()` starts the runner directly (host architecture) or
under qemu-user (`emulate=True`, e.g. an aarch64 bundle on x86).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.deploy import targets
from featcomp.errors import FeatcompError

FORMAT = 1
MANIFEST = "manifest.json"
RUN_SH = """#!/bin/sh
# usage: ./run.sh INPUT.bin OUT_PREFIX [ITERS]   (INPUT: raw float32 {shape})
cd "$(dirname "$0")" && exec ./runner ./model.so "$2" "${{3:-1}}" "$1:{dims}"
"""


def featcomp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("featcomp")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def write(out: Path, manifest: dict[str, Any], model_so: Path, runner: Path, libs: dict[str, Path]) -> Path:
    """Assemble the bundle in a temporary sibling folder, then move it into place (never half-written)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())):
        raise FeatcompError(f"{out} exists and is not a bundle: choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        (tmp / "lib").mkdir()
        shutil.copy2(model_so, tmp / "model.so")
        shutil.copy2(runner, tmp / "runner")
        for name, path in libs.items():
            shutil.copy2(path, tmp / "lib" / name)
        shape = manifest["inputs"][0]["shape"]
        (tmp / "run.sh").write_text(RUN_SH.format(shape="x".join(map(str, shape)), dims="x".join(map(str, shape))))
        os.chmod(tmp / "run.sh", 0o755)
        os.chmod(tmp / "runner", 0o755)
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {**manifest, "files": files, "bytes": sum(files.values())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_manifest(bundle: str | Path) -> dict[str, Any]:
    """The manifest of a bundle this featcomp can run (format and version checked)."""
    path = Path(bundle) / MANIFEST
    if not path.exists():
        raise FeatcompError(f"{bundle} is not a featcomp bundle (no {MANIFEST}); make one with 'featcomp compile'")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FeatcompError(f"{path} is not valid JSON; recompile the bundle with 'featcomp compile'") from None
    made_by = manifest.get("versions", {}).get("featcomp")
    if manifest.get("format") != FORMAT or made_by != featcomp_version():
        raise FeatcompError(f"{bundle} was compiled by featcomp {made_by} (bundle format {manifest.get('format')}); "
                            f"this is featcomp {featcomp_version()} (format {FORMAT}): recompile it with 'featcomp compile'")
    return manifest


def check_input(manifest: dict[str, Any], x: np.ndarray, source: str) -> np.ndarray:
    spec = manifest["inputs"][0]
    shape = tuple(spec["shape"])
    if tuple(x.shape) != shape:
        raise FeatcompError(f"{source} has shape {'x'.join(map(str, x.shape)) or 'scalar'}, the bundle's input "
                            f"'{spec['name']}' is {'x'.join(map(str, shape))}")
    if x.dtype != np.dtype(spec["dtype"]):
        if not np.can_cast(x.dtype, spec["dtype"], casting="same_kind"):
            raise FeatcompError(f"{source} has dtype {x.dtype}, the bundle's input is {spec['dtype']}")
        x = x.astype(spec["dtype"])
    return np.ascontiguousarray(x)


def command(bundle: Path, manifest: dict[str, Any], emulate: bool) -> tuple[list[str], dict[str, str]]:
    """How to start the runner here: directly, or under qemu-user for a foreign architecture."""
    arch = manifest["target"]["arch"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(bundle / "lib")}
    runner = str(bundle / "runner")
    if not emulate:
        if arch != targets.host_arch():
            raise FeatcompError(f"{bundle} is built for {arch}, this machine is {targets.host_arch()}: "
                                f"copy it to the board, use --emulate (qemu) or --rpc HOST:PORT")
        return [runner], env
    qemu = targets.EMULATORS[arch]
    if shutil.which(qemu) is None:
        raise FeatcompError(f"{qemu} not found on PATH: --emulate needs qemu-user (Debian: apt-get install qemu-user)")
    sysroot = targets.SYSROOTS[arch]
    if not Path(sysroot).is_dir():
        raise FeatcompError(f"{sysroot} is missing: --emulate needs the {arch} C++ runtime "
                            f"(Debian: {targets.APT[arch]})")
    return [qemu, "-L", sysroot, runner], env


@dataclass
class Result:
    outputs: list[np.ndarray]
    ms_per_run: float


def run(bundle: str | Path, x: np.ndarray, *, emulate: bool = False, iters: int = 0, timeout: float = 900) -> Result:
    """Run the bundle's runner on one input; outputs shaped and typed as the manifest says.
    iters 0: one run; N > 0: a warm-up, then N timed runs (ms_per_run is their mean)."""
    bundle = Path(bundle).resolve()
    manifest = load_manifest(bundle)
    x = check_input(manifest, x, "the input")
    cmd, env = command(bundle, manifest, emulate)
    with tempfile.TemporaryDirectory(prefix="featcomp-run-") as tmp:
        x.tofile(Path(tmp) / "input.bin")
        dims = "x".join(map(str, x.shape))
        args = [*cmd, str(bundle / "model.so"), str(Path(tmp) / "out"), str(iters), f"{tmp}/input.bin:{dims}"]
        try:
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FeatcompError(f"the runner did not finish within {timeout:.0f}s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise FeatcompError(f"the bundle's runner failed: {last}")
        outputs = []
        for i, spec in enumerate(manifest["outputs"]):
            path = Path(tmp) / f"out.{i}.bin"
            outputs.append(np.fromfile(path, dtype=spec["dtype"]).reshape(spec["shape"]))
    ms = float(done.stdout.rsplit("ms/run", 1)[-1].strip()) if "ms/run" in done.stdout else float("nan")
    return Result(outputs, ms)
