"""What a newcomer meets before any model runs (issue 11): the install is quiet, the test command is the
one CI runs and installs what the tests need, the aarch64 TVM runtime is fetched for the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import needs

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_setuptools_sees_is_a_listed_package() -> None:
    """setuptools warns "Package '...' is absent from the packages configuration" for every importable folder
    (any folder with a valid name, .py files or not) under a package that is not itself listed."""
    if sys.version_info < (3, 11):
        needs.not_applicable("reading pyproject.toml needs tomllib (Python 3.11+)")
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, roots = set(config["packages"]), config["package-dir"]
    seen = set()
    for package, folder in roots.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_dir() and path.name.isidentifier() and "__pycache__" not in path.parts:
                seen.add(".".join([package, *path.relative_to(ROOT / folder).parts]))
    assert seen - packages == set()
    data = config["package-data"]
    assert all(package in packages for package in data)
    assert any((ROOT / "runtime_ops" / "tvm" / "runner").glob(pattern) for pattern in
               data["featcomp.runtime_ops.tvm.runner"])


def test_runner_source_is_found_as_package_data() -> None:
    from featcomp.deploy import runtime

    assert runtime.runner_source().read_text().startswith("// featcomp bundle runner")


# ---- the aarch64 TVM runtime is fetched for the user (issue 11, item 6) -----------------------------------------

FAKE_PIP = r'''
import sys, zipfile
from pathlib import Path
args = sys.argv[1:]
if "{mode}" == "offline":
    sys.stderr.write("ERROR: Could not find a version that satisfies the requirement apache-tvm==0.27.0.post1\n")
    sys.exit(1)
dest = Path(args[args.index("-d") + 1])
dest.mkdir(parents=True, exist_ok=True)
Path(sys.argv[0]).with_suffix(".log").write_text(" ".join(args))
for wheel, member in (("apache_tvm-0.27.0.post1-cp39-abi3-manylinux_2_28_aarch64.whl", "tvm/lib/libtvm_runtime.so"),
                      ("apache_tvm_ffi-0.1.14.post1-cp311-manylinux_2_28_aarch64.whl", "tvm_ffi/lib/libtvm_ffi.so")):
    with zipfile.ZipFile(dest / wheel, "w") as zf:
        zf.writestr(member, b"\x7fELF fake " + member.encode())
'''


def _fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> Path:
    """pip replaced by a script (no network in tests): it writes two small wheels where pip would, or fails as
    pip does offline. featcomp's cache moved into tmp_path."""
    from featcomp.deploy import runtime

    script = tmp_path / "pip.py"
    script.write_text(FAKE_PIP.replace("{mode}", mode))
    monkeypatch.setattr(runtime, "PIP", [sys.executable, str(script)])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FEATCOMP_TVM_RUNTIME", raising=False)
    return script


def test_aarch64_runtime_is_downloaded_into_the_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from featcomp.deploy import runtime

    script = _fake_pip(tmp_path, monkeypatch, "online")
    libs = runtime.runtime_libs("aarch64")
    assert set(libs) == {"libtvm_runtime.so", "libtvm_ffi.so"}
    assert libs["libtvm_runtime.so"].read_bytes() == b"\x7fELF fake tvm/lib/libtvm_runtime.so"
    assert libs["libtvm_runtime.so"].parent == runtime.default_runtime_dir("aarch64")
    assert str(tmp_path / "cache" / "featcomp") in str(libs["libtvm_runtime.so"])
    call = script.with_suffix(".log").read_text()
    assert "--platform manylinux_2_28_aarch64" in call and f"apache-tvm=={runtime.TVM_VERSION}" in call
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "downloading the aarch64 TVM runtime" in err
    script.with_suffix(".log").unlink()
    assert runtime.runtime_libs("aarch64") == libs  # second time: from the cache, no download, no message
    assert not script.with_suffix(".log").exists() and capsys.readouterr().err == ""
    assert [p.name for p in (tmp_path / "cache" / "featcomp").iterdir()] == [runtime.default_runtime_dir("aarch64").name]


def test_offline_download_is_one_line_and_leaves_no_partial_cache(cli, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import models
    from featcomp.deploy import runtime
    from tvm_tools import need_tools, need_tvm

    need_tvm()
    need_tools("aarch64-linux-gnu-g++")
    _fake_pip(tmp_path, monkeypatch, "offline")
    model = models.save(models.two_convs(), tmp_path / "m.onnx")
    done = cli("compile", model, "--target", "aarch64", "-o", tmp_path / "b")
    assert done.code == 1
    lines = done.err.strip().splitlines()
    assert len(lines) == 2 and "downloading the aarch64 TVM runtime" in lines[0], done.err
    assert lines[1].startswith("featcomp: error: could not download the aarch64 TVM runtime")
    assert "Could not find a version" in lines[1] and "pip download" in lines[1] and "--runtime DIR" in lines[1]
    assert not runtime.default_runtime_dir("aarch64").exists() and not (tmp_path / "b").exists()
    assert list((tmp_path / "cache" / "featcomp").iterdir()) == []


def test_a_given_runtime_folder_is_never_downloaded_into(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--runtime DIR is for offline boards: used as it is, with the download command in the error."""
    from featcomp.deploy import runtime
    from featcomp.errors import FeatcompError

    script = _fake_pip(tmp_path, monkeypatch, "online")
    (tmp_path / "mine").mkdir()
    with pytest.raises(FeatcompError, match="pip download"):
        runtime.runtime_libs("aarch64", tmp_path / "mine")
    assert not script.with_suffix(".log").exists() and list((tmp_path / "mine").iterdir()) == []


# ---- the README's test command is what CI runs, and it installs the system packages (issue 11, item 7) -------

PACKAGES = {"qemu-aarch64": "qemu-user", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "g++": "g++",
            "valgrind": "valgrind", "chromium": "chromium"}


def _system_packages(tmp_path: Path, uid: int, present: tuple[str, ...]) -> tuple[subprocess.CompletedProcess[str], str]:
    """scripts/system-packages.sh with PATH holding only fakes: `id`, a logging `apt-get`, and the tools in
    `present`. Returns the run and what apt-get was asked (one line per call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    fakes = {"id": f"echo {uid}", "apt-get": f'echo "$@" >> {log}', **{tool: "exit 0" for tool in present}}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    done = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "system-packages.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, timeout=60)
    return done, log.read_text() if log.exists() else ""


def test_test_command_installs_every_missing_package_in_one_apt_line(tmp_path: Path) -> None:
    done, apt = _system_packages(tmp_path, 0, ("g++", "valgrind"))
    assert done.returncode == 0, done.stderr
    assert apt.splitlines() == ["update -qq", "install -y -qq --no-install-recommends qemu-user g++-aarch64-linux-gnu "
                                              "chromium"]
    assert done.stdout == "" and done.stderr.count("\n") == 1


def test_test_command_does_nothing_when_all_packages_are_there(tmp_path: Path) -> None:
    done, apt = _system_packages(tmp_path, 0, tuple(PACKAGES))
    assert (done.returncode, apt, done.stdout, done.stderr) == (0, "", "", "")


def test_test_command_without_root_names_what_to_install(tmp_path: Path) -> None:
    done, apt = _system_packages(tmp_path, 1000, ())
    assert done.returncode == 0 and apt == ""
    assert "apt-get install " + " ".join(PACKAGES.values()) in done.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["bash scripts/test.sh"]
    readme = (ROOT / "README.md").read_text()
    assert "\nbash scripts/test.sh " in readme
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert "bash scripts/system-packages.sh" in test_sh and "bash scripts/setup.sh test" in test_sh
