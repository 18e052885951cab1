"""Run a model N times in a one-thread ONNX Runtime session: the process featcomp.deploy.traffic
measures under valgrind cachegrind (so its imports stay minimal: onnxruntime, numpy).

    python -m featcomp.runtime_ops.ort_traffic MODEL.onnx INPUT.npy N
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m featcomp.runtime_ops.ort_traffic MODEL.onnx INPUT.npy N", file=sys.stderr)
        return 2
    from featcomp.runtime_ops import ort

    model, x, calls = argv[0], np.load(argv[1], allow_pickle=False), int(argv[2])
    sess = ort.session(model, threads=1)
    feeds = {sess.get_inputs()[0].name: x}
    for _ in range(calls):
        ort.run(sess, feeds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
