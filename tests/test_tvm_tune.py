"""MetaSchedule with a trial budget and a reusable database (`featcomp compile --tune N`): the XGBoost
cost model trains, tuning writes records, a later compile applies them without tuning, the tuned model
still matches ORT; `--rpc` hands MetaSchedule an RPCRunner. One short tuning run (one conv, 8 trials)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models
from tvm_tools import need_tvm

pytestmark = pytest.mark.slow


def _spy_cost_model(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Keep every cost model tune() makes, to look at it after the run."""
    from featcomp.runtime_ops.tvm import tune

    made: list[Any] = []
    make = tune.make_cost_model

    def keep(trials: int) -> Any:
        made.append(make(trials))
        return made[-1]

    monkeypatch.setattr(tune, "make_cost_model", keep)
    return made


def test_xgboost_cost_model_trains_and_the_database_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 trials on one conv reach the warmup, so the XGBoost model really trains in this TVM wheel."""
    build = need_tvm()
    from tvm.s_tir import meta_schedule as ms

    made = _spy_cost_model(monkeypatch)
    target = build.make_target("host")
    db = tmp_path / "tuning"
    tuned = build.compile_model(models.one_conv(), target, tune_trials=8, tune_dir=db)
    assert tuned.stats["cost_model"] == "xgb" and tuned.stats["measured_on"] == "local"
    [model] = made
    assert isinstance(model, ms.cost_model.XGBModel)
    assert model.data_size >= model.num_warmup_samples and model.booster is not None  # trained, not random
    assert (db / "database_tuning_record.json").read_text().strip()
    assert tuned.stats["tuned_tasks"] >= 1 and tuned.stats["from_database"] >= 1
    again = build.compile_model(models.one_conv(), target, tune_dir=db)  # no trials: the database alone
    assert "tune" not in again.seconds and again.stats["from_database"] == tuned.stats["from_database"]
    from featcomp.runtime_ops import ort as fort

    x = np.random.default_rng(0).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    ref = fort.run(fort.session(models.one_conv()), {models.INPUT: x})
    want = np.asarray(next(iter(ref.values())) if isinstance(ref, dict) else ref[0])
    np.testing.assert_allclose(build.run_local(again, [x])[0], want, rtol=1e-4, atol=1e-5)


def test_random_cost_model_with_a_note_without_xgboost(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    need_tvm()
    from tvm.s_tir import meta_schedule as ms

    from featcomp.runtime_ops.tvm import tune

    assert isinstance(tune.make_cost_model(64), ms.cost_model.XGBModel)
    assert tune.make_cost_model(64).num_warmup_samples == tune.warmup_samples(64) < 100
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost now raises ImportError
    assert isinstance(tune.make_cost_model(64), ms.cost_model.RandomModel)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "xgboost is not installed" in note[0]


def test_rpc_measures_on_the_board_with_cross_compiled_candidates(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What tune() hands MetaSchedule for `--rpc HOST:PORT` (nothing is measured: tune_tasks is replaced)."""
    build = need_tvm()
    from tvm.s_tir import meta_schedule as ms

    from featcomp.runtime_ops.tvm import tune

    seen: dict[str, Any] = {}
    monkeypatch.setattr(ms.tune, "tune_tasks", lambda **kw: seen.update(kw))
    compiled = build.compile_model(models.one_conv(), build.make_target("host"), tune_trials=8, tune_dir=tmp_path,
                                   rpc="board.local:9090", cross_compiler="aarch64-linux-gnu-g++")
    assert compiled.stats["measured_on"] == "board.local:9090"
    runner = seen["runner"]
    assert isinstance(runner, ms.runner.RPCRunner)
    assert (runner.rpc_config.tracker_host, runner.rpc_config.tracker_port) == ("board.local", 9090)
    assert runner.f_create_session is tune._direct_session
    assert seen["builder"].f_export.args == ("aarch64-linux-gnu-g++",)
    assert isinstance(seen["cost_model"], ms.cost_model.XGBModel)
    with pytest.raises(ValueError, match="HOST:PORT"):
        tune.make_runner("9090")
