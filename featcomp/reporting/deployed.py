"""The report's optional "deployed" section: what a compiled bundle really keeps and moves, next to what
the report models. Per site: modelled coded bytes vs the bytes the bundle stores (the compiled IR's
tensors, `featcomp compile`); totals: planned peak activation memory and measured DRAM bytes per
inference (cachegrind, `featcomp run --measure-traffic`), original vs compressed.

It is a sub-object of the report JSON (`deployed`, null when no --bundle was given), so renderers
that do not know it can skip it. Stored and DRAM bytes are per image (a bundle's batch divided out);
planned memory is the compiled model's, at its batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcomp.errors import FeatcompError


@dataclass
class DeployedSite:
    site: str
    codec: str
    modelled_bytes: float  # the report's coded_bytes_mean (real numpy-reference bitstream, header included)
    int8_bytes: int
    stored_form: str  # "int8", "int16" (the symbols' stored dtype), "bitstream", or "unknown" when the IR shows none
    stored_dtype: str | None
    stored_shape: list[int]
    stored_bytes: float | None  # per inference
    reader: str  # the compiled call that reads the stored form (a decode, or a consumer with it fused)
    decode_fused: bool | None = None  # the reader is not a featcomp decode kernel alone


@dataclass
class Deployed:
    bundle: str
    target: str
    arch: str
    coder: bool
    batch: int
    sites: list[DeployedSite]
    modelled_bytes: float
    stored_bytes: float
    # planned peak activation memory of the compiled model at its batch (StaticPlanBlockMemory)
    planned_bytes: dict[str, float | None] = field(default_factory=dict)  # original, compressed
    # DRAM bytes per inference measured under cachegrind (None: not measured)
    dram_bytes: dict[str, float | None] = field(default_factory=dict)  # original, compressed
    dram_method: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployed:
        return cls(**{**data, "sites": [DeployedSite(**s) for s in data["sites"]]})


def from_bundle(bundle_dir: str | Path, sites: list[Any]) -> Deployed:
    """The deployed section for a report's sites (featcomp.reporting.schema.SiteReport) and a bundle."""
    from featcomp.deploy import bundle, traffic

    manifest = bundle.load_manifest(bundle_dir)
    info = manifest.get("compile", {})
    mine = {s.name for s in sites}
    theirs = {s["site"] for s in manifest.get("codec_sites", [])}
    if mine != theirs:
        raise FeatcompError(f"{bundle_dir} was compiled from a model with other sites ({len(theirs)} vs the report's "
                            f"{len(mine)}); compile this model with 'featcomp compile'")
    if "stored_sites" not in info:
        raise FeatcompError(f"{bundle_dir} records no stored sites; recompile it with this featcomp ('featcomp compile')")
    batch = int(manifest["inputs"][0]["shape"][0]) or 1
    stored = {s["site"]: s for s in info["stored_sites"]}
    rows = []
    for s in sites:
        st = stored.get(s.name, {})
        size = st.get("bytes")
        rows.append(DeployedSite(s.name, s.codec, s.coded_bytes_mean, s.int8_bytes, st.get("form", "unknown"),
                                 st.get("dtype"), list(st.get("shape", [])), None if size is None else size / batch,
                                 st.get("reader", ""), st.get("decode_fused")))
    planned = {"original": info.get("memory_without_pairs", {}).get("activation_bytes"),
               "compressed": info.get("memory", {}).get("activation_bytes")}
    measured = traffic.read_sidecar(bundle_dir) or {}
    dram = {"original": measured.get("original", {}).get("dram_bytes_per_inference"),
            "compressed": measured.get("bundle", {}).get("dram_bytes_per_inference")}
    method = measured.get("bundle", {}).get("method")
    return Deployed(
        bundle=Path(bundle_dir).name, target=manifest["target"]["name"], arch=manifest["target"]["arch"],
        coder=bool(manifest.get("coder")), batch=batch, sites=rows,
        modelled_bytes=sum(r.modelled_bytes for r in rows),
        stored_bytes=sum(r.stored_bytes for r in rows if r.stored_bytes is not None),
        planned_bytes=planned,
        dram_bytes={k: None if v is None else v / batch for k, v in dram.items()}, dram_method=method)


COLUMNS = ["site", "codec", "stored form", "dtype", "modelled B", "stored B", "stored / modelled", "int8 B",
           "decode fused", "read by"]


def rows(d: Deployed) -> list[list[str]]:
    out = []
    for s in d.sites:
        ratio = f"{s.stored_bytes / s.modelled_bytes:.2f}" if s.stored_bytes and s.modelled_bytes else "-"
        out.append([s.site, s.codec, s.stored_form, s.stored_dtype or "-", f"{s.modelled_bytes:.0f}",
                    "-" if s.stored_bytes is None else f"{s.stored_bytes:.0f}", ratio, str(s.int8_bytes),
                    {True: "yes", False: "no", None: "-"}[s.decode_fused], s.reader])
    return out


def _mb(value: float | None) -> str:
    return "not measured" if value is None else f"{value / 1e6:.2f} MB"


def _pair(values: dict[str, float | None]) -> str:
    original, compressed = values.get("original"), values.get("compressed")
    ratio = f" ({compressed / original:.2f}x)" if original and original > 0 and compressed is not None else ""
    return f"original {_mb(original)} -> compressed {_mb(compressed)}{ratio}"


def summary_lines(d: Deployed) -> list[str]:
    how = "" if d.dram_method is None else " (cachegrind, LL 1 MiB 16-way 64 B, 1 thread)"
    return [
        f"deployed: bundle {d.bundle} ({d.arch}, target {d.target}{', real bitstreams' if d.coder else ''}, batch "
        f"{d.batch}; bytes per image, planned memory at the bundle's batch)",
        f"feature maps: modelled {d.modelled_bytes / 1e6:.3f} MB coded -> stored in the bundle "
        f"{d.stored_bytes / 1e6:.3f} MB",
        f"planned peak activation memory: {_pair(d.planned_bytes)}",
        f"DRAM bytes per inference, measured{how}: {_pair(d.dram_bytes)}"
        + ("" if d.dram_bytes.get("compressed") is not None else
           " ('featcomp run BUNDLE --measure-traffic --original ORIGINAL_BUNDLE' measures it)"),
    ]


def markdown(d: Deployed) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows(d)]
    return "\n".join(["", "### Deployed", "", *(f"- {line}" for line in summary_lines(d)), "", head, rule, *body]) + "\n"
