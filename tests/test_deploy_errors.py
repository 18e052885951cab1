"""Bad input to `featcomp compile` / `featcomp run`: one line on stderr, exit 1, no output left behind.
A small x86 bundle of a tiny model (compiled once) serves the run-side cases."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from PIL import Image

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
    foreign = _tampered(tiny[1], tmp_path, lambda m: m["target"].__setitem__("arch", "aarch64"))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error(cli("run", foreign, "--input", tmp_path / "x.npy", "--emulate"), "qemu-aarch64 not found", "qemu-user")


def test_emulate_on_a_bundle_for_this_machine_runs_it_natively(cli, tiny, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No x86 cross runtime or qemu is needed for an x86_64 bundle on x86_64: it runs, with a note."""
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    monkeypatch.setattr("featcomp.deploy.targets.SYSROOTS", {"aarch64": "/nonexistent", "x86_64": "/nonexistent"})
    done = cli("run", tiny[1], "--input", tmp_path / "x.npy", "--emulate")
    assert done.code == 0, done.err
    assert "1 output(s), first 1x4" in done.out
    assert "runs natively" in done.err or "running it natively" in done.err


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


def test_a_coder_bundle_of_another_bitstream_version(cli, tiny, tmp_path: Path) -> None:
    """A bundle whose coder writes v1 streams (made before format 2, so no "bitstream" key) next to a model
    this featcomp codes in v2: run refuses it in one line (report --bundle loads bundles the same way)."""
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    for change in (lambda m: m.update(coder=True) or m.pop("bitstream", None) and None,
                   lambda m: m.update(coder=True, bitstream=1)):
        copy = _tampered(tiny[1], tmp_path, change)
        _one_line_error(cli("run", copy, "--input", tmp_path / "x.npy"), "bitstream format v1", "reads and writes v2",
                        "featcomp compile --coder")
        shutil.rmtree(copy)
    plain = _tampered(tiny[1], tmp_path, lambda m: m.update(bitstream=1))  # no coder: no streams, nothing to refuse
    assert cli("run", plain, "--input", tmp_path / "x.npy").code == 0


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
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", tmp_path), "keep.txt", "empty or new folder")
    assert (tmp_path / "keep.txt").read_text() == "mine"


# ---- issue 11: what `compile -o` may replace, and where it may write (checked before any compile work) -------


@pytest.fixture
def no_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any TVM compile fails the test: the refusals below must come before the work."""
    build = need_tvm()

    def compile_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("compile work started before the output folder was checked")

    monkeypatch.setattr(build, "compile_model", compile_model)


def test_folder_with_a_manifest_and_other_files_is_never_deleted(cli, tiny, tmp_path: Path, no_compile) -> None:
    """Data loss: a web project's folder (manifest.json + src/app.js) was deleted whole."""
    project = tmp_path / "webapp"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text('{"name": "my app", "version": "1.0"}')
    (project / "src" / "app.js").write_text("console.log('mine')")
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", project), "not a featcomp bundle", "empty or new")
    assert (project / "src" / "app.js").read_text() == "console.log('mine')"
    assert (project / "manifest.json").read_text().startswith('{"name"')


def test_bundle_with_a_file_added_is_not_replaced(cli, tiny, tmp_path: Path, no_compile) -> None:
    """A real bundle the user put their own file into: featcomp did not write that file, so it is kept."""
    copy = tmp_path / "b"
    shutil.copytree(tiny[1], copy)
    (copy / "lib" / "notes.txt").write_text("mine")
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", copy), "lib/notes.txt", "does not list")
    assert (copy / "lib" / "notes.txt").read_text() == "mine" and (copy / "model.so").exists()


