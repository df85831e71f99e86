"""Side-by-side projections of one table: panel states aligned to the first, one selection.

:class:`CompareState` holds two to four :class:`PanelState` objects over the *same*
:class:`~embproj_panel.table.Table`, each with its own method, parameters and embedding
columns (two vector columns of two checkpoints, say), each computing in its own job slot in
the background with its own progress and status. What the user sees as one thing is one
thing: the selection, the colour column, the hover image, the tooltip columns and the style
are kept equal across the panels (:data:`SHARED`), so a brush in any panel lights up the same
rows in every panel and in the table. Comparing before assigning keeps the sync loop-free.

A :class:`PanelState` is a :class:`~embproj_panel.state.ProjectorState` whose *shown*
projection is its computed one moved onto its ``reference`` panel's layout by an orthogonal
Procrustes fit (:mod:`embproj_panel.align`) on the rows both projected, so the same clusters
sit in the same place. The computed layout stays in ``raw_projection``; switching ``align``
off, or a new reference layout, re-aligns without recomputing. Exports and
``selected_dataframe`` carry the shown (aligned) coordinates.

:func:`displacements` is the data of the "where did it move" overlay: for selected rows, the
segment from a row's position in the first panel to its position in another.

No Panel here: the views are in :mod:`embproj_panel.views.compare`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import param

from embproj_panel.align import Alignment, align_layout
from embproj_panel.colors import ROW, X, Y, plot_frame
from embproj_panel.reducers import REDUCERS
from embproj_panel.state import ProjectorState, settings_class
from embproj_panel.table import Table

__all__ = ["MAX_MOVES", "MAX_PANELS", "SHARED", "CompareState", "PanelState", "displacements",
           "panel_settings"]

#: At most this many panels (a 2 x 2 grid still shows each map large enough to read).
MAX_PANELS = 4

#: The settings every panel shares (what the user sees as one choice).
SHARED = ("selection", "color_by", "hover_image", "tooltip_columns", "point_size", "alpha",
          "colormap", "datashade_threshold")

#: The "where did it move" overlay draws at most this many segments (an even sample beyond:
#: thousands of crossing lines say nothing more, and each one is a glyph in the browser).
MAX_MOVES = 2_000


class PanelState(ProjectorState):
    """A :class:`ProjectorState` whose shown layout is aligned to a reference panel's.

    Parameters
    ----------
    reference
        The panel this one is aligned to (None: shown as computed).
    align
        Whether to align (off: shown as computed).
    **params
        As :class:`ProjectorState`.
    """

    reference = param.ClassSelector(class_=ProjectorState, default=None, allow_None=True,
                                    precedence=-1, doc="""
        The panel whose layout this one is aligned to (None: shown as computed).""")

    align = param.Boolean(default=True, doc="""
        Move the computed layout onto the reference's by an orthogonal Procrustes fit
        (rotation, reflection, uniform scale, translation) on the rows both projected.""")

    raw_projection = param.Parameter(default=None, constant=True, doc="""
        The projection as computed (``projection`` is it aligned, or the same object).""")

    alignment = param.Parameter(default=None, constant=True, doc="""
        The :class:`~embproj_panel.align.Alignment` applied to the shown layout, or None.""")

    alignment_note = param.String(default="", constant=True, doc="""
        One sentence: how the shown layout was aligned, or why it was not.""")

    def __init__(self, table: Table | None = None, **params: Any) -> None:
        super().__init__(table, **params)
        self._watch_reference(None, self.reference)

    # ProjectorState applies every finished job through _apply_projection: the one place a
    # computed layout becomes the shown one, so aligning there covers results, cache hits
    # and recolouring alike (they all read ``projection``).
    def _apply_projection(self, projection: Any) -> None:
        with param.edit_constant(self):
            self.raw_projection = projection
        super()._apply_projection(self._aligned(projection))

    def _aligned(self, projection: Any) -> Any:
        reference = self.reference
        target = reference.projection if reference is not None else None
        alignment, note = None, ""
        if not self.align:
            note = "not aligned (alignment is off)"
        elif reference is None:
            note = ""
        elif target is None:
            note = "not aligned yet (the first panel is still computing)"
        else:
            try:
                coords, alignment = align_layout(projection.coords, projection.rows,
                                                 target.coords, target.rows)
            except ValueError as exc:
                note = f"not aligned: {exc}"
            else:
                projection = dataclasses.replace(projection, coords=coords)
                note = _describe_alignment(alignment)
        with param.edit_constant(self):
            self.param.update(alignment=alignment, alignment_note=note)
        return projection

    # -- re-aligning without recomputing --------------------------------------------------------
    @param.depends("reference", watch=True)
    def _on_reference(self) -> None:
        self._watch_reference(None, self.reference)
        self._realign()

    def _watch_reference(self, old: ProjectorState | None, new: ProjectorState | None) -> None:
        # The old reference's watcher stays but is ignored (_on_reference_projection checks).
        if new is not None:
            new.param.watch(self._on_reference_projection, ["projection"])

    def _on_reference_projection(self, event: param.parameterized.Event) -> None:
        if event.obj is self.reference:
            self._realign()

    @param.depends("align", watch=True)
    def _realign(self) -> None:
        """Show ``raw_projection`` aligned to the reference's current layout (no recompute)."""
        raw = self.raw_projection
        if raw is None or self.table is None or self.closed:
            return
        shown = self._aligned(raw)
        self._positions = None  # the frame is rebuilt: positions are recomputed on demand
        frame = plot_frame(shown.coords, shown.rows, self.color)
        with param.edit_constant(self):
            self.param.update(projection=shown, frame=frame)

    @param.depends("table", watch=True)
    def _forget_raw(self) -> None:
        if self.projection is not None:
            return  # the new table's projection already landed (a cache hit, applied inline)
        with param.edit_constant(self):
            self.param.update(raw_projection=None, alignment=None, alignment_note="")


