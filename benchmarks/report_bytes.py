"""The report after `featcomp compress`: real coded bytes on all calibration inputs vs on the first N only.

    .venv/bin/python benchmarks/report_bytes.py MODEL_FC --calib ../shared/data/imagenet-calib-200 --limit 64 \
        --preprocess "resize=256,crop=224,order=rgb,mean=128,std=128" [--bytes-inputs 16] [--rounds 1] [-o FILE.json]

Times `api.report` on the same inputs both ways, alternating (all first, then the subset, per round), and prints
the seconds and the b/v each counts: the subset's b/v is what the CLI now prints after compress.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from featcomp import api


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--calib", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--preprocess", required=True)
    parser.add_argument("--bytes-inputs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for subset in (None, args.bytes_inputs):
            t0 = time.perf_counter()
            rep = api.report(args.model, args.calib, preprocess=args.preprocess, limit=args.limit, bytes_samples=subset)
            rows.append({"bytes_inputs": subset or rep.samples, "inputs": rep.samples,
                         "seconds": time.perf_counter() - t0, "bits_per_value": rep.totals.bits_per_value,
                         "payload_bits_per_value": rep.totals.payload_bits_per_value,
                         "agreement": rep.accuracy["top1_agreement"], "load_average": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    if args.output:
        args.output.write_text(json.dumps({"model": args.model.name, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
