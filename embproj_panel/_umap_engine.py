"""The UMAP engine behind :class:`embproj_panel.reducers.UMAP`: neighbours, graph, start, SGD.

Private: :mod:`embproj_panel.reducers` is the API. This module owns the steps of a UMAP fit
and of placing new rows against a fit, and the numba epoch kernel that makes the descent
reproducible for a seed *and* parallel (umap-learn is reproducible only single-threaded).

Internals of other packages it relies on (the reason for the upper bounds in
``pyproject.toml``; an upgrade that changes one of these must be checked here):

umap-learn (``umap.umap_``, ``umap.spectral``; none is in umap-learn's documented API)
    ``fuzzy_simplicial_set(X, k, random_state, metric, knn_indices=, knn_dists=)``,
    ``find_ab_params(spread, min_dist)``, ``make_epochs_per_sample(weights, n_epochs)``,
    ``noisy_scale_coords(coords, random_state, max_coord=, noise=)``,
    ``umap.spectral.spectral_layout(X, graph, dim, random_state, metric=, metric_kwds=)``;
    numba's ``Dispatcher.enable_caching()`` on ``smooth_knn_dist`` and
    ``compute_membership_strengths``, which ``fuzzy_simplicial_set`` calls (they must stay
    plain module-level ``@numba.njit`` functions); ``umap.utils`` decorating through the
    attribute ``numba.njit`` at import (see :func:`cached_signature_compiles`). The kernel
    re-implements ``optimize_layout_euclidean``'s epoch (its gradient clipping at 4, negative-sample
    schedule, ``tau_rand_int`` generator and the per-point seeding from the seed and the
    first coordinate); :func:`place` follows ``UMAP.transform``'s steps (memberships with
    local connectivity 0, re-implemented in ``_sample_index.neighbour_kernel``; a weighted-
    mean start; epochs at a quarter of the learning rate; edges below max / epochs dropped)
    with fewer epochs and approximate neighbours.
openTSNE
    ``openTSNE.dependencies.annoy.AnnoyIndex``, the Annoy it vendors (not a public module):
    ``set_seed``, ``add_item``, ``build(n_trees, n_jobs=)``, ``get_nns_by_item`` and
    ``get_nns_by_vector`` with ``include_distances=True``.
numba
    ``numba.njit(parallel=True, cache=True, nogil=True)``, ``prange``,
    ``get_num_threads``/``set_num_threads`` (per calling thread), ``config.reload_config``.
"""

from __future__ import annotations

import contextlib
import functools
import warnings as _warnings
from dataclasses import dataclass

import numpy as np

from embproj_panel._runtime import NUMBA_PARALLEL, configure_numba_cache
from embproj_panel._sample_index import SampleIndex, weighted_mean

# Row counts above which the exact (brute-force) neighbour search gives way to the
# approximate one; below it the exact search is both faster and exact.
EXACT_KNN_MAX_ROWS = 4096

# UMAP graphs with fewer edges than this (about 10,000 points) are optimised on one thread.
PARALLEL_MIN_EDGES = 200_000


@dataclass
class UMAPModel:
    """A fitted layout: what placing further rows against it needs."""

    embedding: np.ndarray
    a: float
    b: float
    n_neighbors: int


def fit(X, k, metric, min_dist, spread, n_epochs, seed, report, notes) -> UMAPModel:
    """umap-learn's fit, step by step: neighbours, fuzzy graph, spectral start, SGD epochs."""
    from sklearn.utils import check_random_state

    cache_umap_functions()
    from umap.umap_ import find_ab_params, fuzzy_simplicial_set, make_epochs_per_sample

    random_state = check_random_state(seed)
    report(0.0)
    knn_indices, knn_dists = knn(X, k, metric, seed)
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
    optimize(embedding, None, graph.indptr, graph.indices, epochs_per_sample, a, b,
             rng_state.astype(np.int64), n_epochs, initial_alpha=1.0, attract_scale=2.0,
             report=report.sub(0.25, 1.0))
    return UMAPModel(embedding, float(a), float(b), k)


@functools.cache
def cache_umap_functions() -> None:
    """Import umap-learn with its numba functions cached on disk.

    umap-learn compiles ``smooth_knn_dist`` and ``compute_membership_strengths`` without
    ``cache=True``, so every new process spent ~4 s recompiling them. They are plain
    module-level functions, which numba can cache; enabling it (numba's own
    ``Dispatcher.enable_caching``) changes nothing but where the machine code comes from.
    ``umap.utils.tau_rand`` and ``tau_rand_int`` are compiled *while umap is imported*
    (they name their signature), also without a cache: :func:`cached_signature_compiles`
    gives them one for the length of the import.
    """
    configure_numba_cache()
    with cached_signature_compiles("umap"):
        from umap import umap_

    for function in (umap_.smooth_knn_dist, umap_.compute_membership_strengths):
        enable = getattr(function, "enable_caching", None)
        if enable is not None:
            enable()


