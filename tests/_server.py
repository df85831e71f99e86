"""Servers and real Bokeh clients for the tests that talk to the app over its websocket.

One place for what those tests share (issue 16: each had its own copy):

- :func:`serve_command`: a server subprocess (``panel serve apps/projector.py``, ``embproj
  serve``) on a free loopback port over a given store, waited for until its page answers,
  stopped afterwards; its output goes to a log file printed at the end;
- :func:`serve_in_process`: ``pn.serve`` of page functions in this process (a test can then
  look at the sessions' own objects), on a free port, stopped afterwards;
- :class:`BokehClient`: a real Bokeh client session (``bokeh.client.pull_session``, the
  websocket a browser opens) reading the server's messages on its own IO loop thread, able to
  send the messages BokehJS sends (property changes, events such as an upload chunk), and
  sending at once what BokehJS sends when the page has rendered (``DocumentReady``); it also
  times the server's answers to a change (``benchmarks/bench_load.py`` uses the same client).

``tests/_browser_support.serve_app`` (the browser tests' server) is :func:`serve_command`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
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


def wait(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _wait_for_page(url: str, process: subprocess.Popen, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            # A generous read timeout: on a busy machine the first page (a session, its PCA
            # and the warm-ups starting beside it) takes longer than a few seconds, and an
            # abandoned request leaves its session building while the next one starts another.
            if requests.get(url, timeout=(5, 120)).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


# How a server subprocess starts: ``python -m <module> ...`` with faulthandler listening on
# SIGUSR1, so that a test that gives up waiting can put every thread's stack in the log
# (:func:`server_report`): a hang in CI then says where it hung.
_BOOT = (
    "import faulthandler, runpy, signal, sys\n"
    "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)

# The running server subprocesses: base URL -> (pid, log file), for server_report.
_RUNNING: dict[str, tuple[int, Path]] = {}


def server_report(url: str, chars: int = 8000) -> str:
    """The log tail of the server subprocess serving ``url``, with its threads' stacks.

    For a failing test's message: sends the server SIGUSR1 (every thread's stack goes to
    its log, see ``_BOOT``) and returns the last ``chars`` characters of the log.
    """
    for base, (pid, log_path) in _RUNNING.items():
        if url.startswith(base):
            try:
                os.kill(pid, signal.SIGUSR1)
                time.sleep(1)
            except OSError:
                pass
            return f"server log ({log_path}), last {chars} characters:\n" + \
                log_path.read_text(errors="replace")[-chars:]
    return f"(no server subprocess serves {url})"


@dataclass
class Served:
    """A running server: its page's ``url`` and, for a subprocess, its ``pid``."""

    url: str
    pid: int


@contextlib.contextmanager
def serve_command(arguments: list[str], store: Path, path: str = "/projector",
                  timeout: float = 300, **env: str) -> Iterator[Served]:
    """Run ``python -m <arguments> --port P --address 127.0.0.1`` over the run ``store``.

    ``arguments`` start with the module (``["panel", "serve", "apps/projector.py"]`` or
    ``["embproj_panel", "serve"]``); the port, the loopback address and that origin are added.
    ``env`` adds environment variables. Yields once ``path`` answers; the server's output is
    printed when it stops (pytest shows it for a failed test).
    """
    port = free_port()
    environment = {**os.environ, "EMBPROJ_DIR": str(store), "PYTHONPATH": str(ROOT), **env}
    store.parent.mkdir(parents=True, exist_ok=True)
    log_path = store.parent / f"server-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, *arguments, "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}{path}"
        _RUNNING[f"http://127.0.0.1:{port}/"] = (process.pid, log_path)
        try:
            _wait_for_page(url, process, timeout)
            yield Served(url, process.pid)
        finally:
            _RUNNING.pop(f"http://127.0.0.1:{port}/", None)
            stop(process, timeout=10)
    print(log_path.read_text()[-3000:])


@contextlib.contextmanager
def serve_in_process(pages: dict[str, Callable[[], Any]], timeout: float = 60,
                     **options: Any) -> Iterator[str]:
    """``pn.serve(pages)`` in this process on a free port; yields its base URL.

    ``options`` go to ``pn.serve`` (e.g. ``unused_session_lifetime_milliseconds``). The
    server is stopped afterwards (the suite's autouse fixture also stops every server).
    """
    import panel as pn

    port = free_port()
    server = pn.serve(pages, port=port, address="127.0.0.1", threaded=True, show=False,
                      websocket_origin=[f"127.0.0.1:{port}"], **options)
    base = f"http://127.0.0.1:{port}"
    try:
        # Listening is enough (a page request would build a session the test did not ask for).
        wait(lambda: _listening(port), timeout, "the server listening")
        yield base
    finally:
        server.stop()
        # Wait for the server's thread to end: a second stop while its shutdown is still
        # running (the suite's autouse fixture stops every server) raises "Thread already
        # stopping", and a test must not leave a server behind for the next one.
        server.join(timeout)


