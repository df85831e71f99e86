"""Nearest rows in the original space: exact (chunked BLAS) or a seeded Annoy forest.

Search, the neighbours panel and per-point faithfulness all ask the same question, "which
rows are closest to this one in the embedding the user chose?", over the raw feature matrix
(:func:`~embproj_panel.features.prepare_features`), never over a reducer's standardised or
PCA-reduced copy. :class:`NeighborIndex` answers it for one matrix and one metric:

- **one row** (:meth:`NeighborIndex.query`): exact while one pass over the matrix is cheap
  (``n * d`` up to :data:`EXACT_MAX_CELLS`, about 30 ms), else from an :class:`AnnoyForest`
  built once, in the background if asked (:meth:`NeighborIndex.build_async`, with progress
  and cancel). Until the forest exists, queries stay exact (slower, never wrong). Candidates
  from the forest are re-ranked with exact float64 distances, so every distance shown is
  exact even when the search is approximate.
- **every row** (:meth:`NeighborIndex.graph`): the kNN graph faithfulness needs; exact up to
  :data:`EXACT_GRAPH_MAX_ROWS` rows, from the forest above, cached for the largest k asked
  (int32, a chunk of rows at a time). When single rows are exhaustive the forest is let go
  once the graph exists: only the matrix, its norms and the graph stay cached.

Exact answers rank by ``(distance, row position)``, so ties (common in integer data such as
digits) are broken the same way every time and equal a brute-force reference exactly.

:class:`AnnoyForest` is the one wrapper of the Annoy that openTSNE vendors
(``openTSNE.dependencies.annoy``, not a public module): the UMAP engine builds its kNN graph
with it too. :func:`neighbor_index` keeps built indexes in a small process-wide cache keyed
by the matrix's content and the metric, so a table's forest is built once, whoever asks.
It holds at most four indexes (least recently used dropped), each its float32 matrix (1x the
table's vectors), norms (24 bytes a row), graph (4 k bytes a row) and, where single queries
need it, the forest (4.5x the matrix at 1,000,000 x 64 with 64 trees).
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_K",
    "EXACT_GRAPH_MAX_ROWS",
    "EXACT_MAX_CELLS",
    "K_MAX",
    "METRICS",
    "AnnoyForest",
    "BackgroundTask",
    "NeighborIndex",
    "Neighbors",
    "clamp_k",
    "locate_row",
    "neighbor_index",
    "neighbors_frame",
    "original_matrix",
    "projection_index",
    "run_in_background",
    "source_columns",
]

METRICS = ("cosine", "euclidean")
DEFAULT_K = 10
K_MAX = 100
# One exact query reads the whole matrix once (a BLAS matrix-vector product, memory-bound):
# 2**26 float32 cells are 256 MB, about 30 ms on this class of machine; 1,000,000 x 128 (twice
# that) measured 50-110 ms on a busy 2-core box, too close to the 100 ms a click may take.
EXACT_MAX_CELLS = 1 << 26
# The exact kNN graph costs n**2 * d multiply-adds: 20,000 x 128 is 5e10, about a second.
EXACT_GRAPH_MAX_ROWS = 20_000
# Forest candidates per query: k + this many, re-ranked exactly (cheap; buys recall).
_SPARE = 20
_EPS32 = float(np.finfo(np.float32).eps)
_BLOCK_BYTES = 1 << 26  # (rows x n) float32 score block of the exact graph: 64 MB
_GRAPH_CHUNK = 1 << 16  # rows a step of the all-rows forest query takes

Progress = Callable[[float], None]
CancelCheck = Callable[[], bool]


def _n_threads() -> int:
    from embproj_panel._runtime import n_threads

    return n_threads()


def id_dtype(n: int) -> type:
    """The row-id dtype of an n-row neighbour list: int32 (half of int64's bytes) when it fits."""
    return np.int32 if n < 2**31 else np.int64


def _cancelled_error(message: str = "Cancelled.") -> Exception:
    from embproj_panel._runtime import Cancelled

    return Cancelled(message)


def clamp_k(k: int, n_others: int | None = None) -> tuple[int, str | None]:
    """``k`` within 1-100 (and at most the number of other rows), and why it changed.

    Parameters
    ----------
    k
        The neighbourhood size asked for.
    n_others
        How many candidate rows there are (rows - 1); None: no such limit.

    Returns
    -------
    (int, str or None)
        The k to use and a sentence saying what was changed, or None.
    """
    try:
        wanted = int(k)
    except (TypeError, ValueError):
        raise ValueError(f"k must be a whole number from 1 to {K_MAX}; got {k!r}.") from None
    used = min(max(wanted, 1), K_MAX)
    note = None
    if used != wanted:
        note = f"k={wanted} is outside 1-{K_MAX}; using k={used}."
    if n_others is not None and used > n_others:
        if n_others < 1:
            raise ValueError("There is no other row to compare with: the data has one row.")
        why = f"is outside 1-{K_MAX} and there are" if note else "but there are"
        note = f"k={wanted} {why} only {n_others} other rows; using k={n_others}."
        used = n_others
    return used, note


def check_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`METRICS`, else a ValueError naming them."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, METRICS))}; got {metric!r}.")
    return metric


