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

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.deploy import targets
from featcomp.errors import FeatcompError

# The format marker: a folder is a featcomp bundle (that `compile -o` may replace) only when its manifest
# carries it and lists every file in the folder. LEGACY_FORMATS: markers of older bundles we may replace.
FORMAT = "featcomp.bundle/2"
LEGACY_FORMATS = (1,)
MANIFEST = "manifest.json"
TRAFFIC_FILE = "traffic.json"  # written later by `run --measure-traffic`: ours, though the manifest cannot list it
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "bool")
RUN_SH = """#!/bin/sh
# usage: ./run.sh INPUT.bin OUT_PREFIX [ITERS]   (INPUT: raw float32 {shape})
cd "$(dirname "$0")" && exec ./runner ./model.so "$2" "${{3:-1}}" "$1:{dims}"
"""
RECOMPILE = "recompile the bundle with 'featcomp compile'"


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


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ writing a bundle


def _is_bundle_format(value: object) -> bool:
    return value in LEGACY_FORMATS or (isinstance(value, str) and value.startswith("featcomp.bundle/"))


def _foreign_entry(out: Path) -> str | None:
    """Why `out` (an existing folder) is not a bundle featcomp may replace, or None when it is empty or a
    bundle whose manifest (with the format marker) lists every file in it."""
    entries: list[tuple[str, bool]] = []  # (relative path, is a real folder)
    for root, dirs, files in os.walk(out):
        here = Path(root).relative_to(out)
        for name in dirs:
            entries.append(((here / name).as_posix(), not (Path(root) / name).is_symlink()))
        entries += [((here / name).as_posix(), False) for name in files]
    if not entries:
        return None
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"holds {min(rel for rel, _ in entries)} and no featcomp {MANIFEST}: it is not a featcomp bundle"
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not _is_bundle_format(manifest.get("format") if isinstance(manifest, dict) else None) \
            or not isinstance(listed, dict):
        return f"is not a featcomp bundle (its {MANIFEST} has no featcomp bundle format and file list)"
    names = {str(name) for name in listed} | {MANIFEST, TRAFFIC_FILE}
    for rel, is_dir in sorted(entries):
        if is_dir and not any(name.startswith(rel + "/") for name in names):
            return f"holds {rel}/, which the bundle's manifest does not list"
        if not is_dir and rel not in names:
            return f"holds {rel}, which the bundle's manifest does not list"
    return None


