"""Compress time against ONNX Runtime's `quantize_static` on the same calibration images (issue 13's aim: <= 10x).

    .venv/bin/python benchmarks/compress_time.py [--shared ../shared] [--models a,b] [--limits 64,200]
        [--bytes-inputs 8] [--variants before=/tmp/old,after=] [-o benchmarks/results]

Per model and N: `featcomp.compress(MODEL, imagenet-calib-200, limit=N)` with the defaults a user gets (dct-cm,
label-free `--max-drop 1`), timed, between two runs of `quantize_static` (QDQ, MinMax) on the same N images, so
both see the same machine load; the ratio is compress time over the mean of the two. Compress time is split
into its phases (calibration run, codec fronts, sensitivity probes, accuracy search, insertion) from the
progress hooks. The b/v reached are real coded bytes (numpy reference bitstream, side information included, as
`featcomp report` counts them) on the first --bytes-inputs images of imagenet-val-100 (not calibrated on).
Writes compress_time.json and compress_time.md in -o.

--variants NAME=DIR,...: compare featcomp versions in one session. Each (N, model) runs once per variant, in
turn, each in its own process with DIR first on PYTHONPATH (a directory holding another `featcomp/` package,
with its passes and runtime_ops inside it, as an installed featcomp has them:
`git archive OLD featcomp passes runtime_ops | tar -x -C DIR && mv DIR/passes DIR/runtime_ops DIR/featcomp/`;
empty: this checkout; a DIR whose featcomp, featcomp.passes or featcomp.runtime_ops resolve elsewhere is refused). Every row records its variant, the
featcomp it imported and each site's chosen codec (param_id, coder, group, step); the .md then gets a table of
how many sites chose the same codec in each variant and the b/v each reached.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from budget_validation import MODELS
from rate_table import CALIB, VAL, Feeds, images, ort_quantize_seconds

from featcomp import api, modelio
from featcomp.data import image_files
from featcomp.modelio import prepare
from featcomp.reporting.measure import measure

STAGES = ("calibration", "codec fronts", "sensitivities", "search")  # api.compress's progress loops, in order


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Stages:
    """A `progress` hook that records when each of compress's long loops ends."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def __call__(self, items: Iterable[Any]) -> Iterator[Any]:
        yield from items
        self.ends.append(time.perf_counter())


def phases(t0: float, total: float, ends: list[float]) -> dict[str, float]:
    """Seconds per phase: each loop's end minus the previous one's (the search includes its reference run)."""
    marks = [t0, *ends[:len(STAGES)]]
    out = {name: b - a for name, a, b in zip(STAGES, marks[:-1], marks[1:])}
    out["insert and check"] = t0 + total - marks[-1]
    return out


def run(name: str, shared: Path, limit: int, bytes_inputs: int) -> dict[str, Any]:
    path, preprocess, _ = MODELS[name]
    given = modelio.load_model(shared / path)
    proto = prepare(given)
    calib = images(proto, shared / CALIB, preprocess, image_files(shared / CALIB)[:limit])
    held = images(proto, shared / VAL, preprocess, image_files(shared / VAL)[:bytes_inputs])
    ort_before = ort_quantize_seconds(proto, calib)
    stages = Stages()
    t0 = time.perf_counter()
    result = api.compress(given, shared / CALIB, preprocess=preprocess, limit=limit, progress=stages)
    seconds = time.perf_counter() - t0
    ort_after = ort_quantize_seconds(proto, calib)
    totals = measure(result.model, Feeds(held), name=name).totals
    how = result.allocation.as_dict()
    ort_seconds = 0.5 * (ort_before + ort_after)
    return {"model": name, "calib_inputs": len(calib), "compress_seconds": seconds,
            "phases": phases(t0, seconds, stages.ends), "ort_quantize_seconds": [ort_before, ort_after],
            "ratio": seconds / ort_seconds, "bits_per_value": totals.bits_per_value,
            "ratio_vs_int8": totals.ratio_vs_int8, "bytes_inputs": len(held),
            "output_snr_db": how.get("output_snr_db"), "estimated_drop": how.get("estimated_drop"),
            "sites": len(result.codecs), "load_average": os.getloadavg()[0],
            "featcomp": str(Path(api.__file__).parent), "choices": choices(result.codecs),
            "packages": imported_from()}


