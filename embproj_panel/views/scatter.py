"""``ScatterView``: the linked scatter of a :class:`ProjectorState`, with hover and selection.

The view draws :func:`embproj_panel.views.plots.scatter_element` of the state's frame, colour
mapping and style: Bokeh glyphs up to ``state.datashade_threshold`` points, one server-shaded
Datashader image above it. The HoloViews object is replaced only when its *structure* changes
(a new projection, the switch between glyphs and a raster, tooltips moving between the glyphs
and the server, another set of overlays), keeping the user's zoom whenever the coordinates
are the same. Restyling, selecting and any colour change (another column, of any kind, or
none) update the same plot: the glyphs' colours are literal (``plots.point_colors``, written
into their source by a hook) and the figure's one legend and one colorbar are updated in
place (``plots.update_key``).

Selection has one home, ``state.selection``. The scatter writes it (box, lasso and tap;
through ``Selection1D`` for glyphs, through ``BoundsXY``/``Lasso``/``Tap`` mapped to rows on
the server by a :class:`~embproj_panel.spatial.PointIndex` for rasters) and reads it
(highlighted points, the rest dimmed or grey), comparing before assigning so no loop forms.
A click on a categorical legend entry (``7``, a cluster, ``unclustered``) selects the points of
that category, in both modes (:meth:`ScatterView.select_category`, through the legend's
``LegendItemClick`` on the server).

Hover is instant where the data allow: when every projected row's tooltip (its thumbnail as a
PNG data URI at most 96 px, at the image's own size if smaller, and its tooltip fields as text)
fits in :data:`INLINE_TOOLTIP_BYTES` in glyph mode, the tooltips travel with the glyphs and
Bokeh's hover tool shows them in the browser with no server round trip (the 1,797 digits,
8x8 images: about 0.4 MB). Above that budget, and for rasters, hover is resolved on the
server: the browser gets one row, with its thumbnail (always so for a lazy dataset, which
holds only what the map draws).

Selection modes are Bokeh's in both modes: the box, lasso or tap tool's ``mode`` (replace,
append, intersect, subtract, xor, toggle; set from the tool's toolbar menu or Python), and
the modifier keys of the gesture (shift appends, ctrl intersects, both subtract). Glyphs get
them from BokehJS itself; on a raster the browser has no points to select, so the tool's
mode is read from the plot's model and the gesture's keys from its ``PanStart``/``Tap``
event, and the new rows are combined with the selection here (:func:`combine_selection`).

Overlays: other views draw on the scatter without the scatter knowing about them
-------------------------------------------------------------------------------
``ScatterView.overlays`` is a list of callables ``overlay(scatter) -> element`` (a HoloViews
element or ``DynamicMap``, or None for nothing). The scatter calls each one whenever it builds
its plot (a new projection, colour, mode or overlay list) and draws the result above the
points and below the hover ring, in data coordinates, in both modes. The callable reads what
it needs from ``scatter``: ``scatter.state.frame`` (x, y, row of every point),
``scatter.raster`` (which mode), ``scatter.index`` (hit testing), ``scatter.style``. It redraws
itself from its own streams, so the scatter is never rebuilt for an overlay's change:

* a search highlight: ``hv.DynamicMap(search.rings, streams=[hv.streams.Params(search,
  ["hits"])])``, rings around the hits' positions (``state.positions_of(hits)``); a huge hit
  set in raster mode shades itself with :func:`~embproj_panel.views.plots.shade`;
* neighbour lines: ``hv.Segments`` from the query point to its neighbours, same streams idea;
* cluster labels: ``hv.Labels`` at the centroids, with an ``hv.streams.RangeXY()`` (no
  source: it attaches to the overlay's plot) to declutter per zoom;
* image thumbnails: ``hv.RGB`` tiles of a sample of ``scatter.index.in_box(...)`` of the
  visible window, driven by ``RangeXY`` and ``PlotSize`` streams.

A :class:`~embproj_panel.views.projector.Projector` part that defines
``scatter_overlay(self, scatter)`` is added to this list when the projector is composed.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np
import panel as pn
import param

from embproj_panel.colors import COLOR, ROW, X, Y
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.reducers import REDUCERS
from embproj_panel.spatial import PointIndex
from embproj_panel.state import ProjectorState
from embproj_panel.views import aspect, plots
from embproj_panel.views.base import StateView, weak_hook
from embproj_panel.views.text import cell_text
from embproj_panel.views.view_range import figure_opts, range_stream

__all__ = ["ScatterView", "combine_selection", "gesture_mode"]


def gesture_mode(tool_mode: str, shift: bool = False, ctrl: bool = False) -> str:
    """The selection mode of a gesture, as BokehJS's ``SelectTool._select_mode`` has it."""
    if shift and ctrl:
        return "subtract"
    if shift:
        return "append"
    if ctrl:
        return "intersect"
    return tool_mode


