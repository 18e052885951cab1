"""Compile an ONNX model (with or without featcomp pairs) with TVM: import with our converters,
schedule our kernels by hand, legalize and fuse the rest, schedule it (MetaSchedule database when
tuned, else the default CPU schedule), plan memory, build for a target and export.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import tvm
from featcomp.runtime_ops.tvm import convert, fuse_decode, layout, memory, schedules
from featcomp.runtime_ops.tvm.kernels import OP_ATTR, SCHEDULED
from tvm import relax, tirx

from featcomp.errors import FeatcompError


@dataclass
class Compiled:
    """A built module and what it took: timings (s), schedule and fusion counts, planned memory."""

    executable: Any
    target: Any
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    outputs: list[tuple[tuple[int, ...], str]] = field(default_factory=list)  # (shape, dtype) of main's results
    module: Any = None  # the scheduled IRModule that was built (tests and reports read its IR)


def make_target(spec: str | dict[str, Any]) -> tvm.target.Target:
    """A TVM target from a tag name or a JSON-style dict (featcomp.deploy.targets resolves user names);
    "host" is this machine's CPU with all its cores."""
    if spec == "host":
        import os

        from tvm.target import codegen

        spec = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()), "num-cores": os.cpu_count() or 1}
    try:
        return tvm.target.Target(spec)
    except Exception as exc:  # TVM raises ValueError, TVMError or its own subclasses for unknown tags/keys
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise FeatcompError(f"unknown target {spec!r} ({first}); use rasp4b64, aarch64, x86_64, host, "
                            "a TVM target tag such as arm/rk3399, or a JSON target dict") from None


def tvm_version() -> str:
    return str(tvm.__version__)


def triple(target: tvm.target.Target) -> str:
    return str(target.attrs["mtriple"]) if "mtriple" in target.attrs else ""


def _outputs(mod: tvm.IRModule) -> list[tuple[tuple[int, ...], str]]:
    ret = mod["main"].ret_ty
    items = list(ret.fields) if isinstance(ret, relax.TupleType) else [ret]
    out = []
    for item in items:
        if not isinstance(item, relax.TensorType) or item.shape is None:
            raise FeatcompError("the model's outputs have no static shape; compile with a fixed input shape")
        out.append((tuple(int(d) for d in item.shape.values), str(item.dtype)))
    return out


def check_supported(model: onnx.ModelProto) -> None:
    """Everything TVM cannot lower, named in one line, before any compile work."""
    missing = convert.unsupported_ops(model)
    if missing:
        raise FeatcompError(f"TVM cannot compile {len(missing)} op type(s) of this model: {', '.join(missing)}; "
                            "remove them or run the model in ONNX Runtime")


