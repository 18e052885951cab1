"""Render a Report as a terminal table, CSV, Markdown or JSON: every number comes from the JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from featcomp.errors import FeatcompError
from featcomp.report import deployed
from featcomp.report.schema import Report, SiteReport

COLUMNS: list[tuple[str, Callable[[SiteReport], str]]] = [
    ("site", lambda s: s.name),
    ("producer", lambda s: s.producer),
    ("shape", lambda s: "x".join(map(str, s.shape))),
    ("mode", lambda s: s.mode + (f"/{s.details.get('group')}" if s.mode == "dct" else "")),
    ("codec", lambda s: s.codec),
    ("int8 B", lambda s: f"{s.int8_bytes}"),
    ("coded B", lambda s: f"{s.coded_bytes_mean:.0f}"),
    ("max B", lambda s: f"{s.coded_bytes_max}"),
    ("side B", lambda s: f"{s.side_bytes}"),
    ("bits/val", lambda s: f"{s.bits_per_value:.2f}"),
    ("payload", lambda s: f"{s.payload_bits_per_value:.2f}"),
    ("entropy", lambda s: f"{s.entropy_bits_per_value:.2f}"),
    ("x int8", lambda s: f"{s.ratio_vs_int8:.2f}"),
    ("x fp32", lambda s: f"{s.ratio_vs_fp32:.2f}"),
    ("zeros", lambda s: f"{s.zero_fraction:.0%}"),
    ("SQNR dB", lambda s: f"{s.sqnr_db:.1f}"),
]
FORMATS = ("table", "json", "csv", "md")


def summary_lines(report: Report) -> list[str]:
    t = report.totals
    mb = 1e6
    lines = [
        f"{report.model}: {t.sites} sites, codec {report.codec}, {report.samples} samples, batch 1",
        f"feature maps: {t.int8_bytes / mb:.3f} MB int8 -> {(t.coded_bytes + t.side_bytes) / mb:.3f} MB coded "
        f"(side info {t.side_bytes / 1e3:.1f} kB included): {t.ratio_vs_int8:.2f}x vs int8, "
        f"{t.ratio_vs_fp32:.2f}x vs fp32, {t.bits_per_value:.2f} bits/value",
        f"payload {t.payload_bits_per_value:.3f} bits/value, order-0 entropy of the symbols "
        f"{t.entropy_bits_per_value:.3f} (coder overhead {t.payload_bits_per_value - t.entropy_bits_per_value:+.3f}), "
        f"side information {8 * t.side_bytes / max(1, t.values):.3f}",
        f"traffic per inference (activations written + read, weights, input): "
        f"{t.total_traffic_int8 / mb:.2f} MB int8 -> {t.total_traffic_compressed / mb:.2f} MB "
        f"({t.traffic_saving_vs_int8:.1%} less)",
    ]
    if t.input_jpeg:
        j = t.input_jpeg
        lines.append(f"input per inference: {j['raw'] / 1e3:.1f} kB raw 8-bit -> {j['standard'] / 1e3:.1f} kB JPEG "
                     f"q{j['quality']} -> {j['learned'] / 1e3:.1f} kB learned JPEG ({j['width']}x{j['height']}, "
                     f"real file bytes, {j['images']} images)")
    if "top1_agreement" in report.accuracy:
        lines.append(f"top-1 agreement with the original model: {report.accuracy['top1_agreement']:.1%} "
                     f"on {report.accuracy.get('samples', report.samples)} inputs")
    for key in ("top1", "top1_reference"):
        if key in report.accuracy:
            lines.append(f"{key}: {report.accuracy[key]:.1%}")
    return lines


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return report.to_json() + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c for c, _ in COLUMNS] + ["consumers"])
        for s in report.sites:
            writer.writerow([f(s) for _, f in COLUMNS] + [" ".join(s.consumers)])
        return buf.getvalue()
    if fmt == "md":
        head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
        rows = ["| " + " | ".join(f(s).replace("|", "\\|") for _, f in COLUMNS) + " |" for s in report.sites]
        text = "\n".join([*(f"- {line}" for line in summary_lines(report)), "", head, rule, *rows]) + "\n"
        return text + (deployed.markdown(report.deployed) if report.deployed is not None else "")
    if fmt == "table":
        return _table(report)
    raise FeatcompError(f"unknown report format '{fmt}'; choose one of: {', '.join(FORMATS)}")


def _table(report: Report) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for name, _ in COLUMNS:
        table.add_column(name, justify="left" if name in ("site", "producer", "shape", "mode") else "right",
                         overflow="fold")
    for s in report.sites:
        table.add_row(*(f(s) for _, f in COLUMNS))
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False, color_system=None)
    console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if report.deployed is not None:
        table = Table(show_lines=False, header_style="bold", title="deployed")
        for i, name in enumerate(deployed.COLUMNS):
            table.add_column(name, justify="left" if i < 4 or i == len(deployed.COLUMNS) - 1 else "right",
                             overflow="fold")
        for row in deployed.rows(report.deployed):
            table.add_row(*row)
        console.print(table)
        for line in deployed.summary_lines(report.deployed):
            console.print(line, highlight=False, soft_wrap=True)
    return buf.getvalue()
