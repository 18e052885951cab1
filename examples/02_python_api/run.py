"""Compress SqueezeNet with a hand-written calibration reader, then run it in a plain ORT session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

import featcomp
from featcomp.preprocess import Preprocess

shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../../../shared")
model = shared / "models/squeezenet1.1.onnx"
pre = Preprocess.parse("resize=256,crop=224,order=bgr,mean=104/117/123,std=1")
images = sorted((shared / "data/imagenet-calib-200/images").glob("*.JPEG"))[:8]


class Reader:  # the CalibrationDataReader protocol: a dict per call, then None
    def __init__(self) -> None:
        self.items = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self.items, None)
        return None if path is None else {"data_0": pre.load(path)[None]}


result = featcomp.compress(model, Reader(), quality=featcomp.OutputSnr(20))
featcomp.save_model(result.model, "squeezenet.fc.onnx")
print(f"{len(result.sites)} sites compressed in {result.seconds['total']:.1f}s")

session = ort.InferenceSession("squeezenet.fc.onnx", providers=["CPUExecutionProvider"])
probs = session.run(None, {"data_0": pre.load(images[0])[None]})[0]
print("top-1 class of", images[0].name, "=", int(probs.reshape(-1).argmax()))
