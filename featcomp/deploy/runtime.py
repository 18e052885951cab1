"""What a bundle carries besides the model: the TVM runtime libraries for the target's architecture
and the native runner built against them. No TVM import: the host's libraries are found through the
installed packages' locations, a foreign architecture's come from the official wheels, which `fetch`
downloads once into the cache with pip (from the package registry pip is configured for). Offline, a
folder given with --runtime (or $FEATCOMP_TVM_RUNTIME) is used as it is and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.util import find_spec
from pathlib import Path

from featcomp.deploy import targets
from featcomp.errors import FeatcompError

TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post1"
LIBS = ("libtvm_runtime.so", "libtvm_ffi.so")
_WHEEL_LIBS = {"libtvm_runtime.so": "tvm/lib/libtvm_runtime.so", "libtvm_ffi.so": "tvm_ffi/lib/libtvm_ffi.so"}
ENV = "FEATCOMP_TVM_RUNTIME"  # a folder with the target's wheels or libraries


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "featcomp"


def fetch_args(arch: str, dest: str | Path) -> list[str]:
    """pip's arguments for the one-time download of a foreign architecture's TVM runtime (official wheels)."""
    platform_tag = {"aarch64": "manylinux_2_28_aarch64", "x86_64": "manylinux_2_28_x86_64"}[arch]
    return ["download", "--no-deps", "--platform", platform_tag, "--python-version", "3.11", "--only-binary=:all:",
            f"apache-tvm=={TVM_VERSION}", f"apache-tvm-ffi=={TVM_FFI_VERSION}", "-d", str(dest)]


def fetch_command(arch: str, dest: str | Path) -> str:
    """The same download as a command to type (on a machine with the registry, for an offline board)."""
    return "python -m pip " + " ".join(fetch_args(arch, dest))


PIP = [sys.executable, "-m", "pip"]  # how fetch runs pip (the interpreter featcomp runs in)


def fetch(arch: str, timeout: float = 1800) -> Path:
    """Download arch's TVM runtime wheels into the cache once (a message on stderr while it runs); a
    partial download never lands in the cache. One line saying what to do when pip cannot get them."""
    dest = default_runtime_dir(arch)
    if len(_from_folder(dest, arch) if dest.is_dir() else {}) == len(LIBS):
        return dest
    print(f"featcomp: downloading the {arch} TVM runtime (apache-tvm {TVM_VERSION} and apache-tvm-ffi "
          f"{TVM_FFI_VERSION} wheels, once) into {dest}", file=sys.stderr, flush=True)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as exc:
        raise FeatcompError(f"cannot write the cache folder {dest.parent}: {exc.strerror or exc}") from None
    try:
        try:
            done = subprocess.run([*PIP, *fetch_args(arch, staging), "--quiet", "--progress-bar", "off"],
                                  capture_output=True, text=True, timeout=timeout)
            reason = (done.stderr.strip().splitlines() or [f"pip exit code {done.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            done, reason = None, str(exc)
        if done is None or done.returncode != 0 or len(_from_folder(staging, arch)) < len(LIBS):
            raise FeatcompError(f"could not download the {arch} TVM runtime ({reason.strip()[:160]}); offline, "
                                f"fetch it where the package registry is reachable with: {fetch_command(arch, 'DIR')}"
                                f" and pass --runtime DIR")
        shutil.rmtree(dest, ignore_errors=True)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache is shared like any other
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def default_runtime_dir(arch: str) -> Path:
    return cache_dir() / f"tvm-{TVM_VERSION}-ffi-{TVM_FFI_VERSION}-{arch}"


def _package_dir(name: str) -> Path | None:
    spec = find_spec(name)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _host_libs() -> dict[str, Path]:
    found = {}
    for lib, rel in _WHEEL_LIBS.items():
        package = _package_dir(rel.split("/")[0])
        if package is not None and (package / "lib" / lib).exists():
            found[lib] = package / "lib" / lib
    return found


def _from_folder(folder: Path, arch: str) -> dict[str, Path]:
    """Libraries in folder (as files, or inside the arch's wheels, extracted next to them once)."""
    found = {lib: folder / lib for lib in LIBS if (folder / lib).exists()}
    wheel_arch = {"aarch64": "aarch64", "x86_64": "x86_64"}[arch]
    for wheel in sorted(folder.glob(f"*{wheel_arch}*.whl")) if len(found) < len(LIBS) else []:
        with zipfile.ZipFile(wheel) as zf:
            for lib, member in _WHEEL_LIBS.items():
                if lib not in found and member in zf.namelist():
                    tmp = folder / f".{lib}.tmp"
                    tmp.write_bytes(zf.read(member))
                    tmp.replace(folder / lib)
                    found[lib] = folder / lib
    return found


def runtime_libs(arch: str, folder: str | Path | None = None) -> dict[str, Path]:
    """libtvm_runtime.so and libtvm_ffi.so for arch: from `folder` (or $FEATCOMP_TVM_RUNTIME) as it is, else
    for the host's architecture from the installed TVM, else from the cache (downloaded there once)."""
    given = folder or os.environ.get(ENV)
    where = Path(given) if given else default_runtime_dir(arch)
    found = _from_folder(where, arch) if where.is_dir() else {}
    if len(found) < len(LIBS) and given is None and arch == targets.host_arch():
        found = _host_libs()
    if len(found) < len(LIBS) and given is None:
        found = _from_folder(fetch(arch), arch)
    if len(found) < len(LIBS):
        raise FeatcompError(f"the TVM runtime for {arch} is missing (looked in {where}); download it once with: "
                            f"{fetch_command(arch, where)}")
    return found


def compiler_for(arch: str) -> str:
    """The C++ compiler that builds for arch on this host (the cross compiler for a foreign arch)."""
    name = "g++" if arch == targets.host_arch() else targets.CROSS_COMPILERS[arch]
    if shutil.which(name) is None:
        raise FeatcompError(f"{name} not found on PATH: it builds the {arch} runner and model library "
                            f"(Debian: {targets.APT[arch] if name != 'g++' else 'apt-get install g++'})")
    return name


def _ffi_include() -> Path:
    package = _package_dir("tvm_ffi")
    if package is None or not (package / "include" / "tvm" / "ffi").is_dir():
        raise FeatcompError("the tvm_ffi headers are missing: pip install 'featcomp[tvm]'")
    return package / "include"


def runner_source() -> Path:
    """runner.cc, package data of featcomp.runtime_ops.tvm (whose __init__ does not import TVM)."""
    from importlib.resources import files

    return Path(str(files("featcomp.runtime_ops.tvm") / "runner" / "runner.cc"))


def build_runner(arch: str, libs: dict[str, Path]) -> Path:
    """The native runner for arch, built once per (compiler, source, runtime) and cached."""
    compiler = compiler_for(arch)
    source = runner_source()
    include = _ffi_include()
    digest = hashlib.sha256(source.read_bytes())
    for lib in LIBS:
        digest.update(libs[lib].read_bytes()[:4096] + str(libs[lib].stat().st_size).encode())
    digest.update(compiler.encode())
    out = cache_dir() / "runners" / f"runner-{arch}-{digest.hexdigest()[:16]}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    libdir = libs["libtvm_runtime.so"].parent
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    cmd = [compiler, "-std=c++17", "-O2", "-o", str(tmp), str(source), f"-I{include}", f"-I{include / 'dlpack'}",
           f"-L{libdir}", f"-L{libs['libtvm_ffi.so'].parent}", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi",
           "-Wl,-rpath,$ORIGIN/lib", "-Wl,--allow-shlib-undefined"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise FeatcompError(f"building the {arch} runner failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    tmp.replace(out)
    return out
