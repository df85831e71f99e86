"""Nearest rows of one row of a lazy dataset, by an exact scan read a piece at a time.

A dataset kept on disk (:class:`~embproj_panel.dataset.Dataset`) has no feature matrix in
memory to index, so :func:`dataset_neighbors` answers "which rows are closest to this one?"
as the in-memory exact search does, one Parquet piece (the Dask engine's partition) at a
time: the query row's vector is read first (a row left out of the projection says why), then
each piece's usable rows (:func:`~embproj_panel.dataset.piece_matrix`, the projection's own
rule for NaN and empty cells) are ranked by a :class:`~embproj_panel.neighbors.NeighborIndex`
over that piece (:meth:`~embproj_panel.neighbors.NeighborIndex.nearest_to`: the same scores,
bound and float64 re-ranking, ties by row position) and merged into the running k best. The
answer is therefore exactly the in-memory one; memory is one piece, and the time is one read
of the embedding columns (the projector runs it in the background, with progress and cancel).

Only the projection's rows are candidates (an isolated projection searches among its rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embproj_panel.dataset import Dataset, feature_names, piece_matrix
from embproj_panel.neighbors import (
    DEFAULT_K,
    NeighborIndex,
    Neighbors,
    check_metric,
    clamp_k,
    locate_row,
    source_columns,
)

__all__ = ["dataset_neighbors", "projected_columns"]


def projected_columns(dataset: Dataset, projection: Any) -> list[str]:
    """The dataset columns a projection was made from (its feature names read back).

    ``emb[0]`` ... ``emb[63]`` name the vector column ``emb``; a scalar column names itself.

    Raises
    ------
    ValueError
        The names do not match this dataset's columns (another dataset's projection).
    """
    chosen = source_columns(dataset, list(projection.columns)) or []
    if not chosen or feature_names(dataset, chosen) != list(projection.columns):
        raise ValueError("This projection's columns are not this dataset's: is it the "
                         "dataset the projection was made from?")
    return chosen


def dataset_neighbors(dataset: Dataset, projection: Any, row: int, k: int = DEFAULT_K,
                      metric: str = "cosine",
                      progress: Callable[[float], None] | None = None,
                      cancel: Callable[[], bool] | None = None) -> Neighbors:
    """The k nearest other projected rows of dataset row ``row``, nearest first (exact).

    Parameters
    ----------
    dataset
        The lazy dataset the projection was made from.
    projection
        Its :class:`~embproj_panel.compute.Projection`; its rows are the candidates, its
        columns the space searched.
    row
        The query row's position in the dataset.
    k, metric
        As :meth:`~embproj_panel.neighbors.NeighborIndex.query` (k clamped to 1-100 and to
        the other rows, the sentence in ``Neighbors.note``; no warning).
    progress, cancel
        ``progress(fraction)`` after each piece; ``cancel()`` checked before each piece,
        raising :class:`~embproj_panel._runtime.Cancelled`.

    Raises
    ------
    ValueError
        The row was left out of the projection (saying why), is not in it, or does not exist.
    """
    from embproj_panel._runtime import Cancelled

    metric = check_metric(metric)
    report = progress or (lambda fraction: None)
    rows = np.asarray(projection.rows, dtype=np.int64)
    row = int(rows[locate_row(rows, row, dict(getattr(projection, "excluded", ())))])
    k, note = clamp_k(k, len(rows) - 1)
    columns = projected_columns(dataset, projection)
    dims = {name: (dataset.vector_dim(name) if dataset.column_types[name] == "vector" else None)
            for name in columns}
    pieces = dataset.pieces()
    starts = np.array([piece.start for piece in pieces], dtype=np.int64)
    own = int(np.searchsorted(starts, row, side="right") - 1)
    # The query's piece first: its vector, read by the projection's own rule.
    order = [own, *[i for i in range(len(pieces)) if i != own]]
    query: np.ndarray | None = None
    best_rows = np.empty(0, dtype=np.int64)
    best_dist = np.empty(0)
    for done, i in enumerate(order):
        if cancel is not None and cancel():
            raise Cancelled("Cancelled.")
        matrix, piece_rows, _ = piece_matrix(pieces[i], columns, dims)
        wanted = np.isin(piece_rows, rows, assume_unique=True)
        if not wanted.all():  # an isolated projection: only its rows are candidates
            matrix, piece_rows = matrix[wanted], piece_rows[wanted]
        if query is None:
            where = int(np.searchsorted(piece_rows, row))
            query = matrix[where].copy()
        if len(piece_rows):
            skip = int(np.searchsorted(piece_rows, row)) if i == own else None
            index = NeighborIndex(matrix, metric, rows=piece_rows)
            found, dist = index.nearest_to(query, k, skip=skip)
            best_rows = np.concatenate([best_rows, piece_rows[found]])
            best_dist = np.concatenate([best_dist, dist])
            keep = np.lexsort((best_rows, best_dist))[:k]
            best_rows, best_dist = best_rows[keep], best_dist[keep]
        report((done + 1) / len(order))
    return Neighbors(int(row), best_rows, best_dist, metric, True, note)
