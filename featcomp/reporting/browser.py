"""Load a report page in headless Chromium: console errors, values read from the DOM, a PNG screenshot.

Why this and not a browser-automation package: Chromium speaks its DevTools protocol over a pair of
pipes (--remote-debugging-pipe: it reads commands on fd 3 and writes replies on fd 4, each message
NUL-terminated JSON), so the standard library is the whole client: no port, no websocket package, no
driver binary, nothing to pin but the browser (Debian's `chromium`). Used by the browser tests and by
`python -m featcomp.reporting.browser PAGE.html SHOT.png` (the screenshot in docs/).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from featcomp.errors import FeatcompError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser executable: $CHROMIUM, else the first of CANDIDATES on PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One headless Chromium with one tab, driven over the DevTools pipe; a context manager."""

    def __init__(self, executable: str | None = None, width: int = 1400, height: int = 1000,
                 timeout: float = 60.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise FeatcompError("no Chromium found: install the 'chromium' package or set CHROMIUM")
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._profile = tempfile.TemporaryDirectory(prefix="featcomp-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes replies
            a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--no-default-browser-check", "--hide-scrollbars", "--mute-audio", "--disable-extensions",
                "--disable-dev-shm-usage",
                f"--user-data-dir={self._profile.name}", "about:blank"]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=wire)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        try:
            target = self.send("Target.createTarget", url="about:blank", browser=True)["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target, flatten=True,
                                      browser=True)["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                self.send(f"{domain}.enable")
            self.resize(width, height)
        except BaseException:  # a browser that did not come up is not left running
            self.close()
            raise

    # ------------------------------------------------------------------ protocol

    def send(self, method: str, browser: bool = False, **params: Any) -> dict[str, Any]:
        """One command; events that arrive meanwhile are kept in self.events."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None and not browser:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout:.0f}s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self._proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def wait_for(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            if "method" in event:
                self.events.append(event)

    # ------------------------------------------------------------------ page

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def open(self, path: str | os.PathLike[str]) -> None:
        """Load a file and wait for its load event (the report draws itself synchronously before it)."""
        self.send("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"page raised: {text} (evaluating {expression[:80]})")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and browser-logged errors, as text."""
        self.evaluate("0")  # flush: events sent before this reply are now in self.events
        errors = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors

    def screenshot(self, path: str | os.PathLike[str], full_page: bool = False) -> Path:
        """PNG of the viewport, or of the whole page; written atomically."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])
        from featcomp.modelio import write_bytes

        return write_bytes(path, data)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                self.send("Browser.close", browser=True)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Page:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """python -m featcomp.reporting.browser PAGE.html SHOT.png [WIDTHxHEIGHT]: check the page, save a screenshot."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    width, height = (int(v) for v in (args[2] if len(args) == 3 else "1400x1000").split("x"))
    with Page(width=width, height=height) as page:
        page.open(args[0])
        errors = page.console_errors()
        if errors or page.evaluate("document.body.dataset.rendered") != "ok":
            print(f"{args[0]}: the page did not render cleanly: {errors}", file=sys.stderr)
            return 1
        page.screenshot(args[1])
    print(f"{args[1]}: {Path(args[1]).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