def register_panel_models() -> None:
    """Import every Panel Bokeh model, so a client can decode the served document."""
    import importlib
    import pkgutil

    import panel.models

    for module in pkgutil.iter_modules(panel.models.__path__):
        try:
            importlib.import_module(f"panel.models.{module.name}")
        except Exception:  # noqa: BLE001, S112 - optional models (a missing extra)
            continue


class BokehClient:
    """A real Bokeh client session, reading the server's messages on its own IO loop thread.

    ``arguments`` are the page's URL query arguments. Changes to the client's document
    (``client.call(setattr, model, "value", x)``) are sent to the server as a browser's are.

    Once the document has arrived the client sends Bokeh's ``DocumentReady`` event, as BokehJS
    does when every root has rendered (``Document.notify_idle`` in bokehjs's
    ``document/document.ts``: a ``PATCH-DOC`` carrying a ``bokeh_event`` message). Python
    Bokeh clients never send it, and without it Panel never marks the session connected
    (``pn.state._connected``): its ``onload`` callbacks never run and every change the session
    makes is deferred through the event loop instead of dispatched, so a colour change cost
    the server 2.2 s of CPU in place of 0.5 s, and a test or benchmark of such a session
    measured a page no browser shows.

    Every ``PATCH-DOC`` the server sends is timed (:meth:`quiet`, :meth:`timed_change`).
    """

    def __init__(self, url: str, **arguments: str) -> None:
        from bokeh.client import pull_session
        from bokeh.events import DocumentReady
        from tornado.ioloop import IOLoop

        register_panel_models()
        self.loop = IOLoop()
        self.session = pull_session(url=url, io_loop=self.loop, arguments=arguments or None)
        self._patch_times: list[float] = []
        self._applying = False
        self._patched = threading.Condition()
        apply_patch = self.session._handle_patch

        def handle(message: Any) -> None:  # on the loop thread
            # Timed on arrival: applying it to this Python document is the client's work (a
            # browser's is BokehJS's), not the server's answer time.
            arrived = time.monotonic()
            self._applying = True
            try:
                apply_patch(message)
            finally:
                with self._patched:
                    self._applying = False
                    self._patch_times.append(arrived)
                    self._patched.notify_all()

        self.session._handle_patch = handle
        # One reader only (a second one would interleave frames).
        self._thread = threading.Thread(target=self.session._connection._loop_until,
                                        args=(lambda: False,), daemon=True)
        self._thread.start()
        self.send_event(DocumentReady())

    @property
    def document(self) -> Any:
        return self.session.document

    @property
    def connected(self) -> bool:
        return self.session.connected

    def models(self, kind: type | str = object) -> list[Any]:
        """The document's models of a class (or of a class name)."""
        models = list(self.session.document.models)
        if isinstance(kind, str):
            return [model for model in models if type(model).__name__ == kind]
        return [model for model in models if isinstance(model, kind)]

    def texts(self) -> str:
        """Every text the page's models hold (labels, alerts, panes, options), joined."""
        out = []
        for model in list(self.session.document.models):
            for name in ("text", "label", "title", "value", "options", "object"):
                value = getattr(model, name, None) if name in model.properties() else None
                if value:
                    out.append(str(value))
        return " ".join(out)

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the client's loop thread (where its document lives)."""
        self.loop.add_callback(function, *args)

    def quiet(self, seconds: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the server has sent nothing for ``seconds`` (at most ``timeout``) and
        the document holds what it sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._patched:
                last = self._patch_times[-1] if self._patch_times else 0.0
                applying = self._applying
            if not applying and time.monotonic() - last >= seconds:
                return
            time.sleep(0.05)

    def timed_change(self, function: Callable[..., Any], *args: Any,
                     timeout: float = 30.0) -> float | None:
        """:meth:`call` ``function(*args)`` once the server is quiet; seconds to its answer.

        The answer is the server's first ``PATCH-DOC`` after the change (None if none came
        within ``timeout``).
        """
        self.quiet()
        with self._patched:
            before = len(self._patch_times)
        start = time.monotonic()
        self.call(function, *args)
        with self._patched:
            self._patched.wait_for(lambda: len(self._patch_times) > before, timeout)
            if len(self._patch_times) == before:
                return None
            return self._patch_times[before] - start

    def send_event(self, event: Any) -> None:
        """Send a Bokeh ``ModelEvent`` as BokehJS sends one (a ``bokeh_event`` message)."""
        from bokeh.document.events import MessageSentEvent

        message = MessageSentEvent(self.session.document, "bokeh_event", event)
        self.session._connection._send_patch_document(self.session.id, message)

    def close(self) -> None:
        self.loop.add_callback(self.session.close)
        self.loop.add_callback(self.loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> BokehClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
