"""What a test needs that may be missing: skip without it, except under CI=true, where it must be there.

Every skip of the suite goes through here (tests/test_no_silent_skips.py holds the other files to that), so
CI=true turns a missing package, tool or ../shared asset into a failure instead of a silent skip. Only
`not_applicable` skips under CI too: the test cannot mean anything here, whatever is installed.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

CI = os.environ.get("CI") == "true"
SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared next to the checkout: real models and images


def missing(reason: str) -> NoReturn:
    """Skip (the whole module when called at import time), or fail under CI=true."""
    if CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def module(name: str, install: str) -> ModuleType:
    """Import `name`, or skip/fail saying how to install it (`install`, e.g. "pip install 'featcomp[coder]'")."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not importable ({exc}): {install}")


def tool(name: str, install: str) -> str:
    """The path of a command-line tool, or skip/fail."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed: {install}")
    return path


def shared(*parts: str) -> Path:
    """A file or folder under ../shared, or skip/fail (the `shared` marker's rule)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        missing(f"{path} is absent (../shared holds the real models and images)")
    return path


def not_applicable(reason: str) -> NoReturn:
    """Skip even under CI=true: nothing could be installed to make the test meaningful here."""
    pytest.skip(f"not applicable: {reason}", allow_module_level=True)
