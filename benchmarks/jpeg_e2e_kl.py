"""Does the e2e descent lower its own objective with real files? KL from the uncompressed softmax and real bytes.

    .venv/bin/python benchmarks/jpeg_e2e_kl.py [--models NAME,...] [--results benchmarks/results/jpeg/e2e/e2e.json]
    .venv/bin/python benchmarks/jpeg_e2e_kl.py --descend --models NAME [descent flags of jpeg_e2e.py] --out DIR

For each model in jpeg_e2e.py's results (or, with --descend, for a ladder this script learns itself with
the given descent settings on the first --learn-images calib photos, then without the curves and picks of
jpeg_e2e.py): every e2e rung and every standard quality, coded as real Pillow files (4:2:0,
optimize=True), on the learning photos (as the descent saw them) and on the 100 test photos: mean bytes
per image and mean KL(uncompressed softmax || softmax on the decoded file) from ONNX Runtime. Each rung
is also read against the standard curve: the bytes standard tables need for the rung's KL (log-log
interpolation between qualities) and the rung's saving against them. A rung below the standard curve on
the learning photos but not on the test photos is over-fitted; above it on both, the descent (or its
proxy) failed. Writes kl.json next to the results (--descend: into --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jpeg_e2e import MODELS, SHARED, descent_args, descent_settings  # noqa: E402

from featcomp import zoo  # noqa: E402
from featcomp.data import image_files  # noqa: E402
from featcomp.jpeg.e2e import e2e_ladder  # noqa: E402
from featcomp.jpeg.encode import load_rgb, model_view  # noqa: E402
from featcomp.jpeg.measure import Classifier, code  # noqa: E402
from featcomp.jpeg.tables import Tables, standard  # noqa: E402
from featcomp.preprocess import Preprocess  # noqa: E402

QUALITIES = (30, 40, 50, 60, 70, 75, 80, 85, 90, 93, 95, 97)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _measure(clf: Classifier, sets: dict[str, list[np.ndarray]], clean: dict[str, np.ndarray], t: Tables,
             label: str) -> dict[str, object]:
    row: dict[str, object] = {"label": label, "luma": t.luma.tolist(), "chroma": t.chroma.tolist()}
    for set_name, views in sets.items():
        coded = code(views, t)
        logq = np.log(_softmax(clf.run(clf.inputs(coded.decoded))[1]) + 1e-30)
        p = clean[set_name]
        row[f"{set_name}_bytes"] = coded.bytes / len(views)
        row[f"{set_name}_kl"] = float(np.mean(np.sum(p * (np.log(p + 1e-30) - logq), axis=1)))
    return row


def _standard_bytes_at(kl: float, standard_rows: list[dict[str, object]], set_name: str) -> float | None:
    """Bytes the standard curve needs for this KL: log-log interpolation on its monotone envelope."""
    pts = sorted((float(r[f"{set_name}_bytes"]), float(r[f"{set_name}_kl"])) for r in standard_rows)  # type: ignore[arg-type]
    env: list[tuple[float, float]] = []
    for b, k in pts:  # keep only points that lower the KL reached so far
        if not env or k < env[-1][1]:
            env.append((b, k))
    for (b0, k0), (b1, k1) in zip(env, env[1:]):
        if k1 <= kl <= k0:
            w = (np.log(kl) - np.log(k0)) / (np.log(k1) - np.log(k0))
            return float(np.exp(np.log(b0) + w * (np.log(b1) - np.log(b0))))
    return None


def _compare(rows: dict[str, list[dict[str, object]]], sets: list[str]) -> None:
    for r in rows["e2e"]:
        for set_name in sets:
            need = _standard_bytes_at(float(r[f"{set_name}_kl"]), rows["standard"], set_name)  # type: ignore[arg-type]
            r[f"{set_name}_standard_bytes"] = need
            r[f"{set_name}_saving"] = None if need is None else 1 - float(r[f"{set_name}_bytes"]) / need  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results/jpeg/e2e/e2e.json")
    parser.add_argument("--models", default="")
    parser.add_argument("--descend", action="store_true", help="learn the ladder here with the descent flags")
    parser.add_argument("--out", type=Path, help="with --descend: where kl.json goes")
    parser.add_argument("--qualities", default=",".join(str(q) for q in QUALITIES), help="with --descend")
    descent_args(parser)
    args = parser.parse_args()
    if args.descend and (not args.models or args.out is None):
        parser.error("--descend needs --models and --out")
    results = {} if args.descend else json.loads(args.results.read_text())
    learn_n = args.learn_images if args.descend else int(results["settings"]["learn_images"])
    geometry = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
    sets = {"learn": [model_view(load_rgb(p), geometry) for p in image_files(SHARED / "data" / "imagenet-calib-200")[:learn_n]],
            "test": [model_view(load_rgb(p), geometry) for p in image_files(SHARED / "data" / "imagenet-val-100")]}
    out_dir = args.out if args.descend else args.results.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, object] = {}
    for name in [m for m in (args.models or ",".join(k for k in results if k in MODELS)).split(",") if m]:
        file, spec, _ = MODELS[name]
        model = zoo.efficientnet_lite0() if file is None else onnx.load(str(SHARED / "models" / file))
        clf = Classifier(model, Preprocess.parse(spec), name)
        clean = {k: _softmax(clf.run(clf.inputs(v))[1]) for k, v in sets.items()}
        info: dict[str, object] = {}
        if args.descend:
            settings = descent_settings(args)
            start = time.time()
            ladder, info = e2e_ladder(clf, sets["learn"], "4:2:0", settings)
            info["learn_seconds"] = round(time.time() - start, 1)
            print(name, f"{len(ladder)} rungs in {info['learn_seconds']} s", info["trace"], flush=True)
            e2e_tables = [(f"rung {i}", Tables(r[0], r[1], subsampling="4:2:0")) for i, r in enumerate(ladder[:-1])]
            std_tables = [(f"q{q}", standard(q, "4:2:0")) for q in (int(x) for x in args.qualities.split(","))]
        else:
            e2e_tables = [(p["label"], Tables(p["luma"], p["chroma"], subsampling="4:2:0")) for p in results[name]["e2e_points"]]
            std_tables = [(p["label"], Tables(p["luma"], p["chroma"], subsampling="4:2:0")) for p in results[name]["standard"]]
        rows: dict[str, list[dict[str, object]]] = {}
        for kind, tables in (("standard", std_tables), ("e2e", e2e_tables)):
            for label, t in tables:
                row = _measure(clf, sets, clean, t, label)
                rows.setdefault(kind, []).append(row)
                print(name, kind, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()
                                   if k not in ("luma", "chroma")}, flush=True)
        _compare(rows, list(sets))
        for r in rows["e2e"]:
            print(name, r["label"], " ".join(
                f"{s}: {float(r[f'{s}_bytes']):.0f} B, KL {float(r[f'{s}_kl']):.4f}, "  # type: ignore[arg-type]
                + ("off the standard curve" if r[f"{s}_saving"] is None else
                   f"standard needs {float(r[f'{s}_standard_bytes']):.0f} B: {100 * float(r[f'{s}_saving']):+.1f}%")  # type: ignore[arg-type]
                for s in sets), flush=True)
        out[name] = {**rows, "descent": info} if args.descend else rows
    (out_dir / "kl.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
