"""Per-site rate-distortion fronts of transform-VLC with and without the dead zone (issue 13, req. 3b).

    .venv/bin/python benchmarks/deadzone_fronts.py [MODEL] [--limit 16] [--every 4] [--deadzone 0.3333]
        [--shared ../shared] [-o benchmarks/results/rdo/deadzone_fronts.md]

Calibrates MODEL (a key of budget_validation.MODELS) on the first --limit images of imagenet-calib-200, then
for every --every-th site builds TransformVlc's front three times: plain (deadzone 0), with deadzone D (offsets
D/2 and D added to every group and step: 3x the candidates), and plain with a 3x denser step grid (the same
number of candidates: a control for the gaps between steps), and prints the real bits/value (side information included) each front
of the candidate each front gives for a few SQNR targets (as the allocator picks: the cheapest meeting it),
and how many front points use a dead zone. The front with the dead zone contains the plain candidates, so
its bits are never higher: the columns say by how much they are lower where the allocator picks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget_validation import MODELS, SETS

from featcomp import api, modelio, zoo
from featcomp.codecs.base import Candidate, pick
from featcomp.codecs.tvlc import TransformVlc
from featcomp.modelio import prepare

LEVELS = (12.0, 17.0, 22.0, 27.0)  # site SQNRs (dB) around where --output-snr 17 / --max-drop 1 pick


def bits_at(front: list[Candidate], db: float) -> float:
    """Real bits/value of the candidate the allocator takes for `db` dB (codecs.base.pick: the cheapest
    meeting it; nan above the front)."""
    return pick(front, db).bits_per_value if front[-1].sqnr_db >= db else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="mobilenet_v2_1.0_224", choices=sorted(MODELS))
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--deadzone", type=float, default=0.3333)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)
    path, preprocess, _ = MODELS[args.model]
    proto = prepare(modelio.load_model(args.shared / path) if path else zoo.efficientnet_lite0())
    plain, dz = TransformVlc(), TransformVlc(deadzone=args.deadzone)
    dense = TransformVlc(grid=3 * plain.grid)
    sites = api.inspect(proto)[::args.every]
    stats = api.calibrate(proto, args.shared / SETS["calib"], sites=sites, preprocess=preprocess, limit=args.limit,
                          stats_options=plain.stats_options)
    head = " | ".join(f"b/v at {db:g} dB: plain / 3x steps / dead zone" for db in LEVELS)
    lines = [f"{args.model}, calibration: first {args.limit} of imagenet-calib-200, every {args.every}th site, "
             f"dead zone offsets {{0, {args.deadzone / 2:.3g}, {args.deadzone:.3g}}}", "",
             f"| site | C x H x W | {head} | front points with a dead zone | seconds plain / 3x steps / dead zone |",
             "|---|---|" + "---|" * len(LEVELS) + "---|---|"]
    saved: dict[float, list[float]] = {db: [] for db in LEVELS}
    control: dict[float, list[float]] = {db: [] for db in LEVELS}
    for name, st in stats.items():
        t0 = time.perf_counter()
        a = plain.candidates(st)
        t1 = time.perf_counter()
        d = dense.candidates(st)
        t2 = time.perf_counter()
        b = dz.candidates(st)
        t3 = time.perf_counter()
        cells = []
        for db in LEVELS:
            x, z, y = bits_at(a, db), bits_at(d, db), bits_at(b, db)
            ok = np.isfinite(x) and np.isfinite(y) and np.isfinite(z)
            cells.append(f"{x:.3f} / {z:.3f} / {y:.3f}" if ok else "-")
            if ok:
                saved[db].append(1.0 - y / x)
                control[db].append(1.0 - z / x)
        used = sum(1 for c in b if c.site.deadzone)
        lines.append(f"| {name} | {'x'.join(map(str, st.shape))} | {' | '.join(cells)} | {used}/{len(b)} | "
                     f"{t1 - t0:.1f} / {t2 - t1:.1f} / {t3 - t2:.1f} |")
        print(lines[-1], flush=True)
    lines += ["", "Mean saving vs plain at equal SQNR, dead zone / 3x steps: " + ", ".join(
        f"{db:g} dB {100 * np.mean(v):.1f}% / {100 * np.mean(control[db]):.1f}% ({len(v)} sites)"
        for db, v in saved.items() if v)]
    print(lines[-1])
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
