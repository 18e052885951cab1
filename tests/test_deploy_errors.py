"""Bad input to `featcomp compile` / `featcomp run`: one line on stderr, exit 1, no output left behind.
A small x86 bundle of a tiny model (compiled once) serves the run-side cases."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import models
from tvm_tools import need_tools, need_tvm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model file, its host bundle)."""
    need_tvm()
    need_tools("g++")
    from featcomp.cli import main

    out = tmp_path_factory.mktemp("tiny")
    path = Path(models.save(models.two_convs(), out / "tiny.onnx"))
    assert main(["compile", str(path), "--target", "host", "-o", str(out / "bundle")]) == 0
    return path, out / "bundle"


def _one_line_error(run, *needles: str) -> None:  # noqa: ANN001 - conftest's Run
    assert run.code == 1, (run.out, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featcomp: error: "), run.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_target(cli, tiny, tmp_path: Path) -> None:
    _one_line_error(cli("compile", tiny[0], "--target", "no-such-board", "-o", tmp_path / "b"), "unknown target", "rasp4b64")
    _one_line_error(cli("compile", tiny[0], "--target", "{not json", "-o", tmp_path / "b"), "not valid JSON")
    _one_line_error(cli("compile", tiny[0], "--target", '{"kind": "llvm", "mtriple": "riscv64-linux-gnu"}',
                        "-o", tmp_path / "b"), "aarch64 and x86_64")
    assert not (tmp_path / "b").exists()


def test_missing_cross_compiler(cli, tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    _one_line_error(cli("compile", tiny[0], "--target", "rasp4b64", "-o", tmp_path / "b"),
                    "aarch64-linux-gnu-g++ not found", "apt-get install g++-aarch64-linux-gnu")
    assert not (tmp_path / "b").exists()


def test_missing_runtime_says_how_to_get_it(cli, tiny, tmp_path: Path) -> None:
    need_tools("aarch64-linux-gnu-g++")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(cli("compile", tiny[0], "--target", "aarch64", "--runtime", empty, "-o", tmp_path / "b"),
                    "TVM runtime for aarch64 is missing", "pip download", "manylinux_2_28_aarch64")


def test_missing_qemu(cli, tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error(cli("run", tiny[1], "--input", tmp_path / "x.npy", "--emulate"), "qemu-x86_64 not found", "qemu-user")


def test_foreign_bundle_needs_emulate(tiny, tmp_path: Path) -> None:
    from featcomp.deploy import bundle

    manifest = json.loads((tiny[1] / "manifest.json").read_text())
    with pytest.raises(Exception, match="built for aarch64.*--emulate"):
        bundle.command(tiny[1], {**manifest, "target": {**manifest["target"], "arch": "aarch64"}}, emulate=False)


def test_model_with_ops_tvm_cannot_lower(cli, tmp_path: Path) -> None:
    model = models.two_convs()
    model.graph.node.extend([helper.make_node("LearnedJpeg", ["input"], ["j"], domain="ai.featcomp.jpeg"),
                             helper.make_node("Imaginary", ["j"], ["k"])])
    model.opset_import.append(helper.make_opsetid("ai.featcomp.jpeg", 1))
    path = models.save(model, tmp_path / "bad.onnx")
    _one_line_error(cli("compile", path, "--target", "host", "-o", tmp_path / "b"),
                    "2 op type(s)", "ai.featcomp.jpeg.LearnedJpeg", "Imaginary")
    assert not (tmp_path / "b").exists()


def test_bundle_from_another_version(cli, tiny, tmp_path: Path) -> None:
    other = tmp_path / "old"
    shutil.copytree(tiny[1], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["versions"]["featcomp"] = "0.0.1"
    (other / "manifest.json").write_text(json.dumps(manifest))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    _one_line_error(cli("run", other, "--input", tmp_path / "x.npy"), "compiled by featcomp 0.0.1", "recompile")
    _one_line_error(cli("run", tmp_path, "--input", tmp_path / "x.npy"), "not a featcomp bundle")


def test_input_of_the_wrong_shape(cli, tiny, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    _one_line_error(cli("run", tiny[1], "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"),
                    "shape 1x3x32x32", "1x3x16x16")
    assert not (tmp_path / "y.npy").exists()
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    _one_line_error(cli("run", tiny[1], "--input", tmp_path / "bad.npy"), "cannot read")
    _one_line_error(cli("run", tiny[1], "--input", tmp_path / "photo.png"), "records no preprocessing")


def test_runner_refuses_a_short_input_file(tiny, tmp_path: Path) -> None:
    """The native runner checks sizes itself (on the board there is no Python to do it)."""
    import subprocess

    (tmp_path / "x.bin").write_bytes(b"\0" * 100)
    done = subprocess.run([str(tiny[1] / "run.sh"), str(tmp_path / "x.bin"), str(tmp_path / "y")],
                          capture_output=True, text=True)
    assert done.returncode == 3 and "has 100 bytes, the model expects 3072" in done.stderr


def test_compile_without_tvm_says_how_to_install(cli, tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m in ("tvm", "featcomp.runtime_ops.tvm") or m.startswith(("tvm.", "featcomp.runtime_ops.tvm."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tvm", None)  # import tvm -> ImportError
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", tmp_path / "b"), "pip install 'featcomp[tvm]'")


def test_existing_non_bundle_folder_is_not_overwritten(cli, tiny, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", tmp_path), "is not a bundle")
    assert (tmp_path / "keep.txt").read_text() == "mine"