def legalize(mod: tvm.IRModule, target: tvm.target.Target,
             sites: dict[str, fuse_decode.SiteOutcome] | None = None) -> tvm.IRModule:
    """The CPU pipeline's legalize stage: conv weights to the tiled schedule's layout (once, on the
    constants), ops -> TIR, constants folded, fused (FuseOps, FuseTIR). Between FuseOps and FuseTIR,
    each decode still called from main moves into its consumers' functions
    (fuse_decode.merge_into_consumers; `sites` collects the outcome per site); sites None: TVM's passes alone."""
    from tvm.relax.backend.cpu_generic import pipeline

    mod = layout.even_pool_width(layout.weights_o_last(layout.pack_matvec(mod), schedules.rule_for(target).lanes))
    passes = list(pipeline.legalize_passes(target))
    with target:
        if sites is None:
            return tvm.transform.Sequential(pipeline.library_dispatch_passes(target) + passes)(mod)
    found = sites

    @tvm.transform.module_pass(opt_level=0, name="FeatcompMergeDecodes")
    def merge(m: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
        return fuse_decode.merge_into_consumers(m, found)

    fuse_tir = next(i for i, p in enumerate(passes) if p.info.name == "FuseTIR")
    passes[fuse_tir:fuse_tir] = [merge, relax.transform.DeadCodeElimination(["main"])]
    with target:
        return tvm.transform.Sequential(pipeline.library_dispatch_passes(target) + passes)(mod)


def _lower_passes(target: tvm.target.Target) -> list[Any]:
    from tvm.relax.backend.cpu_generic import pipeline

    return list(pipeline.dataflow_lower_passes(target)) + list(pipeline.finalize_passes(target))


_STORAGE = re.compile(r"R\.memory\.alloc_storage\(R\.shape\(\[(\d+)\]\),[^\n]*?R\.dtype\(\"(\w+)\"\)")


def planned_memory(mod: tvm.IRModule, target: tvm.target.Target) -> dict[str, Any]:
    """Bytes of the storage StaticPlanBlockMemory plans for main (tensors with disjoint lifetimes
    share one storage), and how many storages."""
    with target:
        seq = tvm.transform.Sequential([relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
                                        relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
                                        relax.transform.StaticPlanBlockMemory()])
        planned = seq(mod)
    found = [(int(size), dtype) for size, dtype in _STORAGE.findall(planned["main"].script())]
    by_dtype: dict[str, int] = {}
    for size, dtype in found:
        by_dtype[dtype] = by_dtype.get(dtype, 0) + size
    # the planner pools storages per dtype (int8 and uint8 never share one): by_dtype shows the split
    return {"activation_bytes": sum(size for size, _ in found), "storages": len(found), "by_dtype": by_dtype,
            "largest": {dtype: max(size for size, d in found if d == dtype) for dtype in by_dtype}}


def fusion_stats(mod: tvm.IRModule) -> dict[str, int]:
    """Where the featcomp kernels ended up after FuseOps/FuseTIR, counted per call in main: fused into
    the producer's output stage (the producer's fp32 output is never written) or alone."""
    calls = re.findall(r"call_tir\((?:cls\.)?(\w+)", mod["main"].script())
    alone = {gv.name_hint for gv, f in mod.functions_items()
             if isinstance(f, tirx.PrimFunc) and f.attrs is not None and OP_ATTR in f.attrs}
    stats = {"encode_fused": 0, "encode_alone": 0, "decode_fused": 0, "decode_alone": 0}
    for name in calls:
        for role in ("encode", "decode"):
            if f"fc_{role}" in name:
                stats[f"{role}_{'alone' if name in alone else 'fused'}"] += 1
    return stats


def compile_model(model: onnx.ModelProto, target: tvm.target.Target, *, shape_dict: dict[str, list[int]] | None = None,
                  tune_trials: int = 0, tune_dir: str | Path | None = None, schedule: bool = True,
                  coder: bool = False, fuse: bool = True, tiled: bool = True, rpc: str | None = None,
                  cross_compiler: str | None = None) -> Compiled:
    """Import, schedule and build. tune_trials > 0 runs MetaSchedule first (database in tune_dir,
    reused by later compiles); tune_dir alone applies an existing database. coder: real DCT-CM or transform-VLC
    bitstreams between each encode and decode, their lengths as extra outputs (convert.import_model).
    fuse: consumers read the stored symbols (fuse_decode); False keeps each decode a kernel of its own
    that writes the decoded tensor (the before of benchmarks/tvm_bench.py). tiled=False: the generic
    schedule for convs too (the baseline the benchmark compares against). rpc, cross_compiler: tuning
    measures on the board's TVM RPC server at HOST:PORT, candidates cross-compiled (tune.tune)."""
    check_supported(model)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        mod = convert.import_model(model, shape_dict, coder=coder)
    except (ValueError, NotImplementedError) as exc:  # our converters' messages, and the importer's
        raise FeatcompError(f"TVM import failed: {str(exc).strip().splitlines()[-1]}") from None
    seconds["import"] = time.perf_counter() - t0
    outputs = _outputs(mod)
    t0 = time.perf_counter()
    sites: dict[str, fuse_decode.SiteOutcome] = {}
    if fuse:
        mod, sites = fuse_decode.fold_into_convs(mod)
    if schedule:
        mod = schedules.schedule_kernels(mod, target)
    mod = legalize(mod, target, sites if fuse else None)
    seconds["legalize"] = time.perf_counter() - t0
    stats: dict[str, Any] = {"rule": schedules.rule_for(target).name}
    if tune_dir is not None:
        from featcomp.runtime_ops.tvm import tune

        t0 = time.perf_counter()
        if tune_trials > 0:
            stats["cost_model"] = "xgb" if tune.has_xgboost() else "random"
            stats["measured_on"] = rpc or "local"
            stats["tuned_tasks"] = tune.tune(mod, target, tune_trials, Path(tune_dir), rpc=rpc,
                                             cross_compiler=cross_compiler)
            seconds["tune"] = time.perf_counter() - t0
        mod, stats["from_database"] = tune.apply_database(mod, target, Path(tune_dir))
    t0 = time.perf_counter()
    if schedule:
        mod, stats["default_scheduled"], stats["naive"] = schedules.schedule_rest(mod, target, tiled)
        stats["conv_tiled"] = sum(1 for _, f in mod.functions_items()
                                  if isinstance(f, tirx.PrimFunc) and schedules.is_tiled(f))
    seconds["schedule"] = time.perf_counter() - t0
    stats["fusion"] = fusion_stats(mod)
    for site, where in fuse_decode.decoded_allocations(mod, sites).items():
        if where and not sites[site].reasons:  # never claim a fused decode the IR contradicts
            sites[site].reasons.append("decoded tensor still allocated: " + "; ".join(where))
    stats["sites"] = [o.as_dict() for o in sites.values()]
    stats["memory"] = planned_memory(mod, target)
    if coder:  # the coder kernels' workspace, outside the plan: per site, and per thread in the total
        from featcomp.runtime_ops.tvm.coder import scratch_summary

        stats["coder_scratch"] = scratch_summary(model)
        stats["memory"]["coder_scratch_bytes_per_thread"] = stats["coder_scratch"]["bytes_per_thread"]
    stats["stored_sites"] = [site.as_dict() for site in memory.stored_tensors(mod)]
    t0 = time.perf_counter()
    ex = tvm.compile(mod, target, relax_pipeline=tvm.transform.Sequential(_lower_passes(target)))
    seconds["build"] = time.perf_counter() - t0
    return Compiled(ex, target, seconds, stats, outputs, mod)


def export(compiled: Compiled, path: str | Path, cross_compiler: str | None = None) -> None:
    """A shared library the TVM runtime (the native runner, or relax.VirtualMachine) can load."""
    if cross_compiler:
        from tvm.support import cc

        compiled.executable.export_library(str(path), fcompile=cc.cross_compiler(cross_compiler))
    else:
        compiled.executable.export_library(str(path))


def run_local(compiled: Compiled, inputs: list[Any]) -> list[Any]:
    """Run a host-target build in this process (tests, benchmarks): numpy in, numpy out."""
    import numpy as np

    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs])
    items = [out] if hasattr(out, "numpy") else list(out)
    return [item.numpy() for item in items]


