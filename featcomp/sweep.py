"""Bits/value vs top-1 curves of the codecs on one model: what `featcomp sweep` runs.

Per codec, the expensive work is done once: calibration statistics, every site's candidate front and
its measured sensitivity. Each point of the curve is then one allocation (a logit SNR target, see
featcomp.allocate), measured for real: coded bytes from the bitstream coder's exact size accounting
(side information included) on the evaluation images, and top-1 against their labels, next to the
uncompressed model on the same images.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from featcomp import allocate as allocation
from featcomp import api
from featcomp.codecs import make_codec
from featcomp.data import collect, open_inputs
from featcomp.errors import FeatcompError
from featcomp.modelio import input_spec, load_model, prepare
from featcomp.passes.insert import insert_pairs
from featcomp.passes.sites import find_sites
from featcomp.preprocess import Preprocess

SCHEMA = "featcomp.sweep/1"
DEFAULT_SNRS = (10.0, 13.0, 16.0, 19.0, 22.0, 26.0, 30.0)
Progress = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass
class Point:
    codec: str
    output_snr_db: float
    bits_per_value: float          # real coded bytes + side information, per value, per inference
    payload_bits_per_value: float  # without side information
    entropy_bits_per_value: float  # order-0 entropy of each channel's symbols (the static-code limit)
    side_bits_per_value: float
    ratio_vs_int8: float
    top1: float
    top1_reference: float
    agreement: float
    modes: dict[str, int] = field(default_factory=dict)


@dataclass
class Sweep:
    model: str
    images: int
    calibration: int
    points: list[Point]
    seconds: dict[str, float]
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Sweep:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FeatcompError(f"curve is not JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else None
            raise FeatcompError(f"curve schema is {found!r}; this featcomp reads {SCHEMA!r} ('featcomp sweep' writes it)")
        try:
            data["points"] = [Point(**p) for p in data["points"]]
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise FeatcompError(f"curve does not match schema {SCHEMA}: {exc}") from None


def sweep(model: api.ModelLike, calib: api.DataLike, images: str | os.PathLike[str], labels: str | os.PathLike[str], *,
          preprocess: Preprocess | str, codecs: Sequence[str] = ("dct-cm", "transform-vlc"),
          snrs: Sequence[float] = DEFAULT_SNRS, label_offset: int = 0, limit: int | None = None,
          calib_limit: int | None = None, name: str | None = None, progress: Progress | None = None,
          transform: str | None = None) -> Sweep:
    """Bits/value vs top-1 of every codec at each logit SNR target (an OutputSnr allocation per point).
    `transform` is transform-vlc's (featcomp.codecs.tvlc: pca, dct or none; default pca)."""
    proto = prepare(load_model(model) if isinstance(model, (str, os.PathLike)) else model)
    label = name or (Path(model).name if isinstance(model, (str, os.PathLike)) else proto.graph.name or "model")
    sites = find_sites(proto)
    spec = Preprocess.parse(preprocess) if isinstance(preprocess, str) else preprocess
    feeds = collect(open_inputs(calib, input_spec(proto), spec, calib_limit, role="calibration"), input_spec(proto))
    probe_feeds = feeds[:api.SENSITIVITY_BATCHES]
    power = allocation.output_power(proto, probe_feeds)
    points: list[Point] = []
    seconds: dict[str, float] = {}
    for codec in codecs:
        t0 = time.perf_counter()
        family = make_codec(codec, **({"transform": transform} if transform and codec == "transform-vlc" else {}))
        stats = api.calibrate(proto, feeds, sites=sites, stats_options=family.stats_options)
        fronts = {s.name: family.candidates(stats[s.name]) for s in sites}
        gains = allocation.sensitivities(proto, sites, probe_feeds, fronts)
        seconds[f"{codec}_fit"] = time.perf_counter() - t0
        for snr in (progress(snrs) if progress else snrs):
            chosen = allocation.allocate(fronts, gains, stats, power, float(snr))
            compressed = insert_pairs(proto, chosen).model
            rep = api.report(compressed, images, preprocess=preprocess, limit=limit)
            ev = api.evaluate(compressed, images, labels, preprocess=preprocess, reference=proto,
                              label_offset=label_offset, limit=limit)
            t = rep.totals
            modes: dict[str, int] = {}
            for s in rep.sites:
                modes[s.mode] = modes.get(s.mode, 0) + 1
            points.append(Point(
                codec=codec, output_snr_db=float(snr), bits_per_value=t.bits_per_value,
                payload_bits_per_value=t.payload_bits_per_value, entropy_bits_per_value=t.entropy_bits_per_value,
                side_bits_per_value=8.0 * t.side_bytes / max(1, t.values), ratio_vs_int8=t.ratio_vs_int8,
                top1=ev.top1, top1_reference=ev.reference_top1 or 0.0, agreement=ev.agreement or 0.0, modes=modes))
        seconds[codec] = time.perf_counter() - t0
    if not points:
        raise FeatcompError("nothing to sweep: give at least one codec and one SNR")
    return Sweep(model=label, images=ev.images, calibration=len(feeds), points=points, seconds=seconds)


def plot(result: Sweep, path: str | os.PathLike[str]) -> None:
    """bits/value vs top-1, one line per codec, the uncompressed model as a horizontal line (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FeatcompError("--plot needs matplotlib: pip install 'featcomp[plot]'") from None
    from featcomp.modelio import write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    ref = result.points[0].top1_reference
    for ax, key, label in ((axes[0], "top1", "top-1 (%)"), (axes[1], "agreement", "top-1 agreement with uncompressed (%)")):
        for codec in dict.fromkeys(p.codec for p in result.points):
            pts = sorted((p for p in result.points if p.codec == codec), key=lambda p: p.bits_per_value)
            ax.plot([p.bits_per_value for p in pts], [100 * getattr(p, key) for p in pts], marker="o",
                    label=f"{codec} (real bits)")
        if key == "top1":
            ax.axhline(100 * ref, color="grey", linestyle="--", label=f"uncompressed ({100 * ref:.1f}%)")
        ax.set_xlabel("bits per value (real coded bytes + side information)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{result.model}: {result.images} labelled images, batch 1")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(Path(path), buf.getvalue())