def _describe_alignment(alignment: Alignment) -> str:
    angle = math.degrees(math.atan2(alignment.rotation[0, 1], alignment.rotation[0, 0]))
    mirrored = ", mirrored" if alignment.reflected else ""
    return (f"aligned to panel 1 (turned {angle:.0f}°{mirrored}, scaled ×{alignment.scale:.3g}; "
            f"fitted on {alignment.n_shared:,} shared rows)")


def panel_settings(view: Mapping[str, Any]) -> dict[str, Any]:
    """A view spec (``{"method": "umap", "n_neighbors": 30, ...}``) as ProjectorState params.

    Keys that are :class:`ProjectorState` parameters pass through; any other key is a
    hyperparameter of the view's method (``n_neighbors``), gathered into ``settings``.

    Raises
    ------
    TypeError
        For a key that is neither (the message lists what the method takes).
    ValueError
        For an unknown method.
    """
    view = dict(view)
    method = view.get("method", "pca")
    if method not in REDUCERS:
        raise ValueError(f"Unknown method {method!r}; the methods are {list(REDUCERS)}")
    hyper = settings_class(method).param
    own: dict[str, Any] = {}
    settings: dict[str, dict[str, Any]] = {
        name: dict(values) for name, values in dict(view.pop("settings", {}) or {}).items()
    }
    for key, value in view.items():
        if key in ProjectorState.param and key not in ("name", "settings", "dispatch"):
            own[key] = value
        elif key in hyper and key != "name":
            settings.setdefault(method, {})[key] = value
        else:
            takes = [name for name in hyper if name != "name"]
            raise TypeError(
                f"Unknown setting {key!r} for a {method} panel; it takes ProjectorState "
                f"settings (method, embedding_columns, ...) or {method}'s {takes}"
            )
    if settings:
        own["settings"] = settings
    return own


def _lookup(frame: Any, n_rows: int) -> np.ndarray:
    """Table row -> position in ``frame`` (-1 where the row was not projected)."""
    lookup = np.full(n_rows, -1, dtype=np.int64)
    lookup[frame[ROW].to_numpy()] = np.arange(len(frame))
    return lookup


def displacements(
    reference: ProjectorState, state: ProjectorState, rows: Sequence[int] | np.ndarray,
    limit: int = MAX_MOVES,
) -> tuple[dict[str, np.ndarray], int]:
    """Segments from each row's position in ``reference`` to its position in ``state``.

    Parameters
    ----------
    reference, state
        Two states over the same table, with frames.
    rows
        Table rows (e.g. the selection).
    limit
        At most this many segments: beyond it, an even sample of the rows (deterministic,
        so the same selection draws the same lines).

    Returns
    -------
    (segments, n_moved)
        ``segments`` has float arrays ``x0, y0, x1, y1`` and int64 ``row``; ``n_moved`` is
        how many of ``rows`` are in both layouts (more than drawn when sampled).
    """
    empty = {key: np.zeros(0) for key in ("x0", "y0", "x1", "y1")}
    empty["row"] = np.zeros(0, dtype=np.int64)
    if reference.frame is None or state.frame is None or state.table is None:
        return empty, 0
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return empty, 0
    n = len(state.table)
    start, end = _lookup(reference.frame, n)[rows], _lookup(state.frame, n)[rows]
    both = (start >= 0) & (end >= 0)
    rows, start, end = rows[both], start[both], end[both]
    n_moved = int(rows.size)
    if n_moved > limit:
        pick = np.linspace(0, n_moved - 1, limit).round().astype(np.int64)
        rows, start, end = rows[pick], start[pick], end[pick]
    ref, own = reference.frame, state.frame
    segments = {
        "x0": ref[X].to_numpy()[start], "y0": ref[Y].to_numpy()[start],
        "x1": own[X].to_numpy()[end], "y1": own[Y].to_numpy()[end], "row": rows,
    }
    return segments, n_moved


