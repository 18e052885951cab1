"""The package's type hints hold: mypy, strict (pyproject's [tool.mypy]), over featcomp, passes and runtime_ops.

The three source folders are one package, `featcomp` (pyproject's package-dir), which mypy cannot follow from the
folders themselves: checked as folders, `featcomp.passes.*` and `featcomp.runtime_ops.*` imports would be
unresolved (Any). So the test lays the package out as it is installed, with symlinks in a temporary folder, and
checks `-p featcomp` there: every import between the rooms is checked with its real types.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import needs
import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"passes": ROOT / "passes", "runtime_ops": ROOT / "runtime_ops"}


def installed_layout(where: Path) -> Path:
    """`where`/featcomp: symlinks to featcomp/'s entries plus passes/ and runtime_ops/ under their import names."""
    package = where / "featcomp"
    package.mkdir()
    for entry in (ROOT / "featcomp").iterdir():
        if entry.name not in ROOMS and entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in ROOMS.items():
        (package / name).symlink_to(folder)
    return package


def test_the_layout_holds_every_module(tmp_path: Path) -> None:
    package = installed_layout(tmp_path)
    for name, folder in ROOMS.items():
        for path in folder.rglob("*.py"):
            assert (package / name / path.relative_to(folder)).is_file(), path


@pytest.mark.slow
def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    needs.module("mypy", "pip install -e '.[test]'")
    installed_layout(tmp_path)
    env = {**os.environ, "MYPYPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                           "--no-error-summary", "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "featcomp"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
