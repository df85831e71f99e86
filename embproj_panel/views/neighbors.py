"""``NeighborsView``: the k nearest rows of the tapped row, in the original space.

Tap a point or click a table row (a selection of one row) and its k nearest rows by cosine
or euclidean distance in the embedding
(:meth:`~embproj_panel.finder.FindState.request_neighbors`, never the 2-D map; on a lazy
dataset a scan in the background, its progress in the message) are listed with their distance, the colour column and the thumbnail, and
joined to it on the scatter by thin lines (:meth:`NeighborsView.scatter_overlay`). Clicking a
neighbour in the list makes it the query. Messages ("Row 7 was left out of the projection
(...)") are escaped; list cells are Tabulator text, thumbnails our own data URIs, and the
colour column's title (Tabulator renders titles as HTML) is escaped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import panel as pn

from embproj_panel import resources
from embproj_panel.colors import X, Y
from embproj_panel.finder import find_state
from embproj_panel.neighbors import K_MAX, METRICS
from embproj_panel.state import ProjectorState
from embproj_panel.views import plots
from embproj_panel.views.base import StateView
from embproj_panel.views.text import cell_text, escaped

__all__ = ["NeighborsView"]

_THUMB = "image"
_COLOR = "color"


class NeighborsView(StateView):
    """k, metric, the neighbour list of the one selected row, lines on the scatter."""

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        self.find = find_state(self.state)
        find = self.find
        self.k = pn.widgets.IntInput(label="k", value=find.k, start=1, end=K_MAX, width=80)
        self.metric = pn.widgets.Select(label="Distance", options=list(METRICS),
                                        value=find.metric, width=110)
        #: What the list shows, or why there is none (escaped).
        self.message = resources.HTML("Tap a point to list its nearest rows.", margin=(0, 10),
                                    sizing_mode="stretch_width",
                                    styles={"font-size": "0.85em", "color": "#555"})
        #: The neighbours, nearest first; a click on one makes it the query.
        self.list = pn.widgets.Tabulator(
            pd.DataFrame({"row": [], "distance": []}), disabled=True, show_index=False,
            selectable=False, sizing_mode="stretch_width", height=260,
            formatters={_THUMB: {"type": "html"}}, layout="fit_data_fill")
        self.list.on_click(self._on_click)
        self.k.param.watch(lambda event: self._refresh(k=event.new), "value")
        self.metric.param.watch(lambda event: self._refresh(metric=event.new), "value")
        self.state.param.watch(self._on_selection, ["selection"])
        find.param.watch(self._show, ["neighbor_table", "neighbor_message"])
        find.param.watch(self._show_progress, ["neighbor_progress"])
        # k and the metric set from Python (projector.neighbors(row, k=5)) show in the widgets.
        find.param.watch(lambda event: setattr(self.k, "value", event.new), "k")
        find.param.watch(lambda event: setattr(self.metric, "value", event.new), "metric")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.k, self.metric, margin=0), self.message, self.list,
                         sizing_mode="stretch_width", margin=0)

    # -- state -> view ------------------------------------------------------------------------
    def _on_selection(self, *events: Any) -> None:
        selection = self.state.selection
        if len(selection) == 1 and selection[0] != self.find.query_row:
            self._refresh(row=selection[0])

    def _refresh(self, row: int | None = None, k: int | None = None,
                 metric: str | None = None) -> None:
        find = self.find
        if (k is not None and k == find.k) or (metric is not None and metric == find.metric):
            return  # the widget only followed the state
        row = find.query_row if row is None else row
        if k is not None:
            find.k = k
        if metric is not None:
            find.metric = metric
        if row is None:
            return
        try:
            find.request_neighbors(row)  # a lazy dataset's scan runs in the background
        except ValueError as err:  # an excluded row: say why, list nothing
            find.clear_neighbors()
            self.message.object = escaped(err)

    def _show(self, *events: Any) -> None:
        find = self.find
        frame = find.neighbor_table
        with pn.io.hold():
            self.message.object = escaped(find.neighbor_message)
            self.list.value = self._listing(frame)

    def _show_progress(self, *events: Any) -> None:
        find = self.find
        if find.neighbor_progress is not None:
            self.message.object = escaped(f"{find.neighbor_message} "
                                          f"{find.neighbor_progress:.0%}")

    def _listing(self, frame: pd.DataFrame | None) -> pd.DataFrame:
        if frame is None:
            return pd.DataFrame({"row": [], "distance": []})
        out = pd.DataFrame({"row": frame["row"].to_numpy(),
                            "distance": np.round(frame["distance"].to_numpy(), 4)})
        color_by = self.state.color_by
        titles = {}
        if color_by is not None and color_by in frame:
            # The column is named by us; its title is the user's name, escaped (Tabulator
            # renders titles as HTML: a hostile colour column name once ran script here).
            out[_COLOR] = [cell_text(v) for v in frame[color_by]]
            titles[_COLOR] = escaped(color_by)
        if self.list.titles != titles:
            self.list.titles = titles
        image = self.state.hover_image
        if image is not None and image in frame:
            # Our own markup around our own PNG data URI: no user text inside.
            out[_THUMB] = [f'<img src="{cell.thumbnail_uri(48)}" width="48" height="48">'
                           if cell is not None else "" for cell in frame[image]]
        return out

    def _on_click(self, event: Any) -> None:
        frame = self.list.value
        if frame is None or event.row is None or event.row >= len(frame):
            return
        self.state.select([int(frame["row"].iloc[event.row])])  # the neighbour is the query now

    # -- drawn on the scatter ----------------------------------------------------------------
    def scatter_overlay(self, scatter: Any) -> Any:
        """Thin lines from the query row to each neighbour, redrawn from the neighbour list."""
        hv = plots._holoviews()

        return hv.DynamicMap(self.lines, streams=[hv.streams.Params(
            self.find, ["query_row", "neighbor_rows"])])

    def lines(self, query_row: int | None = None, neighbor_rows: list[int] | None = None,
              ) -> Any:
        """``hv.Segments`` from the query point to its neighbours (empty when there are none)."""
        hv = plots._holoviews()

        frame = self.state.frame
        segments = np.zeros((0, 4))
        if query_row is not None and neighbor_rows and frame is not None:
            origin = self.state.positions_of([query_row])
            ends = self.state.positions_of(neighbor_rows)
            if len(origin):
                xs, ys = frame[X].to_numpy(), frame[Y].to_numpy()
                segments = np.column_stack([np.full(len(ends), xs[origin[0]]),
                                            np.full(len(ends), ys[origin[0]]),
                                            xs[ends], ys[ends]])
        return hv.Segments(segments, kdims=["x0", "y0", "x1", "y1"]).opts(
            color="#444444", line_width=1, alpha=0.8)