def check_output(out: str | Path) -> Path:
    """Fail before any compile work when the bundle cannot be written at `out`. The rule for every
    featcomp output: the parent folder must exist and be writable (missing parents are not created);
    an existing `out` is replaced only when it is empty or a featcomp bundle, nothing else is deleted."""
    out = Path(out)
    parent = out.parent
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FeatcompError(f"{out} exists and is not a folder: choose an empty or new folder for the bundle")
    if out.exists():
        why = _foreign_entry(out)
        if why is not None:
            raise FeatcompError(f"{out} {why}; featcomp only replaces a bundle it wrote: "
                                "choose an empty or new folder")
    if not parent.is_dir():
        raise FeatcompError(f"cannot write {out}: folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FeatcompError(f"cannot write {out}: folder {parent} is not writable")
    return out


def write(out: Path, manifest: dict[str, Any], model_so: Path, runner: Path, libs: dict[str, Path]) -> Path:
    """Assemble the bundle in a temporary sibling folder, then move it into place (never half-written).
    The manifest lists every file with its size and sha256 (`run` checks them)."""
    out = check_output(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise FeatcompError(f"cannot write {out}: {exc.strerror or exc}") from None
    old: Path | None = None
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
        paths = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in paths}
        digests = {p.relative_to(tmp).as_posix(): sha256(p) for p in paths}
        manifest = {**manifest, "format": FORMAT, "files": files, "sha256": digests, "bytes": sum(files.values())}
        validate(manifest, str(out))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            check_output(out)  # still only what a bundle holds
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(old / out.name)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FeatcompError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------ the manifest's schema


def _fail(where: str, what: str) -> FeatcompError:
    return FeatcompError(f"{where}: {MANIFEST} {what}; {RECOMPILE}")


def _tensor(where: str, key: str, value: object, float_only: bool = False) -> None:
    if not isinstance(value, dict):
        raise _fail(where, f"{key} is not an object with name, shape and dtype")
    name, shape, dtype = value.get("name"), value.get("shape"), value.get("dtype")
    if not isinstance(name, str):
        raise _fail(where, f"{key}.name is not a string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                               for d in shape):
        raise _fail(where, f"{key}.shape {shape!r} is not a list of positive whole numbers")
    if dtype not in (("float32",) if float_only else DTYPES):
        raise _fail(where, f"{key}.dtype {dtype!r} is not one of {', '.join(('float32',) if float_only else DTYPES)}")


def validate(manifest: object, where: str) -> dict[str, Any]:
    """The manifest's schema, in one place: the keys `run` relies on, with their types. Keys it does not
    know are kept as they are (other tools add their own)."""
    if not isinstance(manifest, dict):
        raise _fail(where, f"is a JSON {type(manifest).__name__}, not an object")
    versions = manifest.get("versions")
    if not isinstance(versions, dict) or not isinstance(versions.get("featcomp"), str):
        raise _fail(where, "has no versions.featcomp")
    inputs, outputs = manifest.get("inputs"), manifest.get("outputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise _fail(where, f"inputs must list the model's one input, got {inputs!r:.60}")
    _tensor(where, "inputs[0]", inputs[0], float_only=True)
    if not isinstance(outputs, list) or not outputs:
        raise _fail(where, f"outputs must list the model's outputs, got {outputs!r:.60}")
    for i, spec in enumerate(outputs):
        _tensor(where, f"outputs[{i}]", spec)
    target = manifest.get("target")
    if not isinstance(target, dict) or target.get("arch") not in targets.ARCHES:
        raise _fail(where, f"target.arch is not one of {', '.join(targets.ARCHES)}")
    if not isinstance(manifest.get("preprocess"), (str, type(None))):
        raise _fail(where, "preprocess is not a spec string or null")
    files, digests = manifest.get("files"), manifest.get("sha256")
    if not isinstance(files, dict) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in files.values()):
        raise _fail(where, "files is not an object of file sizes")
    for name in files:
        if name.startswith("/") or ".." in name.split("/"):
            raise _fail(where, f"files names {name!r}, outside the bundle")
    if not {"model.so", "runner"} <= set(files):
        raise _fail(where, "files does not list model.so and runner")
    if not isinstance(digests, dict) or set(digests) != set(files) or not all(
            isinstance(d, str) and re.fullmatch(r"[0-9a-f]{64}", d) for d in digests.values()):
        raise _fail(where, "sha256 does not hold one sha256 per listed file")
    return manifest


def verify_files(bundle: Path, manifest: dict[str, Any]) -> None:
    """Every listed file is there with its recorded size and sha256 (a swapped runner or model library
    is refused rather than run)."""
    for name, size in manifest["files"].items():
        path = bundle / name
        if not path.is_file():
            raise FeatcompError(f"{bundle}: {name} is missing; copy the whole bundle folder or {RECOMPILE}")
        if path.stat().st_size != size or sha256(path) != manifest["sha256"][name]:
            raise FeatcompError(f"{bundle}: {name} does not match the sha256 in its {MANIFEST} (changed after "
                                f"compile); {RECOMPILE}")


def load_manifest(bundle: str | Path) -> dict[str, Any]:
    """The manifest of a bundle this featcomp can run: format and version checked, then the schema."""
    path = Path(bundle) / MANIFEST
    if not path.exists():
        raise FeatcompError(f"{bundle} is not a featcomp bundle (no {MANIFEST}); make one with 'featcomp compile'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FeatcompError(f"{path} is not valid JSON; {RECOMPILE}") from None
    if isinstance(manifest, dict):
        versions = manifest.get("versions")
        made_by = versions.get("featcomp") if isinstance(versions, dict) else None
        if manifest.get("format") != FORMAT or made_by != featcomp_version():
            raise FeatcompError(f"{bundle} was compiled by featcomp {made_by} (bundle format {manifest.get('format')}); "
                                f"this is featcomp {featcomp_version()} (format {FORMAT}): recompile it with "
                                "'featcomp compile'")
    manifest = validate(manifest, str(bundle))
    check_bitstream(manifest, str(bundle))
    return manifest


def check_bitstream(manifest: dict[str, Any], where: str) -> None:
    """A bundle with the coder compiled in writes streams of the format it was built with (recorded as
    "bitstream"; bundles made before format 2 record none): it must be the one this featcomp reads."""
    from featcomp.codecs.bitstream import FORMAT_VERSION

    if not manifest.get("coder"):
        return
    made = manifest.get("bitstream", 1)
    if made != FORMAT_VERSION:
        raise FeatcompError(f"{where} codes feature maps in bitstream format v{made}, this featcomp reads and writes "
                            f"v{FORMAT_VERSION} (sliced streams): recompile it with 'featcomp compile --coder'")


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
    if emulate and arch == targets.host_arch():
        emulate = False  # a bundle for this machine's architecture runs natively; qemu would add nothing
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
    verify_files(bundle, manifest)
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
        outputs = _read_outputs(bundle, manifest, done.stdout, Path(tmp) / "out")
    ms = float(done.stdout.rsplit("ms/run", 1)[-1].strip()) if "ms/run" in done.stdout else float("nan")
    return Result(outputs, ms)


_OUTPUT_LINE = re.compile(r"^output (\d+) (\w+) ([0-9x]*)$", re.M)


def check_outputs(bundle: Path, manifest: dict[str, Any], made: list[tuple[str, list[int]]]) -> None:
    """The model's outputs (dtype, shape) are exactly the manifest's: a mismatch is refused, never reshaped or
    reinterpreted."""
    specs = manifest["outputs"]
    if len(made) != len(specs):
        raise FeatcompError(f"{bundle}: the model returns {len(made)} output(s), its {MANIFEST} lists {len(specs)}; "
                            f"{RECOMPILE}")
    for i, ((dtype, shape), spec) in enumerate(zip(made, specs)):
        if dtype != spec["dtype"] or list(shape) != spec["shape"]:
            raise FeatcompError(f"{bundle}: output {i} of the model is {dtype} {'x'.join(map(str, shape))}, its "
                                f"{MANIFEST} says {spec['dtype']} {'x'.join(map(str, spec['shape']))}; {RECOMPILE}")


def _read_outputs(bundle: Path, manifest: dict[str, Any], stdout: str, prefix: Path) -> list[np.ndarray]:
    """The runner's outputs, checked against the manifest with the dtype and shape the runner printed."""
    made = [(dtype, [int(d) for d in dims.split("x") if d]) for _, dtype, dims in _OUTPUT_LINE.findall(stdout)]
    check_outputs(bundle, manifest, made)
    outputs = []
    for i, (dtype, shape) in enumerate(made):
        data = np.fromfile(prefix.with_name(f"{prefix.name}.{i}.bin"), dtype=dtype)
        if data.size != int(np.prod(shape)):
            raise FeatcompError(f"{bundle}: the runner wrote {data.size} values for output {i}, "
                                f"{'x'.join(map(str, shape))} were expected; {RECOMPILE}")
        outputs.append(data.reshape(shape))
    return outputs
