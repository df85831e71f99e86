"""Load benchmark: ten real Bokeh client sessions against one ``panel serve apps/projector.py``.

One session opens a 70,000-row table with ``method=umap&auto=true`` (the UMAP starts at once,
in the server's background threads) while the other sessions, concurrently, change the colour
column, select rows on the scatter and turn the table's pages, each through the same Bokeh
protocol messages a browser sends (a ``PATCH-DOC`` over the websocket). For each change the
client times how long the server takes to answer (its first ``PATCH-DOC`` back). Then:

- isolation: every session selects a different number of rows and must only ever be shown its
  own count ("Clear selection (N)");
- memory: the server's resident memory after 50 open/close cycles against after the first.

Everything runs over loopback (127.0.0.1) with a bounded number of operations and timeouts::

    python benchmarks/bench_load.py                      # the issue's figures
    python benchmarks/bench_load.py --sessions 4 --ops 5 --cycles 10 --umap-rows 20000  # quick

Prints each figure against its target with the load average; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

TARGET_P95_SECONDS = 0.300
TARGET_MEMORY_GROWTH = 0.10
ANSWER_TIMEOUT = 30.0


def _register_panel_models() -> None:
    """Import every Panel Bokeh model so a client can decode the served document."""
    import panel.models

    for module in pkgutil.iter_modules(panel.models.__path__):
        try:
            importlib.import_module(f"panel.models.{module.name}")
        except Exception:  # noqa: BLE001, S112 - optional models (e.g. a missing extra)
            continue


class Client:
    """One Bokeh client session with its own IO loop thread, timing the server's answers."""

    def __init__(self, url: str, **arguments: str) -> None:
        from bokeh.client import pull_session
        from tornado.ioloop import IOLoop

        self.loop = IOLoop()
        self.session = pull_session(url=url, io_loop=self.loop, arguments=arguments or None)
        self._patch_times: list[float] = []
        self._changed = threading.Condition()
        apply_patch = self.session._handle_patch

        def handle(message: Any) -> None:  # runs on the loop thread
            apply_patch(message)
            with self._changed:
                self._patch_times.append(time.monotonic())
                self._changed.notify_all()

        self.session._handle_patch = handle
        # Read messages until closed; one reader only (a second one would interleave frames).
        self._thread = threading.Thread(
            target=self.session._connection._loop_until, args=(lambda: False,), daemon=True
        )
        self._thread.start()

    def models(self, kind: type) -> list[Any]:
        return [model for model in list(self.session.document.models) if isinstance(model, kind)]

    def quiet(self, seconds: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the server has sent nothing for ``seconds`` (earlier answers are in)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._changed:
                last = self._patch_times[-1] if self._patch_times else 0.0
            if time.monotonic() - last >= seconds:
                return
            time.sleep(0.05)

    def change(self, apply: Callable[[], None]) -> float | None:
        """Apply a change on the loop thread; seconds until the server's first answer."""
        self.quiet()
        with self._changed:
            before = len(self._patch_times)
        start = time.monotonic()
        self.loop.add_callback(apply)
        with self._changed:
            self._changed.wait_for(lambda: len(self._patch_times) > before, ANSWER_TIMEOUT)
            if len(self._patch_times) == before:
                return None
            return self._patch_times[before] - start

    def close(self) -> None:
        self.loop.add_callback(self.session.close)
        self.loop.add_callback(self.loop.stop)
        self._thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def log_table(store: Path, rows: int) -> None:
    """A ``rows`` x 64 table of 20 Gaussian clusters with a label, in the run store."""
    import embproj_panel as ep

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, rows)
    centres = rng.normal(scale=4.0, size=(20, 64)).astype(np.float32)
    vectors = rng.standard_normal((rows, 64), dtype=np.float32) + centres[labels]
    table = ep.Table(columns=[])
    table.add_column("embedding", vectors)
    table.add_column("label", np.array([f"cluster {i:02d}" for i in labels], dtype=object))
    with ep.init(project="load", name="big", dir=store) as run:
        run.log({"blobs": table})


def start_server(store: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, EMBPROJ_DIR=str(store), PYTHONPATH=str(ROOT))
    command = [
        sys.executable, "-m", "panel", "serve", str(ROOT / "apps" / "projector.py"),
        "--port", str(port), "--address", "127.0.0.1",
        "--allow-websocket-origin", f"127.0.0.1:{port}",
        # closed sessions are discarded after a second, so the memory figure sees them go
        "--check-unused-sessions", "1000", "--unused-session-lifetime", "1000",
    ]
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("panel serve did not start listening within 120 s")


def _clear_counts(client: Client) -> set[int]:
    """Every selection count this session's page shows ("Clear selection (N)")."""
    from bokeh.models import Button

    counts = set()
    for button in client.models(Button):
        match = re.search(r"Clear selection \((\d[\d,]*)\)", str(button.label))
        if match:
            counts.add(int(match.group(1).replace(",", "")))
    return counts


def _status(client: Client) -> str:
    """The status line's text in this session's page (the first text that names a method)."""
    for model in client.models(object):
        text = str(getattr(model, "text", "") or getattr(model, "object", "") or "")
        if re.search(r"UMAP|PCA|t-SNE", text) and ("rows" in text or "Computing" in text):
            return re.sub(r"<[^>]+>", "", text)[:160]
    return ""


