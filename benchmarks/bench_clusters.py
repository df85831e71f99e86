"""Benchmark clusters, labels and images-on-the-map picking at 1,000,000 rows.

Prints, each against its target and against plain scikit-learn on the same data in the same
run, with the 1-minute load average when the row was printed (the machine may be shared):

* ``find_clusters`` on a 1,000,000-row 2-D layout (25 Gaussian blobs of uneven size plus 5%
  uniform noise; defaults: a 250,000-row sample clustered, the rest assigned to their
  nearest sampled row). Target: under 60 s. Its adjusted Rand index (ARI) against the blobs.
* plain ``sklearn.cluster.HDBSCAN(min_cluster_size=..).fit`` (exact, quadratic) on a
  ``--subset``-row subset, against ``find_clusters`` on the same subset: the times, and the
  ARI between the two labelings (1.0: identical clusters).
* ``label_clusters`` (categorical majority) on the million rows.
* images on the map: building the priority index once, then the median pick per view change
  over 25 random pans/zooms; the bytes one view change sends (200 thumbnails of digits,
  encoded as data URIs, measured) against the stated bound ``payload_bound()``, and the
  encode time cold and from the thumbnail cache.

Run::

    PYTHONPATH=. python benchmarks/bench_clusters.py            # about a minute or two
    PYTHONPATH=. python benchmarks/bench_clusters.py --rows 200000 --subset 10000   # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def row(name: str, value: str, target: str = "", note: str = "") -> None:
    print(f"{name:<46} {value:>14}  {target:<22} {note:<40} {load()}", flush=True)


def layout(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """25 blobs of uneven size and spread on a 5 x 5 grid plus 5% uniform noise (label -1)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.3, 3.0, 25)
    truth = rng.choice(25, size=n, p=weights / weights.sum())
    centres = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2) * 12.0
    spread = rng.uniform(0.6, 1.6, 25)
    X = centres[truth] + spread[truth, None] * rng.normal(size=(n, 2))
    noise = rng.random(n) < 0.05
    X[noise] = rng.uniform(-6, 54, size=(noise.sum(), 2))
    truth[noise] = -1
    return X, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=20_000)
    args = parser.parse_args()

    import warnings

    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import adjusted_rand_score

    from embproj_panel.clusters import default_min_cluster_size, find_clusters, label_clusters

    warnings.filterwarnings("ignore", category=FutureWarning)  # HDBSCAN's copy= default
    X, truth = layout(args.rows)
    print(f"{args.rows:,} rows, 2 cores; {load()}")
    find_clusters(X[:5000])  # imports and first calls out of the timing

    start = time.perf_counter()
    result = find_clusters(X)
    ours = time.perf_counter() - start
    clustered = truth >= 0
    row("find_clusters, all rows", f"{ours:.1f} s", "< 60 s", "PASS" if ours < 60 else "FAIL")
    row("  clusters / unclustered", f"{result.n_clusters} / {result.n_unclustered:,}",
        "25 blobs", f"sample {result.n_sampled or 'none'}")
    row("  ARI vs the blobs (noise rows left out)",
        f"{adjusted_rand_score(truth[clustered], result.labels[clustered]):.3f}", ">= 0.9")

    rng = np.random.default_rng(1)
    subset = np.sort(rng.choice(args.rows, args.subset, replace=False))
    size = default_min_cluster_size(args.subset)
    start = time.perf_counter()
    plain = HDBSCAN(min_cluster_size=size, min_samples=10, copy=True).fit(X[subset]).labels_
    plain_time = time.perf_counter() - start
    start = time.perf_counter()
    same = find_clusters(X[subset], min_cluster_size=size, min_samples=10)
    same_time = time.perf_counter() - start
    row(f"plain HDBSCAN, {args.subset:,}-row subset", f"{plain_time:.2f} s", "",
        f"exact dense path (min_cluster_size {size})")
    row(f"find_clusters, same {args.subset:,} rows", f"{same_time:.2f} s", "",
        f"{plain_time / same_time:.1f}x faster")
    row("  ARI ours vs plain HDBSCAN (same subset)",
        f"{adjusted_rand_score(plain, same.labels):.4f}", "1.0 = identical")
    row("  clusters ours / plain", f"{same.n_clusters} / {plain.max() + 1}")

    start = time.perf_counter()
    labels = label_clusters(result, truth, "categorical")
    row("label_clusters (categorical), all rows", f"{time.perf_counter() - start:.2f} s", "",
        f"e.g. {labels[0].text!r}")

    bench_images(X, args.rows)


def bench_images(X: np.ndarray, n: int) -> None:
    from embproj_panel import datasets
    from embproj_panel.image_cells import (
        MAX_IMAGES,
        THUMBNAIL_PX,
        ImageCells,
        ThumbnailCache,
        payload_bound,
    )

    start = time.perf_counter()
    cells = ImageCells(X)
    row("images: priority index, once per layout", f"{time.perf_counter() - start:.2f} s")
    rng = np.random.default_rng(2)
    times, counts = [], []
    for _ in range(25):
        width = 60 / 2 ** rng.uniform(0, 6)  # from the whole map to 64x zoomed in
        x0, y0 = rng.uniform(-6, 54 - width, 2)
        start = time.perf_counter()
        picked = cells.pick((x0, x0 + width), (y0, y0 + width * 0.65), (1200, 780))
        times.append(time.perf_counter() - start)
        counts.append(len(picked))
    row("images: pick per view change (median)", f"{statistics.median(times) * 1e3:.1f} ms",
        "<< 1 s", f"max {max(times) * 1e3:.0f} ms, {int(statistics.median(counts))} images")

    digits = datasets.digits()
    images = list(digits.get_column("image"))
    cache = ThumbnailCache(lambda r: images[r % len(images)].thumbnail_uri(THUMBNAIL_PX))
    picked = cells.pick((-6, 54), (-6, 34), (1200, 780))
    start = time.perf_counter()
    uris = cache.many(picked)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    cache.many(picked)
    warm = time.perf_counter() - start
    sent = sum(len(u) for u in uris) + len(picked) * 3 * 8  # URIs + x, y, row as 8 bytes
    bound = payload_bound(MAX_IMAGES, THUMBNAIL_PX)
    row(f"images: bytes per view change ({len(picked)} digits)", f"{sent / 1e3:.1f} KB",
        f"bound {bound / 1e6:.2f} MB", f"{MAX_IMAGES} x {THUMBNAIL_PX}px PNG, base64")
    row("images: thumbnails encoded, cold / cached", f"{cold * 1e3:.0f} / {warm * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
