"""End-to-end ONNX Runtime latency, original vs compressed, measured side by side in one run.

    .venv/bin/python benchmarks/ort_latency.py [--threads 2]

The pairs run in ORT as standard-op function bodies (about a dozen full-tensor passes per site), so
this is the cost of *simulating* the codec in ORT, not of a deployed kernel (that is the TVM path).
Batch 1, one real val image, median of 30 runs after 5 warm-ups, interleaved.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from featcomp.runtime_ops import ort

from featcomp import api, modelio, zoo
from featcomp.data import ImageReader, image_files
from featcomp.preprocess import Preprocess
from featcomp.quality import OutputSnr

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = {
    "squeezenet1.1": ("models/squeezenet1.1.onnx", "resize=256,crop=224,order=bgr,mean=104/117/123,std=1"),
    "mobilenet_v2_1.0_224": ("models/mobilenet_v2_1.0_224.onnx", "resize=256,crop=224,order=rgb,mean=128,std=128"),
    "efficientnet-lite0": (None, zoo.DEFAULT_PREPROCESS),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| model | original ms | compressed ms | ratio |\n|---|---|---|---|")
    for name, (path, pre) in MODELS.items():
        model = modelio.prepare(modelio.load_model(SHARED / path) if path else zoo.efficientnet_lite0())
        result = api.compress(model, SHARED / "data/imagenet-calib-200", preprocess=pre, limit=16, quality=OutputSnr(20))
        reader = ImageReader(image_files(SHARED / "data/imagenet-val-100"), Preprocess.parse(pre),
                             modelio.input_spec(model), 1)
        feed = reader.get_next()
        assert feed is not None
        sessions = [ort.session(model, args.threads), ort.session(result.model, args.threads)]
        times: list[list[float]] = [[], []]
        for i in range(35):
            for k, sess in enumerate(sessions):
                t = time.perf_counter()
                sess.run(None, feed)
                if i >= 5:
                    times[k].append(time.perf_counter() - t)
        a, b = (1e3 * float(np.median(t)) for t in times)
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