def combine_selection(current: Any, new: Any, mode: str) -> np.ndarray:
    """The selection after selecting ``new`` rows in Bokeh selection ``mode``."""
    current = np.asarray(current, dtype=np.int64)
    new = np.asarray(new, dtype=np.int64)
    if mode == "append":
        return np.union1d(current, new)
    if mode == "intersect":
        return np.intersect1d(current, new)
    if mode == "subtract":
        return np.setdiff1d(current, new)
    if mode in ("xor", "toggle"):
        return np.setxor1d(current, new)
    return np.unique(new)  # "replace"


def hv_streams() -> Any:
    import holoviews.streams

    return holoviews.streams

# Hover and tap reach this many screen pixels beyond a point's radius.
_HIT_PX = 4

_TOOLTIP_THUMB_PX = 96

#: The most bytes of tooltip data (thumbnail data URIs plus field text, over every projected
#: row) sent with the glyphs for a hover without server round trips; above it the server
#: answers each hover with the one hovered row.
INLINE_TOOLTIP_BYTES = 2_000_000

# The glyphs' source column of the point colours (HoloViews names it after the style), and
# the plot.handles key of what _paint last wrote.
_FILL_FIELD = "fill_color"
_PAINTED = "embproj_painted"

# Rows sampled to estimate the tooltip payload before making all of it.
_SAMPLE_ROWS = 64

