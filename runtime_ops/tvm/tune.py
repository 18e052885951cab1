"""MetaSchedule tuning of the legalized network with a trial budget and a reusable JSON database.

Two traps of the apache-tvm 0.27.0.post1 wheel:
- With apache-tvm-ffi 0.1.15.x, serializing any TIR node to JSON (`tvm.ir.save_json`, which the
  database, the builder's worker pool and the MutateComputeLocation/MutateParallel mutators need)
  segfaults in `tvm::ffi::ToJSONGraph` (the DataType field of PrimType). apache-tvm-ffi 0.1.14.post1
  works: the `tvm` extra pins it (docs/tvm.md has the trace).
- The stock LocalBuilder imports `tvm.s_tir.tensor_intrin` (~30 s of TVMScript parsing) in a fresh
  worker pool for every batch; `_build` skips it (no tensor intrinsics on these CPU targets).
Our hand-scheduled kernels carry `tirx.is_scheduled`, so tuning never touches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tvm  # type: ignore[import-untyped]
from tvm import relax  # type: ignore[import-untyped]

PER_TASK_CAP = 64  # trials per task at most; the global budget is spread over the tasks


def _build(mod: tvm.IRModule, target: tvm.target.Target, _params: Any) -> Any:
    """The stock default_build without its `import tvm.s_tir.tensor_intrin`."""
    from tvm.driver import build as tvm_build  # type: ignore[import-untyped]
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock  # type: ignore[import-untyped]

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def tune(mod: tvm.IRModule, target: tvm.target.Target, trials: int, work_dir: Path) -> int:
    """Tune every unscheduled PrimFunc of a legalized module for `trials` measured trials in total;
    records go to work_dir (a JSON database that later compiles reuse). Returns the task count."""
    from tvm.s_tir import meta_schedule as ms

    work_dir.mkdir(parents=True, exist_ok=True)
    extracted = [t for t in ms.relax_integration.extract_tasks(mod, target)
                 if not t.mod.attrs.get("tirx.is_scheduled", False)]
    if not extracted:
        return 0
    tasks, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        extracted, str(work_dir), space="post-order-apply", strategy="evolutionary", seed=0)
    ms.tune.tune_tasks(
        tasks=tasks, task_weights=weights, work_dir=str(work_dir), max_trials_global=trials,
        max_trials_per_task=min(PER_TASK_CAP, max(1, trials)), num_trials_per_iter=min(16, max(1, trials)),
        builder=ms.builder.LocalBuilder(f_build=_build, max_workers=1, timeout_sec=120),
        runner=ms.runner.LocalRunner(), cost_model="random",
        database=ms.database.JSONDatabase(work_dir=str(work_dir)))
    return len(extracted)


def apply_database(mod: tvm.IRModule, target: tvm.target.Target, work_dir: Path) -> tuple[tvm.IRModule, int]:
    """Replace every PrimFunc the database has a record for; returns (module, how many were replaced)."""
    if not (work_dir / "database_workload.json").exists():
        return mod, 0
    before = {gv.name_hint: f for gv, f in mod.functions_items()}
    with target:
        mod = relax.transform.MetaScheduleApplyDatabase(str(work_dir))(mod)
    changed = sum(1 for gv, f in mod.functions_items() if gv.name_hint in before and not f.same_as(before[gv.name_hint]))
    return mod, changed
