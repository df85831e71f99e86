"""Benchmark nearest-neighbour search in the original space at 100,000 and 1,000,000 x 128.

For each size and metric it prints: the time to build the Annoy forest (the approximate
index, built once per table and metric), the median latency of one query (k = 10) answered
exactly (chunked BLAS: what the app uses while ``n * d`` <= 2**26, and until the forest
exists) and from the forest (with exact re-ranking), recall@10 of the forest against exact
search, and, on the same data, scikit-learn's ``NearestNeighbors(algorithm="brute")``
fit + one ``kneighbors`` call, the call a user would write by hand. Targets: a query under
100 ms at 1,000,000 rows, recall@10 >= 0.95. The data are bench_reducers' clustered
embeddings (Gaussian clusters in 8-d mapped non-linearly to 128-d plus noise). The last
column is the 1-minute load average (the machine may be shared).

Run::

    PYTHONPATH=. python benchmarks/bench_neighbors.py [--sizes 100000,1000000] [--queries 50]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reducers import clustered  # noqa: E402

from embproj_panel.neighbors import NeighborIndex  # noqa: E402

TARGET_QUERY_S = 0.100
TARGET_RECALL = 0.95


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(n: int, d: int, metric: str, n_queries: int) -> None:
    X = clustered(n, d, n_clusters=50, seed=1)
    rows = np.random.default_rng(2).choice(n, n_queries, replace=False)
    exact = NeighborIndex(X, metric, exact_max_cells=n * d)  # always exhaustive
    approx = NeighborIndex(X, metric, exact_max_cells=0)  # always the forest once built
    build, forest = timed(approx.build)
    exact_times, approx_times, recall = [], [], []
    for row in rows:
        t_exact, want = timed(lambda r=row: exact.query(int(r), 10))
        t_approx, got = timed(lambda r=row: approx.query(int(r), 10))
        exact_times.append(t_exact)
        approx_times.append(t_approx)
        recall.append(len(set(want.rows) & set(got.rows)) / 10)
    from sklearn.neighbors import NearestNeighbors

    sk_times = []
    for row in rows[:5]:
        t, _ = timed(lambda r=row: NearestNeighbors(n_neighbors=11, metric=metric,
                                                    algorithm="brute").fit(X)
                     .kneighbors(X[[int(r)]]))
        sk_times.append(t)
    used = "exact" if n * d <= 1 << 26 else "forest"
    q_exact, q_forest = statistics.median(exact_times), statistics.median(approx_times)
    q_app = q_exact if used == "exact" else q_forest
    mean_recall = float(np.mean(recall))
    sk = statistics.median(sk_times)
    print(f"{n:>9,} {metric:<9} build {build:7.1f} s ({forest.n_trees} trees) | query exact "
          f"{q_exact * 1000:6.1f} ms, forest {q_forest * 1000:6.1f} ms; app uses {used}: "
          f"{q_app * 1000:6.1f} ms {'ok' if q_app < TARGET_QUERY_S else 'MISS'} (target 100) | "
          f"recall@10 {mean_recall:.3f} {'ok' if mean_recall >= TARGET_RECALL else 'MISS'} "
          f"(target 0.95) | sklearn brute {sk * 1000:6.1f} ms ({sk / q_app:.1f}x ours) | "
          f"load {load()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--metrics", default="cosine,euclidean")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    print(f"k = 10, d = {args.dim}, {args.queries} query rows per size; load {load()}")
    for n in (int(s) for s in args.sizes.split(",")):
        for metric in args.metrics.split(","):
            run(n, args.dim, metric, args.queries)


if __name__ == "__main__":
    main()
