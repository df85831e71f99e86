"""Approximate nearest neighbours of any rows among a fitted sample, with their weights.

Private. When UMAP or t-SNE is fitted on a sample, every other row is placed from its
``k`` nearest sample rows: :class:`SampleIndex` finds them (an inverted file: cells around
seeded centres, candidates from the nearest cells, distances by BLAS) and
:func:`neighbour_kernel` keeps the k nearest with umap-learn's ``transform`` memberships.
A million rows take seconds, in bounded memory, and the result depends neither on the
thread count nor on how rows are grouped.

Relies on: ``threadpoolctl.threadpool_limits`` (BLAS on one thread per worker thread) and
numba (``njit(cache=True, nogil=True)``); it re-implements umap-learn's ``smooth_knn_dist``
for local connectivity 0 (see :func:`neighbour_kernel`), calling nothing of umap-learn's.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from embproj_panel._runtime import configure_numba_cache, n_threads

__all__ = ["PLACE_CHUNK_ROWS", "SampleIndex", "neighbour_kernel", "weighted_mean"]

# Rows per step of a search: bounded temporaries (a few MB) at any row count, and (in UMAP's
# placement) an edge count above PARALLEL_MIN_EDGES so that the epochs use every thread.
PLACE_CHUNK_ROWS = 32768
# Rows per BLAS product with the cell centres: (rows x centres) float32 stays ~4 MB per
# thread (32,768 rows x 447 centres was 57 MB, times three temporaries, times two threads:
# most of a million-row projection's peak memory).
_CELL_CHUNK_ROWS = 2048


class SampleIndex:
    """Approximate nearest fitted rows of other rows: an inverted file over the fitted sample.

    The fitted rows are split into cells around seeded random centres (about
    ``2 * sqrt(m)`` of them). A row belongs to the cell of its nearest centre, and its
    candidates are the fitted rows of the ``probes`` cells whose centres are nearest to its
    cell's centre; rows of one cell are compared with their candidates in one BLAS product.
    Recall is below an exact search's (about 0.7 at k = 15 on clustered data); what it buys
    is a million rows in seconds with bounded memory. ``metric`` is ``"euclidean"``,
    ``"manhattan"`` or ``"cosine"`` (rows scaled to unit length, then Euclidean, which ranks
    as the cosine distance does); cells are always found with Euclidean distances.
    """

    def __init__(self, data: np.ndarray, metric: str, seed: int, probes: int = 6) -> None:
        self.unit = metric == "cosine"
        data = _unit(data) if self.unit else np.ascontiguousarray(data, dtype=np.float32)
        m = data.shape[0]
        n_cells = int(min(m, max(1, round(2 * math.sqrt(m)))))
        rng = np.random.default_rng(seed)
        self.centres = np.ascontiguousarray(data[np.sort(rng.choice(m, n_cells, replace=False))])
        self._centre_norms = np.einsum("ij,ij->i", self.centres, self.centres)
        cell = self.cells(data)
        self.members = [np.flatnonzero(cell == c).astype(np.int32) for c in range(n_cells)]
        near = _nearest(self.centres, self.centres, self._centre_norms, min(probes, n_cells))
        self.candidates = [np.concatenate([self.members[c] for c in row]) for row in near]
        self.data = data
        self.norms = np.einsum("ij,ij->i", data, data)
        self.manhattan = metric == "manhattan"
        self.size = m

    def cells(self, X: np.ndarray) -> np.ndarray:
        """The cell of each row of ``X`` (the nearest centre's position), in chunks."""
        out = np.empty(X.shape[0], dtype=np.int32)
        for start in range(0, X.shape[0], _CELL_CHUNK_ROWS):
            part = slice(start, start + _CELL_CHUNK_ROWS)
            out[part] = _nearest(X[part], self.centres, self._centre_norms, 1)[:, 0]
        return out

    def search(self, X: np.ndarray, rows: np.ndarray, k: int):
        """Yield ``(fraction done, positions in rows, indices, memberships)`` by groups.

        ``indices`` are ``(len(positions), k)`` fitted rows, nearest first (a cell with fewer
        than k candidates repeats its nearest); ``memberships`` are umap-learn's
        ``transform`` weights for them (see :func:`neighbour_kernel`). Cells are searched
        by a pool of threads, each with single-threaded BLAS and numba: one small parallel
        call per cell waited for its second thread every time, which on a busy machine cost
        20x the work.
        """
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        neighbours = neighbour_kernel()

        def one_cell(c: int) -> tuple[np.ndarray, np.ndarray]:
            candidates = self.candidates[c]
            reference = self.data[candidates]
            members = order[bounds[c]:bounds[c + 1]]
            picked = np.empty((len(members), k), dtype=np.int32)
            weights = np.empty((len(members), k), dtype=np.float32)
            # A cell can hold tens of thousands of rows (a centre in a dense cluster): its
            # distance matrix is made a block of rows at a time, a few MB each.
            for start in range(0, len(members), _CELL_CHUNK_ROWS):
                part = slice(start, start + _CELL_CHUNK_ROWS)
                queries = X[rows[members[part]]]
                if self.unit:
                    queries = _unit(queries)
                if self.manhattan:
                    from scipy.spatial.distance import cdist

                    far = cdist(queries, reference, "cityblock").astype(np.float32)
                else:  # squared distances
                    far = queries @ reference.T
                    far *= -2.0
                    far += self.norms[candidates][None, :]
                    far += np.einsum("ij,ij->i", queries, queries)[:, None]
                neighbours(far, not self.manhattan, picked[part], weights[part])
            return candidates[picked], weights

        def cells_of(start: int) -> np.ndarray:
            block = X[rows[start:start + PLACE_CHUNK_ROWS]]
            return self.cells(_unit(block) if self.unit else block)

        # threadpoolctl's limit is process-wide while it lasts (the search, seconds): other
        # BLAS calls in the process meanwhile run on one thread, with the same results.
        with threadpool_limits(limits=1, user_api="blas"), \
                ThreadPoolExecutor(max_workers=n_threads()) as pool:
            cell = np.concatenate(list(pool.map(cells_of, range(0, len(rows),
                                                                PLACE_CHUNK_ROWS))))
            order = np.argsort(cell, kind="stable")
            bounds = np.searchsorted(cell[order], np.arange(len(self.members) + 1))
            # Groups of whole cells, each about PLACE_CHUNK_ROWS rows.
            ends = np.searchsorted(bounds, np.arange(PLACE_CHUNK_ROWS, len(rows),
                                                     PLACE_CHUNK_ROWS))
            edges = [0, *sorted({int(e) for e in ends} - {0, len(self.members)}),
                     len(self.members)]
            for first, last in zip(edges[:-1], edges[1:]):
                cells = [c for c in range(first, last) if bounds[c + 1] > bounds[c]]
                if not cells:
                    continue
                found = list(pool.map(one_cell, cells))
                yield (bounds[last] / len(rows), order[bounds[first]:bounds[last]],
                       np.concatenate([f[0] for f in found]),
                       np.concatenate([f[1] for f in found]))


def weighted_mean(embedding: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each row's start: the ``weights``-weighted mean of ``embedding[indices]``, float32."""
    total = np.einsum("mk,mkc->mc", weights, embedding[indices])
    return np.ascontiguousarray(total / weights.sum(axis=1, keepdims=True), dtype=np.float32)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.array(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # a zero row stays at the origin
    rows /= norms
    return rows


def _nearest(queries: np.ndarray, centres: np.ndarray, norms: np.ndarray,
             count: int) -> np.ndarray:
    """Positions of the ``count`` centres nearest each query (BLAS; ties: lower position)."""
    # |q - c|^2 up to |q|^2, which is the same for every centre of one query.
    far = queries @ centres.T
    far *= -2.0
    far += norms[None, :]
    if count == 1:
        return np.argmin(far, axis=1).astype(np.int32)[:, None]
    return np.argsort(far, axis=1, kind="stable")[:, :count].astype(np.int32)


@functools.cache
def neighbour_kernel():
    """Compile (or load from numba's disk cache) the k nearest candidates and memberships.

    For each row of a (rows x candidates) distance matrix (squared when ``squared``): the k
    nearest candidates, nearest first (ties: the earlier candidate), and umap-learn's
    ``transform`` memberships of them: ``smooth_knn_dist`` with local connectivity 0 (rho =
    0; sigma by bisection so that the memberships of neighbours 2..k sum to log2(k), at
    least 1e-3 of the mean distance) and ``exp(-d / sigma)`` (1 at d = 0). One difference:
    umap-learn floors sigma with the mean distance of the whole batch, here of the row, so a
    row's weights do not depend on which other rows are placed with it. Serial: the caller's
    threads each run one cell.
    """
    configure_numba_cache()
    import numba

    # No fastmath: it assumes no infinities, and the bisection starts with hi = inf.
    @numba.njit(cache=True, nogil=True)
    def neighbours(far, squared, out_positions, out_weights):
        k = out_positions.shape[1]
        width = far.shape[1]
        target = np.log2(k)
        best = np.empty(k, dtype=np.float32)
        found = np.empty(k, dtype=np.int32)
        for i in range(far.shape[0]):
            filled = 0
            for j in range(width):
                value = far[i, j]
                if filled < k or value < best[k - 1]:
                    q = min(filled, k - 1)
                    while q > 0 and best[q - 1] > value:
                        best[q] = best[q - 1]
                        found[q] = found[q - 1]
                        q -= 1
                    best[q] = value
                    found[q] = j
                    filled = min(filled + 1, k)
            for q in range(k):
                src = q if q < filled else 0
                out_positions[i, q] = found[src]
                value = best[src]
                if squared:
                    value = np.sqrt(max(value, 0.0))
                out_weights[i, q] = value  # the distance, for now
            lo = 0.0
            hi = np.inf
            mid = 1.0
            for _ in range(64):  # umap-learn's n_iter and tolerance
                total = 0.0
                for q in range(1, k):
                    d = out_weights[i, q]
                    total += np.exp(-(d / mid)) if d > 0 else 1.0
                if abs(total - target) < 1e-5:
                    break
                if total > target:
                    hi = mid
                    mid = (lo + hi) / 2.0
                else:
                    lo = mid
                    mid = mid * 2.0 if hi == np.inf else (lo + hi) / 2.0
            mean = 0.0
            for q in range(k):
                mean += out_weights[i, q]
            mid = max(mid, 1e-3 * mean / k)
            for q in range(k):
                d = out_weights[i, q]
                out_weights[i, q] = np.exp(-(d / mid)) if d > 0 and mid > 0 else 1.0

    return neighbours
