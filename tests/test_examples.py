"""Every example runs as documented: the bash blocks of examples/*/README.md, in a scratch folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import needs

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("[0-9]*/README.md"))

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def _blocks(readme: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", readme.read_text(), flags=re.S)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example: Path, tmp_path: Path) -> None:
    needs.shared("models")
    blocks = _blocks(example / "README.md")
    assert blocks, f"{example.name}/README.md has no bash block"
    work = tmp_path / example.name
    shutil.copytree(example, work)
    env = {**os.environ, "SHARED": str(SHARED), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for block in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1800)  # heavy examples under a loaded machine
        assert done.returncode == 0, f"{example.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    made = {p.name for p in work.iterdir()} - {p.name for p in example.iterdir()}
    assert made, f"{example.name} wrote nothing"
    for onnx_file in work.glob("*.onnx"):
        assert onnx_file.stat().st_size > 0
