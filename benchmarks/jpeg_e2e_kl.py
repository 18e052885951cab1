"""Does the e2e descent lower its own objective with real files? KL from the uncompressed softmax and real bytes.

    .venv/bin/python benchmarks/jpeg_e2e_kl.py [--models NAME,...] [--results benchmarks/results/jpeg/e2e/e2e.json]

For each model in jpeg_e2e.py's results: every e2e rung and every standard quality, coded as real Pillow
files (4:2:0, optimize=True), on the learning photos (first --learn-images calib photos, as the descent
saw them) and on the 100 test photos: mean bytes per image and mean KL(uncompressed softmax || softmax on
the decoded file) from ONNX Runtime. A rung below the standard curve on the learning photos but not on
the test photos is over-fitted; above it on both, the descent (or its proxy) failed. Writes kl.json next
to the results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jpeg_e2e import MODELS, SHARED  # noqa: E402

from featcomp import zoo  # noqa: E402
from featcomp.data import image_files  # noqa: E402
from featcomp.jpeg.encode import load_rgb, model_view  # noqa: E402
from featcomp.jpeg.measure import Classifier, code  # noqa: E402
from featcomp.jpeg.tables import Tables  # noqa: E402
from featcomp.preprocess import Preprocess  # noqa: E402


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results/jpeg/e2e/e2e.json")
    parser.add_argument("--models", default="")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    learn_n = int(results["settings"]["learn_images"])
    geometry = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
    sets = {"learn": [model_view(load_rgb(p), geometry) for p in image_files(SHARED / "data" / "imagenet-calib-200")[:learn_n]],
            "test": [model_view(load_rgb(p), geometry) for p in image_files(SHARED / "data" / "imagenet-val-100")]}
    out: dict[str, object] = {}
    for name in [m for m in (args.models or ",".join(k for k in results if k in MODELS)).split(",") if m]:
        file, spec, _ = MODELS[name]
        model = zoo.efficientnet_lite0() if file is None else onnx.load(str(SHARED / "models" / file))
        clf = Classifier(model, Preprocess.parse(spec), name)
        rows: dict[str, list[dict[str, float]]] = {}
        for kind, key in (("e2e", "e2e_points"), ("standard", "standard")):
            for p in results[name][key]:
                t = Tables(p["luma"], p["chroma"], subsampling="4:2:0")
                row = {"label": p["label"]}
                for set_name, views in sets.items():
                    clean = _softmax(clf.run(clf.inputs(views))[1])
                    coded = code(views, t)
                    logq = np.log(_softmax(clf.run(clf.inputs(coded.decoded))[1]) + 1e-30)
                    kl = float(np.mean(np.sum(clean * (np.log(clean + 1e-30) - logq), axis=1)))
                    row[f"{set_name}_bytes"] = coded.bytes / len(views)
                    row[f"{set_name}_kl"] = kl
                rows.setdefault(kind, []).append(row)
                print(name, kind, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        out[name] = rows
    (args.results.parent / "kl.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