def choices(codecs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per site what was chosen: enough to tell two runs' choices apart (param_id covers every parameter)."""
    out = {}
    for name, codec in codecs.items():
        d = codec.describe()
        out[name] = {"param_id": codec.param_id, "coder": d.get("coder"), "group": d.get("group"),
                     "step": d.get("step")}
    return out


def imported_from() -> list[str]:
    """Where this process found featcomp and its two sub-packages (an editable install maps passes/ and
    runtime_ops/ to the checkout, so a DIR without them would mix versions)."""
    import featcomp.passes
    import featcomp.runtime_ops

    return [str(Path(m.__file__ or "").resolve().parent) for m in (featcomp, featcomp.passes, featcomp.runtime_ops)]


def run_variant(variant: str, path: str, name: str, shared: Path, limit: int, bytes_inputs: int) -> dict[str, Any]:
    """run() in a fresh process that imports featcomp from `path` first (empty: this checkout)."""
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(path).resolve()), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, __file__, "--one", name, "--shared", str(shared), "--limits", str(limit),
            "--bytes-inputs", str(bytes_inputs)]
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, check=True, text=True)
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])  # the last line: the row
    row["variant"] = variant
    root = Path(path).resolve() if path else None
    if root is not None and not all(Path(p).is_relative_to(root) for p in row["packages"]):
        raise SystemExit(f"variant {variant}: featcomp came from {row['packages']}, not all from {root}: put passes/ "
                         "and runtime_ops/ inside DIR/featcomp/ (see --help)")
    return row


def same_result(rows: list[dict[str, Any]]) -> str:
    """Per (model, N): sites whose chosen codec is identical (param_id) in each variant vs the first, and b/v."""
    lines = ["| model | N | variant | compress | ratio | same codec as " + (rows[0].get("variant") or "?")
             + " | bits/value | output SNR (dB) |", "|---|---|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["model"], r["calib_inputs"]) for r in rows):
        group = [r for r in rows if (r["model"], r["calib_inputs"]) == key and "choices" in r]
        if len(group) < 2:
            continue
        first = group[0]["choices"]
        for r in group:
            same = sum(1 for site, c in r["choices"].items() if first.get(site, {}).get("param_id") == c["param_id"])
            lines.append(f"| {r['model']} | {r['calib_inputs']} | {r.get('variant', '')} "
                         f"| {r['compress_seconds']:.0f} s | {r['ratio']:.1f}x | {same} of {len(r['choices'])} "
                         f"| {r['bits_per_value']:.4f} | {r['output_snr_db']} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def line(r: dict[str, Any]) -> str:
    p, est = r["phases"], r["estimated_drop"] or {}
    parts = " / ".join(f"{p[k]:.0f}" for k in (*STAGES, "insert and check"))
    model = f"{r['model']} ({r['variant']})" if r.get("variant") else r["model"]
    return (f"| {model} | {r['calib_inputs']} | {r['compress_seconds']:.0f} s | {parts} | "
            f"{np.mean(r['ort_quantize_seconds']):.1f} s | **{r['ratio']:.0f}x** | {r['bits_per_value']:.2f} | "
            f"{r['ratio_vs_int8']:.2f}x | {est.get('points', float('nan')):.2f} ± {est.get('ci95', float('nan')):.2f} "
            f"| {r['load_average']:.1f} |")


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("`featcomp.compress` defaults (dct-cm, label-free --max-drop 1) on the first N images of "
            "imagenet-calib-200, between two ONNX Runtime `quantize_static` runs (QDQ, MinMax) on the same N images; "
            "batch 1, ORT default threads; b/v: real coded bytes, side information included, on the first "
            f"{rows[0]['bytes_inputs'] if rows else 0} images of imagenet-val-100.\n\n"
            "| model | N | compress | calibration / fronts / sensitivities / search / insert (s) | quantize_static "
            "| ratio | bits/value | x int8 | est. drop (calibration) | load avg |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    same = same_result(rows)
    tail = f"\nSame result across variants:\n\n{same}" if same else ""
    return "\n".join([head, *(line(r) for r in rows)]) + "\n" + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--models", default="squeezenet1.1,mobilenet_v2_1.0_224")
    parser.add_argument("--limits", default="64,200", help="calibration images, comma-separated")
    parser.add_argument("--bytes-inputs", type=int, default=8, help="held-out images whose bytes are counted")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--variants", default="", help="NAME=DIR,...: featcomp versions to run in turn (see above)")
    parser.add_argument("--one", metavar="MODEL", help=argparse.SUPPRESS)  # a variant's process: one row as JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args.shared, int(args.limits), args.bytes_inputs)))
        return 0
    variants = [tuple(v.split("=", 1)) for v in args.variants.split(",") if v] if args.variants else []
    if any(len(v) != 2 for v in variants):
        print("--variants takes NAME=DIR,... (DIR may be empty: this checkout)", file=sys.stderr)
        return 1
    missing = [d for _, d in variants if d and not (Path(d) / "featcomp" / "__init__.py").is_file()]
    if missing:
        print(f"--variants: no featcomp package in {', '.join(missing)} (see --help for how to make one)",
              file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for limit in (int(n) for n in args.limits.split(",")):
        for name in args.models.split(","):
            for variant, path in variants or [("", "")]:
                rows.append(run_variant(variant, path, name, args.shared, limit, args.bytes_inputs) if variants
                            else run(name, args.shared, limit, args.bytes_inputs))
                log(line(rows[-1]))
                (args.output / "compress_time.json").write_text(json.dumps(rows, indent=2) + "\n")
                (args.output / "compress_time.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
