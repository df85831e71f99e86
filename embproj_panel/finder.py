"""``FindState``: what the user is looking for on one projector, as parameters; no widgets.

It sits beside a :class:`~embproj_panel.state.ProjectorState` and reads only its ``table``,
``projection`` and ``selection``: a text search (:meth:`FindState.search`, hits that are
highlighted without changing the selection until :meth:`FindState.select_hits`) and the
nearest rows of one row in the original space (:meth:`FindState.neighbors`). Both look only
among the projected rows, so on an isolated projection they stay inside it; row numbers are
always the table's positions.

The indexes behind them are built once and kept: one :class:`~embproj_panel.search.TableSearch`
per table, one :class:`~embproj_panel.neighbors.NeighborIndex` per projection and metric (the
cached one faithfulness also uses, see :func:`~embproj_panel.neighbors.projection_index`);
a forest too big to answer exactly is built in the background and queries stay exact until
it is ready. A lazy dataset has no matrix in memory: its neighbours come from an exact scan
read a piece at a time (:func:`~embproj_panel.dataset_neighbors.dataset_neighbors`), which a
tap (:meth:`FindState.request_neighbors`) runs in the background, with progress, while the
Python call :meth:`FindState.neighbors` waits for it.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import param

from embproj_panel import compute
from embproj_panel.dataset_neighbors import dataset_neighbors
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.neighbors import (
    DEFAULT_K,
    K_MAX,
    METRICS,
    NeighborIndex,
    Neighbors,
    clamp_k,
    neighbors_frame,
    projection_index,
)
from embproj_panel.search import TableSearch

__all__ = ["FindState", "find_state"]


class FindState(param.Parameterized):
    """Search and nearest neighbours over one projector state.

    Parameters
    ----------
    state
        The :class:`~embproj_panel.state.ProjectorState` whose table and projection are
        searched and whose selection :meth:`select_hits` sets.
    """

    state = param.Parameter(default=None, constant=True, doc="""
        The ProjectorState searched (its table, projection and selection).""")

    # -- search -------------------------------------------------------------------------------
    query = param.String(default="", doc="""
        The text searched for (case-insensitive); empty means no search.""")
    column = param.Parameter(default=None, doc="""
        The column searched; None searches every text and categorical column.""")
    regex = param.Boolean(default=False, doc="""
        Read the query as a regular expression (case-insensitive ``re.search``).""")
    hits = param.List(default=[], item_type=int, constant=True, doc="""
        Table positions of the projected rows that match, ascending.""")
    search_message = param.String(default="", constant=True, doc="""
        "124 of 1,797 rows match", or why the query could not run (plain text).""")

    # -- neighbours ---------------------------------------------------------------------------
    k = param.Integer(default=DEFAULT_K, bounds=(1, K_MAX), doc="""
        How many nearest rows to list.""")
    metric = param.Selector(default="cosine", objects=list(METRICS), doc="""
        Distance in the original space.""")
    query_row = param.Integer(default=None, allow_None=True, constant=True, doc="""
        The table row whose neighbours are shown (None: none).""")
    neighbor_rows = param.List(default=[], item_type=int, constant=True, doc="""
        Table positions of its neighbours, nearest first.""")
    neighbor_table = param.DataFrame(default=None, allow_None=True, constant=True, doc="""
        The neighbours: row, distance and the rows' columns, nearest first.""")
    neighbor_message = param.String(default="", constant=True, doc="""
        What the neighbour list is (or why there is none), as plain text.""")
    neighbor_progress = param.Number(default=None, allow_None=True, bounds=(0.0, 1.0),
                                     constant=True, doc="""
        How far the background scan of a lazy dataset is (None: no scan running).""")

    def __init__(self, state: Any = None, **params: Any) -> None:
        if state is not None:
            params["state"] = state
        super().__init__(**params)
        self._search: tuple[Any, TableSearch] | None = None
        self._indexes: dict[tuple[int, str], NeighborIndex] = {}
        self._projection: Any = None
        self._slot = compute.JobSlot("neighbors")  # a lazy dataset's scan: the newest tap wins
        self._scan: tuple[Any, Any, Any] | None = None  # (job, table, projection) last asked
        self._error = False  # the last search failed (its message is search_message)
        self.state.param.watch(self._on_projection, ["projection", "table"])

    # -- search -------------------------------------------------------------------------------
    def search(self, query: str, column: Any = None, regex: bool = False) -> np.ndarray:
        """Highlight and return the projected rows matching ``query`` (sorted table positions).

        The selection is not changed (see :meth:`select_hits`). ``column=None`` searches every
        text and categorical column.

        Raises
        ------
        ValueError
            A bad regular expression (a readable message), or an unknown column.
        """
        wanted = {"query": query, "column": column, "regex": bool(regex)}
        if all(getattr(self, name) == value for name, value in wanted.items()):
            self._run_search()  # the same search again: the table may have changed
        else:
            self.param.update(**wanted)
        if self._error:
            raise ValueError(self.search_message)
        return np.asarray(self.hits, dtype=np.int64)

    def select_hits(self) -> None:
        """Make the current hits the selection."""
        self.state.select(self.hits)

    @param.depends("query", "column", "regex", watch=True)
    def _on_query(self) -> None:
        self._run_search()

    def _run_search(self) -> None:
        self._error = False
        table, projection = self.state.table, self.state.projection
        if not self.query or table is None or projection is None:
            self._show_hits([], "")
            return
        try:
            found = self._table_search(table).search(self.query, self.column, self.regex)
        except ValueError as err:
            self._error = True
            self._show_hits([], str(err))
            return
        rows = np.asarray(projection.rows, dtype=np.int64)
        found = found[np.isin(found, rows, assume_unique=True)]
        n = len(rows)
        noun = "row matches" if len(found) == 1 and n == 1 else "rows match"
        self._show_hits(found.tolist(), f"{len(found):,} of {n:,} {noun}")

    def _show_hits(self, hits: list[int], message: str) -> None:
        with param.edit_constant(self):
            self.param.update(hits=hits, search_message=message)

    def _table_search(self, table: Any) -> TableSearch:
        if self._search is None or self._search[0] is not table:
            self._search = (table, TableSearch(table))
        return self._search[1]

    # -- neighbours ---------------------------------------------------------------------------
    def neighbors(self, row: int, k: int | None = None, metric: str | None = None,
                  ) -> pd.DataFrame:
        """Show and return the ``k`` nearest projected rows of table ``row``, nearest first.

        The DataFrame has ``row`` (table position), ``distance`` and the rows' columns; the
        query row itself is not listed. k outside 1-100 is clamped with a warning.

        Raises
        ------
        ValueError
            The row was left out of the projection (saying why) or does not exist; there is
            no projection yet.
        """
        if k is not None:
            k_used, _ = clamp_k(k)
            self.k = k_used
        if metric is not None:
            self.metric = metric
        table, projection = self._neighbor_source()
        if isinstance(table, DatasetTable):
            self._slot.cancel("A newer neighbour query.")
            found = dataset_neighbors(table.dataset, projection, row,
                                      k if k is not None else self.k, self.metric)
            if found.note:
                warnings.warn(found.note, UserWarning, stacklevel=2)
        else:
            index = self._index(table, projection, self.metric)
            found = index.query(row, k if k is not None else self.k)
        return self._show_neighbors(table, found)

    def request_neighbors(self, row: int) -> None:
        """Show ``row``'s neighbours as a tap asks: at once in memory, in the background on disk.

        For a lazy dataset the scan reads every embedding row once, which must not hold up the
        session: it runs on the job pool, ``neighbor_progress`` follows it, a newer request
        supersedes it and its result (or the reason it failed) lands on the session's thread.

        Raises
        ------
        ValueError
            As :meth:`neighbors`, for an in-memory table (a lazy dataset's reason is shown in
            ``neighbor_message`` instead).
        """
        table, projection = self._neighbor_source()
        if not isinstance(table, DatasetTable):
            self.neighbors(row)
            return
        from embproj_panel.state import _Dispatcher

        state, k, metric = self.state, self.k, self.metric

        def work(progress: Any, cancel: Any) -> Neighbors:
            return dataset_neighbors(table.dataset, projection, row, k, metric, progress,
                                     lambda: cancel() or state.closed)

        dispatch = _Dispatcher(state.dispatch)
        job = self._slot.submit_work(work, "neighbors")
        self._scan = (job, table, projection)
        with param.edit_constant(self):
            self.param.update(
                query_row=row, neighbor_rows=[], neighbor_table=None, neighbor_progress=0.0,
                neighbor_message=f"Reading the {len(table):,} rows on disk for the {k} nearest "
                                 f"to row {row}…")
        job.add_done_callback(lambda job: dispatch(partial(self._finish_scan, job, table,
                                                           projection)))
        self._slot.forward_progress(job, dispatch, self._scan_progress,
                                    name="embproj-neighbors-progress")

    def wait(self, timeout: float | None = 120) -> None:
        """Block until a background neighbour scan is done and shown (scripts, notebooks).

        Plain Python has no loop to show it: the result is applied here. Never call it from
        a served session's own callbacks: their loop applies the result.

        Raises
        ------
        TimeoutError
            If the scan takes longer than ``timeout`` seconds.
        """
        scan = self._scan
        if scan is None:
            return
        if not scan[0].wait(timeout):
            raise TimeoutError(f"The neighbour scan did not finish within {timeout} s")
        if self.state.dispatch is None:
            self._finish_scan(*scan)  # showing a result twice shows the same list

    def _neighbor_source(self) -> tuple[Any, Any]:
        table, projection = self.state.table, self.state.projection
        if projection is None:
            raise ValueError("There is no projection yet, so no neighbours.")
        return table, projection

    def _scan_progress(self, value: float) -> None:
        if self.neighbor_progress is not None:
            with param.edit_constant(self):
                self.neighbor_progress = value

    def _finish_scan(self, job: Any, table: Any, projection: Any) -> None:
        """Show a finished scan unless a newer request, table or layout superseded it."""
        if (not self._slot.is_current(job) or job.cancelled or table is not self.state.table
                or projection is not self.state.projection):
            return
        error = job.exception()
        if error is None:
            self._show_neighbors(table, job.result())
            return
        why = str(error) if isinstance(error, ValueError) else f"Neighbours failed: {error}"
        with param.edit_constant(self):
            self.param.update(neighbor_rows=[], neighbor_table=None, neighbor_progress=None,
                              neighbor_message=why)

    def _show_neighbors(self, table: Any, found: Neighbors) -> pd.DataFrame:
        frame = neighbors_frame(table, found)
        where = "" if found.exact else " (approximate index)"
        message = (f"{len(found.rows)} nearest rows to row {found.row} by {found.metric} "
                   f"distance{where}.")
        if found.note:
            message = f"{found.note} {message}"
        with param.edit_constant(self):
            self.param.update(query_row=found.row, neighbor_rows=found.rows.tolist(),
                              neighbor_table=frame, neighbor_message=message,
                              neighbor_progress=None)
        return frame

    def clear_neighbors(self) -> None:
        """Show no neighbour list."""
        self._slot.cancel("The neighbour list was cleared.")
        with param.edit_constant(self):
            self.param.update(query_row=None, neighbor_rows=[], neighbor_table=None,
                              neighbor_message="", neighbor_progress=None)

    def _index(self, table: Any, projection: Any, metric: str) -> NeighborIndex:
        key = (id(projection), metric)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = projection_index(table, projection, metric)
            if not index.exact_queries:
                index.build_async()  # queries stay exact (slower) until it is ready
        return index

    def _on_projection(self, *events: Any) -> None:
        if self.state.projection is not self._projection:
            self._projection = self.state.projection
            self._indexes.clear()
            self.clear_neighbors()
        self._run_search()


def find_state(state: Any) -> FindState:
    """The one :class:`FindState` of a projector state (made on first use).

    The search box and the neighbours panel are separate parts over the same state; they
    share this object. It is kept on the state itself, so it goes when the state (its
    session) goes. (It was kept in a module-level ``WeakKeyDictionary`` keyed by the state:
    the value's own reference to its state kept every key, and so every closed session's
    state, table and projection, alive for the life of the server.)
    """
    found = getattr(state, "_find_state", None)
    if found is None:
        found = FindState(state)
        state._find_state = found
    return found
