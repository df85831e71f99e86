"""``SearchView``: a search box over the map; the matches ringed on the scatter, counted.

The query, the column and the regex toggle are :class:`~embproj_panel.finder.FindState`
parameters; this view only shows them. The count and any error ("Not a valid regular
expression: ...") are escaped before they reach the HTML pane, and the query itself is never
echoed as markup. Matches are drawn as rings over the points in glyph and Datashader mode
alike (:meth:`SearchView.scatter_overlay`); "Select matches" makes them the selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from embproj_panel import resources
from embproj_panel.colors import X, Y
from embproj_panel.finder import find_state
from embproj_panel.state import ProjectorState
from embproj_panel.views import plots
from embproj_panel.views.base import StateView
from embproj_panel.views.text import escaped

__all__ = ["MAX_RINGS", "SearchView"]

# Rings are glyphs sent to the browser: past this many matches only the first are ringed
# (the count and "Select matches" still cover them all).
MAX_RINGS = 20_000
_ALL = "All text columns"


class SearchView(StateView):
    """Search box, column, regex toggle, the count and "Select matches"."""

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        #: The search's state (shared with the neighbours panel).
        self.find = find_state(self.state)
        self.input = pn.widgets.TextInput(placeholder="Search labels and text…",
                                          sizing_mode="stretch_width", margin=(5, 5))
        # Labels only: Bokeh's Select holds strings, and column names need not be strings.
        self.column = pn.widgets.Select(options=[_ALL], value=_ALL, width=150, margin=(5, 5))
        self._columns: dict[str, Any] = {_ALL: None}
        self.regex = pn.widgets.Checkbox(label="Regex", width=70, margin=(12, 5))
        self.select_button = pn.widgets.Button(label="Select matches", disabled=True,
                                               width=130, margin=(5, 5))
        #: The count or the error, escaped.
        self.message = resources.HTML("", height=22, margin=(0, 10), sizing_mode="stretch_width",
                                    styles={"font-size": "0.85em", "color": "#555"})
        find = self.find
        self.input.param.watch(lambda event: setattr(find, "query", event.new), "value_input")
        self.column.param.watch(
            lambda event: setattr(find, "column", self._columns.get(event.new)), "value")
        self.regex.param.watch(lambda event: setattr(find, "regex", event.new), "value")
        self.select_button.on_click(lambda event: find.select_hits())
        find.param.watch(self._show, ["hits", "search_message"])
        self.state.param.watch(self._on_table, ["table"])
        self._on_table()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.input, self.column, self.regex, self.select_button,
                                sizing_mode="stretch_width", margin=0),
                         self.message, sizing_mode="stretch_width", margin=0)

    def _on_table(self, *events: Any) -> None:
        table = self.state.table
        names = self.find._table_search(table).columns if table is not None else []
        # Select option labels are text nodes in Bokeh; the names stay exactly as typed.
        self._columns = {_ALL: None, **{str(name): name for name in names}}
        self.column.options = list(self._columns)
        self.column.value = _ALL

    def _show(self, *events: Any) -> None:
        find = self.find
        with pn.io.hold():
            self.message.object = escaped(find.search_message)
            self.select_button.disabled = not find.hits

    # -- drawn on the scatter ----------------------------------------------------------------
    def scatter_overlay(self, scatter: Any) -> Any:
        """Rings around the matches, redrawn from the hits alone (the scatter is not rebuilt)."""
        hv = plots._holoviews()

        return hv.DynamicMap(self.rings, streams=[hv.streams.Params(self.find, ["hits"])])

    def rings(self, hits: list[int] | None = None) -> Any:
        """``hv.Points`` at the matches' positions (at most :data:`MAX_RINGS`)."""
        hv = plots._holoviews()

        frame = self.state.frame
        positions = (self.state.positions_of(np.asarray(hits[:MAX_RINGS], dtype=np.int64))
                     if hits and frame is not None else np.zeros(0, dtype=np.int64))
        xs = frame[X].to_numpy()[positions] if len(positions) else np.zeros(0)
        ys = frame[Y].to_numpy()[positions] if len(positions) else np.zeros(0)
        return hv.Points((xs, ys), kdims=[X, Y], label="search").opts(
            # Black: no categorical palette colour is that dark, so a ring reads on any point.
            marker="circle", size=11, fill_alpha=0.0, line_color="black", line_width=1.5,
            color="black", tools=[], show_legend=False)
