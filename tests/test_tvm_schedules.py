"""Schedules keyed by target: the featcomp kernels and the rest of the network really get parallel
and vectorized loops on aarch64 (NEON) and x86 (AVX-512), small tensors stay on one thread, and
the aarch64 code uses NEON vector FMAs."""

from __future__ import annotations

import re

import pytest

import models
from tvm_tools import AARCH64, X86, need_tvm


@pytest.fixture(scope="module", params=["aarch64", "x86"])
def target(request: pytest.FixtureRequest):  # noqa: ANN201 - a tvm.target.Target
    build = need_tvm()
    return build.make_target(AARCH64 if request.param == "aarch64" else X86)


def _loops(script: str) -> dict[str, int]:
    return {kind: len(re.findall(rf"in T\.{kind}\(", script)) for kind in ("parallel", "vectorized")}


def test_rule_follows_the_target(target) -> None:
    from featcomp.runtime_ops.tvm import schedules

    rule = schedules.rule_for(target)
    arch = str(target.attrs["mtriple"]).split("-")[0]
    assert (rule.name, rule.lanes) == (("aarch64 NEON + parallel", 4) if arch == "aarch64" else ("x86 AVX-512 + parallel", 16))


@pytest.mark.parametrize("op", ["encode", "decode"])
def test_grouped_kernels_are_parallel_and_vectorized(target, op: str) -> None:
    from featcomp.runtime_ops.tvm import kernels, schedules

    rule = schedules.rule_for(target)
    make = kernels.encode_kernel if op == "encode" else kernels.decode_kernel
    big = (schedules.schedule_encode if op == "encode" else schedules.schedule_decode)(
        make("DctCmEncode" if op == "encode" else "DctCmDecode", 1, 64, 56, 56, 8), rule)
    loops = _loops(big.script())
    assert loops["parallel"] == 1, big.script()
    assert loops["vectorized"] >= (4 if op == "encode" else 2)
    assert big.attrs["tirx.is_scheduled"]
    small = (schedules.schedule_encode if op == "encode" else schedules.schedule_decode)(
        make("DctCmEncode" if op == "encode" else "DctCmDecode", 1, 64, 8, 8, 8), rule)
    assert _loops(small.script())["parallel"] == 0  # 4096 elements: threads cost more than they save
    assert _loops(small.script())["vectorized"] >= 1


def test_the_rest_of_the_network_is_scheduled(target) -> None:
    """After legalize + FuseOps/FuseTIR, every conv function gets the default CPU schedule."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    mod = build.legalize(convert.import_model(models.residual()), target)
    mod, done, naive = schedules.schedule_rest(mod, target)
    assert naive == 0 and done >= 3
    convs = [f.script() for gv, f in mod.functions_items() if "conv2d" in gv.name_hint]
    assert convs
    for script in convs:
        assert "tirx.is_scheduled" in script
        loops = _loops(script)
        assert loops["vectorized"] >= 1, script


def test_default_schedule_parallel_on_big_convs(target) -> None:
    from featcomp.runtime_ops.tvm import schedules
    from tvm import te, tirx

    data = te.placeholder((1, 32, 56, 56), name="x")
    weight = te.placeholder((32, 32, 3, 3), name="w")
    rc, ry, rx = te.reduce_axis((0, 32)), te.reduce_axis((0, 3)), te.reduce_axis((0, 3))
    conv = te.compute((1, 32, 54, 54), lambda n, f, y, x: te.sum(data[n, rc, y + ry, x + rx] * weight[f, rc, ry, rx],
                                                                axis=[rc, ry, rx]), name="conv")
    func = te.create_prim_func([data, weight, conv])
    assert isinstance(func, tirx.PrimFunc)
    scheduled = schedules.default_schedule(func, schedules.rule_for(target))
    loops = _loops(scheduled.script())
    assert loops["parallel"] == 1 and loops["vectorized"] >= 1


def test_aarch64_code_uses_neon() -> None:
    build = need_tvm()
    import tvm

    from featcomp.runtime_ops.tvm import kernels, schedules

    target = build.make_target(AARCH64)
    func = schedules.schedule_decode(kernels.decode_kernel("DctCmDecode", 1, 64, 56, 56, 8), schedules.rule_for(target))
    asm = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target).mod.inspect_source("asm")
    assert re.search(r"fmla\s+v\d+\.4s", asm), "no NEON vector FMA in the scheduled decode kernel"
