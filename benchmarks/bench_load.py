"""Load benchmark: ten real Bokeh client sessions against one ``panel serve apps/projector.py``.

One session opens a 70,000-row table with ``method=umap&auto=true`` (the UMAP starts at once,
in the server's background threads) while the other sessions, concurrently, change the colour
column, select rows on the scatter and turn the table's pages, each through the same Bokeh
protocol messages a browser sends (a ``PATCH-DOC`` over the websocket). The clients are the
tests' :class:`tests/_server.BokehClient`, which tells the server the page has rendered as
BokehJS does (without it Panel treats the session as never loaded and defers all its changes).
For each change the client times how long the server takes to answer (its first ``PATCH-DOC``
back); the figures count the changes made while the UMAP was running. Then:

- isolation: every session selects a different number of rows and must only ever be shown its
  own count ("Clear selection (N)");
- memory: the server's resident memory after 50 open/close cycles against after the first.

Everything runs over loopback (127.0.0.1), bounded in operations, cycles and seconds::

    python benchmarks/bench_load.py                      # the issue's figures
    python benchmarks/bench_load.py --sessions 4 --ops 5 --cycles 10 --umap-rows 20000  # quick
    python benchmarks/bench_load.py --profile /tmp/prof  # py-spy the server while it runs

Prints each figure against its target with the load average; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "tests"))  # the tests' server and client helpers

from _server import BokehClient, serve_command  # noqa: E402

TARGET_P95_SECONDS = 0.300
TARGET_MEMORY_GROWTH = 0.10
ANSWER_TIMEOUT = 30.0


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


def _clear_counts(client: BokehClient) -> set[int]:
    """Every selection count this session's page shows ("Clear selection (N)")."""
    counts = set()
    for button in client.models("Button"):
        match = re.search(r"Clear selection \((\d[\d,]*)\)", str(button.label))
        if match:
            counts.add(int(match.group(1).replace(",", "")))
    return counts


def _status(client: BokehClient) -> str:
    """The status line's text in this session's page (the first text that names a method)."""
    for model in client.models(object):
        text = str(getattr(model, "text", "") or getattr(model, "object", "") or "")
        if re.search(r"UMAP|PCA|t-SNE", text) and ("rows" in text or "Computing" in text):
            return re.sub(r"<[^>]+>", "", text)[:160]
    return ""


def _computing(client: BokehClient) -> bool:
    """Whether the session's progress bar is shown (a projection is running)."""
    return any(bar.visible for bar in client.models("Progress"))


def interact(client: BokehClient, index: int, ops: int, until: threading.Event,
             results: dict[str, list[tuple[float, float]]], seen: dict[int, set[int]],
             errors: list[str]) -> None:
    """Change colour, select rows (``index + 5`` of them) and turn table pages, ``ops`` times.

    Stops early once ``until`` is set (the UMAP ended or the time budget ran out). Each
    answer is stored as (start time, seconds), an unanswered change as (start, inf).
    """
    from bokeh.models import ColumnDataSource, Select

    def timed(kind: str, function: Any, *args: Any) -> None:
        start = time.monotonic()
        answer = client.timed_change(function, *args, timeout=ANSWER_TIMEOUT)
        results[kind].append((start, answer if answer is not None else float("inf")))

    try:
        color = next(m for m in client.models(Select) if m.title == "Color by")
        options = [option[0] if isinstance(option, list | tuple) else option
                   for option in color.options]
        sources = [source for source in client.models(ColumnDataSource)
                   if len(source.data.get("x", ())) >= 1000]
        tables = client.models("DataTabulator")
        wanted = list(range(index * 7, index * 7 + index + 5))  # this session's own count
        for step in range(ops):
            if until.is_set():
                return
            value = options[1 + step % (len(options) - 1)] if step % 2 else options[0]
            timed("colour", setattr, color, "value", value)
            if sources:
                # Select this session's own rows, note what the page shows, then clear them
                # (so the table pages below list every row). Both are timed changes.
                for indices in (wanted, []):
                    timed("select", setattr, sources[0].selected, "indices", list(indices))
                    client.quiet()
                    seen.setdefault(index, set()).update(_clear_counts(client))
            if tables:
                page = 2 + step % 3  # never the page shown before: every change is a change
                timed("page", setattr, tables[0], "page", page)
    except Exception as exc:  # noqa: BLE001 - reported in the summary
        errors.append(f"session {index}: {type(exc).__name__}: {exc}")


def percentile(values: list[float], q: float) -> float:
    finite = sorted(value for value in values if value != float("inf"))
    if not finite:
        return float("nan")
    return float(np.percentile(finite, q))


