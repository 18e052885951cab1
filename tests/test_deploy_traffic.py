"""DRAM traffic under cachegrind (featcomp.deploy.traffic, `featcomp run --measure-traffic`): the
summary parser, the flags' bad input, and one real measurement of a tiny bundle whose activations
do not fit the 1 MiB last-level cache (N=2 minus N=1; skipped without valgrind unless CI=true)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import models
from tvm_tools import missing, need_tools, need_tvm

SIZE = 256  # 8 x 256 x 256 float32 = 2 MiB per activation: twice the simulated LL
CACHEGRIND_OUT = """desc: I1 cache:         32768 B, 64 B, 8-way associative
desc: D1 cache:         32768 B, 64 B, 8-way associative
desc: LL cache:         1048576 B, 64 B, 16-way associative
cmd: ./runner ./model.so out 1 x.bin:1x3x16x16
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
fl=???
fn=0x0000000000001000
0 1 1 1 0 0 0 0 0 0
summary: 1000 20 10 500 40 30 200 15 12
"""


def test_parse_reads_the_summary_and_counts_data_misses() -> None:
    from featcomp.deploy import traffic

    counts = traffic.parse(CACHEGRIND_OUT)
    assert counts["Ir"] == 1000 and counts["DLmr"] == 30 and counts["DLmw"] == 12 and counts["ILmr"] == 10
    assert traffic.dram_bytes(counts) == 64 * (30 + 12)


def test_parse_refuses_output_without_the_cache_simulation() -> None:
    from featcomp.deploy import traffic
    from featcomp.errors import FeatcompError

    with pytest.raises(FeatcompError, match="--cache-sim=yes"):
        traffic.parse("events: Ir\nsummary: 1000\n")
    with pytest.raises(FeatcompError, match="events"):
        traffic.parse("desc: nothing\n")


def test_flags_that_do_not_fit_are_one_line_errors(cli, tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 16, 16), np.float32))
    for argv, needle in ((["--measure-traffic", "--calls", "1"], "--calls must be >= 2"),
                         (["--original", str(tmp_path)], "--original belongs to --measure-traffic"),
                         (["--measure-traffic", "--emulate"], "drop --emulate")):
        run = cli("run", tmp_path / "no-bundle", "-i", x, *argv)
        assert run.code == 1 and run.err.count("\n") == 1 and needle in run.err, run.err


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tvm()
    need_tools("g++")
    if shutil.which("valgrind") is None:
        missing("valgrind is not installed (Debian: apt-get install valgrind)")
    from featcomp.cli import main

    out = tmp_path_factory.mktemp("traffic")
    path = Path(models.save(models.two_convs(dims=(1, 3, SIZE, SIZE)), out / "big.onnx"))
    assert main(["compile", str(path), "--target", "x86_64", "-o", str(out / "bundle"), "-q"]) == 0
    return out / "bundle"


def test_two_inferences_minus_one_under_cachegrind(cli, bundle: Path, tmp_path: Path) -> None:
    from featcomp.deploy import traffic

    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32))
    run = cli("run", bundle, "-i", x, "--measure-traffic", "--calls", "2")
    assert run.code == 0, run.err
    assert run.out.count("\n") == 1 and "MB/inference" in run.out
    data = traffic.read_sidecar(bundle)
    assert data is not None and "original" not in data
    m = data["bundle"]
    one, two = m["counts_1"], m["counts_n"]
    assert two["Ir"] > one["Ir"] and two["Dr"] > one["Dr"]  # the second run really ran the model once more
    assert traffic.dram_bytes(two) > traffic.dram_bytes(one)
    assert m["dram_bytes_per_inference"] == traffic.dram_bytes(two) - traffic.dram_bytes(one)
    # each inference writes the 2 MiB first activation, twice the simulated LL: it must reach DRAM
    assert m["dram_bytes_per_inference"] >= 8 * SIZE * SIZE * 4
    printed = float(run.out.split("DRAM traffic: ")[1].split(" MB")[0])
    assert printed == pytest.approx(m["dram_bytes_per_inference"] / 1e6, abs=0.01)
    json.dumps(data)  # plain JSON types only


def test_a_bundle_for_another_architecture_is_refused(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featcomp.deploy import targets, traffic
    from featcomp.errors import FeatcompError

    monkeypatch.setattr(targets, "host_arch", lambda: "aarch64")
    with pytest.raises(FeatcompError, match="built for x86_64.*--target aarch64"):
        traffic.measure_bundle(bundle, np.zeros((1, 3, SIZE, SIZE), np.float32))
