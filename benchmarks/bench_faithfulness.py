"""Benchmark per-point faithfulness at 1,000,000 x 128 (k = 10, euclidean).

Prints, with the 1-minute load average beside each figure (the machine may be shared):

1. the neighbour index: the Annoy forest build and the all-rows kNN graph from it (what
   ``ep.faithfulness`` reuses; cached per table and metric), with the graph's recall@10
   against exact search on a sample of rows;
2. ``ep.faithfulness(X, projection)`` once that index exists, against the 60 s target;
3. ``assess`` (faithfulness plus trustworthiness over its stated sample);
4. the plain library calls on the same data: scikit-learn's ``NearestNeighbors`` for the
   2-D graph of every row (ours: a SciPy KD-tree with ties by position), and
   ``sklearn.manifold.trustworthiness``, which needs n x n memory and so runs only on a
   sample (its time at 5,000 rows is printed).

The data are bench_reducers' clustered embeddings; the layout is ``ep.project(X, "pca")``.

Run::

    PYTHONPATH=. python benchmarks/bench_faithfulness.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_neighbors import load, timed  # noqa: E402
from bench_reducers import clustered  # noqa: E402

import embproj_panel as ep  # noqa: E402
from embproj_panel.neighbors import neighbor_index  # noqa: E402
from embproj_panel.trust import assess, knn_2d  # noqa: E402

TARGET_S = 60.0
K = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    n, d = args.rows, args.dim
    X = clustered(n, d, n_clusters=50, seed=1)
    t, projection = timed(lambda: ep.project(X, "pca", cache=False))
    print(f"{n:,} x {d}, k = {K}, euclidean; PCA layout {t:.1f} s; load {load()}", flush=True)

    index = neighbor_index(X, "euclidean")
    t, forest = timed(index.build)
    print(f"index: forest build {t:7.1f} s ({forest.n_trees} trees); load {load()}", flush=True)
    t, graph = timed(lambda: index.graph(K))
    sample = np.random.default_rng(3).choice(n, 200, replace=False)
    recall = np.mean([len(set(graph[r]) & set(index._exact(np.array([r]), K)[0][0])) / K
                      for r in sample])
    print(f"index: all-rows kNN graph {t:7.1f} s (recall@10 {recall:.3f} on 200 rows); "
          f"load {load()}", flush=True)

    t, values = timed(lambda: ep.faithfulness(X, projection, k=K))
    verdict = "ok" if t < TARGET_S else "MISS"
    print(f"ep.faithfulness once the index exists: {t:7.1f} s {verdict} (target {TARGET_S:.0f} s);"
          f" mean {values.mean():.3f}; load {load()}", flush=True)
    t, report = timed(lambda: assess(X, projection, k=K))
    print(f"assess (faithfulness + trustworthiness): {t:7.1f} s; {report.summary()} load {load()}",
          flush=True)

    from sklearn.neighbors import NearestNeighbors

    t_ours, _ = timed(lambda: knn_2d(projection.coords, K))
    t_sk, _ = timed(lambda: NearestNeighbors(n_neighbors=K).fit(projection.coords)
                    .kneighbors(return_distance=False))
    print(f"2-D graph of every row: ours {t_ours:6.1f} s, sklearn NearestNeighbors {t_sk:6.1f} s "
          f"({t_sk / t_ours:.1f}x ours); load {load()}", flush=True)
    from sklearn.manifold import trustworthiness

    small = np.random.default_rng(4).choice(n, min(n, 5000), replace=False)
    t, value = timed(lambda: trustworthiness(X[small], projection.coords[small], n_neighbors=K))
    print(f"sklearn trustworthiness on a {len(small):,}-row sample: {t:6.1f} s ({value:.3f}; "
          f"neighbourhoods within the sample only); load {load()}", flush=True)


if __name__ == "__main__":
    main()
