"""The UMAP engine behind :class:`embproj_panel.reducers.UMAP`: neighbours, graph, start, SGD.

Private: :mod:`embproj_panel.reducers` is the API. This module owns the steps of a UMAP fit
and of placing new rows against a fit, and the numba epoch kernel that makes the descent
reproducible for a seed *and* parallel (umap-learn is reproducible only single-threaded).

Internals of other packages it relies on (the reason for the upper bounds in
``pyproject.toml``; an upgrade that changes one of these must be checked here):

umap-learn (``umap.umap_``, ``umap.spectral``; none is in umap-learn's documented API)
    ``fuzzy_simplicial_set(X, k, random_state, metric, knn_indices=, knn_dists=)``,
    ``smooth_knn_dist(dists, k, local_connectivity=)``,
    ``compute_membership_strengths(indices, dists, sigmas, rhos, bipartite=)`` (4 results),
    ``find_ab_params(spread, min_dist)``, ``make_epochs_per_sample(weights, n_epochs)``,
    ``noisy_scale_coords(coords, random_state, max_coord=, noise=)``,
    ``umap.spectral.spectral_layout(X, graph, dim, random_state, metric=, metric_kwds=)``;
    numba's ``Dispatcher.enable_caching()`` on ``smooth_knn_dist`` and
    ``compute_membership_strengths`` (they must stay plain module-level ``@numba.njit``
    functions). The kernel re-implements ``optimize_layout_euclidean``'s epoch (its
    gradient clipping at 4, negative-sample schedule, ``tau_rand_int`` generator and the
    per-point seeding from the seed and the first coordinate) and ``UMAP.transform``'s steps
    (local connectivity 0, weighted-mean start, n_epochs / 3 epochs at a quarter of the
    learning rate, edges below max / epochs dropped).
openTSNE
    ``openTSNE.dependencies.annoy.AnnoyIndex``, the Annoy it vendors (not a public module):
    ``set_seed``, ``add_item``, ``build(n_trees, n_jobs=)``, ``get_nns_by_item`` and
    ``get_nns_by_vector`` with ``include_distances=True``.
numba
    ``numba.njit(parallel=True, cache=True, nogil=True)``, ``prange``,
    ``get_num_threads``/``set_num_threads`` (per calling thread), ``config.reload_config``.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings as _warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embproj_panel._runtime import n_threads

# Row counts above which the exact (brute-force) neighbour search gives way to the
# approximate one; below it the exact search is both faster and exact.
EXACT_KNN_MAX_ROWS = 4096

# UMAP graphs with fewer edges than this (about 10,000 points) are optimised on one thread.
PARALLEL_MIN_EDGES = 200_000


def configure_numba_cache() -> Path:
    """Give numba a persistent on-disk cache, unless ``NUMBA_CACHE_DIR`` is already set.

    umap-learn's and pynndescent's code (and this module's UMAP kernel) is compiled by numba
    on first use: tens of seconds. With a persistent cache directory that happens once per
    machine instead of once per process. The default is
    ``$XDG_CACHE_HOME/embproj-panel/numba`` (``~/.cache/embproj-panel/numba``); when it
    cannot be created, a per-user folder in the temporary directory.

    Called by UMAP before umap-learn is imported, and by ``warm_up``; never at
    ``import embproj_panel``. It sets an environment variable of this process, which every
    numba user in the process shares (harmless: the cache is keyed by function and source).

    Returns
    -------
    pathlib.Path
        The cache directory in use.
    """
    import os
    import sys
    import tempfile

    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "embproj-panel" / "numba"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / f"embproj-panel-numba-{os.getuid()}"
        path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    if "numba" in sys.modules:  # imported earlier by someone else: make it re-read the env
        sys.modules["numba"].config.reload_config()
    return path

# numba's parallel runtime (the "workqueue" layer on machines without TBB or OpenMP) must not
# be entered from two threads at once; two projections in two threads take turns per epoch.
NUMBA_PARALLEL = threading.Lock()


@dataclass
class UMAPModel:
    """What the sample-fit path needs to place the remaining rows."""

    embedding: np.ndarray
    a: float
    b: float
    n_neighbors: int
    search_index: AnnoyForest | None = None


def fit(X, k, metric, min_dist, spread, n_epochs, seed, report, notes,
        keep_index=False) -> UMAPModel:
    from sklearn.utils import check_random_state

    cache_umap_functions()
    from umap.umap_ import find_ab_params, fuzzy_simplicial_set, make_epochs_per_sample

    random_state = check_random_state(seed)
    report(0.0)
    knn_indices, knn_dists, index = knn(X, k, metric, seed, keep_index)
    report(0.15)
    graph, _, _ = fuzzy_simplicial_set(
        X, k, random_state, metric, knn_indices=knn_indices, knn_dists=knn_dists
    )
    graph = graph.tocsr()
    graph.sum_duplicates()
    # umap-learn drops edges too weak to be sampled even once in n_epochs.
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    a, b = find_ab_params(spread, min_dist)
    embedding = spectral_start(X, graph, random_state, metric, notes)
    report(0.25)
    epochs_per_sample = make_epochs_per_sample(graph.data, n_epochs)
    rng_state = random_state.randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3)
    optimize(embedding, None, graph, epochs_per_sample, a, b, rng_state.astype(np.int64),
              n_epochs, initial_alpha=1.0, attract_scale=2.0, report=report.sub(0.25, 1.0))
    return UMAPModel(embedding, float(a), float(b), k, index)


@functools.cache
def cache_umap_functions() -> None:
    """Let numba cache umap-learn's fuzzy-set functions on disk.

    umap-learn compiles ``smooth_knn_dist`` and ``compute_membership_strengths`` without
    ``cache=True``, so every new process spent ~4 s recompiling them. They are plain
    module-level functions, which numba can cache; enabling it (numba's own
    ``Dispatcher.enable_caching``) changes nothing but where the machine code comes from.
    """
    configure_numba_cache()
    from umap import umap_

    for function in (umap_.smooth_knn_dist, umap_.compute_membership_strengths):
        enable = getattr(function, "enable_caching", None)
        if enable is not None:
            enable()


def knn(X, k, metric, seed, keep_index=False):
    """k nearest neighbours of every row, itself first at distance 0 (umap-learn's layout).

    Up to 4,096 rows: exact (brute force). Above: Annoy, the approximate index openTSNE
    ships, rather than umap-learn's pynndescent: pynndescent's numba code cannot all be
    cached on disk and cost ~25 s of compilation in every new process, and it is
    reproducible for a seed only single-threaded. The Annoy forest is built
    single-threaded from the seed (so it is the same every time) and queried in parallel.
    Returns ``(indices, distances, index)``; ``index`` is None for the exact search.
    """
    n = X.shape[0]
    if n <= EXACT_KNN_MAX_ROWS and not keep_index:
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(X)
        dists, indices = search.kneighbors(X)
        indices, dists = self_first(indices, dists, k)
        return indices, dists, None
    index = AnnoyForest(X, metric, seed)
    indices, dists = index.query(None, k)
    indices, dists = self_first(indices, dists, k)
    return indices, dists, index


def self_first(indices: np.ndarray, dists: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Put each row itself first at distance 0, then its k - 1 nearest *other* rows.

    Float rounding (or an approximate search) can rank a very close point ahead of the
    row itself, or miss it.
    """
    own = np.arange(indices.shape[0])
    others = np.argsort(indices == own[:, None], axis=1, kind="stable")[:, : k - 1]
    indices = np.hstack([own[:, None], np.take_along_axis(indices, others, axis=1)])
    dists = np.hstack([np.zeros((len(own), 1)), np.take_along_axis(dists, others, axis=1)])
    return indices.astype(np.int32), dists.astype(np.float32)


class AnnoyForest:
    """A seeded Annoy forest over ``X`` (euclidean or manhattan) with parallel queries."""

    def __init__(self, X: np.ndarray, metric: str, seed: int) -> None:
        from openTSNE.dependencies.annoy import AnnoyIndex

        n = X.shape[0]
        # About umap-learn's rule for pynndescent's trees, doubled: recall ~0.95 at k = 15.
        self.n_trees = int(min(64, max(10, 5 + round(math.sqrt(n) / 10))))
        self.index = AnnoyIndex(X.shape[1], metric)
        self.index.set_seed(int(seed) % (2**31 - 1))
        for i in range(n):
            self.index.add_item(i, X[i])
        self.index.build(self.n_trees, n_jobs=1)  # one thread: the same forest every time
        self.n = n

    def query(self, X_new: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest indexed rows of each row of ``X_new`` (None: of the indexed rows).

        Missing neighbours (Annoy may return fewer than k) are -1 at distance inf, which
        umap-learn's graph construction skips.
        """
        from concurrent.futures import ThreadPoolExecutor

        m = self.n if X_new is None else X_new.shape[0]
        k = min(k, self.n)
        indices = np.full((m, k), -1, dtype=np.int64)
        dists = np.full((m, k), np.inf, dtype=np.float32)

        def work(bounds: tuple[int, int]) -> None:
            for i in range(*bounds):
                if X_new is None:
                    found, far = self.index.get_nns_by_item(i, k, include_distances=True)
                else:
                    found, far = self.index.get_nns_by_vector(X_new[i], k,
                                                              include_distances=True)
                indices[i, : len(found)] = found
                dists[i, : len(far)] = far

        step = 2048
        chunks = [(start, min(m, start + step)) for start in range(0, m, step)]
        # Each query is independent and read-only, so the thread count cannot change results.
        with ThreadPoolExecutor(max_workers=n_threads()) as pool:
            list(pool.map(work, chunks))
        return indices, dists


def spectral_start(X, graph, random_state, metric, notes) -> np.ndarray:
    """umap-learn's spectral initialisation, scaled into [0, 10] as umap-learn does."""
    from umap.spectral import spectral_layout
    from umap.umap_ import noisy_scale_coords

    # umap-learn reports a failed eigensolver with a warning and starts from random points;
    # keep that message for the user instead of letting it escape to the console. (Note:
    # catch_warnings is process-wide; this block is short and only records.)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        embedding = spectral_layout(X, graph, 2, random_state, metric=metric, metric_kwds={})
    for item in caught:
        text = str(item.message).split("\n")[0]
        notes.append(f"UMAP initialisation: {text}")
    embedding = noisy_scale_coords(embedding, random_state, max_coord=10, noise=0.0001)
    low, high = embedding.min(axis=0), embedding.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (10.0 * (embedding - low) / span).astype(np.float32, order="C")


def optimize(head, tail, graph, epochs_per_sample, a, b, rng_state, n_epochs, initial_alpha,
              attract_scale, report) -> None:
    """Run the SGD epochs in place on ``head``; ``tail=None`` means head vs itself (a fit)."""
    epoch = sgd_kernel()
    negative_rate = 5.0
    per_negative = epochs_per_sample / negative_rate
    next_sample = epochs_per_sample.copy()
    next_negative = per_negative.copy()
    # umap-learn seeds a per-point generator from the seed and the point's first coordinate.
    rng = (np.full((head.shape[0], 3), rng_state, dtype=np.int64)
           + head[:, 0].astype(np.float64).view(np.int64).reshape(-1, 1))
    indptr = graph.indptr.astype(np.int64)
    indices = graph.indices.astype(np.int64)
    fixed_tail = tail is not None
    n_tail = tail.shape[0] if fixed_tail else head.shape[0]
    import numba

    # Small graphs run on one thread: their epochs last about a millisecond, and on a busy
    # machine waiting for a second thread every epoch cost more than the work (digits: 0.8 s
    # alone, up to 4 s with two threads). The result is the same either way (see UMAP).
    # numba's thread count is per calling thread, so other projections are not affected.
    previous = numba.get_num_threads()
    numba.set_num_threads(1 if graph.nnz < PARALLEL_MIN_EDGES else previous)
    try:
        for n in range(n_epochs):
            report(n / n_epochs)
            alpha = initial_alpha * (1.0 - n / n_epochs)
            snapshot = tail if fixed_tail else head.copy()
            with NUMBA_PARALLEL:
                epoch(head, snapshot, indptr, indices, epochs_per_sample, per_negative,
                      next_sample, next_negative, rng, a, b, 1.0, alpha, attract_scale,
                      float(n), n_tail)
    finally:
        numba.set_num_threads(previous)


def transform(model: UMAPModel, X_new, n_epochs, seed, report) -> np.ndarray:
    """Place new rows as umap-learn's ``UMAP.transform`` does, against the fixed fit.

    The steps are ``transform``'s: neighbours among the fitted rows, fuzzy memberships
    with local connectivity 0, a start at the membership-weighted mean of the neighbours'
    positions, then n_epochs / 3 epochs at a quarter of the learning rate moving only the
    new points.
    """
    import scipy.sparse
    from sklearn.utils import check_random_state

    cache_umap_functions()
    from umap.umap_ import (
        compute_membership_strengths,
        make_epochs_per_sample,
        smooth_knn_dist,
    )

    k = model.n_neighbors
    report(0.0)
    indices, dists = model.search_index.query(X_new, k)
    report(0.3)
    sigmas, rhos = smooth_knn_dist(dists, float(k), local_connectivity=0.0)
    rows, cols, vals, _ = compute_membership_strengths(indices.astype(np.int32), dists,
                                                       sigmas, rhos, bipartite=True)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)),
                                    shape=(X_new.shape[0], model.embedding.shape[0])).tocsr()
    graph.eliminate_zeros()
    weights = np.asarray(graph.sum(axis=1)).ravel()
    embedding = np.asarray(graph @ model.embedding, dtype=np.float64)
    placed = weights > 0
    embedding[placed] /= weights[placed, None]
    embedding[~placed] = model.embedding[indices[~placed, 0]]  # no weight: nearest neighbour
    embedding = embedding.astype(np.float32, order="C")
    epochs = max(1, int(n_epochs // 3))
    graph.data[graph.data < graph.data.max() / float(epochs)] = 0.0
    graph.eliminate_zeros()
    epochs_per_sample = make_epochs_per_sample(graph.data, epochs)
    rng_state = check_random_state(seed).randint(np.iinfo(np.int32).min,
                                                 np.iinfo(np.int32).max, 3)
    optimize(embedding, model.embedding, graph, epochs_per_sample, model.a, model.b,
              rng_state.astype(np.int64), epochs, initial_alpha=0.25, attract_scale=1.0,
              report=report.sub(0.35, 1.0))
    return embedding


@functools.cache
def sgd_kernel():
    """Compile (or load from numba's on-disk cache) the UMAP epoch kernel.

    Defined inside a function so that importing this module does not import numba; it is
    self-contained (no calls to other jitted functions) so that numba can cache it.
    """
    configure_numba_cache()
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def epoch(head, tail, indptr, indices, epochs_per_sample, per_negative, next_sample,
              next_negative, rng, a, b, gamma, alpha, attract_scale, n, n_tail):
        # One thread owns each head point and its edges (CSR row); other points are read
        # from ``tail`` (a snapshot, or a fixed embedding), so threads never share memory.
        for j in numba.prange(head.shape[0]):
            x0 = head[j, 0]
            x1 = head[j, 1]
            for e in range(indptr[j], indptr[j + 1]):
                if next_sample[e] > n:
                    continue
                k = indices[e]
                d0 = x0 - tail[k, 0]
                d1 = x1 - tail[k, 1]
                dsq = d0 * d0 + d1 * d1
                if dsq > 0.0:
                    powered = dsq ** b  # one pow: dsq ** (b - 1) is powered / dsq
                    coeff = -2.0 * a * b * powered / (dsq * (a * powered + 1.0))
                    g0 = min(4.0, max(-4.0, coeff * d0))
                    g1 = min(4.0, max(-4.0, coeff * d1))
                    x0 += attract_scale * g0 * alpha
                    x1 += attract_scale * g1 * alpha
                next_sample[e] += epochs_per_sample[e]
                n_negative = int((n - next_negative[e]) / per_negative[e])
                for _ in range(n_negative):
                    # umap-learn's Tausworthe generator (tau_rand_int), per head point.
                    s = rng[j]
                    s[0] = (((s[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ (
                        (((s[0] << 13) & 0xFFFFFFFF) ^ s[0]) >> 19)
                    s[1] = (((s[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ (
                        (((s[1] << 2) & 0xFFFFFFFF) ^ s[1]) >> 25)
                    s[2] = (((s[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ (
                        (((s[2] << 3) & 0xFFFFFFFF) ^ s[2]) >> 11)
                    k = (s[0] ^ s[1] ^ s[2]) % n_tail
                    d0 = x0 - tail[k, 0]
                    d1 = x1 - tail[k, 1]
                    dsq = d0 * d0 + d1 * d1
                    if dsq > 0.0:
                        coeff = 2.0 * gamma * b / ((0.001 + dsq) * (a * dsq ** b + 1.0))
                        x0 += min(4.0, max(-4.0, coeff * d0)) * alpha
                        x1 += min(4.0, max(-4.0, coeff * d1)) * alpha
                next_negative[e] += n_negative * per_negative[e]
            head[j, 0] = x0
            head[j, 1] = x1

    return epoch