def start_profiler(pid: int, out: str, seconds: float) -> subprocess.Popen | None:
    """``py-spy record`` of the server (all threads, GIL holders marked) if py-spy is here."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not installed: no profile")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
         "--threads", "--gil", "--format", "raw", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--ops", type=int, default=10, help="changes of each kind per session")
    parser.add_argument("--umap-rows", type=int, default=70_000)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--budget", type=float, default=300,
                        help="seconds for the interactions (they stop when the UMAP ends)")
    parser.add_argument("--cycle-budget", type=float, default=600,
                        help="seconds for the open/close cycles")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="py-spy the server during the interactions into PREFIX.txt")
    args = parser.parse_args(argv)

    # The clients' own documents (ten in this process) walk their models only when needed,
    # as the server's do: applying the server's patches is the browser's work, and here it
    # would take the GIL from the other clients' readers and delay their answers' times.
    from embproj_panel import _bokeh_models

    _bokeh_models.install()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="embproj-load-") as tmp:
        store = Path(tmp) / "store"
        log_table(store, args.umap_rows)
        started = time.monotonic()
        command = ["panel", "serve", str(ROOT / "apps" / "projector.py"),
                   # closed sessions are discarded after a second, so the memory figure
                   # sees them go
                   "--check-unused-sessions", "1000", "--unused-session-lifetime", "1000"]
        # serve_command waits for the page: the first session warms the server (imports,
        # numba), as a first visitor would.
        with serve_command(command, store) as served:
            base, pid = served.url, served.pid
            print(f"# bench_load: {args.sessions} sessions, {args.ops} changes of each kind, "
                  f"UMAP on {args.umap_rows:,} rows; load average {os.getloadavg()[0]:.1f}")
            print(f"first page answered in {time.monotonic() - started:.1f} s")
            others = [BokehClient(base) for _ in range(args.sessions - 1)]
            umap = BokehClient(base, project="load", run="big", table="blobs",
                               method="umap", auto="true")
            results: dict[str, list[tuple[float, float]]] = {
                "colour": [], "select": [], "page": []}
            seen: dict[int, set[int]] = {}
            errors: list[str] = []
            until = threading.Event()
            threads = [
                threading.Thread(target=interact, args=(client, i + 1, args.ops, until,
                                                        results, seen, errors))
                for i, client in enumerate(others)
            ]
            deadline = time.monotonic() + 120
            while not _computing(umap) and time.monotonic() < deadline:
                time.sleep(0.2)
            print(f"UMAP session says: {_status(umap)!r}")
            profiler = (start_profiler(pid, args.profile + ".txt", args.budget)
                        if args.profile else None)
            started = time.monotonic()
            for thread in threads:
                thread.start()
            umap_end = float("inf")
            deadline = started + args.budget
            while any(thread.is_alive() for thread in threads):
                if umap_end == float("inf") and not _computing(umap):
                    umap_end = time.monotonic()
                    until.set()
                if time.monotonic() > deadline:
                    until.set()
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            if umap_end == float("inf") and not _computing(umap):
                umap_end = time.monotonic()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                profiler.wait(timeout=60)
            print(f"UMAP session says: {_status(umap)!r}")
            print(f"interactions took {elapsed:.1f} s; the UMAP "
                  + (f"ended {umap_end - started:.1f} s in" if umap_end < float("inf")
                     else "was still running")
                  + f"; load average {os.getloadavg()[0]:.1f}")
            for message in errors:
                print("ERROR", message)
                failures += 1
            for kind, answers in results.items():
                values = [seconds for start, seconds in answers if start < umap_end]
                if not values:
                    print(f"{kind:7s} no change made while the UMAP ran  NOT met")
                    failures += 1
                    continue
                timeouts = sum(1 for value in values if value == float("inf"))
                p50, p95 = percentile(values, 50), percentile(values, 95)
                met = p95 <= TARGET_P95_SECONDS and not timeouts
                failures += not met
                print(f"{kind:7s} n={len(values):3d}  p50 {p50 * 1e3:7.0f} ms  "
                      f"p95 {p95 * 1e3:7.0f} ms  (target p95 <= {TARGET_P95_SECONDS * 1e3:.0f} ms)"
                      f"  {'met' if met else 'NOT met'}"
                      + (f"; {timeouts} unanswered within {ANSWER_TIMEOUT:.0f} s" if timeouts
                         else "")
                      + (f"; {len(answers) - len(values)} more after the UMAP"
                         if len(answers) > len(values) else ""))
            foreign = {i: counts - {i + 5} for i, counts in seen.items() if counts - {i + 5}}
            print("isolation: every session saw only its own selection count"
                  if not foreign and seen else f"isolation: NOT met: {foreign or 'no counts'}")
            failures += bool(foreign) or not seen
            for client in [umap, *others]:
                client.close()

            # Memory: open and close sessions; closed sessions are discarded after ~1 s.
            time.sleep(5)
            rss = []
            started = time.monotonic()
            cycles = 0
            for cycle in range(args.cycles):
                if time.monotonic() - started > args.cycle_budget:
                    break
                BokehClient(base).close()
                cycles += 1
                if cycle == 0:
                    time.sleep(3)
                    rss.append(server_rss(pid))
            time.sleep(5)
            rss.append(server_rss(pid))
            growth = rss[1] / rss[0] - 1
            met = growth <= TARGET_MEMORY_GROWTH and cycles == args.cycles
            failures += not met
            print(f"memory after 1 cycle {rss[0] / 2**20:.0f} MB, after {cycles} cycles "
                  f"({time.monotonic() - started:.0f} s) {rss[1] / 2**20:.0f} MB: "
                  f"{growth:+.1%} (target <= {TARGET_MEMORY_GROWTH:.0%} after "
                  f"{args.cycles})  {'met' if met else 'NOT met'}")
            print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
