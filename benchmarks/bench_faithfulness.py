"""Benchmark per-point faithfulness (k = 10, euclidean) up to 1,000,000 x 128.

Prints, with the 1-minute load average beside each figure (the machine may be shared):

1. at ``--index-rows`` rows (default: ``--rows``), end to end: the neighbour index (the
   Annoy forest build, then the all-rows kNN graph from it, with the graph's recall@10
   against exact search on 200 rows), then ``ep.faithfulness(X, projection)`` once that
   index exists (target: 60 s at 1,000,000 rows), then ``assess`` (faithfulness plus
   trustworthiness over its stated sample);
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


def end_to_end(n: int, d: int) -> None:
    X = clustered(n, d, n_clusters=50, seed=1)
    projection = layout(X)
    print(f"-- end to end at {n:,} x {d}, k = {K}, euclidean; load {load()}", flush=True)
    index = projection_index(X, projection, "euclidean")  # the one ep.faithfulness uses
    t, forest = timed(index.build)
    print(f"index: forest build {t:7.1f} s ({forest.n_trees} trees); load {load()}", flush=True)
    t, graph = timed(lambda: index.graph(K))
    sample = np.random.default_rng(3).choice(n, 200, replace=False)
    recall = np.mean([len(set(graph[r]) & set(index._exact(np.array([r]), K)[0][0])) / K
                      for r in sample])
    print(f"index: all-rows kNN graph {t:7.1f} s ({t / n * 1e6:.0f} us a row; recall@10 "
          f"{recall:.3f} on 200 rows); load {load()}", flush=True)
    t, values = timed(lambda: ep.faithfulness(X, projection, k=K))
    verdict = "ok" if t < TARGET_S else "MISS"
    print(f"ep.faithfulness once the index exists: {t:7.1f} s {verdict} (target {TARGET_S:.0f} s "
          f"at 1,000,000); mean {values.mean():.3f}; load {load()}", flush=True)
    t, report = timed(lambda: assess(X, projection, k=K))
    print(f"assess (faithfulness + trustworthiness): {t:7.1f} s; {report.summary()} "
          f"load {load()}", flush=True)


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
