"""MetaSchedule with a trial budget and a reusable database (`featcomp compile --tune N`): tuning
writes records, a later compile applies them without tuning, and the tuned model still matches ORT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import models
from tvm_tools import need_tvm

pytestmark = pytest.mark.slow


def test_tune_then_reuse_the_database(tmp_path: Path) -> None:
    build = need_tvm()
    from featcomp.runtime_ops import ort as fort

    model = models.two_convs()
    target = build.make_target("host")
    db = tmp_path / "tuning"
    tuned = build.compile_model(model, target, tune_trials=4, tune_dir=db)
    assert tuned.stats["tuned_tasks"] >= 3
    records = (db / "database_tuning_record.json").read_text().splitlines()
    assert len(records) >= 1
    assert tuned.stats["from_database"] >= 1
    again = build.compile_model(model, target, tune_dir=db)  # no trials: the database alone
    assert "tune" not in again.seconds and again.stats["from_database"] == tuned.stats["from_database"]
    x = np.random.default_rng(0).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    ref = fort.run(fort.session(model), {models.INPUT: x})
    want = np.asarray(next(iter(ref.values())) if isinstance(ref, dict) else ref[0])
    np.testing.assert_allclose(build.run_local(again, [x])[0], want, rtol=1e-4, atol=1e-5)
