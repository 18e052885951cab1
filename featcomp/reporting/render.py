"""Render a Report as a terminal table, CSV, Markdown or JSON: every number comes from the JSON."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featcomp.errors import FeatcompError
from featcomp.reporting import deployed
from featcomp.reporting.schema import Report, SiteReport

if TYPE_CHECKING:
    from featcomp.sweep import Sweep



@dataclass(frozen=True)
class Column:
    """One table column, declared rather than coded so the HTML page formats its cells the same way.

    `key` is a SiteReport field; `style` says how to print it (see cell(); html/report.js has the same
    styles); `narrow` columns are the ones a person reads first (the default terminal table).
    """

    name: str
    key: str
    style: str
    narrow: bool = False


COLUMNS: list[Column] = [
    Column("site", "name", "text", narrow=True),
    Column("producer", "producer", "text"),
    Column("shape", "shape", "shape", narrow=True),
    Column("mode", "mode", "mode", narrow=True),
    Column("codec", "codec", "text"),
    Column("int8 B", "int8_bytes", "int", narrow=True),
    Column("coded B", "coded_bytes_mean", "f0", narrow=True),
    Column("max B", "coded_bytes_max", "int"),
    Column("side B", "side_bytes", "int"),
    Column("bits/val", "bits_per_value", "f2", narrow=True),
    Column("payload", "payload_bits_per_value", "f2"),
    Column("entropy", "entropy_bits_per_value", "f2"),
    Column("coder", "coder", "text"),
    Column("x int8", "ratio_vs_int8", "f2", narrow=True),
    Column("x fp32", "ratio_vs_fp32", "f2"),
    Column("zeros", "zero_fraction", "pct"),
    Column("SQNR dB", "sqnr_db", "f1", narrow=True),
]
WIDTH = 100  # terminal columns the default table and the summary lines fit in
NARROW = [c for c in COLUMNS if c.narrow]
LEFT = frozenset({"text", "shape", "mode"})  # styles printed left-aligned


def cell(site: SiteReport, column: Column) -> str:
    """The text of one table cell (the HTML page's report.js mirrors these styles)."""
    value = getattr(site, column.key)
    if column.style == "shape":
        return "x".join(map(str, value))
    if column.style == "mode":
        return value + (f"/{site.details.get('group')}" if value == "dct" else "")
    if column.style == "int":
        return f"{value}"
    if column.style == "pct":
        return f"{value:.0%}"
    if column.style in ("f0", "f1", "f2"):
        return f"{value:.{column.style[1]}f}"
    return str(value)


FORMATS = ("table", "json", "csv", "md", "html")


def summary_lines(report: Report) -> list[str]:
    t = report.totals
    mb = 1e6
    lines = [
        f"{report.model}: {t.sites} sites, codec {report.codec}, {report.samples} samples, batch 1"
        + (f" (coded bytes counted on the first {report.bytes_samples})" if report.bytes_samples else ""),
        f"feature maps: {t.int8_bytes / mb:.3f} MB int8 -> {(t.coded_bytes + t.side_bytes) / mb:.3f} MB coded: "
        f"{t.ratio_vs_int8:.2f}x vs int8, {t.ratio_vs_fp32:.2f}x vs fp32, {t.bits_per_value:.2f} bits/value",
        f"bits/value: payload {t.payload_bits_per_value:.3f}, order-0 entropy {t.entropy_bits_per_value:.3f} "
        f"(coder overhead {t.payload_bits_per_value - t.entropy_bits_per_value:+.3f}), "
        f"side info {8 * t.side_bytes / max(1, t.values):.3f} ({t.side_bytes / 1e3:.1f} kB)",
        f"traffic per inference (written + read, weights, input): {t.total_traffic_int8 / mb:.2f} MB int8 -> "
        f"{t.total_traffic_compressed / mb:.2f} MB ({t.traffic_saving_vs_int8:.1%} less)",
    ]
    if t.input_jpeg:
        j = t.input_jpeg
        lines.append(f"input: {j['raw'] / 1e3:.1f} kB raw 8-bit -> {j['standard'] / 1e3:.1f} kB JPEG q{j['quality']} "
                     f"-> {j['learned'] / 1e3:.1f} kB learned JPEG ({j['width']}x{j['height']}, file bytes, "
                     f"{j['images']} images)")
    if "top1_agreement" in report.accuracy:
        lines.append(f"top-1 agreement with the original model: {report.accuracy['top1_agreement']:.1%} "
                     f"on {report.accuracy.get('samples', report.samples)} inputs")
    for key in ("top1", "top1_reference"):
        if key in report.accuracy:
            lines.append(f"{key}: {report.accuracy[key]:.1%}")
    return lines


def render(report: Report, fmt: str, *, wide: bool = False, sweep: Sweep | None = None) -> str:
    """The report in one of FORMATS; `wide` is for the terminal table (all columns), `sweep` for html."""
    if fmt == "html":
        from featcomp.reporting.html import render_html

        return render_html(report, sweep=sweep)
    if fmt == "json":
        return report.to_json() + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c.name for c in COLUMNS] + ["consumers"])
        for s in report.sites:
            writer.writerow([cell(s, c) for c in COLUMNS] + [" ".join(s.consumers)])
        return buf.getvalue()
    if fmt == "md":
        head = "| " + " | ".join(c.name for c in COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
        rows = ["| " + " | ".join(cell(s, c).replace("|", "\\|") for c in COLUMNS) + " |" for s in report.sites]
        text = "\n".join([*(f"- {line}" for line in summary_lines(report)), "", head, rule, *rows]) + "\n"
        return text + (deployed.markdown(report.deployed) if report.deployed is not None else "")
    if fmt == "table":
        return _table(report, COLUMNS if wide else NARROW)
    raise FeatcompError(f"unknown report format '{fmt}'; choose one of: {', '.join(FORMATS)}")


def _table(report: Report, columns: list[Column]) -> str:
    """A rich table; the narrow one (the default) fits a 100-column terminal, summary lines included."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in columns:
        table.add_column(c.name, justify="left" if c.style in LEFT else "right", overflow="fold")
    for s in report.sites:
        table.add_row(*(cell(s, c) for c in columns))
    buf = io.StringIO()
    console = Console(file=buf, width=200 if columns is COLUMNS else WIDTH, force_terminal=False, color_system=None)
    console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if report.deployed is not None:
        table = Table(show_lines=False, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, title="deployed")
        for i, name in enumerate(deployed.COLUMNS):
            table.add_column(name, justify="left" if i < 4 or i == len(deployed.COLUMNS) - 1 else "right",
                             overflow="fold")
        for row in deployed.rows(report.deployed):
            table.add_row(*row)
        console.print(table)
        for line in deployed.summary_lines(report.deployed):
            console.print(line, highlight=False, soft_wrap=True)
    return buf.getvalue()