def interact(client: Client, index: int, ops: int, results: dict[str, list[float]],
             seen: dict[int, set[int]], errors: list[str]) -> None:
    """Change colour, select rows (``index + 5`` of them) and turn table pages, ``ops`` times."""
    from bokeh.models import ColumnDataSource, Select

    try:
        color = next(m for m in client.models(Select) if m.title == "Color by")
        options = [option[0] if isinstance(option, list | tuple) else option
                   for option in color.options]
        sources = [source for source in client.models(ColumnDataSource)
                   if len(source.data.get("x", ())) >= 1000]
        tables = [m for m in client.models(object)
                  if type(m).__name__ == "DataTabulator"]
        wanted = list(range(index * 7, index * 7 + index + 5))  # this session's own count
        for step in range(ops):
            value = options[1 + step % (len(options) - 1)] if step % 2 else options[0]
            answer = client.change(lambda value=value: setattr(color, "value", value))
            results["colour"].append(answer if answer is not None else float("inf"))
            if sources:
                # Select this session's own rows, note what the page shows, then clear them
                # (so the table pages below list every row). Both are timed changes.
                selected = sources[0].selected
                for indices in (wanted, []):
                    answer = client.change(
                        lambda indices=indices, selected=selected: setattr(selected, "indices",
                                                                    list(indices)))
                    results["select"].append(answer if answer is not None else float("inf"))
                    client.quiet()
                    seen.setdefault(index, set()).update(_clear_counts(client))
            if tables:
                table = tables[0]
                page = 2 + step % 3  # never the page shown before: every change is a change
                answer = client.change(lambda page=page, table=table: setattr(table, "page", page))
                results["page"].append(answer if answer is not None else float("inf"))
    except Exception as exc:  # noqa: BLE001 - reported in the summary
        errors.append(f"session {index}: {type(exc).__name__}: {exc}")


def percentile(values: list[float], q: float) -> float:
    finite = sorted(value for value in values if value != float("inf"))
    if not finite:
        return float("nan")
    return float(np.percentile(finite, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--ops", type=int, default=10, help="changes of each kind per session")
    parser.add_argument("--umap-rows", type=int, default=70_000)
    parser.add_argument("--cycles", type=int, default=50)
    args = parser.parse_args(argv)

    _register_panel_models()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="embproj-load-") as tmp:
        store = Path(tmp) / "store"
        log_table(store, args.umap_rows)
        port = free_port()
        server = start_server(store, port)
        base = f"http://127.0.0.1:{port}/projector"
        try:
            print(f"# bench_load: {args.sessions} sessions, {args.ops} changes of each kind, "
                  f"UMAP on {args.umap_rows:,} rows; load average {os.getloadavg()[0]:.1f}")
            # The first session warms the server (imports, numba), as a first visitor would.
            started = time.monotonic()
            warm = Client(base)
            print(f"first page pulled in {time.monotonic() - started:.1f} s")
            warm.close()

            umap = Client(base, project="load", run="big", table="blobs", method="umap",
                          auto="true")
            others = [Client(base) for _ in range(args.sessions - 1)]
            results: dict[str, list[float]] = {"colour": [], "select": [], "page": []}
            seen: dict[int, set[int]] = {}
            errors: list[str] = []
            threads = [
                threading.Thread(target=interact, args=(client, i + 1, args.ops, results,
                                                        seen, errors))
                for i, client in enumerate(others)
            ]
            umap.quiet(seconds=1.0, timeout=5)
            print(f"UMAP session says: {_status(umap)!r}")
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=900)
            elapsed = time.monotonic() - started
            print(f"UMAP session says: {_status(umap)!r}")
            print(f"interactions took {elapsed:.1f} s while the UMAP ran; "
                  f"load average {os.getloadavg()[0]:.1f}")
            for message in errors:
                print("ERROR", message)
                failures += 1
            for kind, values in results.items():
                if not values:
                    continue
                timeouts = sum(1 for value in values if value == float("inf"))
                p50, p95 = percentile(values, 50), percentile(values, 95)
                met = p95 <= TARGET_P95_SECONDS and not timeouts
                failures += not met
                print(f"{kind:7s} n={len(values):3d}  p50 {p50 * 1e3:7.0f} ms  "
                      f"p95 {p95 * 1e3:7.0f} ms  (target p95 <= {TARGET_P95_SECONDS * 1e3:.0f} ms)"
                      f"  {'met' if met else 'NOT met'}"
                      + (f"; {timeouts} unanswered within {ANSWER_TIMEOUT:.0f} s" if timeouts
                         else ""))
            foreign = {i: counts - {i + 5} for i, counts in seen.items() if counts - {i + 5}}
            print("isolation: every session saw only its own selection count"
                  if not foreign and seen else f"isolation: NOT met: {foreign or 'no counts'}")
            failures += bool(foreign) or not seen
            for client in [umap, *others]:
                client.close()

            # Memory: open and close sessions; closed sessions are discarded after ~1 s.
            rss = []
            for cycle in range(args.cycles):
                client = Client(base)
                client.close()
                if cycle == 0:
                    time.sleep(3)
                    rss.append(server_rss(server.pid))
            time.sleep(5)
            rss.append(server_rss(server.pid))
            growth = rss[1] / rss[0] - 1
            met = growth <= TARGET_MEMORY_GROWTH
            failures += not met
            print(f"memory after 1 cycle {rss[0] / 2**20:.0f} MB, after {args.cycles} cycles "
                  f"{rss[1] / 2**20:.0f} MB: {growth:+.1%} (target <= "
                  f"{TARGET_MEMORY_GROWTH:.0%})  {'met' if met else 'NOT met'}")
            print(f"# load average at the end {os.getloadavg()[0]:.1f}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
