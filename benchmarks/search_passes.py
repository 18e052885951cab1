"""What one accuracy-search pass costs in ONNX Runtime: real pairs vs their elementwise stand-in, and batching.

    .venv/bin/python benchmarks/search_passes.py COMPRESSED.onnx [--inputs 16] [--rounds 5] [-o FILE.json]

COMPRESSED is a model written by `featcomp compress`; its codecs are inserted again into the original it
records, as real pairs (insert_pairs, what the search ran before) and as the search's stand-in
(passes/simulate.py), and the original alone is run too. Per variant, `--inputs` random inputs in
[-1, 1] are run at batch 1, 2, 4, 8 and 16 (the batch dimension made symbolic, value_info dropped), all
variants interleaved per round; the median of the rounds is printed. Also checks that the stand-in's logits
equal the real pairs' bit for bit, and times session creation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from featcomp import api
from featcomp.allocate import logits_name
from featcomp.modelio import input_spec, load_model
from featcomp.passes.insert import insert_pairs, strip_to_original
from featcomp.passes.simulate import simulate_pairs
from featcomp.runtime_ops import ort

BATCHES = (1, 2, 4, 8, 16)


def symbolic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph inputs and outputs have a symbolic first dimension, without value_info."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]
    for v in [*out.graph.input, *out.graph.output]:
        dim = v.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "N"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    compressed = load_model(args.model)
    codecs = dict(api.site_codecs(compressed))
    original = strip_to_original(compressed).model
    variants = {"original": original, "real pairs": insert_pairs(original, codecs).model,
                "simulated": simulate_pairs(original, codecs)}
    spec = input_spec(original)
    name = spec.name
    x = np.random.default_rng(0).uniform(-1, 1, (args.inputs, *(int(d) for d in spec.shape[1:]))).astype(np.float32)
    logit = logits_name(original)
    created: dict[str, float] = {}
    sessions = {}
    for key, model in variants.items():
        t0 = time.perf_counter()
        sessions[key] = ort.session(ort.with_outputs(symbolic_batch(model), [logit]))
        created[key] = time.perf_counter() - t0
    same = all(np.array_equal(ort.run(sessions["real pairs"], {name: x[i:i + 1]}, [logit])[logit],
                              ort.run(sessions["simulated"], {name: x[i:i + 1]}, [logit])[logit])
               for i in range(min(4, args.inputs)))
    times: dict[str, dict[int, list[float]]] = {k: {b: [] for b in BATCHES} for k in variants}
    for _ in range(args.rounds):
        for key, sess in sessions.items():
            for b in BATCHES:
                t0 = time.perf_counter()
                for i in range(0, args.inputs, b):
                    ort.run(sess, {name: x[i:i + b]}, [logit])
                times[key][b].append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        "model": str(args.model), "sites": len(codecs), "inputs": args.inputs, "rounds": args.rounds,
        "simulated_equals_real": same, "session_seconds": created,
        "seconds": {k: {b: float(np.median(v)) for b, v in per.items()} for k, per in times.items()}}
    print(f"{len(codecs)} sites; simulated logits == real pairs' logits: {same}")
    print("session creation: " + ", ".join(f"{k} {v:.2f} s" for k, v in created.items()))
    print(f"seconds for {args.inputs} inputs (median of {args.rounds}) at batch " + ", ".join(map(str, BATCHES)))
    for key, per in result["seconds"].items():
        print(f"  {key:12s} " + "  ".join(f"{per[b]:.3f}" for b in BATCHES))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