class ScatterView(StateView):
    """The scatter of ``state.frame``: glyphs or a raster, hover, box/lasso/tap selection.

    Parameters
    ----------
    state
        The state it shows; the selection it writes.
    overlays
        Callables ``overlay(scatter) -> element`` drawn over the points (see the module
        docstring).

    Examples
    --------
    >>> state = ProjectorState(table=ep.datasets.digits())
    >>> ep.views.ScatterView(state)          # the scatter alone, in a notebook cell
    """


    overlays = param.List(default=[], doc="""
        Callables ``overlay(scatter) -> HoloViews element or DynamicMap (or None)``, drawn
        above the points in both modes; called whenever the plot is built.""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        #: The HoloViews pane: its ``object`` is the plot (None before a projection).
        self.pane = pn.pane.HoloViews(
            None, sizing_mode="stretch_both", min_height=420, linked_axes=False
        )
        self._structure: tuple | None = None
        # The projection the structure key was made for, and a serial number per projection:
        # id() of a projection freed when a new table cleared it is reused by the next one
        # (the figure was then updated in place with another table's rows, and froze).
        self._keyed_projection: Any = None
        self._projection_serial = 0
        self._shown_projection: Any = None
        self._index: PointIndex | None = None
        self._ranges: tuple | None = None
        self._plot_px: tuple[int, int] | None = None
        self._streams: list[Any] = []
        self._points_cache: tuple | None = None
        # (what the tooltips depend on, field -> values or None when over the budget).
        self._inline_cache: tuple | None = None
        # (window and events, (width, height), element) of the raster last drawn.
        self._last_raster: tuple | None = None
        # The frame's point colours, made once for all the zooms of one frame and colouring.
        self._shade_cache = plots.ShadeCache()
        state = self.state
        state.param.watch(self._on_frame, ["frame", "color", "tooltip_columns", "hover_image",
                                           "datashade_threshold"])
        state.param.watch(self._on_derived, ["derived"])
        state.param.watch(self._on_style, ["point_size", "alpha", "colormap"])
        state.param.watch(self._on_selection, ["selection"])
        state.param.watch(self._on_busy, ["busy"])
        self._on_frame()
        self._on_busy()

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane

    # -- what other views read -----------------------------------------------------------------
    @property
    def raster(self) -> bool:
        """Whether the points are drawn as a Datashader raster (else Bokeh glyphs)."""
        return bool(self._structure and self._structure[1])

    @property
    def index(self) -> PointIndex | None:
        """Hit testing over the frame's points (positions index ``state.frame``)."""
        return self._index

    @property
    def style(self) -> plots.ScatterStyle:
        """The state's point size, opacity and colormap."""
        state = self.state
        return plots.ScatterStyle(point_size=state.point_size, alpha=state.alpha,
                                  colormap=state.colormap)

    @property
    def instant_hover(self) -> bool:
        """Whether the tooltips travel with the glyphs (no server round trip on hover)."""
        return bool(self._structure and self._structure[-1])

    @property
    def streams(self) -> list[Any]:
        """The interaction streams of the current plot (selection, pointer, ranges, size)."""
        return list(self._streams)

    def inspect(self, x: float | None = None, y: float | None = None) -> Any:
        """The hover element for a pointer at ``(x, y)``: the nearest point's row, or empty."""
        state = self.state
        fields, tips = self._tooltip_fields()
        record = None
        if x is not None and y is not None and self._index is not None \
                and state.frame is not None:
            position = self._index.nearest(x, y, *self._radii())
            if position is not None:
                record = self._record(position, fields)
        element = plots.inspect_element(record, fields, tips, point_size=state.point_size)
        return element.opts(hooks=[weak_hook(self._hover_tooltips)])

    # -- structure ------------------------------------------------------------------------------
    def _structure_key(self) -> tuple | None:
        state = self.state
        frame = state.frame
        if frame is None:
            return None
        raster = len(frame) > state.datashade_threshold
        # A colour change of any kind (another column, numbers <-> categories <-> none), a
        # colormap, tooltip columns or hover image update the plot in place: the points get
        # their literal colours as new glyph data (or a re-shaded raster) and the legend or
        # colorbar models are updated (plots.update_key), in the same figure. Only a new
        # projection, the glyph/raster switch and tooltips moving between the glyphs and the
        # server (another hover tool and streams) rebuild it.
        inline = not raster and self._inline_tooltips() is not None
        if state.projection is not self._keyed_projection:
            self._keyed_projection = state.projection
            self._projection_serial += 1
        return (self._projection_serial, raster, inline)

    def _on_frame(self, *events: Any) -> None:
        key = self._structure_key()
        if key != self._structure:
            self._rebuild(key)
        elif key is not None:
            self._data_events.event()  # the points or the raster, with the new colours
            self._refresh_hover()

    def _on_derived(self, *events: Any) -> None:
        """New values of a derived column the tooltips show (faithfulness, clusters)."""
        if any(name in self.state.derived or name in events[0].old
               for name in self.state.tooltip_columns):
            self._on_frame()

    #: The layer whose plot reports the view (set when the plot is built); see view_streams.
    view_source: Any = None

    def view_streams(self) -> list[Any]:
        """``RangeXY`` and ``PlotSize`` streams of the current plot's view, for an overlay
        that follows it (images, cluster labels), called while the plot is built.

        Streams without a source would each get a callback of their own on the overlay's
        plot, and each callback refreshes the whole plot after the points did, so a zoom's
        thumbnails would be sent a refresh later than its raster. Streams of the same kind
        and source share one callback: one refresh, one message.
        """
        return [range_stream(source=self.view_source),
                hv_streams().PlotSize(source=self.view_source)]

    def _refresh_hover(self) -> None:
        """Re-run the hover element, so its tooltip lists the current fields."""
        for stream in self._streams:
            if isinstance(stream, hv_streams().PointerXY):
                stream.event(x=stream.x, y=stream.y)

    def _key(self, plot: Any, element: Any) -> None:
        """HoloViews hook: the figure's legend or colorbar follows the colouring, in place;
        a click on a legend entry selects its category; and an isotropic method's map keeps
        equal scales on both axes (in the browser, where the frame's size is known:
        :mod:`~embproj_panel.views.aspect`). One hook in every element's list: a hook list
        given to the overlay would replace the elements' own."""
        plots.update_key(plot, self.state.color, self.state.colormap,
                         on_pick=self.select_category)
        projection = self.state.projection
        if projection is not None and REDUCERS[projection.method].isotropic:
            aspect.equal_scales(plot, element)

    def select_category(self, label: str) -> None:
        """Select the points whose colour category is ``label`` (a legend entry's click)."""
        state, frame = self.state, self.state.frame
        if state.color.kind != "categorical" or frame is None or COLOR not in frame:
            return
        state.select(frame[ROW].to_numpy()[(frame[COLOR] == label).to_numpy()])

    def _hover_tooltips(self, plot: Any, element: Any) -> None:
        """HoloViews hook: the hover tool lists the current tooltip fields."""
        hover = plot.handles.get("hover")
        tips = self._tooltip_fields()[1]
        if hover is not None and hover.tooltips != tips:
            hover.tooltips = tips

    @param.depends("overlays", watch=True)
    def _on_overlays(self) -> None:
        self._rebuild(self._structure_key())

    def redraw(self) -> None:
        """Build the plot again from the same data, keeping the zoom: for a change in how
        the pane's axes are linked to other panes (Panel links them when a plot is built)."""
        self._rebuild(self._structure_key())

    def _rebuild(self, key: tuple | None) -> None:
        """Replace the plot; keep the zoom if the coordinates are the same as before."""
        projection = self.state.projection
        same_coordinates = key is not None and self._shown_projection is projection
        self._structure = key
        if key is None:
            self.pane.object = None
            self._index, self._shown_projection = None, None
            return
        if not same_coordinates:
            frame = self.state.frame
            self._index = None  # let the old index go before the new one is built
            self._index = PointIndex(frame[X].to_numpy(), frame[Y].to_numpy())
            self._shown_projection = projection
            self._ranges = None
        self.pane.object = self._build_plot(raster=key[1], ranges=self._ranges)

    def _on_busy(self, *events: Any) -> None:
        self.pane.loading = self.state.busy

    def _axis_label(self) -> str:
        projection = self.state.projection
        return REDUCERS[projection.method].label if projection else ""

    def _build_plot(self, raster: bool, ranges: tuple | None) -> Any:
        import holoviews as hv

        self._data_events = hv.streams.Counter()
        # Renamed: the raster's DynamicMap listens to both counters.
        self._selection_events = hv.streams.Counter(rename={"counter": "selection_counter"})
        self._streams = []
        self._last_raster = None
        if raster:
            layers = self._raster_layers()
            source = layers[0]
        else:
            source = hv.DynamicMap(self._points, streams=[self._data_events])
            layers = [source]
            selection = hv.streams.Selection1D(source=source)
            selection.add_subscriber(self._on_plot_positions)
            self._streams.append(selection)
        # Overlays that follow the view take their ranges and size from this layer's plot
        # (view_streams): one callback per zoom then redraws the points and them together.
        self.view_source = source
        for overlay in self.overlays:
            layer = overlay(self)
            if layer is not None:
                layers.append(layer)
        ranges_stream = range_stream(source=source)
        ranges_stream.add_subscriber(self._on_ranges)
        size_stream = hv.streams.PlotSize(source=source)
        size_stream.add_subscriber(self._on_plot_size)
        self._streams.extend([ranges_stream, size_stream])
        if not self.instant_hover:
            # Each pointer move asks the server for the row under it.
            pointer = hv.streams.PointerXY(x=None, y=None, source=source)
            self._streams.append(pointer)
            layers.append(hv.DynamicMap(self.inspect, streams=[pointer]))
        overlay = functools.reduce(operator.mul, layers)
        opts: dict[str, Any] = {"responsive": True, "min_height": 400, **figure_opts()}
        if ranges is not None:
            opts.update(xlim=ranges[0], ylim=ranges[1])
        return overlay.opts(**opts)

    # -- glyphs ---------------------------------------------------------------------------------
    def _points(self, counter: int = 0) -> Any:
        """The glyph scatter; re-run for style and selection, with the same data object."""
        state = self.state
        cached = self._points_cache
        hover_data = self._inline_tooltips() if self.instant_hover else None
        # One element per projection and tooltip data: later frames are clones of it, so
        # HoloViews sees the same data and does not resend the points (nor their thumbnails)
        # for a restyle, a selection or a colour change. The colours are literal and written
        # into the glyphs' source by the _paint hook: only the colour columns travel, and the
        # figure never needs another colour mapper, legend or colorbar model.
        key = (state.projection, hover_data)
        base = cached[1] if cached is not None and cached[0][0] is key[0] \
            and cached[0][1] is key[1] else None
        if base is None:
            base = plots.scatter_element(state.frame, state.color, self.style,
                                         axis_label=self._axis_label(), hover_data=hover_data,
                                         hover_tooltips=self._tooltip_fields()[1],
                                         literal_colors=True)
            self._points_cache = (key, base)
        element = plots.scatter_element(
            state.frame, state.color, self.style,
            selected=state.positions_of(state.selection).tolist(), base=base,
            literal_colors=True,
        )
        hooks = [weak_hook(self._paint), weak_hook(self._key)] + (
            [weak_hook(self._hover_tooltips)] if hover_data else [])
        return element.opts(hooks=hooks)

    def _paint(self, plot: Any, element: Any) -> None:
        """HoloViews hook: the glyphs' source holds the current colours (and colour values).

        The element's data is the projection's first frame (so HoloViews sends no points
        again); the colour of each point, and the colour value the tooltips show, are
        written here, once per new frame or colormap: two columns, not the source.
        """
        from bokeh.core.properties import field

        state = self.state
        source, renderer = plot.handles.get("source"), plot.handles.get("glyph_renderer")
        if source is None or renderer is None or state.frame is None:
            return
        frame = state.frame
        if len(frame) != len(source.data.get(X, ())):
            return
        painted = (frame, state.colormap)
        last = plot.handles.get(_PAINTED)
        if last is None or last[0] is not painted[0] or last[1] != painted[1]:
            columns: dict[str, Any] = {
                _FILL_FIELD: plots.point_colors(frame, state.color, state.colormap)}
            if COLOR in source.data and COLOR in frame:
                values = frame[COLOR]
                columns[COLOR] = (values.astype(str).to_numpy(dtype=object)
                                  if state.color.kind == "categorical"
                                  else values.to_numpy())
            source.data.update(columns)
            plot.handles[_PAINTED] = painted
        # HoloViews sets a constant colour as a property: the glyphs read the column.
        for glyph in (renderer.glyph, renderer.selection_glyph, renderer.nonselection_glyph,
                      renderer.hover_glyph, renderer.muted_glyph):
            if glyph is not None and hasattr(glyph, "fill_color") \
                    and glyph.fill_color != field(_FILL_FIELD):
                glyph.fill_color = field(_FILL_FIELD)

    # -- raster ---------------------------------------------------------------------------------
    def _raster_layers(self) -> list[Any]:
        import holoviews as hv

        # One DynamicMap of one server-shaded RGBA image, re-rendered on zoom, resize, new
        # data, style or selection: the browser gets width x height x 4 bytes per update
        # whatever the number of rows, categories or selected rows. (Separate layers for
        # "all rows", "grey context" and "selected rows" would each be sent, hidden or not.)
        # Streams without a source attach to this DynamicMap's plot.
        streams = [range_stream(), hv.streams.PlotSize(), self._data_events,
                   self._selection_events]
        raster = hv.DynamicMap(self._raster, streams=streams).opts(
            hooks=[weak_hook(self._key), weak_hook(self._watch_gestures)])
        # Selections on a raster are geometric: map them to rows here, on the server.
        box = hv.streams.BoundsXY(source=raster)
        box.add_subscriber(self._on_box)
        lasso = hv.streams.Lasso(source=raster)
        lasso.add_subscriber(self._on_lasso)
        tap = hv.streams.Tap(source=raster)
        tap.add_subscriber(self._on_tap)
        self._streams.extend([*streams[:2], box, lasso, tap])
        return [raster]

    def _raster(self, x_range: Any = None, y_range: Any = None, width: int | None = None,
                height: int | None = None, scale: float = 1.0, **counters: Any) -> Any:
        """The scatter as one RGBA image of the current window, size and selection."""
        state = self.state
        if x_range is None or y_range is None:
            window = plots.extent(state.frame)
        else:
            (x0, x1), (y0, y1) = x_range, y_range
            window = (x0, y0, x1, y1)
        size = plots.raster_size(width, height)
        key = (*window, tuple(sorted(counters.items())))
        last = self._last_raster
        if last is not None and last[0] == key and all(
            abs(new - old) <= max(8, 0.05 * old) for new, old in zip(size, last[1])
        ):
            # The frame moved by a few pixels (a scrollbar, a line of text): the browser
            # stretches the image it has. Returning the same element sends nothing (an
            # identical re-shade would still be sent whole).
            return last[2]
        selected = state.positions_of(state.selection) if state.selection else None
        element = plots.scatter_element(
            state.frame, state.color, self.style, raster=True, selected=selected,
            window=window, size=size, axis_label=self._axis_label(),
            shade_cache=self._shade_cache,
        )
        # The legend or colorbar an image lacks, and the gesture keys (the DynamicMap's
        # hooks and each element's replace one another: both list both).
        element = element.opts(hooks=[weak_hook(self._key), weak_hook(self._watch_gestures)])
        self._last_raster = (key, size, element)
        return element

    def _on_style(self, *events: Any) -> None:
        if self._structure is None:
            return
        # Glyphs restyle the same data object; a raster is re-shaded with the new style.
        self._data_events.event()

    def _on_plot_size(self, width: int | None = None, height: int | None = None,
                      scale: float = 1.0) -> None:
        if width and height:
            self._plot_px = (int(width), int(height))

    def _on_ranges(self, x_range: Any = None, y_range: Any = None) -> None:
        if x_range is not None and y_range is not None:
            self._ranges = (tuple(x_range), tuple(y_range))

    # -- hover ----------------------------------------------------------------------------------
    def _radii(self) -> tuple[float, float]:
        """The data distance, along x and y, of a point's radius plus a few pixels."""
        frame = self.state.frame
        if self._ranges is not None:
            (x0, x1), (y0, y1) = self._ranges
        else:
            x0, x1 = float(frame[X].min()), float(frame[X].max())
            y0, y1 = float(frame[Y].min()), float(frame[Y].max())
        width, height = self._plot_px or (600, 500)
        reach = self.state.point_size / 2 + _HIT_PX
        return (max(abs(x1 - x0), 1e-12) * reach / max(width, 1),
                max(abs(y1 - y0), 1e-12) * reach / max(height, 1))

    def _tooltip_fields(self) -> tuple[list[str], list[tuple[str, str]]]:
        state = self.state
        columns = [(str(name), f"t{i}") for i, name in enumerate(state.tooltip_columns)]
        color_label = None if state.color.kind == "none" else str(state.color_by)
        tips = plots.tooltips(color_label, columns, state.hover_image is not None)
        fields = [ROW] + [field for _, field in columns]
        if color_label is not None:
            fields.append(COLOR)
        if state.hover_image is not None:
            fields.append(plots.THUMB)
        return fields, tips

    def _thumbnail(self, row: int) -> str:
        """The tooltip image of table ``row``: a PNG data URI made here, or a blank one."""
        image = self.state.image(row)
        if image is None:
            return plots.BLANK_IMAGE
        return image.thumbnail_uri(min(_TOOLTIP_THUMB_PX, max(image.width, image.height)))

    def _inline_tooltips(self) -> dict[str, np.ndarray] | None:
        """Every projected row's tooltip fields, or None if over :data:`INLINE_TOOLTIP_BYTES`.

        A sample of rows estimates the size first, so a large table costs the sample only;
        the values are the same text (and images) the server-side hover sends.
        """
        state = self.state
        frame = state.frame
        if frame is None or state.table is None:
            return None
        if isinstance(state.table, DatasetTable):
            return None  # a lazy dataset's rows are read on hover, never every one up front
        # A derived column's values are replaced, not changed in place: its object is the key.
        key = (state.projection, state.table, state.hover_image,
               tuple(state.tooltip_columns),
               tuple(id(state.derived.get(name)) for name in state.tooltip_columns))
        cached = self._inline_cache
        if cached is not None and cached[0][0] is key[0] and cached[0][1] is key[1] \
                and cached[0][2:] == key[2:]:
            return cached[1]
        rows = frame[ROW].to_numpy()
        # One value per frame position (derived columns as their legend labels).
        columns = [state.shown_cells(name, rows) for name in state.tooltip_columns]

        def texts(position: int) -> list[str]:
            return [cell_text(values[position]) for values in columns]

        def row_bytes(position: int) -> int:
            size = sum(len(text.encode()) for text in texts(position)) + 16  # row, colour
            return size + (len(self._thumbnail(int(rows[position])))
                           if state.hover_image is not None else 0)

        sample = np.linspace(0, len(rows) - 1, min(len(rows), _SAMPLE_ROWS)).astype(int) \
            if len(rows) else np.zeros(0, dtype=int)
        estimate = (sum(row_bytes(int(p)) for p in sample) / max(len(sample), 1)) * len(rows)
        data: dict[str, np.ndarray] | None = None
        if estimate <= INLINE_TOOLTIP_BYTES:
            data = {}
            for i, values in enumerate(columns):
                data[f"t{i}"] = np.array([cell_text(value) for value in values], dtype=object)
            if state.hover_image is not None:
                data[plots.THUMB] = np.array([self._thumbnail(int(r)) for r in rows],
                                             dtype=object)
            total = sum(len(text) for values in data.values() for text in values)
            if total > INLINE_TOOLTIP_BYTES:  # the sample was not representative
                data = None
        self._inline_cache = (key, data)
        return data

    def _record(self, position: int, fields: list[str]) -> dict[str, Any]:
        """The hovered row's tooltip values (all text, escaped by Bokeh on display)."""
        state = self.state
        frame = state.frame
        row = int(frame[ROW].iat[position])
        record: dict[str, Any] = {
            X: float(frame[X].iat[position]),
            Y: float(frame[Y].iat[position]),
            ROW: row,
        }
        if COLOR in fields:
            record[COLOR] = cell_text(frame[COLOR].iat[position])
        if plots.THUMB in fields:
            record[plots.THUMB] = self._thumbnail(row)
        for i, name in enumerate(state.tooltip_columns):
            record[f"t{i}"] = cell_text(state.shown_cells(name, [row])[0])
        return record

    # -- selection: plot -> state -------------------------------------------------------------
    def _watch_gestures(self, plot: Any, element: Any) -> None:
        """HoloViews hook (raster): remember the figure, and the keys held at each gesture."""
        from bokeh import events

        figure = plot.state
        if figure is self._figure:
            return
        self._figure = figure
        self._keys = {}
        figure.on_event(events.PanStart, self._on_gesture_start)
        figure.on_event(events.Tap, self._on_gesture_start)

    _figure: Any = None
    _keys: dict = {}

    def _on_gesture_start(self, event: Any) -> None:
        modifiers = getattr(event, "modifiers", None) or {}
        get = modifiers.get if isinstance(modifiers, dict) else (
            lambda key, default=False: getattr(modifiers, key, default))
        self._keys = {"shift": bool(get("shift", False)), "ctrl": bool(get("ctrl", False))}

    def _raster_select(self, positions: Any, tool: str) -> None:
        """Select ``positions`` of the frame on a raster, in the gesture's selection mode."""
        from bokeh.models import BoxSelectTool, LassoSelectTool, TapTool

        kind = {"box": BoxSelectTool, "lasso": LassoSelectTool, "tap": TapTool}[tool]
        figure = self._figure
        found = figure.select_one({"type": kind}) if figure is not None else None
        keys, self._keys = self._keys, {}
        mode = gesture_mode(getattr(found, "mode", "replace"), **keys)
        rows = self.state.rows_of(positions)
        self.state.select(combine_selection(self.state.selection, rows, mode))

    def _on_plot_positions(self, index: list[int] | None = None) -> None:
        rows = self.state.rows_of(index or [])
        if set(rows.tolist()) != set(self.state.selection):
            self.state.select(rows)

    def _on_box(self, bounds: tuple | None = None) -> None:
        if bounds is None or self._index is None:
            return
        self._raster_select(self._index.in_box(*bounds), "box")

    def _on_lasso(self, geometry: np.ndarray | None = None) -> None:
        if geometry is None or self._index is None or len(geometry) < 3:
            return
        geometry = np.asarray(geometry)
        positions = self._index.in_polygon(geometry[:, 0], geometry[:, 1])
        self._raster_select(positions, "lasso")

    def _on_tap(self, x: float | None = None, y: float | None = None) -> None:
        if x is None or y is None or self._index is None:
            return
        position = self._index.nearest(x, y, *self._radii())
        self._raster_select([] if position is None else [position], "tap")

    # -- selection: state -> plot ---------------------------------------------------------------
    def _on_selection(self, *events: Any) -> None:
        if self._structure is None:
            return
        if self._structure[1]:
            self._selection_events.event()
        else:
            self._data_events.event()
