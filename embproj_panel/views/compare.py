"""``Compare``: two to four projections of one table side by side, with one shared brush.

``ep.Compare(source, views=[{"method": "pca"}, {"method": "umap", "n_neighbors": 30}])``
lays out one :class:`ComparePanel` per view in a grid beside one table. The state is a
:class:`~embproj_panel.comparison.CompareState` (param only); every panel is made of the
projector's own parts over its :class:`~embproj_panel.comparison.PanelState`: a
:class:`~embproj_panel.views.status.StatusView` (its own progress and status), a
:class:`~embproj_panel.views.scatter.ScatterView` (glyphs or a Datashader raster, box, lasso
and tap selection) and, folded away, a :class:`~embproj_panel.views.settings.SettingsView`
(its method, parameters and embedding columns). The one
:class:`~embproj_panel.views.table.TableView` shows the first panel's state: the selection
is the same in every panel, so any of them would do.

Each panel's header also says how faithful its layout is (a
:class:`~embproj_panel.views.trust.TrustView`: the faithfulness mean and the trustworthiness,
computed in the background per panel; one k for all, :attr:`Compare.k_input`).

"Where did it move" is a scatter overlay of every panel after the first
(:meth:`ComparePanel.moves`, added through ``ScatterView.overlays``): with ``show_moves`` on,
alignment on and a selection, a segment from each selected row's position in the first
panel to its position in this one (at most :data:`~embproj_panel.comparison.MAX_MOVES`, an
even sample beyond, said under the plot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from embproj_panel import resources
from embproj_panel.comparison import CompareState, PanelState, displacements
from embproj_panel.reducers import REDUCERS
from embproj_panel.sources import as_table
from embproj_panel.views.base import StateView
from embproj_panel.views.scatter import ScatterView
from embproj_panel.views.session import session_dispatch
from embproj_panel.views.settings import SettingsView
from embproj_panel.views.status import StatusView
from embproj_panel.views.table import TableView
from embproj_panel.views.text import escaped
from embproj_panel.views.trust import TrustView

__all__ = ["PANEL_HEIGHT", "TABLE_HEIGHT", "Compare", "ComparePanel"]

#: Height in pixels of a row of panels (two panels a row).
PANEL_HEIGHT = 520

#: Height in pixels of the table under the panels.
TABLE_HEIGHT = 420

_MOVE_COLOR = "#222222"

# One line whatever the text: a line that wraps would resize the plot (and re-shade a raster).
_ONE_LINE = {"white-space": "nowrap", "overflow": "hidden", "text-overflow": "ellipsis"}
_SMALL = _ONE_LINE | {"font-size": "0.8em", "color": "#555"}

# The title names at most this many embedding columns (64 pixel columns say "64 columns").
_TITLE_COLUMNS = 2


class ComparePanel(StateView):
    """One panel of a comparison: title, status, scatter and (folded) settings of ``state``.

    Parameters
    ----------
    state
        The panel's :class:`PanelState`.
    compare
        The comparison it belongs to (its selection and ``show_moves``).
    number
        1-based position in the grid (1 is the reference).
    """

    compare = param.ClassSelector(class_=CompareState, constant=True, doc="""
        The comparison this panel belongs to.""")

    number = param.Integer(default=1, bounds=(1, None), constant=True, doc="""
        1-based position of the panel (1 is the reference the others are aligned to).""")

    def __init__(self, state: PanelState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        #: "2 · UMAP · vectors_b": escaped, it names user columns.
        self.title = resources.HTML("", margin=(4, 10, 0, 10), height=22,
                                  sizing_mode="stretch_width", styles=_ONE_LINE | {
                                      "font-weight": "600"})
        #: How the shown layout was aligned to panel 1, or why not (no user text in it).
        self.alignment = resources.HTML("", margin=(0, 10), height=18,
                                      sizing_mode="stretch_width", styles=_SMALL)
        #: What the moves overlay drew (or why it drew nothing); empty when off.
        self.moves_note = resources.HTML("", margin=(0, 10), height=18,
                                       sizing_mode="stretch_width", styles=_SMALL)
        self.status = StatusView(self.state)
        #: This panel's faithfulness line (mean, trustworthiness), computed in the background.
        self.trust = TrustView(self.state, publish=False, show_k=False)
        overlays = [self.moves] if self.number > 1 else []
        self.scatter = ScatterView(self.state, overlays=overlays)
        #: The panel's method, parameters and embedding columns (laid out by the Compare).
        self.settings = SettingsView(self.state)
        self.state.param.watch(self._on_title, ["method", "embedding_columns", "projection"])
        self.state.param.watch(self._on_alignment, ["alignment_note"])
        self._on_title()
        self._on_alignment()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.title, self.alignment, self.status, self.trust, self.scatter,
                         self.moves_note,
                         sizing_mode="stretch_width", height=PANEL_HEIGHT - 10,
                         styles={"border": "1px solid #e0e0e0", "border-radius": "4px"})

    @property
    def faithfulness(self) -> Any:
        """Per-row faithfulness of this panel's layout (one per table row, NaN where not
        projected), or None until computed; see :attr:`Projector.faithfulness
        <embproj_panel.views.projector.Projector.faithfulness>`."""
        values = self.trust.faith.values
        return None if values is None else values.copy()

    def settings_card(self) -> pn.Card:
        """The settings, folded, titled with the panel's number."""
        return pn.Card(self.settings, title=f"⚙ Panel {self.number}: method and embedding",
                       collapsed=True, sizing_mode="stretch_width", margin=(5, 5))

    def _on_title(self, *events: Any) -> None:
        state = self.state
        names = [str(name) for name in state.embedding_columns]
        columns = ", ".join(names)
        if len(names) > _TITLE_COLUMNS:
            columns = f"{len(names)} columns ({', '.join(names[:_TITLE_COLUMNS])}, …)"
        params = state.settings[state.method].changed_params()
        shown = ", ".join(f"{key}={value}" for key, value in params.items()
                          if key != "random_state")
        text = f"{self.number} · {REDUCERS[state.method].label}"
        text += f" ({shown})" if shown else ""
        text += f" · {columns}" if columns else ""
        self.title.object = escaped(text)

    def _on_alignment(self, *events: Any) -> None:
        self.alignment.object = escaped(self.state.alignment_note)

    # -- where did it move ----------------------------------------------------------------------
    def moves(self, scatter: ScatterView) -> Any:
        """The overlay: a DynamicMap of displacement segments, redrawn from the comparison."""
        import holoviews as hv

        stream = hv.streams.Params(self.compare, ["selection", "show_moves", "align"])
        return hv.DynamicMap(self.segments, streams=[stream])

    def segments(self, selection: list[int] | None = None, show_moves: bool = False,
                 align: bool = True) -> Any:
        """``hv.Segments`` from the first panel's positions of the selection to this one's."""
        import holoviews as hv

        note = ""
        data: dict[str, Any] = {key: np.zeros(0) for key in ("x0", "y0", "x1", "y1")}
        if show_moves and selection:
            if not align:
                note = "Switch alignment on to see where the selected rows moved."
            else:
                data, moved = displacements(self.compare.reference, self.state, selection)
                data.pop("row")
                drawn = len(data["x0"])
                if moved == 0:
                    note = "None of the selected rows is in both layouts."
                elif drawn < moved:
                    note = (f"Lines from panel 1 for {drawn:,} of {moved:,} selected rows "
                            f"(an even sample).")
                else:
                    note = f"Lines from panel 1 for {moved:,} selected rows."
        self.moves_note.object = escaped(note)
        frame = pd.DataFrame(data)
        return hv.Segments(frame, kdims=["x0", "y0", "x1", "y1"]).opts(
            color=_MOVE_COLOR, line_width=1, alpha=0.55)