def locate_row(rows: np.ndarray, row: Any, excluded: dict[int, str]) -> int:
    """Where input row ``row`` is in the ascending positions ``rows``, or why it is not.

    Raises
    ------
    ValueError
        Not a whole number; left out of the projection (``excluded`` says why); negative;
        not among ``rows``.
    """
    try:
        row = operator.index(row)  # ints and numpy integers; not 3.5, not "3"
    except TypeError:
        raise ValueError(f"A row is a whole-number position; got {row!r}.") from None
    where = int(np.searchsorted(rows, row))
    if where < len(rows) and rows[where] == row:
        return where
    if row in excluded:
        raise ValueError(f"Row {row} was left out of the projection ({excluded[row]}), "
                         "so it has no neighbours.")
    if row < 0:
        raise ValueError(f"Row {row} does not exist: positions start at 0.")
    raise ValueError(f"Row {row} is not among the {len(rows):,} rows searched.")


# -- the Annoy forest --------------------------------------------------------------------------


class AnnoyForest:
    """A seeded Annoy forest over the rows of ``X`` with parallel, thread-count-free queries.

    Parameters
    ----------
    X
        ``(n, d)`` float32 rows to index (item ``i`` is row ``i``).
    metric
        An Annoy metric: ``"euclidean"``, ``"manhattan"`` or ``"angular"`` (cosine ranking;
        Annoy's angular distance is ``sqrt(2 - 2 cos)``).
    seed
        Seeds the random hyperplanes: the same data and seed give the same forest (it is
        built on one thread for that reason).
    n_trees
        None: ``min(64, max(10, 5 + round(sqrt(n) / 10)))``, about umap-learn's rule for
        pynndescent's trees doubled (recall ~0.95 at k = 15 with Annoy's default search).
    progress, cancel
        ``progress(fraction)`` while rows are added (0 to 0.5) and after the build (1.0);
        ``cancel()`` is checked every 8,192 rows and before the build, and raises
        :class:`~embproj_panel.reducers.Cancelled`. Annoy builds the trees in one C++ call,
        which cannot be interrupted: a cancel during it takes effect when it returns.
    """

    def __init__(self, X: np.ndarray, metric: str, seed: int = 0, n_trees: int | None = None,
                 progress: Progress | None = None, cancel: CancelCheck | None = None) -> None:
        from openTSNE.dependencies.annoy import AnnoyIndex

        n = X.shape[0]
        if n_trees is None:
            n_trees = int(min(64, max(10, 5 + round(math.sqrt(n) / 10))))
        self.n_trees = int(n_trees)
        self.metric = metric
        self.index = AnnoyIndex(X.shape[1], metric)
        self.index.set_seed(int(seed) % (2**31 - 1))
        step = 8192
        for start in range(0, n, step):
            if cancel is not None and cancel():
                raise _cancelled_error()
            for i in range(start, min(n, start + step)):
                self.index.add_item(i, X[i])
            if progress is not None:
                progress(0.5 * min(n, start + step) / n)
        if cancel is not None and cancel():
            raise _cancelled_error()
        self.index.build(self.n_trees, n_jobs=1)  # one thread: the same forest every time
        self.n = n
        if progress is not None:
            progress(1.0)

    def query(self, X_new: np.ndarray | None, k: int, search_k: int = -1,
              items: np.ndarray | None = None, distances: bool = True,
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """k nearest indexed rows of each row of ``X_new`` (None: of the indexed ``items``).

        ``items=None`` with ``X_new=None`` means every indexed row. ``search_k`` is Annoy's
        (-1: ``n_trees * k`` nodes); a larger value finds more of the true neighbours. Missing
        neighbours (Annoy may return fewer than k) are -1 at distance inf. Each query is
        independent and read-only, so the thread count cannot change the results.
        ``distances=False`` returns None for them (Annoy then builds no list of floats).
        """
        from concurrent.futures import ThreadPoolExecutor

        if X_new is None and items is None:
            items = np.arange(self.n)
        m = X_new.shape[0] if X_new is not None else len(items)
        k = min(k, self.n)
        indices = np.full((m, k), -1, dtype=np.int64)
        dists = np.full((m, k), np.inf, dtype=np.float32) if distances else None

        def work(bounds: tuple[int, int]) -> None:
            index = self.index
            if dists is None and X_new is None:
                for i in range(*bounds):
                    found = index.get_nns_by_item(int(items[i]), k, search_k)
                    indices[i, : len(found)] = found
                return
            for i in range(*bounds):
                if X_new is None:
                    found, far = index.get_nns_by_item(int(items[i]), k, search_k,
                                                       include_distances=True)
                else:
                    found, far = index.get_nns_by_vector(X_new[i], k, search_k,
                                                         include_distances=True)
                indices[i, : len(found)] = found
                dists[i, : len(far)] = far

        step = 2048
        chunks = [(start, min(m, start + step)) for start in range(0, m, step)]
        if len(chunks) == 1:  # a few queries: starting threads would cost more than them
            work(chunks[0])
            return indices, dists
        with ThreadPoolExecutor(max_workers=_n_threads()) as pool:
            list(pool.map(work, chunks))
        return indices, dists


# -- one table's index -------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbors:
    """The k nearest other rows of one row, nearest first.

    Attributes
    ----------
    row
        The query row (a position in the input table).
    rows
        int64 input-table positions of the neighbours, nearest first.
    distances
        float64 exact distances (cosine: ``1 - cos``, in [0, 2]; euclidean).
    metric
        The metric used.
    exact
        True when found by an exhaustive search, False when the forest proposed them.
    note
        What the user should know (k clamped), or None.
    """

    row: int
    rows: np.ndarray
    distances: np.ndarray
    metric: str
    exact: bool
    note: str | None = None


class NeighborIndex:
    """Nearest-neighbour search over one feature matrix with one metric.

    Parameters
    ----------
    matrix
        ``(n, d)`` float32 feature matrix (never written).
    metric
        ``"cosine"`` (default) or ``"euclidean"``.
    rows
        Input-table position of each matrix row (ascending); None: ``0 .. n-1``.
    excluded
        ``(row_position, reason)`` for input rows left out of the matrix (see
        :class:`~embproj_panel.features.Features`), so asking about one says why.
    seed
        Seeds the forest.
    exact_max_cells
        Single queries are exhaustive while ``n * d`` is at most this.

    Thread-safe: queries may run while the forest is being built.
    """

    def __init__(self, matrix: np.ndarray, metric: str = "cosine",
                 rows: np.ndarray | None = None,
                 excluded: Sequence[tuple[int, str]] = (), seed: int = 0,
                 exact_max_cells: int = EXACT_MAX_CELLS) -> None:
        self.metric = check_metric(metric)
        X = np.asarray(matrix)
        if X.ndim != 2 or X.dtype != np.float32:
            X = np.ascontiguousarray(X, dtype=np.float32).reshape(len(X), -1)
        self.matrix = X
        self.n, self.d = X.shape
        self.rows = (np.arange(self.n, dtype=np.int64) if rows is None
                     else np.asarray(rows, dtype=np.int64))
        if len(self.rows) != self.n:
            raise ValueError(f"{len(self.rows)} row positions for a matrix of {self.n} rows.")
        self.excluded = dict(excluded)
        self.seed = int(seed)
        self.exact_queries = self.n * self.d <= exact_max_cells
        # Squared norms (euclidean) or norms (cosine) in float64, for the BLAS identities.
        sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
        self._norm2 = sq
        self._norm = np.sqrt(sq)
        self._max_norm2 = float(sq.max()) if self.n else 0.0
        self._norm2_32 = sq.astype(np.float32)
        self._inv_norm_32 = np.divide(1.0, self._norm, out=np.zeros(self.n),
                                      where=self._norm > 0).astype(np.float32)
        self._forest: AnnoyForest | None = None
        self._build: BackgroundTask | None = None
        self._graph: np.ndarray | None = None
        self._lock = threading.Lock()

    # -- positions ----------------------------------------------------------------------------
    def position(self, row: int) -> int:
        """The matrix position of input row ``row``; ValueError saying why it has none."""
        return locate_row(self.rows, row, self.excluded)

    # -- the forest ---------------------------------------------------------------------------
    @property
    def needs_forest(self) -> bool:
        """True when single queries or the kNN graph are too big to answer exhaustively."""
        return not self.exact_queries or self.n > EXACT_GRAPH_MAX_ROWS

    @property
    def ready(self) -> bool:
        """True when every query will be answered at full speed (forest built if needed, or
        the graph kept and single rows exhaustive)."""
        return (not self.needs_forest or self._forest is not None
                or (self.exact_queries and self._graph is not None))

    def build(self, progress: Progress | None = None, cancel: CancelCheck | None = None,
              ) -> AnnoyForest:
        """Build the forest now (once; later calls return it). Raises Cancelled if cancelled."""
        with self._lock:
            if self._forest is not None:
                if progress is not None:
                    progress(1.0)
                return self._forest
            forest = AnnoyForest(self.matrix, "angular" if self.metric == "cosine"
                                 else "euclidean", self.seed, progress=progress, cancel=cancel)
            self._forest = forest
            return forest

    def build_async(self) -> BackgroundTask:
        """Build the forest in a background thread; the same task while one is running.

        ``task.future.result()`` is the :class:`AnnoyForest`; ``task.progress`` goes 0 to 1.
        """
        with self._lock:
            if self._build is not None and not self._build.done:
                return self._build
            self._build = run_in_background(self.build, "embproj-neighbor-index")
            return self._build

    # -- one row ------------------------------------------------------------------------------
    def query(self, row: int, k: int = DEFAULT_K, search_k: int | None = None) -> Neighbors:
        """The k nearest other rows of input row ``row``, nearest first.

        k outside 1-100 is clamped with a :class:`UserWarning` (the sentence is also in
        ``Neighbors.note``). ``search_k`` tunes the forest (None: ``max(n_trees * (k + 20) * 4,
        5,000)`` nodes; ``benchmarks/bench_neighbors.py`` prints the recall it buys).

        Raises
        ------
        ValueError
            The row was excluded from the projection (saying why) or does not exist.
        """
        position = self.position(row)
        k, note = clamp_k(k, self.n - 1)
        if note:
            warnings.warn(note, UserWarning, stacklevel=2)
        forest = self._forest
        if self.exact_queries or forest is None:
            found, dist = self._exact(np.array([position]), k)[0]
            exact = True
        else:
            if search_k is None:
                search_k = max(forest.n_trees * (k + _SPARE) * 4, 5_000)
            ids, _ = forest.query(None, k + 1 + _SPARE, search_k, items=np.array([position]))
            ids = ids[0][(ids[0] >= 0) & (ids[0] != position)]
            dist = self._distances(position, ids)
            order = np.lexsort((ids, dist))[:k]
            found, dist = ids[order], dist[order]
            exact = False
        return Neighbors(int(row), self.rows[found], dist, self.metric, exact, note)

    # -- every row ----------------------------------------------------------------------------
    def graph(self, k: int = DEFAULT_K, progress: Progress | None = None,
              cancel: CancelCheck | None = None, search_k: int = -1) -> np.ndarray:
        """``(n, k)`` int64 matrix positions of each row's k nearest other rows, nearest first.

        Exact (ties by position) up to :data:`EXACT_GRAPH_MAX_ROWS` rows, from the forest
        (built here if it is not yet) above, with Annoy's ``search_k`` (-1: ``n_trees *
        (k + 1)`` nodes a row; the graph's recall is printed by
        ``benchmarks/bench_faithfulness.py``). The largest graph asked for is kept and serves
        any smaller k. ``k`` must already be within 1 .. n - 1 (see :func:`clamp_k`).

        Memory: while single rows are answered exhaustively (``exact_queries``) the forest is
        released once the graph is made (a larger k builds it again); otherwise the
        neighbours panel's queries need it, and it stays with the cached index.
        """
        report = progress or (lambda fraction: None)
        held = self._graph
        if held is not None and held.shape[1] >= k:
            report(1.0)
            return held[:, :k]
        if self.n <= EXACT_GRAPH_MAX_ROWS:
            result = np.empty((self.n, k), dtype=id_dtype(self.n))
            step = max(1, min(self.n, _BLOCK_BYTES // max(1, 4 * self.n)))
            for start in range(0, self.n, step):
                if cancel is not None and cancel():
                    raise _cancelled_error()
                block = np.arange(start, min(self.n, start + step))
                for i, (found, _) in enumerate(self._exact(block, k)):
                    result[start + i] = found
                report(min(self.n, start + step) / self.n)
        else:
            forest = self.build(progress=lambda f: report(0.5 * f), cancel=cancel)
            result = np.empty((self.n, k), dtype=id_dtype(self.n))
            # A chunk of rows at a time: the (rows, k + 1) int64 ids and float32 distances
            # Annoy hands back stay small, and a cancel takes effect within a chunk.
            for start in range(0, self.n, _GRAPH_CHUNK):
                if cancel is not None and cancel():
                    raise _cancelled_error()
                items = np.arange(start, min(self.n, start + _GRAPH_CHUNK))
                ids, _ = forest.query(None, k + 1, search_k, items=items, distances=False)
                result[start:start + len(items)] = _drop_self(ids, k, items)
                report(0.5 + 0.5 * (start + len(items)) / self.n)
            if self.exact_queries:
                # Single rows are answered exhaustively at this size, so nothing but a graph
                # at a larger k would ask the forest again: let it go (at 1,000,000 x 64 it
                # was 1.1 GB, 4.5x the matrix). The graph kept below serves any k up to this.
                with self._lock:
                    if self._forest is forest:
                        self._forest = None
        self._graph = result
        return result

    # -- exact search -------------------------------------------------------------------------
    def nearest_to(self, vector: np.ndarray, k: int, skip: int | None = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest matrix rows of a vector that need not be in the matrix.

        Returns matrix positions and float64 distances, nearest first, ties by position;
        ``skip`` (a matrix position) is never listed. Fewer than k when the matrix has fewer
        rows. One pass over the matrix, as :meth:`query` makes when it is exact: the
        streamed scan of a lazy dataset (:mod:`embproj_panel.dataset_neighbors`) asks each
        piece's index this, so both rank by the same rule.
        """
        q = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        q_norm2 = np.einsum("ij,ij->i", q, q, dtype=np.float64)
        k = min(k, self.n - (skip is not None))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        scores, tol = self._scores_of(q, q_norm2)
        if skip is not None:
            scores[0, skip] = np.inf
        return self._ranked(scores[0], float(tol[0]), q[0], float(np.sqrt(q_norm2[0])), k)

    def _scores_of(self, Q: np.ndarray, q_norm2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(len(Q), n)`` float32 scores of query vectors that rank like the distances, and
        their error bound.

        Euclidean: ``|x|^2 - 2 x.q`` (the query's own ``|q|^2`` is the same for every x);
        cosine: ``-x.q / |x|``. Both from one float32 BLAS product; the bound covers its
        rounding so that no true neighbour is lost before the exact float64 re-ranking.
        """
        if len(Q) == 1:
            # One row: numpy's own loop. A BLAS matrix-vector product is memory-bound (threads
            # gain nothing) and on a busy machine OpenBLAS's thread hand-off cost 30 ms for a
            # 20,000-row product that takes 1 ms on one thread.
            dots = np.einsum("ij,j->i", self.matrix, Q[0])[None, :]
        else:
            dots = Q @ self.matrix.T
        slack = 2.0 * (self.d + 2) * _EPS32
        if self.metric == "euclidean":
            scores = self._norm2_32[None, :] - 2.0 * dots
            tol = slack * (self._max_norm2 + q_norm2) + 1e-30
        else:
            scores = -dots * self._inv_norm_32[None, :]
            tol = slack * np.sqrt(q_norm2) + 1e-30
        return scores, tol

    def _scores(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_scores_of` the matrix rows at positions ``block`` (trust ranks by them)."""
        return self._scores_of(self.matrix[block], self._norm2[block])

    def _exact(self, block: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact k nearest other rows of each matrix row in ``block``, ties by position."""
        scores, tol = self._scores(block)
        scores[np.arange(len(block)), block] = np.inf  # never its own neighbour
        return [self._ranked(scores[i], float(tol[i]), self.matrix[position],
                             float(self._norm[position]), k)
                for i, position in enumerate(block)]

    def _ranked(self, scores: np.ndarray, tol: float, q: np.ndarray, q_norm: float, k: int,
                ) -> tuple[np.ndarray, np.ndarray]:
        """The k best of one query's scores, re-ranked by exact distance, ties by position."""
        kth = np.partition(scores, k - 1)[k - 1]
        candidates = np.flatnonzero(scores <= kth + tol)
        dist = self._distances_to(q, q_norm, candidates)
        order = np.lexsort((candidates, dist))[:k]
        return candidates[order], dist[order]

    def _distances(self, position: int, candidates: np.ndarray) -> np.ndarray:
        """Exact float64 distances from matrix row ``position`` to ``candidates``."""
        return self._distances_to(self.matrix[position], float(self._norm[position]),
                                  candidates)

    def _distances_to(self, q: np.ndarray, q_norm: float, candidates: np.ndarray
                      ) -> np.ndarray:
        """Exact float64 distances from vector ``q`` (norm ``q_norm``) to ``candidates``."""
        q = np.asarray(q, dtype=np.float64)
        C = self.matrix[candidates].astype(np.float64)
        if self.metric == "euclidean":
            return np.sqrt(np.einsum("ij,ij->i", C - q, C - q))
        norms = self._norm[candidates] * q_norm
        cos = np.divide(C @ q, norms, out=np.zeros(len(candidates)), where=norms > 0)
        return np.clip(1.0 - cos, 0.0, 2.0)


def _drop_self(ids: np.ndarray, k: int, own: np.ndarray | None = None) -> np.ndarray:
    """Each row's first k neighbours other than itself (a forest may list it, or not first).

    ``own``: the rows' own ids (None: ``0 .. len(ids) - 1``).
    """
    own = (np.arange(ids.shape[0]) if own is None else np.asarray(own))[:, None]
    keep = np.argsort(ids == own, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, keep, axis=1)


class BackgroundTask:
    """Work running in a daemon thread: ``progress`` (0..1), ``cancel()``, ``future``.

    Made by :func:`run_in_background`. ``future`` resolves to the work's result (or raises
    :class:`~embproj_panel.reducers.Cancelled` / its error); attributes are safe to read
    from any thread. In a Panel app, hand the result to the session with
    ``future.add_done_callback`` and ``pn.state.execute``.
    """

    def __init__(self) -> None:
        self.progress = 0.0
        self.future: Future = Future()
        self._cancel = threading.Event()

    def cancel(self) -> bool:
        """Ask the work to stop at its next check; False if it has already finished."""
        if self.future.done():
            return False
        self._cancel.set()
        return True

    @property
    def done(self) -> bool:
        """True once the work has finished, whatever the outcome."""
        return self.future.done()

    def _set_progress(self, fraction: float) -> None:
        self.progress = max(self.progress, min(1.0, float(fraction)))

    def _run(self, work: Callable[..., Any]) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = work(progress=self._set_progress, cancel=self._cancel.is_set)
        except BaseException as err:  # the work's outcome, re-raised by future.result()
            self.future.set_exception(err)
        else:
            self._set_progress(1.0)
            self.future.set_result(result)


def run_in_background(work: Callable[..., Any], name: str = "embproj-background"
                      ) -> BackgroundTask:
    """Run ``work(progress=..., cancel=...)`` in a daemon thread and return its task."""
    task = BackgroundTask()
    threading.Thread(target=task._run, args=(work,), daemon=True, name=name).start()
    return task


def neighbors_frame(data: Any, found: Neighbors) -> pd.DataFrame:
    """The neighbours as a DataFrame: ``row``, ``distance``, then the rows' own columns.

    A table column named ``row`` or ``distance`` appears as ``"row (column)"`` /
    ``"distance (column)"``. ``data`` is the table (a :class:`~embproj_panel.table.Table`, a DataFrame or a 2-D
    array) whose row positions ``found.rows`` are; only those k rows are read.
    """
    from embproj_panel.table import Table

    rows = np.asarray(found.rows, dtype=np.int64)
    out = pd.DataFrame({"row": rows, "distance": np.asarray(found.distances, dtype=np.float64)})

    def put(name: Any, values: Any) -> None:
        # A table column called "row" or "distance" keeps its values under a marked name.
        out[f"{name} (column)" if name in ("row", "distance") else name] = values

    if isinstance(data, Table):
        for name in data.columns:
            taken = data.cells(name, rows)  # a lazy table reads only these rows
            put(name, list(taken) if taken.ndim > 1 else taken)
    elif isinstance(data, pd.DataFrame):
        part = data.iloc[rows].reset_index(drop=True)
        for name in part.columns:
            put(name, part[name].to_numpy())
    else:
        array = np.asarray(data)
        for j in range(array.shape[1]):
            out[f"x[{j}]"] = array[rows, j]
    return out


# -- a projection's original space ------------------------------------------------------


def original_matrix(source: Any, projection: Any, columns: Any = None) -> np.ndarray:
    """The float32 original-space rows of ``projection.rows``, in that order.

    With ``columns=None`` the projection's own feature columns (``projection.columns``,
    vector columns expanded as ``name[i]``) are read back from ``source``; otherwise the
    given columns. Raises ValueError when the source cannot supply a projected row.
    """
    from embproj_panel.features import prepare_features

    wanted_names = None
    if columns is None:
        chosen = source_columns(source, projection.columns)
    else:
        chosen = columns
    features = prepare_features(source, chosen)
    if columns is None and projection.columns:
        missing = [c for c in projection.columns if c not in features.columns]
        if missing:
            raise ValueError(f"The source has no values for the projection's column(s) "
                             f"{', '.join(map(repr, missing[:5]))}: is it the table the "
                             "projection was made from?")
        wanted_names = projection.columns
    rows = np.asarray(projection.rows, dtype=np.int64)
    where = np.searchsorted(features.rows, rows)
    where = np.minimum(where, len(features.rows) - 1)
    absent = features.rows[where] != rows
    if absent.any():
        reasons = dict(features.excluded)
        row = int(rows[np.flatnonzero(absent)[0]])
        why = (f"row {row} has no value there ({reasons[row]})" if row in reasons
               else f"row {row} is not in the source ({features.n_input_rows:,} rows)")
        raise ValueError(f"{int(absent.sum()):,} projected row(s) are missing from the original "
                         f"space: {why}.")
    X = features.matrix
    if not (len(where) == len(features.rows) and np.array_equal(where, np.arange(len(where)))):
        X = X[where]
    if wanted_names is not None and wanted_names != features.columns:
        position = {name: i for i, name in enumerate(features.columns)}
        X = X[:, [position[name] for name in wanted_names]]
    return X


_VECTOR_ITEM = re.compile(r"^(.*)\[(\d+)\]$")


def source_columns(source: Any, feature_names: list[str]) -> list[Any] | None:
    """The source columns whose features are ``feature_names`` (None for a plain array).

    ``emb[0]`` ... name the vector column ``emb``; a column named as a feature names itself.
    Anything with ``columns`` (a table, a DataFrame, a lazy dataset) is a source.
    """
    if not hasattr(source, "columns") or isinstance(source, np.ndarray):
        return None
    available = list(source.columns)
    by_text = {str(name): name for name in available}
    chosen: list[Any] = []
    for feature in feature_names:
        name = by_text.get(feature)
        if name is None:
            match = _VECTOR_ITEM.match(feature)
            name = by_text.get(match.group(1)) if match else None
        if name is None:
            raise ValueError(f"The projection's column {feature!r} is not in the source; "
                             "pass the table the projection was made from, or columns=.")
        if name not in chosen:
            chosen.append(name)
    return chosen or None


def projection_index(source: Any, projection: Any, metric: str = "cosine", columns: Any = None
                     ) -> NeighborIndex:
    """The cached :class:`NeighborIndex` of a projection's rows in the original space.

    Its matrix is :func:`original_matrix` (``columns=None``: the projection's own columns),
    its rows are ``projection.rows`` and asking about an excluded row says why. Faithfulness
    and the neighbours panel share it, and so its forest and graph. A lazy dataset has no
    such index (ValueError): its rows' neighbours come from a scan of its pieces
    (:func:`~embproj_panel.dataset_neighbors.dataset_neighbors`).
    """
    from embproj_panel.dataset_table import DatasetTable

    if isinstance(source, DatasetTable):
        raise ValueError(
            f"Faithfulness and the kNN graph are not computed for a lazy dataset "
            f"({len(source):,} rows kept on disk): they need every row's vector in memory. "
            "One row's neighbours are: see embproj_panel.dataset_neighbors."
        )
    X = original_matrix(source, projection, columns)
    return neighbor_index(X, metric, rows=np.asarray(projection.rows, dtype=np.int64),
                          excluded=getattr(projection, "excluded", ()))


# -- the process-wide cache --------------------------------------------------------------------

_CACHE_LOCK = threading.Lock()
# (content digest, metric) -> index; at most _CACHE_ENTRIES, least recently used dropped.
# Keyed by content, not by session: two sessions on the same table share one forest.
_CACHE: OrderedDict[tuple[str, str], NeighborIndex] = OrderedDict()
_CACHE_ENTRIES = 4


def matrix_digest(matrix: np.ndarray) -> str:
    """SHA-256 of a matrix's shape, dtype and every byte (not a sample)."""
    digest = hashlib.sha256(f"{matrix.shape}|{matrix.dtype}".encode())
    digest.update(memoryview(np.ascontiguousarray(matrix)).cast("B"))
    return digest.hexdigest()


def neighbor_index(matrix: np.ndarray, metric: str = "cosine", rows: np.ndarray | None = None,
                   excluded: Sequence[tuple[int, str]] = ()) -> NeighborIndex:
    """The cached :class:`NeighborIndex` for this matrix content and metric (made if new).

    The forest is not built here: call :meth:`NeighborIndex.build` or ``build_async``.
    """
    check_metric(metric)
    X = np.ascontiguousarray(matrix, dtype=np.float32)
    row_key = "" if rows is None else matrix_digest(np.asarray(rows, dtype=np.int64))
    key = (matrix_digest(X) + row_key, metric)
    with _CACHE_LOCK:
        index = _CACHE.get(key)
        if index is not None:
            _CACHE.move_to_end(key)
            index.excluded.update(dict(excluded))
            return index
    index = NeighborIndex(X, metric, rows=rows, excluded=excluded)
    with _CACHE_LOCK:
        index = _CACHE.setdefault(key, index)
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return index


def clear_cache() -> None:
    """Forget every cached index (tests; freeing memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
