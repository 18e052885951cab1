"""Compile a compressed model with TVM and export it (prototype of runtime_ops/tvm/bundle.py)."""

from __future__ import annotations

import time

import onnx
import tvm
from tvm import relax

from . import convert, schedules

X86 = {"kind": "llvm", "mcpu": "skylake-avx512"}
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}


def build(model: onnx.ModelProto, target: dict, shape_dict: dict[str, list[int]] | None = None,
          schedule: bool = True) -> tuple[tvm.runtime.Executable, dict[str, float]]:
    tgt = tvm.target.Target(target)
    t0 = time.perf_counter()
    mod = convert.import_model(model, shape_dict)
    t1 = time.perf_counter()
    if schedule:
        mod = schedules.schedule_module(mod, tgt)
    t2 = time.perf_counter()
    ex = tvm.compile(mod, tgt)
    t3 = time.perf_counter()
    return ex, {"import": t1 - t0, "schedule": t2 - t1, "compile": t3 - t2}


def export(ex: tvm.runtime.Executable, path: str, cross_compiler: str | None = None) -> None:
    """A shared library the TVM runtime (Python VirtualMachine or a C++ runner) can load."""
    if cross_compiler:
        ex.export_library(path, fcompile=tvm.support.cc.cross_compiler(cross_compiler))
    else:
        ex.export_library(path)
