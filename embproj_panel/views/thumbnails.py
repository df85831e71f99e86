"""Thumbnails drawn at points: an ``hv.Points`` element whose plot also draws a Bokeh ImageURL.

HoloViews has no image-at-a-point element, and Bokeh's ``ImageURL`` glyph is not hit-testable
(its ``_index_data`` is a stub), so thumbnails ride on a transparent ``hv.Points`` element:
:func:`thumbnail_points` carries ``x``, ``y``, the thumbnail ``url`` (a data URI) and the
``row`` of each point, and its plot hook adds an ``ImageURL`` renderer that reads a
``ColumnDataSource`` of its own (HoloViews keeps unused value columns out of the element's
source), refilled from each new frame of a ``DynamicMap``: a pan or zoom sends only the new
points' coordinates and URIs. The glyphs are made once per plot (the source is kept in
``plot.handles``). The URIs are made by this package from image pixels
(``Image.thumbnail_uri``): no user string ever becomes a URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embproj_panel.views.plots import _holoviews

__all__ = ["thumbnail_points", "view_of"]

# The plot size assumed before the browser reports one.
DEFAULT_PX = (800, 600)

_HANDLE = "embproj_thumbnails"


def _image_url_hook(size_px: float, units: str, border: bool) -> Any:
    def hook(plot: Any, element: Any) -> None:
        from bokeh.models import ColumnDataSource

        data = {"x": element.dimension_values("x"), "y": element.dimension_values("y"),
                "url": [str(u) for u in element.dimension_values("url")],
                "row": element.dimension_values("row").astype(np.int64)}
        source = plot.handles.get(_HANDLE)
        if source is not None:
            source.data = data  # the images of this frame: one property change
            return
        # HoloViews leaves value dimensions that no style uses out of its own source, so
        # the images get a source of their own, refreshed from each frame's element.
        from bokeh.core.properties import field
        from bokeh.models import ImageURL, Rect

        source = plot.handles[_HANDLE] = ColumnDataSource(data)
        figure = plot.state
        if border:
            frame = Rect(x="x", y="y", width=size_px + 4, height=size_px + 4,
                         width_units=units, height_units=units, fill_color="white",
                         line_color="#555555", line_width=1)
            figure.add_glyph(source, frame)
        # A bare string is a *value* for ImageURL's url (a StringSpec): name the field.
        glyph = ImageURL(url=field("url"), x="x", y="y", w=size_px, h=size_px, w_units=units,
                         h_units=units, anchor="center")
        figure.add_glyph(source, glyph)

    return hook


def thumbnail_points(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                     urls: Sequence[str], rows: Sequence[int] | np.ndarray,
                     size_px: float = 48, units: str = "screen", border: bool = True,
                     label: str = "Thumbnails", clickable: bool = False) -> Any:
    """An ``hv.Points`` that draws ``urls`` as ``size_px`` images centred at ``(x, y)``.

    ``units="data"`` sizes the images in data units instead (a grid of tiles).
    ``clickable``: the transparent points become squares the size of the images with a tap
    tool, so a ``Selection1D`` stream on the element reports which image was clicked.
    """
    hv = _holoviews()

    data = {"x": np.asarray(x, dtype=np.float64), "y": np.asarray(y, dtype=np.float64),
            "url": list(urls), "row": np.asarray(rows, dtype=np.int64)}
    points = hv.Points(data, kdims=["x", "y"], vdims=["url", "row"], label=label)
    hit = dict(size=size_px, marker="square", tools=["tap"], nonselection_alpha=0,
               selection_alpha=0) if clickable else dict(size=1, tools=[])
    return points.opts(
        alpha=0, default_tools=[], show_legend=False,
        hooks=[_image_url_hook(size_px, units, border)], **hit,
    )


def view_of(frame: Any, x_range: Any, y_range: Any, width: Any,
            height: Any) -> tuple[tuple[float, float], tuple[float, float], tuple[int, int]]:
    """The window and plot size a ``RangeXY`` + ``PlotSize`` stream pair describes.

    Before the browser reports them (None, or NaN while the figure has no ranges yet) the
    window is the frame's extent and the size :data:`DEFAULT_PX`.
    """
    from embproj_panel.views.plots import extent

    def usable(pair: Any) -> bool:
        return pair is not None and all(v is not None and np.isfinite(v) for v in pair) \
            and pair[1] > pair[0]

    if not (usable(x_range) and usable(y_range)):
        if frame is None or not len(frame):
            x_range, y_range = (0.0, 1.0), (0.0, 1.0)
        else:
            x0, y0, x1, y1 = extent(frame)
            x_range, y_range = (x0, x1), (y0, y1)
    size = (int(width) if width else DEFAULT_PX[0], int(height) if height else DEFAULT_PX[1])
    return (float(x_range[0]), float(x_range[1])), (float(y_range[0]), float(y_range[1])), size
