"""Shared by the TVM and deploy tests: skip (or, under CI=true, fail) when TVM, a cross compiler,
qemu or the aarch64 TVM runtime is missing, and tiny ONNX models holding featcomp op pairs."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from needs import missing

X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512", "num-cores": 2}
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "mcpu": "cortex-a72", "num-cores": 4}


def need_tvm() -> Any:
    try:
        from featcomp.runtime_ops.tvm import build
    except ImportError:
        missing("TVM is not installed (pip install 'featcomp[tvm]')")
    return build


def need_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            missing(f"{name} is not installed (Debian: apt-get install qemu-user g++-aarch64-linux-gnu)")


def need_runtime(arch: str = "aarch64") -> Path:
    """The arch's TVM runtime wheels in featcomp's cache, downloaded once from the package index (by
    featcomp itself, as `featcomp compile` does)."""
    from featcomp.deploy import runtime
    from featcomp.errors import FeatcompError

    try:
        return runtime.fetch(arch)
    except FeatcompError as exc:
        missing(str(exc))
        raise


def pair_model(sites: Sequence[tuple[str, dict[str, np.ndarray], tuple[int, int, int, int]]],
               encode: str = "DctCmEncode", decode: str = "DctCmDecode") -> onnx.ModelProto:
    """One input X<i> per site, each through encode -> decode; outputs the symbols and the decoded tensor.
    A site is (name, side arrays keyed by op input name, NCHW shape)."""
    from featcomp.ops import schemas

    enc, dec = schemas.OPS[encode], schemas.OPS[decode]
    nodes, inits, inputs, outputs = [], [], [], []
    for i, (name, arrays, shape) in enumerate(sites):
        x, y, r = f"x{i}", f"y{i}", f"r{i}"
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, list(shape)))
        outputs += [helper.make_tensor_value_info(y, TensorProto.INT16, list(shape)),
                    helper.make_tensor_value_info(r, TensorProto.FLOAT, list(shape))]
        args = {}
        for port in [*enc.input_names[1:], *dec.input_names[1:]]:
            args[port] = f"{name}.{port}"
        inits += [numpy_helper.from_array(np.asarray(arrays[p]), args[p]) for p in dict.fromkeys(args)]
        nodes.append(helper.make_node(encode, [x, *[args[p] for p in enc.input_names[1:]]], [y], domain=schemas.DOMAIN,
                                      name=f"fc/{name}/encode"))  # named as passes/insert.py names them
        nodes.append(helper.make_node(decode, [y, *[args[p] for p in dec.input_names[1:]]], [r], domain=schemas.DOMAIN,
                                      name=f"fc/{name}/decode"))
    graph = helper.make_graph(nodes, "pairs", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(schemas.DOMAIN, 1)],
                             ir_version=8)


def run_x86(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    build = need_tvm()
    compiled = build.compile_model(model, build.make_target("host"))
    return list(build.run_local(compiled, inputs))
