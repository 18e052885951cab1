"""The package's type hints hold: mypy over featcomp, passes and runtime_ops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import needs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    needs.module("mypy", "pip install -e '.[test]'")
    done = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-error-summary",
                           "featcomp", "passes", "runtime_ops"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
