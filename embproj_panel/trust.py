"""How faithful is the map, point by point: does each row keep its neighbours in 2-D?

For every projected row, :func:`faithfulness` is the share of its k nearest rows in the
original space that are also among its k nearest on the 2-D map: Lee & Verleysen's kNN
preservation ``P_i = |N_k^HD(i) & N_k^2D(i)| / k`` (its mean is Q_NX(k)). It costs two kNN
graphs and a set intersection, O(n k) once the original-space graph exists, which is why it
scales to a million rows where the rank-based measures (zadu's local trustworthiness,
co-ranking matrices) need n x n memory. A row is never its own neighbour; ties are broken by
row position in both spaces (see :mod:`embproj_panel.neighbors`), so on small data the values
equal a brute-force reference exactly.

The original-space graph comes from :class:`~embproj_panel.neighbors.NeighborIndex` (exact
up to 20,000 rows, the cached Annoy forest above); the 2-D graph is always exact and
euclidean (a KD-tree). :func:`assess` adds Venna & Kaski's trustworthiness at the same k,
computed with full-table ranks for a stated random sample of rows (all rows when cheap), and
is what the app runs in the background.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embproj_panel.neighbors import (
    DEFAULT_K,
    EXACT_GRAPH_MAX_ROWS,
    BackgroundTask,
    NeighborIndex,
    _cancelled_error,
    check_metric,
    clamp_k,
    projection_index,
    run_in_background,
)

__all__ = [
    "Assessment", "assess", "assess_async", "faithfulness", "knn_2d", "preservation",
]

# Trustworthiness needs each sampled row's distance to every row: n * d multiply-adds a row.
# 2**33 of them (about 3 s on two busy cores) bound the sample, with at least 100 rows.
_TRUST_BUDGET = 1 << 33
_TRUST_MIN_SAMPLE = 100
_BLOCK_BYTES = 1 << 26
# Rows a step of the all-rows 2-D search and the intersection take (bounded memory).
_CHUNK_ROWS = 1 << 16

Progress = Callable[[float], None]


@dataclass(frozen=True)
class Assessment:
    """Per-row faithfulness and the summary the status line shows.

    Attributes
    ----------
    values
        float64, one per projected row (the projection's row order), in [0, 1].
    rows
        The projected rows' positions in the table (``projection.rows``).
    mean
        Mean of ``values``.
    trustworthiness
        T(k) over ``sample`` rows (their ranks among all rows), or None when k >= n / 2.
    trust_stderr
        Standard error of that estimate (0 when every row was used).
    sample
        How many rows the trustworthiness was computed over.
    k, metric
        The neighbourhood size used (after clamping) and the original-space metric.
    exact
        True when the original-space graph was exhaustive (not from the forest).
    notes
        What the user should know (k clamped, sample size).
    """

    values: np.ndarray
    rows: np.ndarray
    mean: float
    trustworthiness: float | None
    trust_stderr: float
    sample: int
    k: int
    metric: str
    exact: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence for a status line."""
        text = f"Faithfulness (k={self.k}, {self.metric}): mean {self.mean:.3f}"
        if self.trustworthiness is not None:
            n = len(self.values)
            where = ("all rows" if self.sample == n
                     else f"a random sample of {self.sample:,} of {n:,} rows, "
                          f"± {self.trust_stderr:.3f}")
            text += f"; trustworthiness {self.trustworthiness:.3f} ({where})"
        if not self.exact:
            text += "; original-space neighbours from the approximate index"
        return text + "."


def faithfulness(source: Any, projection: Any, k: int = DEFAULT_K, metric: str = "euclidean",
                 columns: Any = None) -> np.ndarray:
    """Per-row share of the k nearest original-space neighbours kept among the 2-D ones.

    Parameters
    ----------
    source
        The data the projection was made from, as :func:`~embproj_panel.project` takes it
        (a Table, a DataFrame or a 2-D array).
    projection
        A :class:`~embproj_panel.compute.Projection` of ``source``.
    k
        Neighbourhood size, 1-100 (clamped with a :class:`UserWarning`, and to the number
        of other projected rows).
    metric
        ``"euclidean"`` or ``"cosine"``, for the original space; the 2-D neighbours are
        always euclidean.
    columns
        The original-space columns; None uses the columns the projection was made from.

    Returns
    -------
    numpy.ndarray
        float64 in [0, 1], one value per projected row, in ``projection.rows`` order.

    Raises
    ------
    ValueError
        Unknown metric, or a source that does not match the projection (rows or columns
        missing, a projected row with no value in ``columns``).
    """
    k_used, note = clamp_k(k, len(projection.rows) - 1)
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    return assess(source, projection, k_used, metric, columns, sample=0).values


def assess(source: Any, projection: Any, k: int = DEFAULT_K, metric: str = "euclidean",
           columns: Any = None, sample: int | None = None, seed: int = 0,
           progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
           ) -> Assessment:
    """Faithfulness per row plus trustworthiness at the same k, for the app's status line.

    ``sample`` is how many rows the trustworthiness is computed over: None chooses (every
    row while ``n**2 * d`` is at most 2**33, else ``max(100, 2**33 // (n * d))`` rows drawn
    with ``seed``), 0 skips it. ``progress(fraction)`` and ``cancel()`` as for a projection;
    k is clamped with a note (no warning).
    """
    report = progress or (lambda fraction: None)
    metric = check_metric(metric)
    coords = np.asarray(projection.coords, dtype=np.float64)
    n = len(coords)
    k, note = clamp_k(k, n - 1)
    notes = [note] if note else []
    index = projection_index(source, projection, metric, columns)
    high = index.graph(k, progress=lambda f: report(0.7 * f), cancel=cancel)
    if cancel is not None and cancel():
        raise _cancelled_error()
    low = knn_2d(coords, k)
    report(0.8)
    values = preservation(high, low)
    trust, stderr, used = None, 0.0, 0
    if sample != 0 and 2 * n - 3 * k - 1 > 0 and k < n / 2:
        used = _sample_size(n, index.d) if sample is None else min(int(sample), n)
        trust, stderr = _trustworthiness(index, low, k, used, seed, cancel)
        if used < n:
            notes.append(f"Trustworthiness over a random sample of {used:,} of {n:,} rows "
                         "(ranks among all rows).")
    elif sample != 0:
        notes.append(f"Trustworthiness needs k < n/2 (k={k}, n={n}); not computed.")
    report(1.0)
    return Assessment(values, np.asarray(projection.rows), float(values.mean()), trust, stderr,
                      used, k, metric, n <= EXACT_GRAPH_MAX_ROWS, notes)


def assess_async(source: Any, projection: Any, k: int = DEFAULT_K, metric: str = "euclidean",
                 columns: Any = None, sample: int | None = None, seed: int = 0,
                 ) -> BackgroundTask:
    """:func:`assess` in a background thread: a task with ``progress``, ``cancel()`` and a
    ``future`` that resolves to the :class:`Assessment`."""
    check_metric(metric)  # a bad metric fails here, at once

    def work(progress: Progress, cancel: Callable[[], bool]) -> Assessment:
        return assess(source, projection, k, metric, columns, sample, seed, progress, cancel)

    return run_in_background(work, "embproj-faithfulness")


# -- the pieces --------------------------------------------------------------------------------


def preservation(high: np.ndarray, low: np.ndarray, chunk: int = _CHUNK_ROWS) -> np.ndarray:
    """Per row, ``|high[i] & low[i]| / k`` for two ``(n, k)`` neighbour lists (ids unique a row).

    ``chunk`` rows at a time, so the working memory stays bounded at any n.
    """
    n, k = high.shape
    values = np.empty(n)
    # A missing neighbour (-1 from an approximate search) must never match another one.
    missing = -1 - np.arange(k)[None, :]
    for start in range(0, n, chunk):
        part = high[start:start + chunk]
        both = np.concatenate([np.where(part < 0, missing, part), low[start:start + chunk]],
                              axis=1)
        both.sort(axis=1)
        values[start:start + chunk] = (both[:, 1:] == both[:, :-1]).sum(axis=1) / k
    return values


def knn_2d(coords: np.ndarray, k: int, chunk: int = _CHUNK_ROWS) -> np.ndarray:
    """``(n, k)`` exact euclidean k nearest other rows of 2-D ``coords``, ties by position.

    int32 ids (int64 above 2**31 rows). A KD-tree proposes ``k + 2`` candidates a row,
    ``chunk`` rows at a time (so the working memory is bounded, about 200 bytes a chunk
    row); they are ranked by ``(squared distance, position)`` with the squared distance
    computed as the brute-force reference computes it (float64 ``dx**2 + dy**2``), so equal
    distances tie exactly as there. A row is settled by its candidates when it is among
    them and the farthest candidate is clearly farther than its k-th neighbour (nothing the
    tree left out can tie with it); the others (duplicate points, lattices) are re-ranked
    from every row within that distance.
    """
    from scipy.spatial import cKDTree

    from embproj_panel.neighbors import _n_threads, id_dtype

    P = np.ascontiguousarray(coords, dtype=np.float64)
    n = len(P)
    # An unbalanced tree builds in half the time and queries as fast on layouts like these.
    tree = cKDTree(P, balanced_tree=False, compact_nodes=False)
    m = min(n, k + 2)
    result = np.empty((n, k), dtype=id_dtype(n))
    workers = _n_threads()
    for start in range(0, n, chunk):
        Q = P[start:start + chunk]
        own = np.arange(start, start + len(Q))
        _, ids = tree.query(Q, m, workers=workers)
        ids = ids.reshape(len(Q), m)
        ids, d2, settled = _ranked_2d(P, Q, own, ids, k)
        result[start:start + len(Q)] = ids[:, 1:k + 1]
        if m < n:
            for i in np.flatnonzero(~settled):
                # Every row within the farthest candidate (a hair more: rounding) is a
                # candidate; the k-th neighbour is at most that far.
                reach = np.sqrt(d2[i, -1]) * (1 + 1e-9) + 1e-300
                ball = np.asarray(tree.query_ball_point(Q[i], reach), dtype=np.int64)
                ball_ids, _, _ = _ranked_2d(P, Q[i:i + 1], own[i:i + 1], ball[None, :], k)
                result[start + i] = ball_ids[0, 1:k + 1]
    return result


def _ranked_2d(P: np.ndarray, Q: np.ndarray, own: np.ndarray, ids: np.ndarray, k: int,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates ``ids`` of query rows ``Q`` (positions ``own``) by (squared distance,
    position), the row itself first; and which rows they settle (see :func:`knn_2d`)."""
    d2 = ((P[ids] - Q[:, None, :]) ** 2).sum(axis=2)  # the reference's arithmetic
    is_self = ids == own[:, None]
    d2[is_self] = -1.0
    # The tree lists candidates nearest first: a row whose squared distances strictly rise
    # is in (distance, position) order already; sort the others (ties, rounding, itself
    # not first).
    unsorted = np.flatnonzero(~(d2[:, 1:] > d2[:, :-1]).all(axis=1))
    if len(unsorted):
        order = np.lexsort((ids[unsorted], d2[unsorted]), axis=1)
        ids[unsorted] = np.take_along_axis(ids[unsorted], order, axis=1)
        d2[unsorted] = np.take_along_axis(d2[unsorted], order, axis=1)
    settled = is_self.any(axis=1) & (d2[:, k] < d2[:, -1] * (1 - 1e-9))
    return ids, d2, settled


def _sample_size(n: int, d: int) -> int:
    if n * n * d <= _TRUST_BUDGET:
        return n
    return min(n, max(_TRUST_MIN_SAMPLE, _TRUST_BUDGET // (n * d)))


def _trustworthiness(index: NeighborIndex, low: np.ndarray, k: int, size: int, seed: int,
                     cancel: Callable[[], bool] | None) -> tuple[float, float]:
    """Venna & Kaski's T(k) averaged over ``size`` rows, with their ranks among all rows.

    Per row ``t_i = 1 - 2 / (k (2n - 3k - 1)) * sum over 2-D neighbours j that are not among
    the k nearest in the original space of (r(i, j) - k)`` (zadu's local trustworthiness);
    its mean over every row is sklearn's ``trustworthiness``. Ranks come from the index's
    float32 scores, ties by position.
    """
    n = index.n
    chosen = (np.arange(n) if size >= n
              else np.sort(np.random.default_rng(seed).choice(n, size, replace=False)))
    scale = 2.0 / (k * (2.0 * n - 3.0 * k - 1.0))
    local = np.empty(len(chosen))
    step = max(1, _BLOCK_BYTES // max(1, 4 * n))
    positions = np.arange(n)
    for start in range(0, len(chosen), step):
        if cancel is not None and cancel():
            raise _cancelled_error()
        block = chosen[start:start + step]
        scores, _ = index._scores(block)
        scores[np.arange(len(block)), block] = np.inf
        for i, row in enumerate(block):
            s = scores[i]
            j = low[row]
            sj = s[j]
            closer = (s[None, :] < sj[:, None]).sum(axis=1)
            tied = ((s[None, :] == sj[:, None]) & (positions[None, :] < j[:, None])).sum(axis=1)
            rank = 1 + closer + tied
            local[start + i] = 1.0 - scale * np.maximum(rank - k, 0).sum()
    mean = float(local.mean())
    stderr = 0.0 if size >= n else float(local.std(ddof=1) / np.sqrt(len(local)))
    return mean, stderr