@contextlib.contextmanager
def cached_signature_compiles(package: str):
    """While ``package`` is first imported, its ``numba.njit(signature)`` functions cache.

    A function decorated with a signature (``@numba.njit("f4(i8[:])")``) is compiled at
    import, before any ``enable_caching`` could reach it; without ``cache=True`` every new
    process compiles it again (umap-learn's two: 0.4-0.8 s of each fresh process's first
    UMAP, issue 15). For the length of the block ``numba.njit`` is wrapped so that such a
    decoration of a module-level function of ``package`` gets ``cache=True``, as if
    umap-learn had written it; anything else passes through unchanged, and after the block
    the wrapper is gone. Nothing happens if ``package`` is already imported (its functions
    are compiled by then). numba caches such a function like any other: keyed by its
    source file, checked against the file's timestamp.
    """
    import sys

    if package in sys.modules:
        yield
        return
    import numba

    original = numba.njit

    def njit(*args, **kwargs):
        if not args or callable(args[0]) or "cache" in kwargs:
            return original(*args, **kwargs)  # no signature, or the author chose

        def decorate(function):
            module = getattr(function, "__module__", "") or ""
            own = module == package or module.startswith(package + ".")
            if own and "<locals>" not in function.__qualname__:  # closures cannot cache
                return original(*args, cache=True, **kwargs)(function)
            return original(*args, **kwargs)(function)

        return decorate

    numba.njit = njit
    try:
        yield
    finally:
        if numba.njit is njit:
            numba.njit = original


def knn(X, k, metric, seed, exact: bool | None = None):
    """k nearest neighbours of every row, itself first at distance 0 (umap-learn's layout).

    Up to 4,096 rows (or with ``exact=True``): exact (brute force). Above: Annoy, the
    approximate index openTSNE ships, rather than umap-learn's pynndescent: pynndescent's
    numba code cannot all be cached on disk and cost ~25 s of compilation in every new
    process, and it is reproducible for a seed only single-threaded. The Annoy forest is
    built single-threaded from the seed (so it is the same every time) and queried in
    parallel. Returns ``(indices, distances)``.
    """
    n = X.shape[0]
    if exact or (exact is None and n <= EXACT_KNN_MAX_ROWS):
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(X)
        dists, indices = search.kneighbors(X)
    else:
        from embproj_panel.neighbors import AnnoyForest  # the one Annoy wrapper

        indices, dists = AnnoyForest(X, metric, seed).query(None, k)
    return self_first(indices, dists, k)


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


def optimize(head, tail, indptr, indices, epochs_per_sample, a, b, rng_state, n_epochs,
             initial_alpha, attract_scale, report) -> None:
    """Run the SGD epochs in place on ``head``; ``tail=None`` means head vs itself (a fit).

    The graph is CSR (``indptr``, ``indices``: row j's edges go from head point j to tail
    points); an edge with ``epochs_per_sample`` above ``n_epochs`` is never sampled.
    """
    epoch = sgd_kernel()
    negative_rate = 5.0
    per_negative = epochs_per_sample / negative_rate
    next_sample = epochs_per_sample.copy()
    next_negative = per_negative.copy()
    # umap-learn seeds a per-point generator from the seed and the point's first coordinate.
    rng = (np.full((head.shape[0], 3), rng_state, dtype=np.int64)
           + head[:, 0].astype(np.float64).view(np.int64).reshape(-1, 1))
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    # The kernel computes in float32 (see sgd_kernel): its scalars are float32 too.
    a, b, gamma, attract_scale = (np.float32(v) for v in (a, b, 1.0, attract_scale))
    fixed_tail = tail is not None
    n_tail = tail.shape[0] if fixed_tail else head.shape[0]
    import numba

    # Small graphs run on one thread: their epochs last about a millisecond, and on a busy
    # machine waiting for a second thread every epoch cost more than the work (digits: 0.8 s
    # alone, up to 4 s with two threads). The result is the same either way (see UMAP).
    # numba's thread count is per calling thread, so other projections are not affected.
    previous = numba.get_num_threads()
    numba.set_num_threads(1 if len(indices) < PARALLEL_MIN_EDGES else previous)
    try:
        if fixed_tail:
            # The other points never move, so each head point can run every epoch in one go:
            # one parallel call instead of one per epoch (each of which, on a busy machine,
            # waited for its second thread). Same arithmetic, in the same order per point.
            with NUMBA_PARALLEL:
                epoch(head, tail, indptr, indices, epochs_per_sample, per_negative,
                      next_sample, next_negative, rng, a, b, gamma, initial_alpha,
                      attract_scale, 0, n_epochs, n_epochs, n_tail)
        for n in range(0 if fixed_tail else n_epochs):
            report(n / n_epochs)
            with NUMBA_PARALLEL:
                epoch(head, head.copy(), indptr, indices, epochs_per_sample, per_negative,
                      next_sample, next_negative, rng, a, b, gamma, initial_alpha,
                      attract_scale, n, n + 1, n_epochs, n_tail)
    finally:
        numba.set_num_threads(previous)



