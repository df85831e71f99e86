"""``ImagesView``: "Show images", thumbnails drawn at their points in the current view.

Up to ``max_images`` (200) thumbnails, at most one per screen cell, chosen by
:class:`~embproj_panel.image_cells.ImageCells` (a fixed seeded priority, so the same view
always shows the same images and a pan keeps them) and chosen again on every pan, zoom or
resize. The points stay underneath, in glyph and in Datashader mode: this is an overlay of the
scatter (:meth:`scatter_overlay`), a transparent ``hv.Points`` whose plot draws Bokeh
``ImageURL`` glyphs (:mod:`embproj_panel.views.thumbnails`).

What one view change sends is bounded by :func:`~embproj_panel.image_cells.payload_bound`:
``max_images`` PNG data URIs of at most 48 x 48 pixels (about 2.5 MB at worst, a few tens of
KB for real thumbnails), plus three numbers per image. Thumbnails are encoded once per row
and kept in a per-view :class:`~embproj_panel.image_cells.ThumbnailCache`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
import param

from embproj_panel.colors import ROW, X, Y
from embproj_panel.image_cells import MAX_IMAGES, THUMBNAIL_PX, ImageCells, ThumbnailCache
from embproj_panel.state import ProjectorState
from embproj_panel.views.base import StateView
from embproj_panel.views.plots import _holoviews
from embproj_panel.views.thumbnails import thumbnail_points, view_of

__all__ = ["ImagesView"]


class ImagesView(StateView):
    """The "Show images" toggle and the thumbnails it draws on the scatter.

    Examples
    --------
    >>> projector.show_images = True      # or projector.images.show_images = True
    """


    show_images = param.Boolean(default=False, doc="""
        Draw thumbnails of the hover image column at their points (at most one per screen
        cell, up to max_images), chosen again after every pan and zoom.""")

    max_images = param.Integer(default=MAX_IMAGES, bounds=(1, 1000), doc="""
        At most this many thumbnails in view.""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        #: The "Show images" switch.
        self.toggle = pn.widgets.Checkbox.from_param(self.param.show_images,
                                                     name="Show images on the map")
        self._cells: tuple[Any, Any, ImageCells] | None = None
        self._thumbs: ThumbnailCache | None = None
        #: Rows drawn by the last pick (for tests and the benchmark).
        self.shown_rows: np.ndarray = np.zeros(0, dtype=np.int64)
        self.state.param.watch(self._on_images, ["hover_image", "table"])
        self._on_images()

    def __panel__(self) -> pn.viewable.Viewable:
        return self.toggle

    def _on_images(self, *events: Any) -> None:
        state = self.state
        self._cells = None
        column = state.hover_image
        self._thumbs = None if column is None else ThumbnailCache(
            self._encode, encode_many=self._encode_many)
        self.toggle.disabled = column is None
        self.toggle.description = (
            "Choose a hover image column to show images" if column is None else None)

    def _encode(self, row: int) -> str | None:
        image = self.state.image(row)
        return None if image is None else image.thumbnail_uri(THUMBNAIL_PX)

    def _encode_many(self, rows: list[int]) -> list[str | None]:
        """The thumbnails of ``rows`` (one read of their row groups for a lazy dataset)."""
        state = self.state
        images = state.table.cells(state.hover_image, rows)
        return [None if image is None else image.thumbnail_uri(THUMBNAIL_PX)
                for image in images]

    def _index(self) -> ImageCells | None:
        state = self.state
        frame = state.frame
        if frame is None or state.hover_image is None:
            return None
        key = (state.projection, state.hover_image)
        if self._cells is None or self._cells[0] is not key[0] or self._cells[1] != key[1]:
            nulls = state.table.column_nulls(state.hover_image)
            rows = frame[ROW].to_numpy()
            eligible = None if nulls is None else ~nulls[rows]  # rows without an image
            coords = np.column_stack([frame[X].to_numpy(), frame[Y].to_numpy()])
            # A lazy table reads images a row group at a time: prefer rows of few groups.
            blocks = state.table.read_blocks(rows)
            self._cells = (key[0], key[1],
                           ImageCells(coords, eligible=eligible, blocks=blocks))
        return self._cells[2]

    # -- the overlay --------------------------------------------------------------------------
    def scatter_overlay(self, scatter: Any) -> Any:
        """A ``DynamicMap`` of the thumbnails in view, for ``ScatterView.overlays``."""
        hv = _holoviews()

        streams = [*scatter.view_streams(),
                   hv.streams.Params(self, ["show_images", "max_images"])]
        return hv.DynamicMap(self.thumbnails, streams=streams)

    def thumbnails(self, x_range: Any = None, y_range: Any = None, width: int | None = None,
                   height: int | None = None, scale: float = 1.0, show_images: bool = False,
                   max_images: int = MAX_IMAGES) -> Any:
        """The thumbnails of this view (an empty element when off or without images)."""
        state = self.state
        index = self._index() if show_images else None
        frame = state.frame
        if index is None or frame is None or self._thumbs is None:
            self.shown_rows = np.zeros(0, dtype=np.int64)
            return thumbnail_points([], [], [], [])
        x_range, y_range, size = view_of(frame, x_range, y_range, width, height)
        # The gap is the drawn thumbnail with its frame: thumbnails never cover one another.
        positions = index.pick(x_range, y_range, size, max_images=max_images,
                               gap_px=THUMBNAIL_PX + 6)
        rows = frame[ROW].to_numpy()[positions]
        self.shown_rows = rows
        return thumbnail_points(frame[X].to_numpy()[positions], frame[Y].to_numpy()[positions],
                                self._thumbs.many(rows), rows, size_px=THUMBNAIL_PX)