def time_local(compiled: Compiled, inputs: list[Any], *, number: int = 10, repeat: int = 5) -> list[float]:
    """Seconds per run of main (TVM's time_evaluator: no Python in the loop), one value per repeat."""
    import numpy as np

    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs]
    timer = vm.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat, min_repeat_ms=0)
    return [float(r) for r in timer(*args).results]


def time_kernel(func: tirx.PrimFunc, target: tvm.target.Target, arrays: list[Any], *, number: int = 20,
                repeat: int = 7) -> float:
    """Best seconds per call of one PrimFunc (scheduled by hand, or by the default schedule when it is not)."""
    import numpy as np

    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    if func.attrs is None or SCHEDULED not in func.attrs:
        mod, _, _ = schedules.schedule_rest(mod, target)
    lib = tvm.compile(mod, target)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in arrays]
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat, min_repeat_ms=0)
    return min(float(r) for r in timer(*args).results)


def runner(compiled: Compiled, inputs: list[Any]) -> Any:
    """A no-argument callable that runs main once on fixed inputs (benchmarks interleave engines)."""
    import numpy as np

    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs]
    main = vm["main"]
    return lambda: main(*args)


def profile_calls(compiled: Compiled | str | Path, inputs: list[Any], rounds: int) -> dict[str, list[float]]:
    """Seconds of every call the VM makes (compiled functions and builtins), by callee name, over
    `rounds` runs of main: the per-layer breakdown (TVM 0.27's VM has no profile mode; its
    instrument hook is called before and after each call). A path: a library made by `export`,
    so a benchmark can profile one build in child processes with different TVM_NUM_THREADS."""
    import time

    import numpy as np

    executable = compiled.executable if isinstance(compiled, Compiled) else tvm.runtime.load_module(str(compiled))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs]
    vm["main"](*args)
    calls: dict[str, list[float]] = {}
    started: list[float] = []

    def hook(_func: Any, name: str, before: bool, _ret: Any, *_args: Any) -> int:
        if before:
            started.append(time.perf_counter())
        else:
            calls.setdefault(str(name), []).append(time.perf_counter() - started.pop())
        return 0

    vm.set_instrument(hook)
    for _ in range(rounds):
        vm["main"](*args)
    return calls
