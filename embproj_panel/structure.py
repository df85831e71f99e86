"""The state of "Find clusters": parameters, a background job, the ``cluster`` column; no Panel.

:class:`ClusterState` sits beside a :class:`~embproj_panel.state.ProjectorState`. Its
``find`` event clusters the state's current 2-D layout in the background
(:func:`embproj_panel.clusters.find_clusters`: progress, ``cancel``, a newer request
supersedes an older one and a stale result is dropped). The result becomes a column of the
table, ``cluster`` (one int per row, -1 unclustered and for rows not projected), so it can be
coloured by, seen in the table and exported like any other; ``labels`` names each cluster
(:func:`embproj_panel.clusters.label_clusters`) from ``label_column``.

A new layout makes the clusters stale: the labels go, the column's values become -1 and the
status says to find them again (a million rows take tens of seconds, so this never runs
unasked). Results are applied through the projector state's ``dispatch``, on the session's
thread, never on the worker.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import numpy as np
import param

from embproj_panel.clusters import (
    UNCLUSTERED,
    UNCLUSTERED_LABEL,
    Cancelled,
    Clustering,
    default_min_cluster_size,
    find_clusters,
    label_clusters,
)
from embproj_panel.state import NONE_LABEL, ProjectorState, _Dispatcher, column_labels

__all__ = ["CLUSTER_COLUMN", "ClusterState"]

CLUSTER_COLUMN = "cluster"

# Schema kind of the label column -> how label_clusters names a cluster from it.
_LABEL_KIND = {"categorical": "categorical", "id": "categorical", "text": "text",
               "image": "image"}


class ClusterState(param.Parameterized):
    """Clusters of a projector state's layout, their labels and the ``cluster`` column.

    Parameters
    ----------
    state
        The projector state whose layout is clustered and whose table gets the column.
    """

    state = param.ClassSelector(class_=ProjectorState, constant=True, doc="""
        The projector state whose layout is clustered.""")

    min_cluster_size = param.Integer(default=None, bounds=(2, None), allow_None=True, doc="""
        The smallest group of rows that counts as a cluster. Empty: 1% of the projected rows
        (at least 5), so the number of clusters stays readable at any size.""")

    label_column = param.Selector(default=None, objects=[None], allow_None=True, doc="""
        The column that names the clusters: its majority value and share (categorical), its
        top c-TF-IDF terms (text) or its most central member's image (image column). None:
        "cluster 0", "cluster 1", ...""")

    find = param.Event(doc="""Find clusters on the current layout, in the background.""")

    cancel = param.Event(doc="""Stop the running search; the previous clusters stay.""")

    # -- outputs --------------------------------------------------------------------------------
    clustering = param.ClassSelector(class_=Clustering, default=None, allow_None=True,
                                     constant=True, doc="""
        The latest :class:`~embproj_panel.clusters.Clustering` (per table row), or None.""")

    labels = param.Dict(default={}, constant=True, doc="""
        Cluster id -> :class:`~embproj_panel.clusters.ClusterLabel` (plain text).""")

    column = param.String(default="", constant=True, doc="""
        The name of the state's derived column that holds the cluster ids (``cluster``, or
        ``cluster_`` when the table has a ``cluster`` column; "" before the first run).""")

    busy = param.Boolean(default=False, constant=True, doc="""Whether a search is running.""")

    progress = param.Number(default=0.0, bounds=(0.0, 1.0), constant=True, doc="""
        Progress of the running search, 0 to 1.""")

    status = param.String(default="", constant=True, doc="""
        One line: how many clusters, how many rows unclustered, sampling, or why none.""")

    error = param.String(default="", constant=True, doc="""
        A readable message when the last search failed, else empty.""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        if state is not None:
            params["state"] = state
        super().__init__(**params)
        self._generation = 0
        self._cancel_flag: threading.Event | None = None
        self._projection: Any = None  # the layout the current clusters belong to
        self._thread: threading.Thread | None = None
        self._final: Any = None  # the worker's last callback, for wait() outside a session
        self.state.param.watch(self._on_table, ["table"])
        self.state.param.watch(self._on_projection, ["projection"])
        self._on_table()

    # -- choices --------------------------------------------------------------------------------
    def _on_table(self, *events: Any) -> None:
        table = self.state.table
        names: list[Any] = []
        if table is not None:
            kinds = table.schema.columns
            names = [name for name, info in kinds.items() if info.kind in _LABEL_KIND]
        self.param.label_column.objects = {NONE_LABEL: None, **column_labels(names)}
        if self.label_column not in names:
            self.label_column = self._default_label_column(names)
        if events:  # a new table: the old clusters belong to the old rows
            self._generation += 1
            with param.edit_constant(self):
                self.param.update(clustering=None, labels={}, column="", busy=False,
                                  progress=0.0, status="", error="")

    def _default_label_column(self, names: list[Any]) -> Any:
        """The colour column if it can name clusters, else the first text or image column."""
        state = self.state
        if state.color_by in names:
            return state.color_by
        kinds = state.table.schema.columns if state.table is not None else {}
        for kind in ("categorical", "text", "image"):
            for name in names:
                if kinds[name].kind == kind:
                    return name
        return None

    # -- running ----------------------------------------------------------------------------------
    def _coords(self) -> np.ndarray | None:
        """One (x, y) per table row, NaN for rows not projected."""
        state = self.state
        projection = state.projection
        if state.table is None or projection is None:
            return None
        coords = np.full((len(state.table), 2), np.nan)
        coords[projection.rows] = projection.coords
        return coords

    @param.depends("find", watch=True)
    def _on_find(self) -> None:
        coords = self._coords()
        if coords is None:
            with param.edit_constant(self):
                self.error = "No layout yet: wait for the projection, then find clusters."
            return
        self._generation += 1
        generation = self._generation
        if self._cancel_flag is not None:
            self._cancel_flag.set()
        flag = self._cancel_flag = threading.Event()
        dispatch = _Dispatcher(self.state.dispatch)
        size = self.min_cluster_size
        projection = self.state.projection
        n = int(np.isfinite(coords[:, 0]).sum())
        with param.edit_constant(self):
            self.param.update(busy=True, progress=0.0, error="", status=(
                f"Finding clusters of {n:,} points (min_cluster_size "
                f"{size or default_min_cluster_size(n):,})..."))

        def progress(value: float) -> None:
            dispatch(partial(self._set_progress, generation, value))

        def work() -> None:
            try:
                result = find_clusters(coords, size, progress=progress, cancel=flag.is_set)
            except Cancelled:
                final = partial(self._stopped, generation)
            except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
                final = partial(self._failed, generation, exc)
            else:
                final = partial(self._apply, generation, result, projection)
            self._final = final
            dispatch(final)

        self._thread = threading.Thread(target=work, name="embproj-clusters", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the running search is done and applied (scripts, tests, notebooks).

        Never call it from a served session's callbacks: their loop applies the result.
        """
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"Finding clusters did not finish within {timeout} s")
        final, self._final = self._final, None
        if final is not None and self.state.dispatch is None:
            final()  # nobody else runs it here; each callback applies once (by generation)

    @param.depends("cancel", watch=True)
    def _on_cancel(self) -> None:
        if self._cancel_flag is not None:
            self._cancel_flag.set()

    def run(self, min_cluster_size: int | None = None, label_column: Any = None) -> np.ndarray:
        """Find clusters now, in this thread (Python's ``projector.find_clusters``).

        Returns
        -------
        numpy.ndarray
            One int64 cluster id per table row (-1: unclustered or not projected).
        """
        coords = self._coords()
        if coords is None:
            raise ValueError("No layout yet: the projection has not finished (state.wait()).")
        if label_column is not None:
            if label_column not in self.param.label_column.objects.values():
                choices = [str(v) for v in self.param.label_column.objects.values() if v]
                raise ValueError(
                    f"{label_column!r} cannot name clusters; the columns that can are {choices}"
                )
            self.label_column = label_column
        self.min_cluster_size = min_cluster_size
        self._generation += 1
        if self._cancel_flag is not None:
            self._cancel_flag.set()
        result = find_clusters(coords, min_cluster_size)
        self._apply(self._generation, result, self.state.projection)
        return result.labels.copy()

    def _set_progress(self, generation: int, value: float) -> None:
        if generation == self._generation and self.busy:
            with param.edit_constant(self):
                self.progress = min(max(value, 0.0), 1.0)

    def _stopped(self, generation: int) -> None:
        if generation == self._generation and self.busy:
            with param.edit_constant(self):
                self.param.update(busy=False, progress=0.0, status="Cancelled: the previous "
                                  "clusters stay." if self.clustering else "Cancelled.")

    def _failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation and self.busy:
            with param.edit_constant(self):
                self.param.update(busy=False, progress=0.0,
                                  error=f"Finding clusters failed: {exc}", status="")

    def _apply(self, generation: int, result: Clustering, projection: Any) -> None:
        state = self.state
        if generation != self._generation or projection is not state.projection \
                or state.table is None or len(result.labels) != len(state.table) \
                or result is self.clustering:
            return  # superseded, the layout changed meanwhile, or applied already
        self._projection = projection
        name = self.column or state.free_name(CLUSTER_COLUMN)
        _put_column(state, name, result.labels)
        with param.edit_constant(self):
            self.param.update(clustering=result, column=name, busy=False, progress=1.0,
                              error="", status=_describe(result))
        self._relabel()

    @param.depends("label_column", watch=True)
    def _relabel(self) -> None:
        result = self.clustering
        table = self.state.table
        if result is None or table is None:
            return
        column = self.label_column
        values = kind = None
        if column is not None:
            kind = _LABEL_KIND.get(table.schema.columns[column].kind)
            if kind != "image":
                values = table.get_column(column, convert_to="numpy")
        with param.edit_constant(self):
            self.labels = label_clusters(result, values, kind)

    def _on_projection(self, *events: Any) -> None:
        """A new layout: the clusters described the old one."""
        if self.clustering is None or self.state.projection is self._projection:
            return
        self._generation += 1
        if self._cancel_flag is not None:
            self._cancel_flag.set()
        if self.column and self.state.table is not None:
            _put_column(self.state, self.column,
                        np.full(len(self.state.table), UNCLUSTERED, dtype=np.int64))
        with param.edit_constant(self):
            self.param.update(clustering=None, labels={}, busy=False, progress=0.0,
                              status="The layout changed: find clusters again.")

    def close(self) -> None:
        """Stop any running search (the session ended)."""
        self._generation += 1
        if self._cancel_flag is not None:
            self._cancel_flag.set()


def _put_column(state: ProjectorState, name: str, labels: np.ndarray) -> None:
    """Show the cluster ids as the state's derived column ``name`` (categorical, -1 named
    "unclustered"): the table view, the exports and the colour choices see it at once."""
    state.set_derived(name, np.asarray(labels, dtype=np.int64),
                      labels={UNCLUSTERED: UNCLUSTERED_LABEL})


def _describe(result: Clustering) -> str:
    parts = [f"{result.n_clusters:,} clusters",
             f"{result.n_unclustered:,} rows unclustered",
             f"min_cluster_size {result.min_cluster_size:,}", f"{result.elapsed:.1f} s"]
    line = " · ".join(parts)
    return line + (" — " + " ".join(result.warnings) if result.warnings else "")
