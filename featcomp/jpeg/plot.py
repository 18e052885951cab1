"""The rate-accuracy plot (PNG): bpp on a log axis vs top-1 (or agreement), one line per curve."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featcomp.errors import FeatcompError

__all__ = ["plot_curves"]


def plot_curves(curves: Mapping[str, Sequence[Any]], path: str | Path, *, title: str = "",
                metric: str = "top1", notes: Sequence[str] = ()) -> Path:
    """Write the PNG; points need .bpp, .label and the ``metric`` attribute (0..1)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FeatcompError("the plot needs matplotlib: pip install 'featcomp[plot]'") from None
    from featcomp.modelio import write_bytes

    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    for key, points in curves.items():
        pts = sorted(points, key=lambda p: p.bpp)
        style = "s-" if key == "standard" else "o-"
        ax.plot([p.bpp for p in pts], [100 * getattr(p, metric) for p in pts], style, label=key, markersize=4)
        if key == "standard":
            for p in pts:
                ax.annotate(p.label.replace("standard ", ""), (p.bpp, 100 * getattr(p, metric)), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (real JPEG file bytes)")
    ax.set_ylabel("top-1 accuracy (%)" if metric == "top1" else "top-1 agreement with the uncompressed model (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    for i, note in enumerate(notes):
        ax.text(0.02, 0.97 - 0.05 * i, note, transform=ax.transAxes, fontsize=8, va="top")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())
