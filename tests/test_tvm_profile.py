"""build.profile_calls: the per-function breakdown of a compiled module and of its exported library
(what benchmarks/tvm_layer_scaling.py profiles in child processes) name the same calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import models
from tvm_tools import need_tvm


def test_profile_calls_of_a_library_matches_the_module(tmp_path: Path) -> None:
    build = need_tvm()
    compiled = build.compile_model(models.one_conv(), build.make_target("host"))
    lib = tmp_path / "m.so"
    build.export(compiled, lib)
    x = np.random.default_rng(0).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    from_module = build.profile_calls(compiled, [x], 3)
    from_library = build.profile_calls(lib, [x], 3)
    assert set(from_module) == set(from_library)
    assert any("conv2d" in name for name in from_library)
    assert all(len(v) % 3 == 0 and len(v) == len(from_module[k]) for k, v in from_library.items())
    assert all(t > 0 for v in from_library.values() for t in v)
