"""What the browser tests share: Debian's Chromium, the offline gate, and :func:`serve_app`
(``panel serve apps/projector.py`` over a given store and environment, through
:func:`_server.serve_command`; ``free_port`` and ``stop`` are ``_server``'s too).

Imported by ``tests/ui`` (``panel serve`` in Chromium) and ``tests/notebook`` (JupyterLab in
Chromium); ``tests/`` is on ``sys.path`` through its conftest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _server import free_port, serve_command, stop

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "activate_tool", "free_port", "mark_folder",
           "offline_gate", "serve_app", "stop"]

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


@contextlib.contextmanager
def serve_app(store: Path, **env: str):
    """``panel serve apps/projector.py`` on a free port over ``store`` (plus ``env``); its URL."""
    with serve_command(["panel", "serve", str(ROOT / "apps" / "projector.py"), "--num-procs",
                        "1"], store, **env) as served:
        yield served.url


def activate_tool(page, icon: str, nth: int = 0) -> None:
    """Make the ``nth`` toolbar's tool ``icon`` active (clicking an active gesture tool would
    switch it off: box select is active when a page opens)."""
    button = page.locator(f".bk-tool-icon-{icon}").nth(nth)
    active = button.evaluate(
        "el => (el.getRootNode().host || el.parentElement).classList.contains('bk-active')")
    if not active:
        button.click()


# Every text node of the page, shadow roots included (Panel renders into shadow DOM, which
# document.body.innerText does not enter), joined: what a failing test says the page showed.
PAGE_TEXT_JS = """
() => {
  const out = [];
  const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        const text = child.textContent.trim();
        if (text) out.push(text);
      } else if (child.nodeName !== 'SCRIPT' && child.nodeName !== 'STYLE') {
        walk(child);
      }
    }
  };
  walk(document.body);
  return out.join(' | ');
}
"""


def page_text(page, limit: int = 2000, sentences: bool = False) -> str:
    """The page's visible texts (shadow DOM included), for a failing test's message.

    ``sentences`` keeps the texts of three words or more (status lines, messages, titles),
    leaving out the option lists (a digits table's 64 column names, twice) that would fill
    ``limit`` before the status line is reached.
    """
    text = page.evaluate(PAGE_TEXT_JS)
    if sentences:
        text = " | ".join(part for part in text.split(" | ") if len(part.split()) >= 3)
    return text[:limit]
