"""Run a bundle's model on a board through TVM RPC (`python -m tvm.exec.rpc_server` on the board)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax, rpc

from featcomp.errors import FeatcompError


def run(bundle: Path, manifest: dict[str, Any], x: np.ndarray, address: str, *, iters: int = 0,
        timeout: int = 60) -> tuple[list[np.ndarray], float]:
    """Upload model.so, load it remotely, run main on x; returns (outputs, ms per run)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FeatcompError(f"--rpc wants HOST:PORT, got {address!r}")
    try:
        remote = rpc.connect(host, int(port), session_timeout=timeout)
    except Exception as exc:  # TVM wraps socket errors in its own types
        raise FeatcompError(f"cannot reach the TVM RPC server at {address}: {str(exc).strip().splitlines()[-1]}") from None
    remote.upload(str(bundle / "model.so"), "featcomp_model.so")
    lib = remote.load_module("featcomp_model.so")
    dev = remote.cpu()
    vm = relax.VirtualMachine(lib, dev)
    arg = tvm.runtime.tensor(x, dev)
    timer = vm.time_evaluator("main", dev, number=max(1, iters), repeat=1)
    ms = float(timer(arg).mean) * 1e3
    out = vm["main"](arg)
    items = [out] if hasattr(out, "numpy") else list(out)
    return [item.numpy() for item in items], ms
