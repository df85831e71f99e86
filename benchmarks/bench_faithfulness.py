"""Benchmark per-point faithfulness (k = 10, euclidean) up to 1,000,000 x 128.

Prints, with the 1-minute load average beside each figure (the machine may be shared):

1. at ``--index-rows`` rows (default: ``--rows``), end to end, each step's time and its
   peak resident memory above the step's start (and what it leaves held), as a multiple
   of the table: the neighbour index (the Annoy forest build, then the all-rows kNN graph
   from it, with the graph's recall@10 against exact search on 200 rows and its time a
   row against Annoy's own ``get_nns_by_item`` on 20,000 rows, the plain library call),
   then ``ep.faithfulness(X, projection)`` once that index exists (target: 60 s at
   1,000,000 rows), then ``assess`` (faithfulness plus trustworthiness over its stated
   sample), then what the neighbour-index cache still holds;
2. at ``--rows`` rows, each step ``ep.faithfulness`` takes once the index exists, timed on
   its own: reading the original matrix back, the content digest that finds the cached
   index, the exact 2-D graph, the intersection; and the same 2-D graph by scikit-learn's
   ``NearestNeighbors`` (the plain library call). ``sklearn.manifold.trustworthiness`` needs
   n x n memory, so its time is printed on a 5,000-row sample.

The data are bench_reducers' clustered embeddings; the layout is their projection on the
two leading principal axes of a 20,000-row sample (a PCA layout, cheap at any size).

Run::

    PYTHONPATH=. python benchmarks/bench_faithfulness.py [--rows 1000000] [--index-rows N]

``--index-rows 0`` skips the end-to-end part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_app import rss_bytes  # noqa: E402
from bench_neighbors import load, timed  # noqa: E402
from bench_reducers import clustered  # noqa: E402

import embproj_panel as ep  # noqa: E402
from embproj_panel.neighbors import matrix_digest, original_matrix, projection_index  # noqa: E402
from embproj_panel.trust import assess, knn_2d, preservation  # noqa: E402

TARGET_S = 60.0
K = 10


def layout(X: np.ndarray) -> SimpleNamespace:
    """A Projection-like PCA layout of every row (the axes fitted on a sample)."""
    sample = X[np.random.default_rng(5).choice(len(X), min(len(X), 20_000), replace=False)]
    mean = sample.mean(axis=0)
    axes = np.linalg.svd(sample - mean, full_matrices=False)[2][:2]
    coords = ((X - mean) @ axes.T).astype(np.float32)
    return SimpleNamespace(coords=coords, rows=np.arange(len(X)), excluded=[],
                           columns=[f"x[{j}]" for j in range(X.shape[1])])


class Memory:
    """The process's resident memory (``/proc/self/status``), its peak sampled every 20 ms."""

    def __init__(self) -> None:
        import threading

        self.peak = self.now()
        threading.Thread(target=self._poll, daemon=True).start()

    now = staticmethod(rss_bytes)

    def _poll(self) -> None:
        import time

        while True:
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def measure(self, fn):
        """``(seconds, result, peak bytes above the start, bytes still held after)``."""
        import time

        start = self.peak = self.now()
        t, out = timed(fn)
        time.sleep(0.05)
        return t, out, self.peak - start, self.now() - start


def annoy_own_query(forest, rows: np.ndarray) -> float:
    """Seconds Annoy's own ``get_nns_by_item`` takes for ``rows``, one thread, as the graph
    asks it (k + 1 items, search_k = n_trees * (k + 1), no distances)."""
    search_k = forest.n_trees * (K + 1)
    query = forest.index.get_nns_by_item
    t, _ = timed(lambda: [query(int(i), K + 1, search_k) for i in rows])
    return t