def test_compile_replaces_its_own_bundle(cli, tiny, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(tiny[1], copy)
    (copy / "model.so").write_bytes(b"stale")  # a bundle featcomp wrote (all files listed), now outdated,
    old = json.loads((copy / "manifest.json").read_text())  # and of the previous format (no sha256)
    old["format"] = 1
    del old["sha256"]
    (copy / "manifest.json").write_text(json.dumps(old))
    assert cli("compile", tiny[0], "--target", "host", "-o", copy).code == 0
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["sha256"]["model.so"] == hashlib.sha256((copy / "model.so").read_bytes()).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary folders left


def test_compile_into_a_read_only_folder(cli, tiny, tmp_path: Path, read_only, no_compile) -> None:
    locked = read_only(tmp_path / "locked")
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", locked / "b"), "not writable", str(locked))
    assert list(locked.iterdir()) == []


def test_compile_into_a_missing_parent_is_refused_like_compress(cli, tiny, tmp_path: Path, calib_npz: Path,
                                                                no_compile) -> None:
    """One rule for every output (compile, compress, jpeg encode, report -o): the parent folder must exist."""
    missing = f"folder {tmp_path / 'no'} does not exist"
    _one_line_error(cli("compile", tiny[0], "--target", "host", "-o", tmp_path / "no" / "b"), missing)
    _one_line_error(cli("compress", tiny[0], "--calib", calib_npz, "-o", tmp_path / "no" / "m.onnx"), missing)
    photo = tmp_path / "p.png"
    Image.new("RGB", (16, 16)).save(photo)
    _one_line_error(cli("jpeg", "encode", photo, "--quality", "50", "-o", tmp_path / "no" / "o"), missing)
    _one_line_error(cli("report", tiny[0], "--calib", calib_npz, "-o", tmp_path / "no" / "r.json"), missing)
    assert not (tmp_path / "no").exists()


# ---- issue 11: run on a tampered bundle: one line, never a traceback or a silent reshape ---------------------


def _tampered(bundle: Path, tmp_path: Path, change) -> Path:  # noqa: ANN001 - a function of the manifest
    """A copy of the bundle whose manifest went through change(manifest) (or was replaced by its result)."""
    copy = tmp_path / "tampered"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    result = change(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest if result is None else result))
    return copy


TAMPERED = {
    "a list": (lambda m: [m], "not an object"),
    "empty inputs": (lambda m: m.__setitem__("inputs", []), "inputs"),
    "an input of another dtype": (lambda m: m["inputs"][0].__setitem__("dtype", "int8"), "inputs[0].dtype"),
    "no outputs": (lambda m: m.__setitem__("outputs", []), "outputs"),
    "an output shape that does not match": (lambda m: m["outputs"][0].__setitem__("shape", [1, 7]), "1x7"),
    "the same element count reshaped": (lambda m: m["outputs"][0].__setitem__("shape", [2, 2]), "2x2"),
    "an output dtype that does not match": (lambda m: m["outputs"][0].__setitem__("dtype", "int32"), "int32"),
    "an unknown dtype": (lambda m: m["outputs"][0].__setitem__("dtype", "complex7"), "complex7"),
    "a shape of strings": (lambda m: m["outputs"][0].__setitem__("shape", ["1", "4"]), "shape"),
    "an extra output": (lambda m: m["outputs"].append({"name": "x", "shape": [1], "dtype": "float32"}),
                        "returns 1 output(s)"),
    "an unknown arch": (lambda m: m["target"].__setitem__("arch", "riscv64"), "target.arch"),
    "no file digests": (lambda m: m.pop("sha256") and None, "sha256"),
    "a file outside the bundle": (lambda m: m["files"].__setitem__("../x", 1), "outside"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_run_refuses_a_tampered_manifest(cli, tiny, tmp_path: Path, case: str) -> None:
    change, needle = TAMPERED[case]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    copy = _tampered(tiny[1], tmp_path, change)
    _one_line_error(cli("run", copy, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"), needle)
    assert not (tmp_path / "y.npy").exists()


def test_manifest_keeps_extra_keys_other_tools_add(cli, tiny, tmp_path: Path) -> None:
    copy = _tampered(tiny[1], tmp_path, lambda m: m.update(memory={"planned_bytes": 123}, sites_storage=[{}]))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    assert cli("run", copy, "--input", tmp_path / "x.npy").code == 0


# ---- issue 11, item 15: the manifest's sha256 of every file, checked by run ---------------------------------


def test_manifest_records_a_sha256_of_every_file(tiny) -> None:
    manifest = json.loads((tiny[1] / "manifest.json").read_text())
    assert manifest["format"] == "featcomp.bundle/2"
    on_disk = {p.relative_to(tiny[1]).as_posix() for p in tiny[1].rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["sha256"]) == set(manifest["files"]) == on_disk
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((tiny[1] / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("name", ["runner", "model.so", "lib/libtvm_runtime.so"])
def test_run_refuses_a_swapped_file(cli, tiny, tmp_path: Path, name: str) -> None:
    copy = tmp_path / "b"
    shutil.copytree(tiny[1], copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (copy / name).write_bytes(bytes(data))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    _one_line_error(cli("run", copy, "--input", tmp_path / "x.npy"), name, "sha256")


def test_tuning_for_a_board_needs_rpc(cli, tiny, tmp_path: Path) -> None:
    _one_line_error(cli("compile", tiny[0], "--target", "rasp4b64", "--tune", "8", "-o", tmp_path / "b"),
                    "tuning for rasp4b64 measures on the board", "--rpc HOST:PORT", "without --tune")
    _one_line_error(cli("compile", tiny[0], "--target", "rasp4b64", "--tune", "8", "--rpc", "board",
                        "-o", tmp_path / "b"), "--rpc wants HOST:PORT", "'board'")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.tuning").exists()
