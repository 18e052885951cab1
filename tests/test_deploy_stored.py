"""What `featcomp compile` records about a compressed model's memory (per-site stored tensors read from
the compiled IR, planned memory with and without pairs) and the `report --bundle` section built on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import models
import numpy as np
import pytest
from tvm_tools import need_tools, need_tvm

from featcomp.quality import Sqnr


def test_subbyte_fallback_names_the_levels() -> None:
    from featcomp.deploy import stored

    assert stored.subbyte_fallback(np.array([0.0, -3.0]), np.array([200.0, 3.0])) == "uint4x2 needs <= 16 levels; the symbols span 204"
    assert stored.subbyte_fallback(-8.0, 7.0).startswith("fits uint4x2 (16 levels)")
    assert stored.subbyte_fallback(-8.0, 8.0).startswith("uint4x2 needs")  # 17 levels


def test_name_sites_matches_in_order_by_size() -> None:
    from featcomp.deploy import stored

    def entry(shape: list[int], dtype: str = "int8") -> dict[str, object]:
        size = int(np.prod(shape))
        return {"symbols": {"shape": shape, "dtype": dtype, "bytes": size}, "form": dtype, "dtype": dtype,
                "shape": shape, "bytes": size}

    sites = {"a": ("dct-cm", [8, 4, 4]), "b": ("dct-cm", [8, 4, 4]), "c": ("dct-cm", [4, 2, 2]), "d": ("dct-cm", [3, 3, 3])}
    # call order: c's size first, then the two of a's size (a before b), nothing of d's size
    rows = stored.name_sites([entry([2, 4, 2, 2]), entry([2, 8, 4, 4]), entry([2, 8, 16], "int16")], sites, batch=2)
    assert [r["site"] for r in rows] == ["a", "b", "c", "d"]
    assert [r["bytes"] for r in rows] == [256, 256, 32, None]
    assert rows[1]["dtype"] == "int16" and rows[3]["form"] == "unknown" and "no encode call" in rows[3]["reason"]
    assert stored.total_bytes(rows) == 256 + 256 + 32


@dataclass
class Case:
    model: Path           # compressed tiny model
    original: Path        # the same model stripped
    bundle: Path          # x86_64 bundle of the compressed model
    original_bundle: Path
    calib: Path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    need_tvm()
    need_tools("g++")
    from featcomp import api
    from featcomp.deploy.compile import compile_bundle
    from featcomp.modelio import prepare, save_model

    out = tmp_path_factory.mktemp("stored")
    calib = out / "calib.npz"
    np.savez(calib, **{models.INPUT: np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)})
    result = api.compress(prepare(models.residual()), calib, quality=Sqnr(30.0))
    model = save_model(result.model, out / "tiny.fc.onnx")
    original = save_model(api.strip(result.model), out / "tiny.onnx")
    compile_bundle(model, "x86_64", out / "bundle")
    compile_bundle(original, "x86_64", out / "original")
    return Case(Path(model), Path(original), out / "bundle", out / "original", calib)


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_compile_records_each_sites_stored_tensor(case: Case) -> None:
    from featcomp import api

    info = _manifest(case.bundle)["compile"]
    codecs = api.site_codecs(str(case.model))
    rows = info["stored_sites"]
    assert [r["site"] for r in rows] == list(codecs)
    for row in rows:
        shape = list(codecs[row["site"]].shape)
        assert row["form"] == row["dtype"] in ("int8", "int16")  # the stored form is the symbols' stored type
        assert row["subbyte_fallback"].startswith(("uint4x2 needs", "fits uint4x2"))  # why not two codes a byte
        assert int(np.prod(row["symbols"]["shape"])) == int(np.prod(shape))  # batch 1
        assert row["bytes"] == int(np.prod(row["shape"])) * np.dtype(row["dtype"]).itemsize
        assert np.issubdtype(np.dtype(row["dtype"]), np.integer)  # the symbols, not a decoded float tensor
        assert row["reader"] and isinstance(row["decode_fused"], bool)
    # per site "decode fused" agrees with the whole-model count of decode kernels left alone
    assert sum(not r["decode_fused"] for r in rows) == info["fusion"]["decode_alone"]


def test_plan_without_pairs_is_the_original_bundles_plan(case: Case) -> None:
    compressed = _manifest(case.bundle)["compile"]
    original = _manifest(case.original_bundle)["compile"]
    assert compressed["memory_without_pairs"] == original["memory"]
    assert "memory_without_pairs" not in original and original["stored_sites"] == []


def test_with_the_coder_the_stored_form_is_the_bitstream(case: Case) -> None:
    build = need_tvm()
    from featcomp.deploy import targets
    from featcomp.modelio import load_model

    compiled = build.compile_model(load_model(case.model), build.make_target(targets.tvm_spec("x86_64")), coder=True)
    rows = compiled.stats["stored_sites"]
    assert rows and all(r["form"] == "bitstream" and r["dtype"] == "uint8" for r in rows)
    assert all(np.issubdtype(np.dtype(r["symbols"]["dtype"]), np.integer) for r in rows)
    assert all("pack" in " ".join(t["call"] for t in r["tensors"]) for r in rows)


def test_report_with_a_bundle_adds_the_deployed_section(cli, case: Case) -> None:
    from featcomp.deploy import traffic
    from featcomp.reporting.schema import Report

    traffic.write_sidecar(case.bundle, traffic.Traffic("bundle", 1.0e6, 2, method=traffic.method(2)),
                          traffic.Traffic("original", 2.0e6, 2, method=traffic.method(2)))
    try:
        run = cli("report", case.model, "--calib", case.calib, "--bundle", case.bundle, "--format", "json")
        assert run.code == 0, run.err
        report = Report.from_json(run.out)
        d = report.deployed
        assert d is not None and [s.site for s in d.sites] == [s.name for s in report.sites]
        stored = {r["site"]: r["bytes"] for r in _manifest(case.bundle)["compile"]["stored_sites"]}
        for site, modelled in zip(d.sites, report.sites):
            assert site.stored_bytes == stored[site.site] and site.modelled_bytes == modelled.coded_bytes_mean
        info = _manifest(case.bundle)["compile"]
        assert d.planned_bytes == {"original": info["memory_without_pairs"]["activation_bytes"],
                                   "compressed": info["memory"]["activation_bytes"]}
        assert d.dram_bytes == {"original": 2.0e6, "compressed": 1.0e6}
        md = cli("report", case.model, "--calib", case.calib, "--bundle", case.bundle, "--format", "md")
        assert "### Deployed" in md.out and "original 2.00 MB -> compressed 1.00 MB (0.50x)" in md.out
    finally:
        (case.bundle / traffic.TRAFFIC_FILE).unlink()
    plain = cli("report", case.model, "--calib", case.calib, "--format", "json")
    assert json.loads(plain.out)["deployed"] is None
    unmeasured = cli("report", case.model, "--calib", case.calib, "--bundle", case.bundle)
    assert "not measured" in unmeasured.out and "--measure-traffic" in unmeasured.out


def test_report_refuses_a_bundle_of_another_model(cli, case: Case) -> None:
    run = cli("report", case.model, "--calib", case.calib, "--bundle", case.original_bundle)
    assert run.code == 1 and run.err.count("\n") == 1 and "other sites" in run.err
    run = cli("report", case.model, "--calib", case.calib, "--bundle", case.calib.parent / "missing")
    assert run.code == 1 and "not a featcomp bundle" in run.err