class CompareState(param.Parameterized):
    """Two to four :class:`PanelState` over one table, with one selection.

    Parameters
    ----------
    table
        The table every panel projects.
    views
        One mapping per panel: any :class:`ProjectorState` setting (``method``,
        ``embedding_columns``, ...) and the method's hyperparameters (``n_neighbors``).
    align
        Align every panel to the first.
    dispatch
        The session's dispatch, given to every panel (see :class:`ProjectorState`).
    **params
        ``color_by``, ``show_moves``, and any of :data:`SHARED` (given to every panel).

    Examples
    --------
    >>> compare = CompareState(table, views=[{"method": "pca"},
    ...                                      {"method": "umap", "n_neighbors": 30}])
    >>> compare.wait()
    >>> compare.selection = [0, 1, 2]        # selected in every panel
    """

    table = param.ClassSelector(class_=Table, default=None, constant=True, doc="""
        The table every panel projects.""")

    panels = param.List(default=[], item_type=PanelState, constant=True, doc="""
        The panels' states, the first being the reference the others are aligned to.""")

    selection = param.List(default=[], item_type=int, doc="""
        Selected rows (table row positions), the same in every panel.""")

    align = param.Boolean(default=True, doc="""
        Align every panel's layout to the first panel's (orthogonal Procrustes).""")

    show_moves = param.Boolean(default=False, doc="""
        Draw, in every aligned panel after the first, each selected row's displacement from
        its position in the first panel.""")

    def __init__(self, table: Table, views: Sequence[Mapping[str, Any]] | None = None,
                 align: bool = True, dispatch: Any = None, **params: Any) -> None:
        views = [dict(view) for view in (views or [{"method": "pca"}, {"method": "umap"}])]
        if not 2 <= len(views) <= MAX_PANELS:
            raise ValueError(f"Compare shows 2 to {MAX_PANELS} panels; got {len(views)} views")
        shared = {key: params.pop(key) for key in list(params) if key in SHARED}
        if "selection" in shared:
            params["selection"] = shared.pop("selection")
        specs = [panel_settings(view) for view in views]
        for spec in specs:
            clash = set(spec) & set(SHARED)
            if clash:
                raise TypeError(f"{sorted(clash)} are shared by every panel: pass them to "
                                f"Compare, not to one view")
        super().__init__(table=table, align=align, **params)
        panels: list[PanelState] = []
        for i, spec in enumerate(specs):
            panels.append(PanelState(
                table=table, dispatch=dispatch, align=align,
                reference=panels[0] if i else None, name=f"panel{i + 1}",
                **shared, **spec,
            ))
        with param.edit_constant(self):
            self.panels = panels
        self._syncing = False
        for panel in panels:
            panel.param.watch(self._on_panel_shared, list(SHARED))
        if self.selection:
            self._on_selection()

    # -- one of each shared setting --------------------------------------------------------------
    def _on_panel_shared(self, *events: param.parameterized.Event) -> None:
        if self._syncing:
            return
        values = {event.name: event.new for event in events}
        self._share(values, source=events[0].obj)

    def _share(self, values: dict[str, Any], source: Any = None) -> None:
        self._syncing = True
        try:
            for panel in self.panels:
                if panel is source:
                    continue
                changed = {key: value for key, value in values.items()
                           if getattr(panel, key) != value}
                if changed:
                    panel.param.update(**changed)
            if "selection" in values and values["selection"] != self.selection:
                self.selection = list(values["selection"])
        finally:
            self._syncing = False

    @param.depends("selection", watch=True)
    def _on_selection(self) -> None:
        if self._syncing:
            return
        normalized = self.panels[0].normalize_rows(self.selection)
        if normalized != self.selection:
            self.selection = normalized  # re-enters with the normalised list
            return
        self._share({"selection": normalized})

    def select(self, rows: Any) -> None:
        """Select ``rows`` (table row positions) in every panel, validated and normalised."""
        self.selection = self.panels[0].normalize_rows(rows)

    @param.depends("align", watch=True)
    def _on_align(self) -> None:
        for panel in self.panels[1:]:
            panel.align = self.align

    # -- reading ----------------------------------------------------------------------------------
    @property
    def reference(self) -> PanelState:
        """The first panel, the one the others are aligned to."""
        return self.panels[0]

    def views(self) -> list[dict[str, Any]]:
        """Each panel's settings as a view spec (what :class:`CompareState` takes, and the URL).

        ``embedding_columns`` appears when it differs from the table's default; the method's
        hyperparameters when they differ from the reducer's defaults.
        """
        out = []
        for panel in self.panels:
            view: dict[str, Any] = {"method": panel.method}
            default = list(self.table.schema.default_embedding) if self.table else []
            if list(panel.embedding_columns) != default:
                view["embedding_columns"] = list(panel.embedding_columns)
            view.update(panel.settings[panel.method].changed_params())
            out.append(view)
        return out

    def wait(self, timeout: float | None = 120) -> None:
        """Block until every panel's current projection is applied (and aligned).

        Raises
        ------
        TimeoutError
            If a panel takes longer than ``timeout`` seconds.
        """
        for panel in self.panels:
            panel.wait(timeout)
        # A panel that finished before the first was aligned when the first landed (its
        # watcher runs as the first's projection is set): nothing more to wait for.

    def close(self) -> None:
        """Cancel every panel's running projection and drop their data."""
        for panel in self.panels:
            panel.close()
