"""What the real-client tests share: Debian's Chromium, free ports, subprocesses, the offline gate,
and :func:`serve_app` (``panel serve apps/projector.py`` over a given store and environment).

Imported by ``tests/ui`` (``panel serve`` in Chromium) and ``tests/notebook`` (JupyterLab in
Chromium); ``tests/`` is on ``sys.path`` through its conftest.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = "/usr/bin/chromium"
# No background requests of Chromium's own; never Playwright's browser download.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]


def mark_folder(items: list, folder: Path, marker: str) -> None:
    """Add ``marker`` to every collected test whose file is in ``folder``."""
    for item in items:
        if Path(str(item.fspath)).parent == folder:
            item.add_marker(getattr(pytest.mark, marker))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server subprocess, killing it if it does not exit within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def offline_gate(base_url: str) -> tuple[Callable, list[str]]:
    """A Playwright route handler that lets only ``base_url``'s server answer.

    Every other request is refused, as on a machine without internet, and recorded in the
    returned list: ``context.route("**/*", handler)``, then assert the list is empty.
    """
    local = urlsplit(base_url).netloc
    outside: list[str] = []

    def gate(route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == local or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    return gate, outside


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"panel serve exited with {process.returncode}")
        try:
            # A generous read timeout: on a busy machine the first page (a session, its PCA
            # and the warm-ups starting beside it) takes longer than a few seconds, and an
            # abandoned request leaves its session building while the next one starts another.
            if requests.get(url, timeout=(5, 120)).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def serve_app(store: Path, **env: str):
    """``panel serve apps/projector.py`` on a free port over ``store`` (plus ``env``); its URL."""
    port = free_port()
    env = {**os.environ, "EMBPROJ_DIR": str(store), "PYTHONPATH": str(ROOT), **env}
    log = open(tmp_log := store.parent / f"panel-serve-{port}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "apps" / "projector.py"),
         "--port", str(port), "--address", "127.0.0.1",
         "--allow-websocket-origin", f"127.0.0.1:{port}", "--num-procs", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/projector"
    try:
        _wait_for(url, process)
        yield url
    finally:
        stop(process, timeout=10)
        log.close()
        print(Path(tmp_log).read_text()[-3000:])


def activate_tool(page, icon: str, nth: int = 0) -> None:
    """Make the ``nth`` toolbar's tool ``icon`` active (clicking an active gesture tool would
    switch it off: box select is active when a page opens)."""
    button = page.locator(f".bk-tool-icon-{icon}").nth(nth)
    active = button.evaluate(
        "el => (el.getRootNode().host || el.parentElement).classList.contains('bk-active')")
    if not active:
        button.click()
