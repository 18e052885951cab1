"""Under CI=true nothing a test needs may be missing quietly: every skip goes through tests/needs.py, which
fails there instead. This file holds the other test files to that, and needs.py to its rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import needs

TESTS = Path(__file__).resolve().parent
SKIPS = {"skip", "importorskip", "skipif"}  # pytest.skip(...), pytest.importorskip(...), pytest.mark.skip[if]


def direct_skips(path: Path) -> list[str]:
    """'file:line: pytest.X' for each skip that bypasses needs.py."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    outcomes = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "Exception"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SKIPS and id(node) not in outcomes:  # not pytest.skip.Exception
            base = node.value
            while isinstance(base, ast.Attribute):  # pytest.mark.skipif
                base = base.value
            if isinstance(base, ast.Name) and base.id == "pytest":
                found.append((node.lineno, f"{path.name}:{node.lineno}: pytest...{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest":
            found += [(node.lineno, f"{path.name}:{node.lineno}: from pytest import {a.name}")
                      for a in node.names if a.name in SKIPS]
    return [text for _, text in sorted(found)]


def test_every_skip_goes_through_needs() -> None:
    found = [hit for path in sorted(TESTS.glob("*.py")) if path.name != "needs.py" for hit in direct_skips(path)]
    assert found == [], ("skips that stay silent under CI=true; use needs.missing/module/tool/shared "
                         "(or needs.not_applicable):\n" + "\n".join(found))


def test_the_scan_finds_direct_skips(tmp_path: Path) -> None:
    path = tmp_path / "test_x.py"
    path.write_text("import pytest\nfrom pytest import importorskip\n"
                    "@pytest.mark.skipif(True, reason='x')\ndef test_a():\n    pytest.skip('y')\n"
                    "np = pytest.importorskip('numpy')\n")
    assert [hit.split(": ", 1)[1] for hit in direct_skips(path)] == [
        "from pytest import importorskip", "pytest...skipif", "pytest...skip", "pytest...importorskip"]


@pytest.mark.parametrize("ci", [True, False])
def test_a_missing_need_fails_only_under_ci(monkeypatch: pytest.MonkeyPatch, ci: bool) -> None:
    monkeypatch.setattr(needs, "CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="featcomp_no_such_module"):
        needs.module("featcomp_no_such_module", "pip install nothing")
    with pytest.raises(outcome, match="no-such-folder"):
        needs.shared("no-such-folder")
    with pytest.raises(outcome, match="featcomp-no-such-tool"):
        needs.tool("featcomp-no-such-tool", "apt-get install nothing")
    with pytest.raises(pytest.skip.Exception, match="not applicable"):  # skips under CI too, by design
        needs.not_applicable("a reason")


def test_what_is_there_is_returned() -> None:
    assert needs.module("json", "stdlib").dumps([1]) == "[1]"
    assert Path(needs.tool("sh", "any POSIX system")).name == "sh"