class Compare(pn.viewable.Viewer):
    """Two to four projections of one table side by side: one colour, one selection.

    Parameters
    ----------
    source
        What to project (see :func:`~embproj_panel.sources.as_table`), or a
        :class:`CompareState`.
    views
        One mapping per panel, 2 to 4: any :class:`ProjectorState` setting (``method``,
        ``embedding_columns``, ...) and the method's hyperparameters (``n_neighbors``).
        Default: PCA and UMAP.
    align
        Align every panel to the first by an orthogonal Procrustes fit on the rows both
        projected (rotation, reflection, uniform scale, translation).
    **params
        Shared settings (``color_by``, ``hover_image``, ``point_size``, ...,
        ``datashade_threshold``), ``show_moves``, ``linked_zoom`` and ``page_size`` of the
        table.

    Attributes
    ----------
    state
        The :class:`CompareState`.
    panels
        The :class:`ComparePanel` of every view, each with its ``.state``.
    table
        The one :class:`TableView`.

    Examples
    --------
    >>> compare = ep.Compare(ep.datasets.digits(), views=[
    ...     {"method": "pca"}, {"method": "umap", "n_neighbors": 30}], color_by="target")
    >>> compare.wait()
    >>> compare.selection = [0, 1, 2]             # lit in both panels and the table
    >>> compare.panels[1].state.alignment         # the Procrustes fit of panel 2
    """

    state = param.ClassSelector(class_=CompareState, constant=True, doc="""
        The comparison this view shows and edits.""")

    linked_zoom = param.Boolean(default=True, doc="""
        Pan and zoom every panel together: the panels share their x and y ranges (the
        layouts are aligned to panel 1, so the same window shows the same rows).""")

    def __init__(self, source: Any = None, views: Any = None, align: bool = True,
                 **params: Any) -> None:
        page_size = params.pop("page_size", None)
        linked_zoom = bool(params.pop("linked_zoom", True))
        state = params.pop("state", None)
        if isinstance(source, CompareState):
            state, source = source, None
        if state is None:
            state = CompareState(as_table(source), views, align=align,
                                 dispatch=session_dispatch(), **params)
        elif source is not None or views is not None or params:
            raise TypeError("Pass either a CompareState or a source with views, not both")
        super().__init__(state=state, linked_zoom=linked_zoom)
        self.panels = [ComparePanel(panel, compare=state, number=i + 1)
                       for i, panel in enumerate(state.panels)]
        for panel in self.panels:
            # Panel shares the Bokeh ranges of linked HoloViews panes of one page each time
            # a plot is built (panel.pane.holoviews.link_axes): the browser then pans them
            # together with no round trip, and a raster panel re-shades for its new window.
            panel.scatter.pane.linked_axes = linked_zoom
            panel.scatter.pane.param.watch(self._relink, "object")
        # In a served session the page's first render left the panels unlinked too (the
        # plots were there, the ranges not shared: seen in the served compare page with
        # Panel 1.9.4); linking once the page has loaded shares them.
        pn.state.onload(self._relink)
        table_params = {} if page_size is None else {"page_size": page_size}
        self.table = TableView(state.reference, **table_params)
        self.align_toggle = pn.widgets.Checkbox.from_param(
            state.param.align, name="Align panels to panel 1", margin=(8, 10))
        self.moves_toggle = pn.widgets.Checkbox.from_param(
            state.param.show_moves, name="Where did it move (lines from panel 1)",
            margin=(8, 10))
        self.zoom_toggle = pn.widgets.Checkbox.from_param(
            self.param.linked_zoom, name="Pan and zoom the panels together", margin=(8, 10))
        #: One k for every panel's faithfulness (the numbers compare only at the same k).
        self.k_input = pn.widgets.IntInput.from_param(
            self.faithfulness_k.param.k, name="Faithfulness k (every panel)",
            sizing_mode="stretch_width", margin=(5, 10))
        for panel in self.panels[1:]:
            self.faithfulness_k.param.watch(
                lambda event, faith=panel.trust.faith: setattr(faith, "k", event.new), "k")
        # The first panel's colour widget: the comparison keeps it equal in every panel.
        self.color_select = pn.widgets.Select.from_param(
            state.reference.param.color_by, name="Color by", sizing_mode="stretch_width",
            margin=(5, 10))

    @property
    def faithfulness_k(self) -> Any:
        """The faithfulness state whose ``k`` every panel follows (panel 1's): the k input
        and the compare URL's ``k`` set it."""
        return self.panels[0].trust.faith

    @param.depends("linked_zoom", watch=True)
    def _on_linked_zoom(self) -> None:
        # Linking happens when a plot is built: rebuild each (its zoom kept). Off, every
        # panel gets ranges of its own again; on, Panel shares them across the page.
        for panel in self.panels:
            panel.scatter.pane.linked_axes = self.linked_zoom
        for panel in self.panels:
            panel.scatter.redraw()

    def _relink(self, *events: Any) -> None:
        """Link a panel's new plot to the others on every page that shows them.

        Panel runs ``link_axes`` when a pane's plot is replaced, but in a template (the
        app's page) it runs it over the template's combined "fake" root, whose id the panes'
        plots are not registered under, so a plot that arrives after the page was built
        (every panel whose projection lands later) stayed unlinked (Panel 1.9.4). Running
        the same public hook over each root the panes' plots are registered under fixes
        that (here after every new plot, and once when a served page has loaded); after
        Panel's own update of the pane, as it is scheduled the same way (``state._views`` and ``state._unblocked`` are private, Panel
        is pinned below 1.10 in pyproject.toml).
        """
        if not self.linked_zoom:
            return
        from functools import partial

        from panel.io.state import set_curdoc, state
        from panel.pane.holoviews import link_axes

        refs = {ref for panel in self.panels for ref in panel.scatter.pane._plots}
        for ref in refs:
            if ref not in state._views:
                continue
            viewable, root, doc, comm = state._views[ref]
            if comm or state._unblocked(doc) or not doc.session_context:
                link_axes(viewable, root)
            else:
                with set_curdoc(doc):
                    state.execute(partial(link_axes, viewable, root), schedule=True)

    # -- Python API ---------------------------------------------------------------------------
    @property
    def selection(self) -> list[int]:
        """The selected rows (table row positions); assign a list to select in every panel."""
        return list(self.state.selection)

    @selection.setter
    def selection(self, rows: Any) -> None:
        self.state.select(rows)

    @property
    def selected_dataframe(self) -> pd.DataFrame:
        """The selected rows with the first panel's ``x`` and ``y`` (a copy)."""
        return self.state.reference.selected_dataframe

    def wait(self, timeout: float | None = 120) -> None:
        """Block until every panel shows its result (see :meth:`CompareState.wait`) and its
        faithfulness."""
        self.state.wait(timeout)
        for panel in self.panels:
            panel.trust.faith.wait(timeout)

    def close(self) -> None:
        """Cancel every panel's running projection and faithfulness."""
        for panel in self.panels:
            panel.trust.close()
        self.state.close()

    # -- layout -------------------------------------------------------------------------------
    @property
    def controls(self) -> list[pn.viewable.Viewable]:
        """Colour, alignment, the moves overlay, then each panel's folded settings."""
        return [self.color_select, self.align_toggle, self.zoom_toggle, self.moves_toggle,
                self.k_input,
                *(panel.settings_card() for panel in self.panels)]

    def main_area(self) -> pn.viewable.Viewable:
        """The panels two per row, and the one table: in the free cell beside the last panel
        when there are three, else under the panels (the panels get the page's width)."""
        panels: list[Any] = list(self.panels)
        table = pn.Column(self.table, sizing_mode="stretch_width",
                          height=PANEL_HEIGHT - 10 if len(panels) % 2 else TABLE_HEIGHT)
        if len(panels) % 2:
            panels.append(table)
        rows = (len(panels) + 1) // 2
        grid = pn.GridBox(*panels, ncols=2, sizing_mode="stretch_width",
                          height=rows * PANEL_HEIGHT)
        if len(self.panels) % 2:
            return grid
        return pn.Column(grid, table, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        gear = pn.Column(*self.controls, width=300)
        return pn.Row(gear, self.main_area(), sizing_mode="stretch_width")