def end_to_end(n: int, d: int) -> None:
    from embproj_panel.neighbors import clear_cache

    memory = Memory()
    X = clustered(n, d, n_clusters=50, seed=1)
    projection = layout(X)
    table = X.nbytes

    def x(nbytes: float) -> str:
        return f"{nbytes / 2**20:6.0f} MB ({nbytes / table:.1f}x the table)"

    clear_cache()
    base = memory.now()
    print(f"-- end to end at {n:,} x {d}, k = {K}, euclidean; the table {x(table)}; "
          f"load {load()}", flush=True)
    index = projection_index(X, projection, "euclidean")  # the one ep.faithfulness uses
    t, forest, peak, held = memory.measure(index.build)
    print(f"index: forest build {t:7.1f} s ({forest.n_trees} trees); peak +{x(peak)}, "
          f"held +{x(held)}; load {load()}", flush=True)
    # The plain library call: Annoy's own query of indexed rows, one thread, on a sample.
    sample = np.random.default_rng(3).choice(n, min(n, 20_000), replace=False)
    raw_us = annoy_own_query(forest, sample) / len(sample) * 1e6
    del forest  # the index decides what it keeps
    t, graph, peak, held = memory.measure(lambda: index.graph(K))
    check = sample[:200]
    recall = np.mean([len(set(graph[r]) & set(index._exact(np.array([r]), K)[0][0])) / K
                      for r in check])
    ours_us = t / n * 1e6
    print(f"index: all-rows kNN graph {t:7.1f} s ({ours_us:.0f} us a row; Annoy's own "
          f"get_nns_by_item, one thread, {raw_us:.0f} us a row on {len(sample):,} rows: "
          f"{ours_us / raw_us:.2f}x it; recall@10 {recall:.3f} on 200 rows); peak +{x(peak)}, "
          f"held +{x(held)}; load {load()}", flush=True)
    t, values, peak, held = memory.measure(lambda: ep.faithfulness(X, projection, k=K))
    verdict = "ok" if t < TARGET_S else "MISS"
    print(f"ep.faithfulness once the index exists: {t:7.1f} s {verdict} (target {TARGET_S:.0f} s "
          f"at 1,000,000); peak +{x(peak)}; mean {values.mean():.3f}; load {load()}",
          flush=True)
    t, report, peak, held = memory.measure(lambda: assess(X, projection, k=K))
    print(f"assess (faithfulness + trustworthiness): {t:7.1f} s; peak +{x(peak)}; "
          f"{report.summary()} load {load()}", flush=True)
    del graph, values, report
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the system, then measure
    print(f"held by the neighbour-index cache after the job: +{x(memory.now() - base)} "
          f"(the matrix copy, its norms and the kNN graph; forest kept: "
          f"{index._forest is not None}); load {load()}", flush=True)
    clear_cache()


def steps(n: int, d: int) -> None:
    X = clustered(n, d, n_clusters=50, seed=1)
    projection = layout(X)
    print(f"-- the steps after the index at {n:,} x {d}; load {load()}", flush=True)
    t_read, _ = timed(lambda: original_matrix(X, projection))
    t_digest, _ = timed(lambda: matrix_digest(X))
    t_2d, low = timed(lambda: knn_2d(projection.coords, K))
    stand_in = np.random.default_rng(6).integers(0, n, size=(n, K))  # the same shape as a graph
    t_share, _ = timed(lambda: preservation(stand_in, low))
    total = t_read + t_digest + t_2d + t_share
    verdict = "ok" if total < TARGET_S else "MISS"
    print(f"read back {t_read:6.1f} s + digest {t_digest:6.1f} s + 2-D graph {t_2d:6.1f} s + "
          f"intersection {t_share:6.1f} s = {total:6.1f} s {verdict} (target {TARGET_S:.0f} s); "
          f"load {load()}", flush=True)
    from sklearn.neighbors import NearestNeighbors

    t_sk, _ = timed(lambda: NearestNeighbors(n_neighbors=K).fit(projection.coords)
                    .kneighbors(return_distance=False))
    print(f"2-D graph of every row: ours {t_2d:6.1f} s, sklearn NearestNeighbors {t_sk:6.1f} s "
          f"({t_sk / t_2d:.1f}x ours); load {load()}", flush=True)
    from sklearn.manifold import trustworthiness

    small = np.random.default_rng(4).choice(n, min(n, 5000), replace=False)
    t, value = timed(lambda: trustworthiness(X[small], projection.coords[small], n_neighbors=K))
    print(f"sklearn trustworthiness on a {len(small):,}-row sample: {t:6.1f} s ({value:.3f}; "
          f"neighbourhoods within the sample only); load {load()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--index-rows", type=int, default=None)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    if args.index_rows != 0:  # 0: only the steps after the index
        end_to_end(args.index_rows or args.rows, args.dim)
    steps(args.rows, args.dim)


if __name__ == "__main__":
    main()
