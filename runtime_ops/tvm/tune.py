"""MetaSchedule tuning of the legalized network with a trial budget and a reusable JSON database.

Two traps of the apache-tvm 0.27.0.post1 wheel:
- With apache-tvm-ffi 0.1.15.x, serializing any TIR node to JSON (`tvm.ir.save_json`, which the
  database, the builder's worker pool and the MutateComputeLocation/MutateParallel mutators need)
  segfaults in `tvm::ffi::ToJSONGraph` (the DataType field of PrimType). apache-tvm-ffi 0.1.14.post1
  works: the `tvm` extra pins it (docs/tvm.md has the trace).
- The stock LocalBuilder imports `tvm.s_tir.tensor_intrin` (~30 s of TVMScript parsing) in a fresh
  worker pool for every batch; `_build` skips it (no tensor intrinsics on these CPU targets).
Our hand-scheduled kernels carry `tirx.is_scheduled`, so tuning never touches them.

The search ranks candidates with MetaSchedule's XGBoost cost model (xgboost-cpu from the `tvm`
extra; it trains once `warmup_samples` candidates are measured, before that it ranks at random),
or with the random model, noted once, when xgboost is not installed. The initial population is not
seeded from our default schedules: EvolutionarySearch draws it only from the database's measured
records and from the design space, and our default schedules are not traces of that space (they
are applied to the PrimFunc directly), so there is nothing it could replay.
A target that is not this machine's is measured on the board through a TVM RPC server
(`rpc=HOST:PORT`, no tracker); candidates are cross-compiled here, so the board needs only the
runtime and the RPC server.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

PER_TASK_CAP = 64  # trials per task at most; the global budget is spread over the tasks
RPC_TIMEOUT_SEC = 120  # per measured candidate on the board (upload, load, run)
DIRECT_RPC = "featcomp-direct"  # tracker key placeholder: RPCConfig insists on one, _direct_session ignores it


def has_xgboost() -> bool:
    """Whether MetaSchedule's XGBoost cost model can be used."""
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def warmup_samples(trials: int) -> int:
    """Measured candidates before the XGBoost model first trains: TVM's 100 would leave it unused at
    small budgets (--tune 64), so a quarter of the budget, 8 to 100."""
    return min(100, max(8, trials // 4))


def make_cost_model(trials: int) -> Any:
    """XGBoost cost model, or the random one (with a one-line note) without xgboost."""
    from tvm.s_tir import meta_schedule as ms

    if not has_xgboost():
        print("featcomp: xgboost is not installed, tuning ranks candidates at random "
              "(pip install 'featcomp[tvm]' for the XGBoost cost model)", file=sys.stderr)
        return ms.cost_model.RandomModel()
    return ms.cost_model.XGBModel(num_warmup_samples=warmup_samples(trials), verbose_eval=0)


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); ValueError with the bad value otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--rpc wants HOST:PORT, got {address!r}")
    return host, int(port)


def _direct_session(rpc_config: Any) -> Any:
    """RPCRunner session without a tracker: connect straight to the board's RPC server, whose
    address rides in the config's tracker fields (runs in the runner's worker process)."""
    from tvm import rpc

    return rpc.connect(rpc_config.tracker_host, rpc_config.tracker_port,
                       session_timeout=rpc_config.session_timeout_sec)


def _export(cross_compiler: str, mod: Any) -> str:
    """A candidate as a shared library cross-compiled for the board (the stock export leaves a .tar
    that the board would have to link with a compiler of its own)."""
    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="featcomp-tune-"), "candidate.so")
    mod.export_library(path, fcompile=cc.cross_compiler(cross_compiler))
    return path


def make_runner(rpc: str | None) -> Any:
    """LocalRunner on this machine, or an RPCRunner measuring on the board at rpc=HOST:PORT."""
    from tvm.s_tir import meta_schedule as ms

    if rpc is None:
        return ms.runner.LocalRunner()
    host, port = parse_address(rpc)
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=DIRECT_RPC,
                                 session_timeout_sec=RPC_TIMEOUT_SEC)
    return ms.runner.RPCRunner(rpc_config=config, f_create_session=_direct_session)


def _build(mod: tvm.IRModule, target: tvm.target.Target, _params: Any) -> Any:
    """The stock default_build without its `import tvm.s_tir.tensor_intrin`."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def tune(mod: tvm.IRModule, target: tvm.target.Target, trials: int, work_dir: Path, *,
         rpc: str | None = None, cross_compiler: str | None = None) -> int:
    """Tune every unscheduled PrimFunc of a legalized module for `trials` measured trials in total;
    records go to work_dir (a JSON database that later compiles reuse). rpc: measure on the board's
    RPC server at HOST:PORT (candidates built with cross_compiler). Returns the task count."""
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
        builder=ms.builder.LocalBuilder(f_build=_build, f_export=functools.partial(_export, cross_compiler) if cross_compiler else None,
                                        max_workers=1, timeout_sec=120),
        runner=make_runner(rpc), cost_model=make_cost_model(trials),
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
