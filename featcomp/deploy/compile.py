"""`featcomp compile`: a model (compressed or not) -> a bundle for a target. Every check that can
fail (target, ops, tools, runtime libraries, output folder) runs before the compile work."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from featcomp.codecs.bitstream import FORMAT_VERSION
from featcomp.deploy import bundle, runtime, targets
from featcomp.errors import FeatcompError

INSTALL_HINT = "featcomp compile needs TVM: pip install 'featcomp[tvm]'"


def adapter() -> Any:
    """featcomp.runtime_ops.tvm.build, or a one-line install hint when TVM is missing."""
    try:
        from featcomp.runtime_ops.tvm import build
    except ImportError as exc:
        if "tvm" in str(exc).lower():
            raise FeatcompError(INSTALL_HINT) from None
        raise
    return build


def static_shape(model: Any, batch: int) -> tuple[str, list[int]]:
    """The single input's name and shape, a symbolic batch set to `batch`."""
    from featcomp.modelio import input_spec

    spec = input_spec(model)
    dims = list(spec.shape)
    rest = [d for d in dims[1:] if isinstance(d, int)]
    if len(rest) != len(dims) - 1:
        raise FeatcompError(f"input '{spec.name}' has symbolic dimensions {dims}; re-export with a fixed image size")
    return spec.name, [dims[0] if isinstance(dims[0], int) else batch, *rest]


def compile_bundle(model_path: str | Path, target_name: str, out: str | Path, *, tune: int = 0,
                   tune_dir: str | Path | None = None, runtime_dir: str | Path | None = None,
                   preprocess: str | None = None, batch: int = 1, coder: bool = False,
                   rpc: str | None = None) -> dict[str, Any]:
    """Compile and write the bundle; returns its manifest. coder: real bitstreams (either codec) inside the
    model, each site's stream length in bytes an extra output named '<site>/coded_bytes'. rpc: HOST:PORT of
    a TVM RPC server on the board, where tuning for another architecture measures its candidates."""
    from featcomp.modelio import load_model

    out = bundle.check_output(out)  # writable, and never a folder featcomp did not write
    if preprocess is not None:
        from featcomp.preprocess import Preprocess

        Preprocess.parse(preprocess)  # fail now on a bad spec
    model = load_model(model_path)
    name, shape = static_shape(model, batch)
    build = adapter()
    target = build.make_target(targets.tvm_spec(target_name))
    arch = targets.arch_of_triple(build.triple(target))
    if arch is None:
        raise FeatcompError(f"target {target_name!r} is {build.triple(target)}; bundles are built for aarch64 and x86_64")
    build.check_supported(model)
    cross = arch != targets.host_arch()
    if tune and cross and rpc is None:
        raise FeatcompError(f"tuning for {target_name} measures on the board: pass --rpc HOST:PORT "
                            f"(a TVM RPC server on the board), or compile without --tune")
    if rpc is not None:
        _check_address(rpc)
    compiler = runtime.compiler_for(arch)
    libs = runtime.runtime_libs(arch, runtime_dir)
    if tune and tune_dir is None:
        tune_dir = out.with_name(out.name + ".tuning")
    t0 = time.perf_counter()
    compiled = build.compile_model(model, target, shape_dict={name: shape}, tune_trials=tune, tune_dir=tune_dir,
                                   coder=coder, rpc=rpc if tune else None,
                                   cross_compiler=compiler if cross else None)
    names = [f"output{i}" for i in range(len(model.graph.output))]
    without_pairs = _plan_without_pairs(model, target, {name: shape}, compiled.seconds)
    if coder:
        names += [f"{site}/coded_bytes" for site in _site_codecs(model)]
    with tempfile.TemporaryDirectory(prefix="featcomp-compile-") as tmp:
        so = Path(tmp) / "model.so"
        t1 = time.perf_counter()
        build.export(compiled, so, cross_compiler=compiler if arch != targets.host_arch() else None)
        compiled.seconds["export"] = time.perf_counter() - t1
        runner = runtime.build_runner(arch, libs)
        compiled.seconds["total"] = time.perf_counter() - t0
        manifest: dict[str, Any] = {
            "format": bundle.FORMAT,
            "model": Path(model_path).name,
            "inputs": [{"name": name, "shape": shape, "dtype": "float32"}],
            "outputs": [{"name": n, "shape": list(s), "dtype": d} for n, (s, d) in zip(names, compiled.outputs)],
            "coder": coder,
            "bitstream": FORMAT_VERSION if coder else None,  # the stream format the coder kernels write
            "preprocess": preprocess,
            "codec_sites": [{"site": site, "codec": codec.codec_name, "shape": list(codec.shape)}
                            for site, codec in _site_codecs(model).items()],
            "target": {"name": target_name, "tvm": str(target), "arch": arch, "tuned_trials": tune},
            "versions": {"featcomp": bundle.featcomp_version(), "tvm": build.tvm_version(),
                         "tvm_ffi": runtime.TVM_FFI_VERSION},
            "compile": {"seconds": {k: round(v, 3) for k, v in compiled.seconds.items()}, **compiled.stats},
        }
        _record_stored(manifest["compile"], model, shape[0], without_pairs)
        bundle.write(out, manifest, so, runner, libs)
    return bundle.load_manifest(out)


def _check_address(address: str) -> None:
    """HOST:PORT with a numeric port, else a one-line error naming the value."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FeatcompError(f"--rpc wants HOST:PORT, got {address!r}")


def _plan_without_pairs(model: Any, target: Any, shapes: dict[str, list[int]],
                        seconds: dict[str, float]) -> dict[str, int] | None:
    """The planned activation memory of the same model with its pairs stripped (None without pairs)."""
    if not _site_codecs(model):
        return None
    from featcomp.passes.insert import strip_to_original
    from featcomp.runtime_ops.tvm import memory

    t0 = time.perf_counter()
    planned = memory.plan(strip_to_original(model).model, target, shapes)
    seconds["plan_without_pairs"] = time.perf_counter() - t0
    return planned



def _site_codecs(model: Any) -> dict[str, Any]:
    """Each site's frozen codec by site name, as featcomp.api.site_codecs gives it (deploy sits below the api)."""
    from featcomp.passes.pairs import find_pairs

    return {p.site: p.codec for p in find_pairs(model)}


def _record_stored(info: dict[str, Any], model: Any, batch: int, without_pairs: dict[str, int] | None) -> None:
    """Name the compiled IR's per-site stored tensors and add the plan without pairs (manifest "compile")."""
    from featcomp.deploy import stored

    sites = {site: (codec.codec_name, list(codec.shape)) for site, codec in _site_codecs(model).items()}
    info["stored_sites"] = stored.name_sites(info.get("stored_sites", []), sites, batch)
    codecs = _site_codecs(model)
    for row in info["stored_sites"]:  # the sub-byte form's fallback, per site (issue 12, requirement 1)
        codec = codecs.get(row["site"])
        if codec is not None and hasattr(codec, "cmin") and row.get("form") != "bitstream":
            row["subbyte_fallback"] = stored.subbyte_fallback(codec.cmin, codec.cmax)
    if without_pairs is not None:
        info["memory_without_pairs"] = without_pairs
