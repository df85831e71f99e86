"""``ClustersView``: "Find clusters" (background, progress, cancel) and cluster labels on the map.

The controls edit a :class:`~embproj_panel.structure.ClusterState`: the smallest cluster
(empty: 1% of the points), the column that names the clusters, **Find clusters** and
**Cancel**. The labels are an overlay of the scatter (:meth:`scatter_overlay`): text drawn on
the canvas by Bokeh (``hv.Labels``: user text stays text, never HTML) at each cluster's most
central member, laid out by :func:`~embproj_panel.labels.layout_labels` for the current view
(no overlaps, at most 30, the largest clusters first, more as you zoom in). With an image
column as the label source, each cluster shows its most central member's thumbnail instead.
Clicking a label selects its cluster's rows.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import panel as pn
import param

from embproj_panel import resources
from embproj_panel.clusters import UNCLUSTERED, ClusterLabel
from embproj_panel.image_cells import THUMBNAIL_PX
from embproj_panel.labels import MAX_LABELS, fit_text, layout_labels, text_box
from embproj_panel.state import ProjectorState
from embproj_panel.structure import ClusterState
from embproj_panel.views.base import StateView
from embproj_panel.views.plots import _holoviews
from embproj_panel.views.text import escaped
from embproj_panel.views.thumbnails import thumbnail_points, view_of

__all__ = ["ClustersView"]

_FONT_PX = 13
# How long after a label click the scatter's own pick of the point under it is undone.
_TAP_ECHO_S = 1.0


def _on_top(plot: Any, element: Any) -> None:
    """Draw the labels above the points and any thumbnails (Bokeh's "overlay" level)."""
    renderer = plot.handles.get("glyph_renderer")
    if renderer is not None and renderer.level != "overlay":
        renderer.level = "overlay"


class ClustersView(StateView):
    """Find clusters of the layout and label them on the map.

    Attributes
    ----------
    clusters
        The :class:`~embproj_panel.structure.ClusterState` (parameters and results).
    """


    show_labels = param.Boolean(default=True, doc="""Draw the cluster labels on the map.""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        clusters = self.clusters = ClusterState(self.state)
        self.size_input = pn.widgets.IntInput.from_param(
            clusters.param.min_cluster_size, name="Smallest cluster (empty: 1% of points)",
            placeholder="auto", sizing_mode="stretch_width")
        self.label_select = pn.widgets.Select.from_param(
            clusters.param.label_column, name="Name clusters by", sizing_mode="stretch_width")
        self.find_button = pn.widgets.Button(label="Find clusters", color="primary",
                                             sizing_mode="stretch_width")
        self.find_button.on_click(lambda event: clusters.param.trigger("find"))
        self.cancel_button = pn.widgets.Button(label="Cancel", visible=False,
                                               sizing_mode="stretch_width")
        self.cancel_button.on_click(lambda event: clusters.param.trigger("cancel"))
        self.labels_toggle = pn.widgets.Checkbox.from_param(self.param.show_labels,
                                                            name="Cluster labels on the map")
        self.progress = pn.indicators.Progress(value=0, max=100, visible=False, height=10,
                                               sizing_mode="stretch_width")
        #: The status line (escaped: it can hold column names).
        self.line = resources.HTML("", sizing_mode="stretch_width",
                                 styles={"font-size": "0.85em", "color": "#555"})
        self._shown: list[tuple[ClusterLabel, tuple[float, float, float, float]]] = []
        self._tap_guard: tuple[float, list[int]] | None = None
        self.state.param.watch(self._on_selection, ["selection"])
        clusters.param.watch(self._update, ["busy", "progress", "status", "error"])
        self._update()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown("**Clusters**", margin=(5, 10, 0, 10)), self.size_input,
            self.label_select, pn.Row(self.find_button, self.cancel_button,
                                      sizing_mode="stretch_width"),
            self.progress, self.line, self.labels_toggle, sizing_mode="stretch_width",
        )

    def close(self) -> None:
        """Stop a running search (the session ended)."""
        self.clusters.close()

    def _update(self, *events: Any) -> None:
        clusters = self.clusters
        with pn.io.hold():
            self.progress.param.update(value=int(round(clusters.progress * 100)),
                                       visible=clusters.busy)
            self.cancel_button.visible = clusters.busy
            self.find_button.disabled = clusters.busy
            text = clusters.error or clusters.status
            self.line.object = escaped(text)

    # -- the overlay --------------------------------------------------------------------------
    def scatter_overlay(self, scatter: Any) -> Any:
        """A ``DynamicMap`` of the labels that fit this view, for ``ScatterView.overlays``."""
        hv = _holoviews()

        streams = [*scatter.view_streams(),
                   hv.streams.Params(self.clusters, ["labels"]),
                   hv.streams.Params(self, ["show_labels"])]
        dmap = hv.DynamicMap(self.label_layer, streams=streams)
        tap = hv.streams.Tap(source=dmap)
        tap.add_subscriber(self._on_tap)
        self._tap = tap
        return dmap

    def shown_labels(self, x_range: Any, y_range: Any, size: tuple[int, int]) -> list[tuple]:
        """``(label, (x0, x1, y0, y1))`` of the labels that fit this view: their boxes in
        data units, centred where they are drawn (nudged inside at the plot's edges)."""
        image = self._image_labels()
        # A text label wider than the plot would never be drawn (a long value, or a narrow
        # plot beside a wide legend): it is cut to fit, with an ellipsis.
        labels = [label if image else replace(label, text=fit_text(label.text, size[0], _FONT_PX))
                  for cluster, label in self.clusters.labels.items() if cluster != UNCLUSTERED]
        if not labels:
            return []
        boxes = [(THUMBNAIL_PX + 8, THUMBNAIL_PX + 8) if image else text_box(label.text, _FONT_PX)
                 for label in labels]
        widths, heights = np.array(boxes).T
        layout = layout_labels([label.x for label in labels], [label.y for label in labels],
                               widths, heights, [label.size for label in labels],
                               x_range, y_range, size, max_labels=MAX_LABELS)
        dx = (x_range[1] - x_range[0]) / size[0]
        dy = (y_range[1] - y_range[0]) / size[1]
        out = []
        for i, x, y in zip(layout.index, layout.x, layout.y):
            half_w, half_h = widths[i] * dx / 2, heights[i] * dy / 2
            out.append((labels[i], (x - half_w, x + half_w, y - half_h, y + half_h)))
        return out

    def _image_labels(self) -> bool:
        column = self.clusters.label_column
        table = self.state.table
        # A new table may lack the old label column while its first layout is drawn (a
        # cached layout lands inside the table change, before the clusters hear of it).
        return column is not None and table is not None and column in table.schema.columns \
            and table.schema.columns[column].kind == "image"

    def label_layer(self, x_range: Any = None, y_range: Any = None, width: Any = None,
                    height: Any = None, scale: float = 1.0, labels: Any = None,
                    show_labels: bool = True) -> Any:
        """The labels of this view: canvas text, or the clusters' central thumbnails."""
        hv = _holoviews()

        view = view_of(self.state.frame, x_range, y_range, width, height)
        shown = self.shown_labels(*view) if show_labels else []
        self._shown = shown
        if self._image_labels():
            rows = [label.row for label, _ in shown]
            urls = [self._thumbnail(row) for row in rows]
            return thumbnail_points([(b[0] + b[1]) / 2 for _, b in shown],
                                    [(b[2] + b[3]) / 2 for _, b in shown], urls, rows,
                                    size_px=THUMBNAIL_PX, label="Cluster images")
        data = {"x": [(b[0] + b[1]) / 2 for _, b in shown],
                "y": [(b[2] + b[3]) / 2 for _, b in shown],
                "text": [label.text for label, _ in shown]}
        return hv.Labels(data, kdims=["x", "y"], vdims=["text"], label="Cluster labels").opts(
            text_font_size=f"{_FONT_PX}px", text_color="#111111", text_font_style="bold",
            background_fill_color="white", background_fill_alpha=0.75,
            border_line_color="#999999", border_line_alpha=0.8, show_legend=False,
            hooks=[_on_top],
        )

    def _thumbnail(self, row: int) -> str:
        image = self.state.table.cells(self.clusters.label_column, [row])[0]
        from embproj_panel.views.plots import BLANK_IMAGE

        return BLANK_IMAGE if image is None else image.thumbnail_uri(THUMBNAIL_PX)

    def _on_tap(self, x: float | None = None, y: float | None = None) -> None:
        """A click inside a drawn label selects that cluster's rows."""
        if x is None or y is None:
            return
        for label, (x0, x1, y0, y1) in self._shown:
            if x0 <= x <= x1 and y0 <= y <= y1:
                self.select_cluster(label.cluster)
                # The same click also reaches the scatter, which picks the point under the
                # label; its event may be handled before or after this one. For a moment,
                # a one-point (or empty) pick is taken as that echo and undone.
                self._tap_guard = (time.monotonic() + _TAP_ECHO_S, list(self.state.selection))
                return

    def _on_selection(self, event: Any) -> None:
        guard = self._tap_guard
        if guard is None:
            return
        until, rows = guard
        if time.monotonic() > until:
            self._tap_guard = None
        elif len(event.new) <= 1 and event.new != rows:
            self._tap_guard = None
            self.state.select(rows)

    def select_cluster(self, cluster: int) -> None:
        """Select every row of ``cluster`` (its id; -1 the unclustered rows)."""
        result = self.clusters.clustering
        if result is None:
            return
        self.state.select(np.flatnonzero(result.labels == cluster))
