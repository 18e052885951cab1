"""What the `featcomp` command and its plug-in subcommands share: progress bars, output checks, tables.

Why its own module: featcomp.cli loads the plug-in subcommands (featcomp.sweep_cli, featcomp.jpeg.cli,
featcomp.deploy.*_cli) by name, so they must not import featcomp.cli back; both import this module,
which sits below them. Its top level imports the standard library only (rich and featcomp.modelio are
imported where they are used), so `featcomp --help` stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

Progress = Callable[[Iterable[Any]], Iterable[Any]]

PLAIN_PROGRESS = True  # plain progress lines when stderr is not a terminal (the in-process test runner turns it off)
PLAIN_STEPS = 10  # a plain line each tenth of a loop with a known length


class Bars:
    """Progress on stderr: rich bars on a terminal, plain lines (stage, count, elapsed) in a pipe or log, so a
    long job is never silent; -q silences both. Each bar stops when its loop ends or fails."""

    def __init__(self, enabled: bool, terminal: bool = True) -> None:
        self.enabled = enabled and (terminal or PLAIN_PROGRESS)
        self.terminal = terminal
        self._live: list[Any] = []

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._live:  # a loop that raised is not finalized yet: stop its bar before the error line
            bar.stop()

    def track(self, stage: str, *later: str, total: int | None = None) -> Progress | None:
        """A progress callable for the api (None when disabled, so the api skips the wrapper).

        Each call of the callable is the next loop of the api function, named `stage`, then each of `later`
        (api.compress runs two: calibration batches, then codec fitting over the sites). The bar's
        total is len(items) when the loop has one, else `total` (the reader's length).
        """
        if not self.enabled:
            return None
        if not self.terminal:
            return _plain_lines(iter((stage, *later)), stage, total)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=True)
        self._live.append(bar)
        names = iter((stage, *later))

        def run(items: Iterable[Any]) -> Iterator[Any]:
            size = size_of(items)
            task = bar.add_task(next(names, stage), total=size if size is not None else total)
            bar.start()
            try:
                for item in items:
                    yield item
                    bar.advance(task)
            finally:
                bar.stop()

        return run


def _plain_lines(names: Iterator[str], default: str, total: int | None) -> Progress:
    """The non-terminal progress callable: 'featcomp: STAGE: DONE/TOTAL, ELAPSED s' lines on stderr."""
    import time

    def say(text: str) -> None:
        print(f"featcomp: {text}", file=sys.stderr, flush=True)

    def run(items: Iterable[Any]) -> Iterator[Any]:
        stage = next(names, default)
        size = size_of(items)
        size = size if size is not None else total
        step = max(1, -(-size // PLAIN_STEPS)) if size else 10
        start, count = time.perf_counter(), 0
        say(f"{stage}: 0/{size if size is not None else '?'}")
        for item in items:
            yield item
            count += 1
            if count % step == 0 and count != size:
                say(f"{stage}: {count}/{size if size is not None else '?'}, {time.perf_counter() - start:.1f} s")
        say(f"{stage}: {count}/{count} done, {time.perf_counter() - start:.1f} s")

    return run


def checked_output(path: str | None) -> Path | None:
    """Fail now, not after calibration, when an output cannot be written."""
    if path is None:
        return None
    from featcomp.modelio import check_writable

    return check_writable(path)


def comma_list(text: str | None) -> list[str] | None:
    """'a,b' -> ['a', 'b'] (None stays None: no filter)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def size_of(items: object) -> int | None:
    """len() when the object has one (readers over files do; generators and ORT-style readers do not)."""
    if not isinstance(items, Sized):
        return None
    try:
        return len(items)
    except TypeError:
        return None


def text_table(headers: list[str], rows: list[list[str]], left: int, footer: Sequence[str] = ()) -> str:
    """A plain rich table (first ``left`` columns left-aligned) plus footer lines, as text."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold")
    for i, name in enumerate(headers):
        table.add_column(name, justify="left" if i < left else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False, color_system=None)
    console.print(table)
    for line in footer:
        console.print(line, highlight=False, soft_wrap=True)
    return buf.getvalue()
