"""Benchmark the projector's background faithfulness: its time, and the thread it leaves free.

Prints, with the 1-minute load average beside each figure (the machine may be shared):

1. the plain library call, ``trust.assess(table, projection)`` (faithfulness and the
   trustworthiness over its stated sample), timed in this thread; then the same work as the
   projector runs it, a :class:`~embproj_panel.trust_state.FaithfulnessState` from the
   request (a new layout) to the values applied (target: within 1.5 x the plain call; the
   job runs at a lower thread priority on the projection pool);
2. the caller's thread while that job runs: the median and 95th percentile of a colour
   change (``state.color_by`` between two columns, which rebuilds the colour mapping and the
   plot frame), against the same change with nothing running.

Each run starts from an empty neighbour-index cache, so both timings include building the
original-space index (an Annoy forest above 20,000 rows).

Run::

    PYTHONPATH=. python benchmarks/bench_faithfulness_background.py [--rows 200000] [--dims 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embproj_panel.neighbors import clear_cache  # noqa: E402
from embproj_panel.state import ProjectorState  # noqa: E402
from embproj_panel.table import Table  # noqa: E402
from embproj_panel.trust import assess  # noqa: E402
from embproj_panel.trust_state import FaithfulnessState  # noqa: E402

RATIO_TARGET = 1.5


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def table(n: int, d: int) -> Table:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(40, d))
    labels = rng.integers(0, 40, n)
    X = (centres[labels] + rng.normal(size=(n, d))).astype(np.float32)
    import pandas as pd

    return Table(dataframe=pd.DataFrame({"v": list(X), "a": labels.astype(str),
                                         "b": (labels % 7).astype(str)}))


def colour_changes(state: ProjectorState, until: callable, at_least: int = 15) -> list[float]:
    """Seconds per colour change, until ``until()`` (and at least ``at_least`` of them)."""
    times = []
    while len(times) < at_least or not until():
        began = time.perf_counter()
        state.color_by = "b" if state.color_by == "a" else "a"
        times.append(time.perf_counter() - began)
        time.sleep(0.05)
    return times


def summary(times: list[float]) -> str:
    p95 = sorted(times)[max(0, int(round(0.95 * len(times))) - 1)]
    return f"median {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms " \
           f"({len(times)} changes)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dims", type=int, default=32)
    args = parser.parse_args()
    data = table(args.rows, args.dims)
    state = ProjectorState(table=data, color_by="a")
    state.wait(600)
    projection = state.projection
    print(f"{args.rows:,} rows x {args.dims}, PCA layout, k=10 ({load()})")

    clear_cache()
    began = time.perf_counter()
    result = assess(data, projection, 10)
    plain = time.perf_counter() - began
    print(f"plain assess():            {plain:7.2f} s  mean {result.mean:.3f}, "
          f"trustworthiness over {result.sample:,} rows ({load()})")

    idle = colour_changes(state, lambda: True)
    print(f"colour change, idle:       {summary(idle)} ({load()})")

    clear_cache()
    began = time.perf_counter()
    faith = FaithfulnessState(state)  # asks for the shown layout at once
    job = faith._slot.job
    busy = colour_changes(state, lambda: job.done)
    faith.wait(1200)
    background = time.perf_counter() - began
    assert np.array_equal(faith.assessment.values, result.values)
    print(f"colour change, job running: {summary(busy)} ({load()})")
    ratio = background / plain
    verdict = "ok" if ratio <= RATIO_TARGET else "over target"
    print(f"background (request->applied): {background:7.2f} s = {ratio:.2f} x the plain call "
          f"(target <= {RATIO_TARGET} x: {verdict}; colour changes ran meanwhile) ({load()})")
    faith.close()
    state.close()


if __name__ == "__main__":
    main()
