"""Benchmark text search: a 1,000,000-row column of 1,000,000 distinct strings.

Prints the first query on the column (which builds its index: factorise + casefold), then the
median of repeated later queries of four kinds (a rare substring, a common one, one that
matches nothing, a regular expression), and two on a 1,000-label column of the same length, against the 300 ms target and against the call a user
would write by hand on the same data, ``Series.str.contains(query, case=False, regex=...)``,
with the 1-minute load average (the machine may be shared).

Run::

    PYTHONPATH=. python benchmarks/bench_search.py [--rows 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embproj_panel.search import TableSearch  # noqa: E402

TARGET_S = 0.300
QUERIES = [("rare substring", "4242", False), ("common substring", "ab", False),
           ("no match", "zzzz", False), ("regex", r"^img_0+42", True)]


def strings(n: int, seed: int = 0) -> list[str]:
    """Distinct file-name-like strings: an id, a word and a random suffix."""
    rng = np.random.default_rng(seed)
    words = np.array(["Alpha", "beta", "GAMMA", "delta", "cabbage", "seven", "kite"])
    picks = words[rng.integers(0, len(words), n)]
    suffix = rng.integers(0, 36**4, n)
    return [f"img_{i:07d}_{w}_{np.base_repr(s, 36).lower()}.png"
            for i, (w, s) in enumerate(zip(picks, suffix))]


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    values = strings(args.rows)
    # A label column too (1,000 distinct values): where testing distinct values once pays.
    labels = np.array(values[:1000], dtype=object)[np.arange(args.rows) % 1000]
    frame = pd.DataFrame({"file": values, "label": labels})
    assert frame["file"].nunique() == args.rows
    search = TableSearch(frame)
    print(f"{args.rows:,} rows, {args.rows:,} distinct strings; load {os.getloadavg()[0]:.2f}")
    start = time.perf_counter()
    search.search(QUERIES[0][1], column="file")
    first = time.perf_counter() - start
    print(f"first query (builds the column's index): {first * 1000:8.0f} ms")
    print(f"{'query':<26}{'matches':>10}{'ours ms':>10}{'target':>8}{'pandas ms':>11}"
          f"{'ratio':>7}{'load':>7}")
    search.search(QUERIES[0][1], column="label")  # its index too, before timing
    runs = [(f"file: {label}", "file", query, regex) for label, query, regex in QUERIES]
    runs += [(f"label: {label}", "label", query, regex) for label, query, regex in QUERIES[:2]]
    for label, column, query, regex in runs:
        ours, found = median_time(lambda c=column, q=query, r=regex: search.search(q, c, regex=r),
                                  args.repeats)
        plain, mask = median_time(lambda c=column, q=query, r=regex: frame[c].str.contains(
            q, case=False, regex=r).to_numpy(), max(1, args.repeats // 2))
        assert np.array_equal(found, np.flatnonzero(mask)), label  # same answer
        verdict = "ok" if ours < TARGET_S else "MISS"
        print(f"{label:<26}{len(found):>10,}{ours * 1000:>10.0f}{verdict:>8}"
              f"{plain * 1000:>11.0f}{plain / ours:>7.1f}{os.getloadavg()[0]:>7.2f}")


if __name__ == "__main__":
    main()
