"""What the real-client tests share: Debian's Chromium, free ports, subprocesses, the offline gate.

Imported by ``tests/ui`` (``panel serve`` in Chromium) and ``tests/notebook`` (JupyterLab in
Chromium); ``tests/`` is on ``sys.path`` through its conftest.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

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
