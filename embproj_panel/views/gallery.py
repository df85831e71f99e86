"""``GalleryView``: the selected rows' thumbnails in a paged grid, captioned with the colour.

A tab beside the table. The grid is one small Bokeh plot (thumbnails as ``ImageURL`` tiles
over transparent clickable squares, captions as canvas text: user values stay text, never
HTML), so a page of 24 costs 24 data URIs and nothing else. Clicking a thumbnail (a
``Selection1D`` on the squares) *highlights* its point on the map (a ring drawn by
:meth:`scatter_overlay`) without changing the selection the gallery shows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import panel as pn
import param

from embproj_panel import resources
from embproj_panel.state import ProjectorState
from embproj_panel.views.base import StateView
from embproj_panel.views.plots import _holoviews
from embproj_panel.views.text import cell_text
from embproj_panel.views.thumbnails import thumbnail_points

__all__ = ["GalleryView"]

_CAPTION_CHARS = 14
_TILE_PX = 64


class GalleryView(StateView):
    """The selection's images, ``columns`` x ``rows_per_page`` per page."""


    page = param.Integer(default=1, bounds=(1, None), doc="""The page shown, from 1.""")

    columns = param.Integer(default=6, bounds=(1, 12), doc="""Thumbnails per row.""")

    rows_per_page = param.Integer(default=4, bounds=(1, 12), doc="""Rows of thumbnails.""")

    highlight = param.Integer(default=None, allow_None=True, doc="""
        The table row whose point is ringed on the map (the last thumbnail clicked).""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        hv = _holoviews()

        super().__init__(state, **params)
        self.previous = pn.widgets.Button(label="\u2039 Previous", width=100)
        self.next = pn.widgets.Button(label="Next \u203a", width=100)
        self.previous.on_click(lambda event: self._turn(-1))
        self.next.on_click(lambda event: self._turn(1))
        #: "Page 1 of 3 · 60 selected" (numbers only, no user text).
        self.info = resources.HTML("", margin=(8, 10))
        self._page_rows: np.ndarray = np.zeros(0, dtype=np.int64)
        streams = [hv.streams.Params(self, ["page", "columns", "rows_per_page", "highlight"]),
                   hv.streams.Params(self.state, ["selection", "hover_image", "color_by"])]
        # The tiles alone in their DynamicMap: a Selection1D stream needs one element.
        self._tiles = hv.DynamicMap(self.tiles, streams=streams)
        self._extras = hv.DynamicMap(self.extras, streams=streams)
        picks = hv.streams.Selection1D(source=self._tiles)
        picks.add_subscriber(self._on_pick)
        self._grid = (self._tiles * self._extras).opts(
            xlim=(0, self.columns), ylim=(-self.rows_per_page, 0), xaxis=None, yaxis=None,
            toolbar=None, responsive=True, height=440, show_grid=False, active_tools=["tap"],
            show_frame=False, title="")
        self.pane = pn.pane.HoloViews(self._grid, sizing_mode="stretch_width", height=460,
                                      linked_axes=False)
        self.state.param.watch(self._on_selection, ["selection"])
        self._update_info()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.previous, self.next, self.info), self.pane,
                         sizing_mode="stretch_width")

    @property
    def page_size(self) -> int:
        return self.columns * self.rows_per_page

    @property
    def n_pages(self) -> int:
        return max(1, math.ceil(len(self._rows()) / self.page_size))

    @property
    def page_rows(self) -> list[int]:
        """The table rows on the current page, in order."""
        return self._page_rows.tolist()

    def _rows(self) -> list[int]:
        state = self.state
        if state.hover_image is None or state.table is None:
            return []
        return list(state.selection)

    def _turn(self, step: int) -> None:
        self.page = min(max(1, self.page + step), self.n_pages)

    def _on_selection(self, *events: Any) -> None:
        self.param.update(page=1, highlight=None)
        self._update_info()

    @param.depends("page", "columns", "rows_per_page", watch=True)
    def _update_info(self) -> None:
        n = len(self._rows())
        if self.state.hover_image is None:
            text = "Choose a hover image column to see images."
        elif n == 0:
            text = "Select points to see their images."
        else:
            text = f"Page {self.page:,} of {self.n_pages:,} · {n:,} selected"
        self.info.object = text
        self.previous.disabled = self.page <= 1
        self.next.disabled = self.page >= self.n_pages

    def _page(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The current page's rows and their tiles' centres (grid units, y down)."""
        rows = self._rows()
        start = (min(self.page, self.n_pages) - 1) * self.page_size
        page = np.asarray(rows[start:start + self.page_size], dtype=np.int64)
        self._page_rows = page
        gx = (np.arange(len(page)) % self.columns) + 0.5
        gy = -(np.arange(len(page)) // self.columns) - 0.5
        return page, gx, gy

    def tiles(self, **ignored: Any) -> Any:
        """The current page's thumbnails (clickable)."""
        state = self.state
        page, gx, gy = self._page()
        # One read of the page's cells (a lazy dataset: of their row groups, not one per tile).
        images = state.table.cells(state.hover_image, page) \
            if state.hover_image is not None and len(page) else []
        urls = ["" if image is None else image.thumbnail_uri(_TILE_PX) for image in images]
        # Tiles of a fixed screen size keep the images square whatever the plot's shape.
        return thumbnail_points(gx, gy + 0.08, urls, page, size_px=_TILE_PX, border=False,
                                label="Gallery", clickable=True)

    def extras(self, **ignored: Any) -> Any:
        """The captions (canvas text) and the highlighted tile's frame."""
        hv = _holoviews()

        page, gx, gy = self._page()
        captions = hv.Labels({"x": gx, "y": gy - 0.42, "text": self._captions(page)},
                             kdims=["x", "y"], vdims=["text"]).opts(
            text_font_size="10px", text_color="#333333", text_baseline="bottom",
            default_tools=[])
        box = []
        if self.highlight is not None and self.highlight in set(page.tolist()):
            i = page.tolist().index(self.highlight)
            box = [(gx[i] - 0.48, gy[i] - 0.48, gx[i] + 0.48, gy[i] + 0.48)]
        frame = hv.Rectangles(box).opts(fill_alpha=0, line_color="#d62728", line_width=3,
                                        default_tools=[])
        return captions * frame

    def grid(self, **ignored: Any) -> Any:
        """The current page: thumbnails, captions and the highlighted tile's frame."""
        return self.tiles() * self.extras()

    def _captions(self, page: np.ndarray) -> list[str]:
        state = self.state
        if state.color_by is None or not len(page):
            return [f"row {int(row)}" for row in page]
        # The legend's names (a cluster's -1 is "unclustered"); a lazy table reads the page only.
        values = state.shown_cells(state.color_by, page)
        out = []
        for value in values:
            text = cell_text(value)
            out.append(text if len(text) <= _CAPTION_CHARS else text[:_CAPTION_CHARS - 1] + "\u2026")
        return out

    def _on_pick(self, index: list[int] | None = None) -> None:
        """A clicked thumbnail (its position on the page) rings its point on the map."""
        if index and 0 <= index[0] < len(self._page_rows):
            self.highlight = int(self._page_rows[index[0]])

    # -- the ring on the map ---------------------------------------------------------------------
    def scatter_overlay(self, scatter: Any) -> Any:
        """A ring around the highlighted row's point, for ``ScatterView.overlays``."""
        hv = _holoviews()

        return hv.DynamicMap(self.ring, streams=[hv.streams.Params(self, ["highlight"])])

    def ring(self, highlight: int | None = None) -> Any:
        hv = _holoviews()

        state = self.state
        x = y = np.zeros(0)
        if highlight is not None:
            positions = state.positions_of([highlight])
            if len(positions):
                frame = state.frame
                x = frame["x"].to_numpy()[positions]
                y = frame["y"].to_numpy()[positions]
        return hv.Points({"x": x, "y": y}, kdims=["x", "y"], label="Highlighted").opts(
            marker="circle", size=22, fill_alpha=0, line_color="#d62728", line_width=3,
            show_legend=False, tools=[])
