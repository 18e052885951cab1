"""The report as one self-contained HTML page: the JSON embedded verbatim, drawn by inline JS and SVG.

Why embed rather than pre-render: the page computes nothing the JSON does not hold, so the page and
`report.json` cannot disagree, and a saved JSON renders to the same page later (`featcomp report
report.json --format html`). Everything is inline (CSS, JS, the vendored dagre layout library), so the
file opens from disk with no network.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from html import escape
from importlib.resources import files
from typing import TYPE_CHECKING

from featcomp.reporting.render import COLUMNS
from featcomp.reporting.schema import Report

if TYPE_CHECKING:
    from featcomp.sweep import Sweep

DAGRE = "@dagrejs/dagre 3.1.3"  # page/dagre.min.js, see page/VENDORED.md


def _asset(name: str) -> str:
    package = __name__.rpartition(".")[0]  # the page/ folder beside this module, whatever the package is called
    return (files(package) / "page" / name).read_text(encoding="utf-8")


def _script_data(text: str) -> str:
    """JSON text safe inside <script>: '<' only occurs inside JSON strings, where \\u003c means the same."""
    return text.replace("<", "\\u003c")


def render_html(report: Report, sweep: Sweep | None = None) -> str:
    """The page for `report` (and the rate-accuracy curve of `sweep`, when given)."""
    dagre = "\n".join(line for line in _asset("dagre.min.js").splitlines()
                      if not line.startswith("//# sourceMappingURL="))
    columns = [asdict(c) for c in COLUMNS]
    data = {
        "featcomp-report": report.to_json(),
        "featcomp-columns": json.dumps(columns),
        "featcomp-sweep": sweep.to_json() if sweep is not None else "null",
    }
    blocks = "\n".join(f'<script type="application/json" id="{key}">{_script_data(text)}</script>'
                       for key, text in data.items())
    parts = {
        "title": escape(f"{report.model} · featcomp report"),
        "css": _asset("report.css"),
        "data": blocks,
        "dagre": f"/* {DAGRE}, MIT licence (see featcomp/reporting/page/dagre.LICENSE) */\n{dagre}",
        "js": _asset("report.js"),
    }
    # one pass, so a placeholder-like string inside the report (a site name) is never substituted
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("template.html"))
