"""The one browser harness of the Chromium benchmarks (``bench_hover``, ``bench_images_browser``).

Debian's Chromium with the flags the browser tests use (``tests/_browser_support``: one place
for them), served pages (in-process with :func:`serve_in_process`, or ``panel serve
apps/projector.py`` over a run store with :func:`serve_store`), the load average every figure is
quoted with, data -> screen coordinates of the page's plot, and a meter of the websocket frames
a page sends and receives.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _browser_support import CHROMIUM, CHROMIUM_ARGS, free_port, serve_app  # noqa: E402

__all__ = ["CHROMIUM_ARGS", "RESULTS", "ROOT", "TO_SCREEN_JS", "Frames", "chromium", "load",
           "serve_in_process", "serve_store", "to_screen"]

#: Screenshots and logs of benchmark runs (git-ignored).
RESULTS = ROOT / "benchmarks" / "results"

# Data -> page coordinates through the first plot's own scales.
TO_SCREEN_JS = """
([x, y]) => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const rect = pv.el.getBoundingClientRect();
  return [rect.left + pv.frame.x_scale.compute(x), rect.top + pv.frame.y_scale.compute(y)];
}
"""


def load() -> str:
    """The 1-minute load average, as every benchmark line quotes it."""
    return f"load {os.getloadavg()[0]:.2f}"


def to_screen(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page pixel coordinates of the data point ``(x, y)`` of the page's first plot."""
    sx, sy = page.evaluate(TO_SCREEN_JS, [float(x), float(y)])
    return sx, sy


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (never Playwright's own browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def serve_in_process(apps: dict[str, Any]) -> Iterator[str]:
    """``pn.serve`` of ``apps`` (name -> callable) on a free port in this process; its URL.

    The server's thread shares this process's GIL with Playwright's driver: fine for a
    small page, but a page whose server works hard (a million rows) belongs in
    :func:`serve_store`'s own process.
    """
    import panel as pn

    port = free_port()
    server = pn.serve(apps, port=port, address="127.0.0.1", show=False, threaded=True,
                      websocket_origin=[f"127.0.0.1:{port}"])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def serve_store(store: Path, **env: str) -> Iterator[str]:
    """``panel serve apps/projector.py`` over the run store ``store``, in its own process, as a
    user runs it (the browser tests' :func:`serve_app`); the page's URL."""
    with serve_app(store, **env) as url:
        yield url


class Frames:
    """The websocket frames a page received and sent: ``(time.monotonic(), bytes)`` each."""

    def __init__(self, page: Any) -> None:
        self.received: list[tuple[float, int]] = []
        self.sent: list[tuple[float, int]] = []
        page.on("websocket", self._attach)

    def _attach(self, ws: Any) -> None:
        ws.on("framereceived", lambda payload: self.received.append(
            (time.monotonic(), _size(payload))))
        ws.on("framesent", lambda payload: self.sent.append((time.monotonic(), _size(payload))))

    def mark(self) -> tuple[int, int]:
        """A position to count from (received, sent)."""
        return len(self.received), len(self.sent)

    def since(self, mark: tuple[int, int]) -> tuple[int, int, int]:
        """Bytes received, frames received and frames sent since ``mark``."""
        received = self.received[mark[0]:]
        return sum(size for _, size in received), len(received), len(self.sent) - mark[1]


def _size(payload: Any) -> int:
    if payload is None:
        return 0
    return len(payload.encode()) if isinstance(payload, str) else len(payload)