# Epochs that move each placed row after its weighted-mean start (umap-learn's transform
# runs n_epochs / 3, e.g. 66). On the 1M blobs (20,000-row fit) trustworthiness was 0.9792
# after 1 epoch, 0.9784 after 10, 0.9785 after 30, each epoch costing ~0.8 CPU-s per 1M
# rows: a few epochs loosen the weighted means without paying for a full transform.
PLACE_EPOCHS = 5


def place(model: UMAPModel, index: SampleIndex, X, rows, n_epochs, seed, report) -> np.ndarray:
    """Place ``X[rows]`` against the fixed fit from their approximate neighbours in it.

    Each row's ``k`` approximate nearest fitted rows and their memberships come from
    :meth:`SampleIndex.search`; the row starts at the membership-weighted mean of their
    positions and then moves for ``n_epochs`` epochs of the SGD kernel at a quarter of the
    learning rate, the fit fixed (umap-learn's ``transform`` runs n_epochs / 3). Edges weaker
    than 1 / n_epochs of the strongest possible membership (1) are never sampled, as
    umap-learn prunes. Rows never see each other and their generators are seeded per row, so
    the result depends neither on the thread count nor on how rows are grouped; groups of
    about PLACE_CHUNK_ROWS rows keep the temporaries a few MB at any row count.
    """
    from sklearn.utils import check_random_state

    k = min(model.n_neighbors, index.size)
    rng_state = check_random_state(seed).randint(np.iinfo(np.int32).min,
                                                 np.iinfo(np.int32).max, 3).astype(np.int64)
    out = np.empty((len(rows), 2), dtype=np.float32)
    for done, positions, indices, weights in index.search(X, rows, k):
        report(done)
        head = weighted_mean(model.embedding, indices, weights)
        flat = weights.ravel().astype(np.float64)
        # A pruned edge's first sample is due after the last epoch: never (finite, because
        # the kernel's fastmath assumes no infinities).
        epochs_per_sample = np.full(flat.shape, n_epochs + 1.0)
        kept = flat >= 1.0 / n_epochs
        epochs_per_sample[kept] = 1.0 / flat[kept]
        indptr = np.arange(0, head.shape[0] * k + 1, k, dtype=np.int64)
        optimize(head, model.embedding, indptr, indices.ravel(), epochs_per_sample, model.a,
                 model.b, rng_state, n_epochs, initial_alpha=0.25, attract_scale=1.0,
                 report=lambda fraction: None)
        out[positions] = head
    return out


@functools.cache
def sgd_kernel():
    """Compile (or load from numba's on-disk cache) the UMAP epoch kernel.

    Defined inside a function so that importing this module does not import numba; it is
    self-contained (no calls to other jitted functions) so that numba can cache it. It
    computes in float32, the positions' own precision (:func:`optimize` passes float32
    scalars): umap-learn's epoch promotes to float64.
    """
    configure_numba_cache()
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def epoch(head, tail, indptr, indices, epochs_per_sample, per_negative, next_sample,
              next_negative, rng, a, b, gamma, initial_alpha, attract_scale, first, last,
              n_epochs, n_tail):
        # Epochs first..last-1. One thread owns each head point and its edges (CSR row);
        # other points are read from ``tail`` (a snapshot, or a fixed embedding), so threads
        # never share memory.
        # float32 throughout (the positions' own precision): a float64 literal or argument
        # anywhere would promote every step to float64 and the negative samples' power to
        # double-precision pow, most of an epoch's time.
        one = np.float32(1.0)
        clip = np.float32(4.0)
        for j in numba.prange(head.shape[0]):
            x0 = head[j, 0]
            x1 = head[j, 1]
            for epoch_number in range(first, last):
                n = float(epoch_number)
                alpha = np.float32(initial_alpha * (1.0 - n / n_epochs))
                for e in range(indptr[j], indptr[j + 1]):
                    if next_sample[e] > n:
                        continue
                    k = indices[e]
                    d0 = x0 - tail[k, 0]
                    d1 = x1 - tail[k, 1]
                    dsq = d0 * d0 + d1 * d1
                    if dsq > 0.0:
                        powered = dsq ** b  # one pow: dsq ** (b - 1) is powered / dsq
                        coeff = -(a + a) * b * powered / (dsq * (a * powered + one))
                        g0 = min(clip, max(-clip, coeff * d0))
                        g1 = min(clip, max(-clip, coeff * d1))
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
                            coeff = (gamma + gamma) * b / ((np.float32(0.001) + dsq)
                                                           * (a * dsq ** b + one))
                            x0 += min(clip, max(-clip, coeff * d0)) * alpha
                            x1 += min(clip, max(-clip, coeff * d1)) * alpha
                    next_negative[e] += n_negative * per_negative[e]
            head[j, 0] = x0
            head[j, 1] = x1

    return epoch
