"""User target names -> what TVM is asked for (no TVM import here: the adapter turns this into a
tvm.target.Target and reads the architecture back from it)."""

from __future__ import annotations

import json
import platform
from typing import Any

from featcomp.errors import FeatcompError

# Short names users type. Anything else is handed to TVM as a target tag (e.g. "arm/rk3399") or,
# when it starts with "{", as a JSON target dict.
ALIASES: dict[str, str | dict[str, Any]] = {
    "rasp4b64": "raspberry-pi/4b-aarch64",  # TVM's Raspberry Pi 4 tag: cortex-a72, NEON, 4 cores
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
    "x86_64": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v2"},  # x86-64-v2: SSE4.2 (any x86-64 CPU since ~2009)
    "host": "host",  # this machine's CPU (resolved by the adapter: LLVM's host CPU name, all cores)
}
ARCHES = ("aarch64", "x86_64")
CROSS_COMPILERS = {"aarch64": "aarch64-linux-gnu-g++", "x86_64": "x86_64-linux-gnu-g++"}
EMULATORS = {"aarch64": "qemu-aarch64", "x86_64": "qemu-x86_64"}
SYSROOTS = {"aarch64": "/usr/aarch64-linux-gnu", "x86_64": "/usr/x86_64-linux-gnu"}
APT = {"aarch64": "apt-get install g++-aarch64-linux-gnu qemu-user", "x86_64": "apt-get install g++-x86-64-linux-gnu"}


def tvm_spec(name: str) -> str | dict[str, Any]:
    """The TVM target (tag or dict) for a user's target name."""
    if name in ALIASES:
        return ALIASES[name]
    if name.lstrip().startswith("{"):
        try:
            spec = json.loads(name)
        except json.JSONDecodeError as exc:
            raise FeatcompError(f"--target is not valid JSON: {exc.msg} at character {exc.pos}") from None
        if not isinstance(spec, dict):
            raise FeatcompError("--target JSON must be an object like {\"kind\": \"llvm\", \"mtriple\": \"aarch64-linux-gnu\"}")
        return spec
    return name


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def arch_of_triple(triple: str) -> str | None:
    """aarch64 / x86_64 for an LLVM triple ('' means the host), None for architectures we cannot bundle."""
    if not triple:
        return host_arch()
    head = triple.split("-")[0]
    if head in ("aarch64", "arm64"):
        return "aarch64"
    if head in ("x86_64", "amd64"):
        return "x86_64"
    return None
