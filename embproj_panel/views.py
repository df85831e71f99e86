"""The projector's views: ``Projector``, a ``pn.viewable.Viewer`` over a :class:`ProjectorState`.

``Projector(source, **settings)`` works inline in Jupyter (after ``pn.extension(...)``) and
under ``panel serve``. It builds its components once (settings, scatter, status, table,
downloads) and afterwards only updates their properties; the HoloViews scatter is replaced
only when its *structure* changes (a new projection, another colour column or tooltip, or the
switch between glyphs and a Datashader raster), keeping the user's zoom whenever the
coordinates are the same.

Selection has one home, ``state.selection`` (table row positions). The scatter writes it
(box, lasso and tap; through ``Selection1D`` for glyphs, through ``BoundsXY``/``Lasso``/``Tap``
mapped to rows on the server for rasters) and reads it (highlighted points, the rest dimmed);
the table writes it (row clicks) and reads it (its selected rows, and, with "show selection",
which rows it lists). Each writer compares before assigning, so no update loops back.

What reaches the browser is bounded: the scatter sends coordinates and colours only (a raster
above the threshold), the hover image is sent for the hovered row alone, and the table sends
one page, whose thumbnails are made when the page is shown. User text (column names, labels,
file names, error messages) is rendered as text: escaped wherever a component would read it
as HTML (Tabulator titles, status and alerts).
"""

from __future__ import annotations

import functools
import html
import io
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param

from embproj_panel import plots
from embproj_panel.reducers import REDUCERS
from embproj_panel.state import ProjectorState, column_labels
from embproj_panel.table import Table

__all__ = ["Projector", "as_table"]

# The largest download sent through the websocket (base64 adds a third): Bokeh's default
# message limit is 20 MB, and a bigger file would close the session.
MAX_DOWNLOAD_BYTES = 12 * 2**20

#: The most pixels a raster update has (4 bytes each).
MAX_RASTER_PIXELS = 1_000_000

# Hover and tap reach this many screen pixels beyond a point's radius.
_HIT_PX = 4

#: Selections up to this many rows are also highlighted in the table (larger ones are listed).
TABLE_HIGHLIGHT_MAX = 10_000

_TABLE_THUMB_PX = 40
_TOOLTIP_THUMB_PX = 96


def as_table(source: Any) -> Table | None:
    """Turn what ``Projector`` accepts into a :class:`~embproj_panel.table.Table`.

    Parameters
    ----------
    source
        A Table; a pandas DataFrame; a 2-D numeric ndarray (one vector column
        ``"embedding"``); a logged table as ``(project, run, key)`` or
        ``(project, run, key, step)``; or None.

    Raises
    ------
    TypeError
        For anything else.
    """
    if source is None or isinstance(source, Table):
        return source
    if isinstance(source, pd.DataFrame):
        return Table(dataframe=source)
    if isinstance(source, np.ndarray):
        if source.ndim != 2 or not np.issubdtype(source.dtype, np.number):
            raise TypeError(
                f"An ndarray source must be a 2-D numeric array (rows x dimensions); got "
                f"shape {source.shape} of {source.dtype}"
            )
        cells = np.empty(len(source), dtype=object)
        cells[:] = list(source)
        return Table(dataframe=pd.DataFrame({"embedding": cells}))
    if isinstance(source, tuple) and len(source) in (3, 4) and all(
        isinstance(part, str) for part in source[:3]
    ):
        from embproj_panel.store import load_table

        project, run, key, *step = source
        return load_table(project, run, key, *step)
    raise TypeError(
        "source must be a Table, a DataFrame, a 2-D ndarray or a logged table "
        f"(project, run, key); got {type(source).__name__}"
    )


def _escaped(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _cell_text(value: Any) -> str:
    """A tooltip value as plain text (Bokeh escapes it again on display)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "(missing)"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.ndarray):
        return f"[{len(value)} values]"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


class _IndexLabels(Mapping):
    """Row position in the Tabulator's processed frame -> that row's index label.

    A read-only view of the index, in place of the dict with one entry per row that Panel
    builds on every value or filter change (~100 MB and ~0.3 s at a million rows).
    """

    def __init__(self, index: pd.Index) -> None:
        self._index = index

    def __getitem__(self, position: int) -> Any:
        if not isinstance(position, (int, np.integer)) or not 0 <= position < len(self._index):
            raise KeyError(position)
        return self._index[position]

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._index)))


class _Tabulator(pn.widgets.Tabulator):
    """Panel's Tabulator without a per-row Python dict (see :class:`_IndexLabels`)."""

    def _update_index_mapping(self) -> None:
        # Overrides a *private* method of Panel 1.9 (widgets/tables.py), whose only reader
        # does ``self._index_mapping.get(row, row)`` when a cell is clicked: any Mapping
        # serves. If a Panel upgrade changes this, delete the override (and this class).
        processed = self._processed
        if isinstance(processed, pd.DataFrame):
            self._index_mapping = _IndexLabels(processed.index)
        else:
            self._index_mapping = {}


class _TableFilter(param.Parameterized):
    """What the table lists: every row, or the rows of the last plot/Python selection."""

    rows = param.List(default=[], doc="Rows listed when showing the selection.")
    mode = param.Selector(default="selection", objects=["selection", "all"])


def _filter_rows(df: pd.DataFrame, rows: list[int], mode: str) -> pd.DataFrame:
    if mode == "all" or not rows:
        return df
    return df.loc[df.index.intersection(rows)]


class Projector(pn.viewable.Viewer):
    """An embedding projector: settings, a linked scatter with image hover, and a table.

    Parameters
    ----------
    source
        What to project (see :func:`as_table`), or a :class:`ProjectorState` to show.
    **settings
        Any :class:`ProjectorState` parameter (``method``, ``color_by``, ``hover_image``,
        ``embedding_columns``, ``tooltip_columns``, ``point_size``, ``settings``, ...) or a
        parameter of this class (``page_size``, ``table_mode``).

    Examples
    --------
    >>> import panel as pn, embproj_panel as ep
    >>> pn.extension("tabulator")
    >>> projector = ep.Projector(ep.datasets.digits(), color_by="target")
    >>> projector                                   # shows the app in a notebook cell
    >>> projector.selection = [0, 1, 2]             # highlights three points
    >>> projector.selected_dataframe                # those rows, with x and y
    """

    state = param.ClassSelector(class_=ProjectorState, constant=True, doc="""
        The state this view shows and edits.""")

    page_size = param.Integer(default=10, bounds=(5, 200), doc="""
        Rows per table page (the browser gets one page at a time).""")

    table_mode = param.Selector(default="selection", objects=["selection", "all"], doc="""
        With a selection, list only the selected rows ("selection") or every row ("all").""")

    def __init__(self, source: Any = None, **params: Any) -> None:
        state = params.pop("state", None)
        if isinstance(source, ProjectorState):
            state, source = source, None
        own = {k: params.pop(k) for k in list(params) if k in type(self).param and k != "name"}
        if state is None:
            state = ProjectorState(table=as_table(source), **params)
        elif source is not None or params:
            raise TypeError("Pass either a state or a source with settings, not both")
        super().__init__(state=state, **own)
        self._structure: tuple | None = None
        self._index: plots.PointIndex | None = None
        self._ranges: tuple | None = None
        self._origin: str | None = None
        self._thumbs: np.ndarray | None = None
        self._filter = _TableFilter(mode=self.table_mode)
        self._build()
        state.param.watch(self._on_frame, ["frame", "color", "tooltip_columns", "hover_image",
                                           "datashade_threshold"])
        state.param.watch(self._on_style, ["point_size", "alpha", "colormap"])
        state.param.watch(self._on_selection, ["selection"])
        state.param.watch(self._on_progress, ["busy", "progress", "status", "error", "stale"])
        state.param.watch(self._on_table, ["table"])
        state.param.watch(self._on_method, ["method"])
        state.param.watch(self._on_hover_image, ["hover_image"])
        state.param.watch(self._sync_tooltip_choice, ["table", "tooltip_columns"])
        self._sync_tooltip_choice()
        self._on_table()
        self._on_frame()
        self._on_progress()

    # -- Python API ---------------------------------------------------------------------------
    @property
    def selection(self) -> list[int]:
        """The selected rows (table row positions); assign a list to select from Python."""
        return list(self.state.selection)

    @selection.setter
    def selection(self, rows: Any) -> None:
        self.state.select(rows)

    @property
    def selected_dataframe(self) -> pd.DataFrame:
        """The selected rows with their ``x`` and ``y`` coordinates (a copy)."""
        return self.state.selected_dataframe

    # -- components ---------------------------------------------------------------------------
    def _build(self) -> None:
        self._plot = pn.pane.HoloViews(
            None, sizing_mode="stretch_both", min_height=420, linked_axes=False
        )
        self._progress = pn.indicators.Progress(
            value=0, max=100, visible=False, sizing_mode="stretch_width", height=12,
            bar_color="primary", margin=(0, 10),
        )
        # Two lines tall whatever the text: a status that wraps differently would resize the
        # plot, and a raster resize is a re-aggregation and a new image.
        self._status = pn.pane.HTML("", sizing_mode="stretch_width", margin=(2, 10), height=36,
                                    styles={"font-size": "0.85em", "color": "#555",
                                            "overflow": "hidden"})
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False,
                                    sizing_mode="stretch_width", margin=(4, 10))
        self._table = _Tabulator(
            None, pagination="remote", page_size=self.page_size, selectable=True,
            disabled=True, show_index=True, sizing_mode="stretch_both", min_height=200,
            layout="fit_data_fill", header_align="left",
        )
        self._table.add_filter(
            pn.bind(_filter_rows, rows=self._filter.param.rows, mode=self._filter.param.mode)
        )
        self._table.param.watch(self._on_table_selection, ["selection"])
        self._table.param.watch(self._fill_thumbnails, ["page", "sorters", "filters", "value"])
        self._filter.param.watch(self._fill_thumbnails, ["rows", "mode"])
        self._table_mode = pn.widgets.RadioButtonGroup.from_param(
            self.param.table_mode, options={"Show selection": "selection", "Show all": "all"},
            color="default", variant="outline", margin=(5, 5, 5, 10), width=220, height=36,
        )
        # Wide enough for "Clear selection (1,000,000)" on one line: its label must not
        # wrap and change the layout (see table_panel).
        self._clear = pn.widgets.Button(label="Clear selection", color="danger",
                                        variant="outline", margin=(5, 5), disabled=True,
                                        width=205, height=36)
        self._clear.on_click(lambda event: self.state.select([]))
        self._export_rows = pn.widgets.Select(
            options={"Selected rows": "selection", "All rows": "all"}, value="selection",
            width=130, margin=(5, 5),
        )
        self._csv = pn.widgets.FileDownload(
            callback=self._export_csv, filename="embproj-selection.csv", label="CSV",
            color="default", variant="outline", width=80, margin=(5, 5),
        )
        self._parquet = pn.widgets.FileDownload(
            callback=self._export_parquet, filename="embproj-selection.parquet",
            label="Parquet", color="default", variant="outline", width=90,
            margin=(5, 5),
        )
        self._export_rows.param.watch(self._on_export_rows, "value")
        self._settings = self._build_settings()

    def _build_settings(self) -> pn.Column:
        state = self.state
        p = state.param
        embedding = pn.widgets.MultiSelect.from_param(
            p.embedding_columns, label="Embedding columns", size=6, sizing_mode="stretch_width"
        )
        color = pn.widgets.Select.from_param(p.color_by, label="Color by",
                                             sizing_mode="stretch_width")
        hover = pn.widgets.Select.from_param(p.hover_image, label="Hover image",
                                             sizing_mode="stretch_width")
        # Bokeh's MultiChoice (Choices.js) renders option labels as HTML, so it gets escaped
        # labels and is linked to the state by hand instead of through from_param.
        self._tooltip_choice = pn.widgets.MultiChoice(
            label="Tooltip columns", options={}, sizing_mode="stretch_width",
            placeholder="Columns shown on hover",
        )
        self._tooltip_choice.param.watch(self._on_tooltip_choice, "value")
        tooltip = self._tooltip_choice
        method = pn.widgets.RadioButtonGroup.from_param(
            p.method, options={cls.label: name for name, cls in REDUCERS.items()},
            sizing_mode="stretch_width", color="primary", variant="outline",
        )
        self._method_settings = {
            name: self._method_panel(settings) for name, settings in state.settings.items()
        }
        self._method_holder = pn.Column(self._method_settings[state.method],
                                        sizing_mode="stretch_width", margin=0)
        auto = pn.widgets.Checkbox.from_param(p.auto_compute, label="Recompute on every change")
        self._compute = pn.widgets.Button.from_param(
            p.compute, label="Compute", color="primary", sizing_mode="stretch_width"
        )
        # Style sliders act on release too: a raster restyle re-aggregates.
        size = pn.widgets.FloatSlider.from_param(p.point_size, label="Point size",
                                                 sizing_mode="stretch_width", throttled=True)
        alpha = pn.widgets.FloatSlider.from_param(p.alpha, label="Opacity",
                                                  sizing_mode="stretch_width", throttled=True)
        colormap = pn.widgets.Select.from_param(p.colormap, label="Colormap (numeric colour)",
                                                sizing_mode="stretch_width")
        section = {"styles": {"font-weight": "600"}, "margin": (10, 10, 0, 10)}
        return pn.Column(
            pn.pane.HTML("Embedding", **section),
            embedding,
            pn.pane.HTML("Display", **section),
            color, hover, tooltip,
            pn.pane.HTML("Algorithm", **section),
            method,
            self._method_holder,
            auto,
            self._compute,
            pn.pane.HTML("Style", **section),
            size, alpha, colormap,
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _method_panel(settings: param.Parameterized) -> pn.Param:
        """Widgets for one method's settings, from the parameters' types and bounds."""
        widgets: dict[str, Any] = {}
        for name, parameter in settings.param.objects("existing").items():
            if name == "name":
                continue
            label = name.replace("_", " ")
            if isinstance(parameter, param.Boolean):
                widgets[name] = {"type": pn.widgets.Checkbox, "label": label}
            elif isinstance(parameter, param.Selector):
                widgets[name] = {"type": pn.widgets.Select, "label": label}
            elif isinstance(parameter, param.Number):
                is_int = isinstance(parameter, param.Integer)
                low, high = parameter.bounds or (None, None)
                step = parameter.step or (1 if is_int else 0.1)
                few_steps = (
                    low is not None and high is not None and (high - low) / step <= 1000
                )
                if parameter.allow_None or not few_steps:
                    # None stands for "auto"/"never"/"draw a seed": an input box can be empty,
                    # a slider cannot.
                    kind = pn.widgets.IntInput if is_int else pn.widgets.FloatInput
                    widgets[name] = {"type": kind, "label": label, "placeholder": "auto"}
                else:
                    kind = pn.widgets.IntSlider if is_int else pn.widgets.FloatSlider
                    # Act on release: a drag must not start a projection per pixel.
                    widgets[name] = {"type": kind, "label": label, "throttled": True}
        return pn.Param(
            settings, parameters=list(widgets), widgets=widgets, show_name=False,
            sizing_mode="stretch_width", default_layout=pn.Column, margin=0,
        )

    # -- layout -------------------------------------------------------------------------------
    @property
    def settings_panel(self) -> pn.Column:
        """The gear: embedding, display, algorithm and style settings."""
        return self._settings

    @property
    def plot_panel(self) -> pn.Column:
        """Status line, progress bar, error alert and the scatter."""
        return pn.Column(self._status, self._progress, self._alert, self._plot,
                         sizing_mode="stretch_both", min_height=460)

    @property
    def table_panel(self) -> pn.Column:
        """The table with its selection toggle and download buttons."""
        # A fixed height: the selection count in the Clear button must never change the
        # layout (a moved or resized plot frame would be re-rasterized and re-sent).
        selection = pn.Row(self._table_mode, self._clear, sizing_mode="stretch_width",
                           height=46)
        export = pn.Row(pn.pane.HTML("Download", margin=(12, 5, 5, 10)), self._export_rows,
                        self._csv, self._parquet, sizing_mode="stretch_width")
        return pn.Column(selection, self._table, export, sizing_mode="stretch_height",
                         width=460, min_height=300)

    @property
    def main_panel(self) -> pn.Row:
        """Scatter and table side by side, so a selection and its rows are seen together."""
        return pn.Row(self.plot_panel, self.table_panel, sizing_mode="stretch_width",
                      height=760)

    def __panel__(self) -> pn.viewable.Viewable:
        gear = pn.Card(self._settings, title="⚙ Settings", width=300, collapsible=True,
                       margin=(5, 5))
        return pn.Row(gear, self.main_panel, sizing_mode="stretch_width")

    # -- state -> widgets ---------------------------------------------------------------------
    def _sync_tooltip_choice(self, *events: Any) -> None:
        names = list(self.state.param.tooltip_columns.objects)
        options = {_escaped(label): name for label, name in column_labels(names).items()}
        self._tooltip_choice.param.update(options=options,
                                          value=list(self.state.tooltip_columns))

    def _on_tooltip_choice(self, event: Any) -> None:
        value = list(event.new)
        if value != list(self.state.tooltip_columns):
            self.state.tooltip_columns = value

    def _on_method(self, *events: Any) -> None:
        self._method_holder.objects = [self._method_settings[self.state.method]]

    def _on_progress(self, *events: Any) -> None:
        state = self.state
        with pn.io.hold():
            self._progress.param.update(value=int(round(state.progress * 100)),
                                        visible=state.busy)
            self._plot.loading = state.busy
            self._status.object = _escaped(state.status)
            self._alert.param.update(object=_escaped(state.error), visible=bool(state.error))
            self._compute.color = "warning" if state.stale else "primary"

    # -- the scatter --------------------------------------------------------------------------
    def _structure_key(self) -> tuple | None:
        state = self.state
        frame = state.frame
        if frame is None:
            return None
        raster = len(frame) > state.datashade_threshold
        return (
            id(frame), raster, state.color.kind, tuple(state.color.color_key),
            state.color_by, state.hover_image, tuple(state.tooltip_columns),
        )

    def _on_frame(self, *events: Any) -> None:
        key = self._structure_key()
        if key != self._structure:
            self._rebuild(key)

    def _rebuild(self, key: tuple | None) -> None:
        """Replace the plot; keep the zoom if the coordinates are the same as before."""
        projection = self.state.projection
        same_coordinates = key is not None and self._shown_projection is projection
        self._structure = key
        if key is None:
            self._plot.object = None
            self._index, self._shown_projection = None, None
            return
        if not same_coordinates:
            frame = self.state.frame
            self._index = None  # let the old index go before the new one is built
            self._index = plots.PointIndex(frame[plots.X].to_numpy(), frame[plots.Y].to_numpy())
            self._shown_projection = projection
            self._ranges = None
        self._plot.object = self._build_plot(raster=key[1], ranges=self._ranges)

    _shown_projection: Any = None

    def _tooltip_fields(self) -> tuple[list[str], list[tuple[str, str]]]:
        state = self.state
        columns = [(str(name), f"t{i}") for i, name in enumerate(state.tooltip_columns)]
        color_label = None if state.color.kind == "none" else str(state.color_by)
        tips = plots.tooltips(color_label, columns, state.hover_image is not None)
        fields = [plots.ROW] + [field for _, field in columns]
        if color_label is not None:
            fields.append(plots.COLOR)
        if state.hover_image is not None:
            fields.append(plots.THUMB)
        return fields, tips

    def _build_plot(self, raster: bool, ranges: tuple | None) -> Any:
        import holoviews as hv

        state = self.state
        self._data_events = hv.streams.Counter()
        # Renamed: the raster's DynamicMap listens to both counters.
        self._selection_events = hv.streams.Counter(rename={"counter": "selection_counter"})
        self._plot_streams: list[Any] = []  # the interaction streams of the current plot
        self._last_raster = None
        label = REDUCERS[state.projection.method].label if state.projection else ""
        if raster:
            main = self._raster_layers(label)
            source = main[0]
            layers = list(main)
        else:
            source = hv.DynamicMap(self._points, streams=[self._data_events])
            layers = [source]
            selection = hv.streams.Selection1D(source=source)
            selection.add_subscriber(self._on_plot_positions)
            self._plot_streams.append(selection)
        pointer = hv.streams.PointerXY(x=None, y=None, source=source)
        ranges_stream = hv.streams.RangeXY(source=source)
        ranges_stream.add_subscriber(self._on_ranges)
        size_stream = hv.streams.PlotSize(source=source)
        size_stream.add_subscriber(self._on_plot_size)
        self._plot_streams.extend([pointer, ranges_stream, size_stream])
        inspect = hv.DynamicMap(self._inspect, streams=[pointer])
        overlay = functools.reduce(operator.mul, [*layers, inspect])
        opts: dict[str, Any] = {"responsive": True, "min_height": 400}
        if state.color.kind == "categorical":
            # An overlay draws one legend for all its layers: its title is set here (canvas
            # text, so any column name is safe).
            opts.update(legend_position="right", legend_opts={"title": str(state.color_by)})
        if ranges is not None:
            opts.update(xlim=ranges[0], ylim=ranges[1])
        return overlay.opts(**opts)

    def _raster_layers(self, label: str) -> tuple:
        import holoviews as hv

        color = self.state.color
        # One DynamicMap of one server-shaded RGBA image, re-rendered on zoom, resize, new
        # data, style or selection: the browser gets width x height x 4 bytes per update
        # whatever the number of rows, categories or selected rows. (Separate layers for
        # "all rows", "grey context" and "selected rows" would each be sent, hidden or not.)
        # Streams without a source attach to this DynamicMap's plot.
        streams = [hv.streams.RangeXY(), hv.streams.PlotSize(), self._data_events,
                   self._selection_events]
        raster = hv.DynamicMap(functools.partial(self._raster, label), streams=streams)
        # Selections on a raster are geometric: map them to rows here, on the server.
        box = hv.streams.BoundsXY(source=raster)
        box.add_subscriber(self._on_box)
        lasso = hv.streams.Lasso(source=raster)
        lasso.add_subscriber(self._on_lasso)
        tap = hv.streams.Tap(source=raster)
        tap.add_subscriber(self._on_tap)
        self._plot_streams.extend([*streams[:2], box, lasso, tap])
        layers = [raster]
        # An RGB image has neither legend nor colorbar: invisible glyphs provide them, in
        # the same colours as the shading.
        key = plots.legend_overlay(color)
        if key is None:
            key = plots.colorbar_overlay(color, self.state.colormap)
        if key is not None:
            layers.append(key)
        return tuple(layers)

    def _extent(self) -> tuple[float, float, float, float]:
        """The projection's ``(x0, y0, x1, y1)`` with a margin, until the plot has ranges."""
        frame = self.state.frame
        bounds = []
        for axis in (plots.X, plots.Y):
            values = frame[axis].to_numpy()
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 1)
            pad = (high - low) * 0.025 or 0.5
            bounds.append((low - pad, high + pad))
        (x0, x1), (y0, y1) = bounds
        return (x0, y0, x1, y1)

    def _raster(self, label: str, x_range: Any = None, y_range: Any = None,
                width: int | None = None, height: int | None = None, scale: float = 1.0,
                **counters: Any) -> Any:
        """The scatter as one RGBA image of the current window, size and selection."""
        state = self.state
        if x_range is None or y_range is None:
            x0, y0, x1, y1 = self._extent()
        else:
            (x0, x1), (y0, y1) = x_range, y_range
        # Before the browser reports its size, the pane's minimum height and a 3:2 frame.
        width, height = (width, height) if width and height else (600, 400)
        if width * height > MAX_RASTER_PIXELS:
            # A very large frame gets a coarser image, stretched by the browser: the update
            # stays under 4 MB (the plot data budget is 5 MB).
            shrink = (MAX_RASTER_PIXELS / (width * height)) ** 0.5
            width, height = max(1, int(width * shrink)), max(1, int(height * shrink))
        key = (x0, y0, x1, y1, tuple(sorted(counters.items())))
        last = self._last_raster
        if last is not None and last[0] == key and all(
            abs(new - old) <= max(8, 0.05 * old) for new, old in zip((width, height), last[1])
        ):
            # The frame moved by a few pixels (a scrollbar, a line of text): the browser
            # stretches the image it has. Returning the same element sends nothing (an
            # identical re-shade would still be sent whole).
            return last[2]
        selected = state.positions_of(state.selection) if state.selection else None
        rgba = plots.shade(
            state.frame, state.color, x_range=(x0, x1), y_range=(y0, y1), width=width,
            height=height, selected=selected, colormap=state.colormap,
            spread=max(1, int(state.point_size // 2)),
        )
        element = plots.raster_element(rgba, (x0, y0, x1, y1), alpha=state.alpha,
                                       axis_label=label)
        self._last_raster = (key, (width, height), element)
        return element

    # (window and events, (width, height), element) of the raster last drawn, per plot.
    _last_raster: tuple | None = None

    def _points(self, counter: int = 0) -> Any:
        """The glyph scatter; re-run for style and selection, with the same data object."""
        state = self.state
        positions = state.positions_of(state.selection).tolist()
        element = self._points_base()
        return element.opts(
            size=state.point_size, alpha=state.alpha, selection_alpha=state.alpha,
            nonselection_alpha=max(0.04, state.alpha * 0.15), selected=positions,
            **({"cmap": state.colormap} if state.color.kind == "numeric" else {}),
            clone=True,
        )

    def _points_base(self) -> Any:
        # One element per frame: later frames are clones of it, so HoloViews sees the same
        # data and does not resend the points for a restyle.
        state = self.state
        cached = getattr(self, "_points_cache", None)
        if cached is not None and cached[0] is state.frame:
            return cached[1]
        label = REDUCERS[state.projection.method].label if state.projection else ""
        element = plots.points_element(
            state.frame, state.color, point_size=state.point_size, alpha=state.alpha,
            colormap=state.colormap, axis_label=label,
        )
        self._points_cache = (state.frame, element)
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

    _plot_px: tuple[int, int] | None = None

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
            x0, x1 = float(frame[plots.X].min()), float(frame[plots.X].max())
            y0, y1 = float(frame[plots.Y].min()), float(frame[plots.Y].max())
        width, height = self._plot_px or (600, 500)
        reach = self.state.point_size / 2 + _HIT_PX
        return (max(abs(x1 - x0), 1e-12) * reach / max(width, 1),
                max(abs(y1 - y0), 1e-12) * reach / max(height, 1))

    def _inspect(self, x: float | None = None, y: float | None = None) -> Any:
        state = self.state
        fields, tips = self._tooltip_fields()
        record = None
        frame = state.frame
        if x is not None and y is not None and self._index is not None and frame is not None:
            position = self._index.nearest(x, y, *self._radii())
            if position is not None:
                record = self._record(position, fields)
        return plots.inspect_element(record, fields, tips, point_size=state.point_size)

    def _record(self, position: int, fields: list[str]) -> dict[str, Any]:
        """The hovered row's tooltip values (all text, escaped by Bokeh on display)."""
        state = self.state
        frame = state.frame
        row = int(frame[plots.ROW].iat[position])
        record: dict[str, Any] = {
            plots.X: float(frame[plots.X].iat[position]),
            plots.Y: float(frame[plots.Y].iat[position]),
            plots.ROW: row,
        }
        if plots.COLOR in fields:
            record[plots.COLOR] = _cell_text(frame[plots.COLOR].iat[position])
        if plots.THUMB in fields:
            image = state.image(row)
            record[plots.THUMB] = (
                image.thumbnail_uri(_TOOLTIP_THUMB_PX) if image is not None
                else plots.BLANK_IMAGE
            )
        for i, name in enumerate(state.tooltip_columns):
            values = state.table.get_column(name, convert_to="numpy")
            record[f"t{i}"] = _cell_text(values[row])
        return record

    # -- selection: plot -> state ---------------------------------------------------------------
    def _select_from_plot(self, rows: Any) -> None:
        self._origin = "plot"
        try:
            self.state.select(rows)
        finally:
            self._origin = None

    def _on_plot_positions(self, index: list[int] | None = None) -> None:
        rows = self.state.rows_of(index or [])
        if set(rows.tolist()) != set(self.state.selection):
            self._select_from_plot(rows)

    def _on_box(self, bounds: tuple | None = None) -> None:
        if bounds is None or self._index is None:
            return
        positions = self._index.in_box(*bounds)
        self._select_from_plot(self.state.rows_of(positions))

    def _on_lasso(self, geometry: np.ndarray | None = None) -> None:
        if geometry is None or self._index is None or len(geometry) < 3:
            return
        geometry = np.asarray(geometry)
        positions = self._index.in_polygon(geometry[:, 0], geometry[:, 1])
        self._select_from_plot(self.state.rows_of(positions))

    def _on_tap(self, x: float | None = None, y: float | None = None) -> None:
        if x is None or y is None or self._index is None:
            return
        position = self._index.nearest(x, y, *self._radii())
        rows = [] if position is None else self.state.rows_of([position])
        self._select_from_plot(rows)

    # -- selection: state -> plot and table ---------------------------------------------------
    def _on_selection(self, *events: Any) -> None:
        state = self.state
        selection = list(state.selection)
        with pn.io.hold():
            if self._origin != "table":
                # The table lists what was selected in the plot (or from Python); a click in
                # the table then picks among those rows without changing the list.
                self._filter.rows = selection
            # Panel maps a Tabulator selection row by row in Python (~3 µs a row): a huge
            # selection is listed (above) but not also highlighted row by row.
            highlighted = selection if len(selection) <= TABLE_HIGHLIGHT_MAX else []
            if sorted(self._table.selection) != highlighted:
                self._origin_table_sync = True
                try:
                    self._table.selection = highlighted
                finally:
                    self._origin_table_sync = False
            if self._structure is not None:
                if self._structure[1]:
                    self._selection_events.event()
                else:
                    self._data_events.event()
            count = len(selection)
            self._clear.param.update(
                label=f"Clear selection ({count:,})" if count else "Clear selection",
                disabled=not count,
            )

    _origin_table_sync = False
    _table_of: Table | None = None

    def _on_table_selection(self, event: param.parameterized.Event) -> None:
        if self._origin_table_sync:
            return
        rows = sorted(int(r) for r in event.new)
        if rows == list(self.state.selection):
            return
        self._origin = "table"
        try:
            self.state.select(rows)
        finally:
            self._origin = None

    @param.depends("table_mode", watch=True)
    def _on_table_mode(self) -> None:
        self._filter.mode = self.table_mode

    @param.depends("page_size", watch=True)
    def _on_page_size(self) -> None:
        self._table.page_size = self.page_size

    # -- the table ----------------------------------------------------------------------------
    def _on_table(self, *events: Any) -> None:
        """A new table: new columns (internal names, escaped titles), no thumbnails yet."""
        state = self.state
        table = state.table
        self._thumbs = None
        self._table_of = table  # the table the Tabulator's frame was built from
        if table is None:
            self._table.value = None
            return
        schema = table.schema
        data: dict[str, Any] = {}
        titles: dict[str, str] = {}
        image_columns = schema.of_kind("image")
        if image_columns:
            data[plots.THUMB] = np.full(len(table), plots.BLANK_IMAGE, dtype=object)
            titles[plots.THUMB] = _escaped(state.hover_image or image_columns[0])
            self._thumbs = np.zeros(len(table), dtype=bool)
        hidden = []
        embedding = set(schema.default_embedding)
        for i, (name, info) in enumerate(schema.columns.items()):
            if info.kind in ("vector", "image"):
                continue  # never send vectors or raw images to the browser
            field = f"c{i}"
            data[field] = table.get_column(name, convert_to="numpy")
            titles[field] = _escaped(name)
            if name in embedding and len(embedding) > 6:
                hidden.append(field)  # dozens of pixel columns would bury the labels
        frame = pd.DataFrame(data, index=pd.RangeIndex(len(table), name="row"))
        formatters = {
            plots.THUMB: {"type": "image", "height": f"{_TABLE_THUMB_PX}px",
                          "width": f"{_TABLE_THUMB_PX}px"}
        }
        with pn.io.hold():
            self._table.param.update(
                value=frame, titles=titles, hidden_columns=hidden, formatters=formatters,
                selection=[],
            )
            self._filter.rows = []
        self._fill_thumbnails()

    def _on_hover_image(self, *events: Any) -> None:
        table = self.state.table
        if table is None or self._thumbs is None or table is not self._table_of:
            return  # a new table: _on_table makes its own thumbnails
        self._thumbs[:] = False
        column = self.state.hover_image
        if column is not None:
            self._table.titles = {**self._table.titles, plots.THUMB: _escaped(column)}
        self._fill_thumbnails()

    def _fill_thumbnails(self, *events: Any) -> None:
        """Make the thumbnails of the rows on the visible page (and only those)."""
        table, value = self.state.table, self._table.value
        if table is None or value is None or self._thumbs is None or table is not self._table_of:
            return
        view = self._table.current_view
        if view is None:
            return
        start = (self._table.page - 1) * self._table.page_size
        rows = view.index[start:start + self._table.page_size].to_numpy()
        rows = rows[~self._thumbs[rows]]
        if not len(rows):
            return
        patch = []
        column = self.state.hover_image or table.schema.of_kind("image")[0]
        images = table.get_column(column, convert_to="numpy")
        for row in rows:
            image = images[row]
            uri = image.thumbnail_uri(_TABLE_THUMB_PX) if image is not None else plots.BLANK_IMAGE
            patch.append((int(row), uri))
        self._thumbs[rows] = True
        self._table.patch({plots.THUMB: patch})

    # -- export -------------------------------------------------------------------------------
    def _on_export_rows(self, event: Any) -> None:
        scope = "selection" if event.new == "selection" else "all"
        self._csv.filename = f"embproj-{scope}.csv"
        self._parquet.filename = f"embproj-{scope}.parquet"

    def _export_frame(self, vectors: bool) -> pd.DataFrame | None:
        from embproj_panel.export import selection_frame

        state = self.state
        if state.table is None:
            return None
        rows = None if self._export_rows.value == "all" else state.selection
        return selection_frame(state.table, state.projection, rows, vectors=vectors,
                               images=vectors)

    def _download(self, make: Any) -> io.BytesIO | None:
        try:
            data = make()
        except Exception as exc:  # noqa: BLE001 - shown to the user, not a traceback
            self._show_error(f"Export failed: {exc}")
            return None
        if data is None:
            return None
        if len(data) > MAX_DOWNLOAD_BYTES:
            self._show_error(
                f"The export is {len(data) / 2**20:.1f} MB, more than the "
                f"{MAX_DOWNLOAD_BYTES / 2**20:.0f} MB a browser download can carry here. "
                "Select fewer rows, or export from Python: projector.selected_dataframe."
            )
            return None
        return io.BytesIO(data)

    def _export_csv(self) -> io.BytesIO | None:
        from embproj_panel.export import to_csv_bytes

        def make() -> bytes | None:
            frame = self._export_frame(vectors=False)
            return None if frame is None else to_csv_bytes(frame)

        return self._download(make)

    def _export_parquet(self) -> io.BytesIO | None:
        from embproj_panel.export import to_parquet_bytes

        def make() -> bytes | None:
            frame = self._export_frame(vectors=True)
            return None if frame is None else to_parquet_bytes(frame)

        return self._download(make)

    def _show_error(self, message: str) -> None:
        self._alert.param.update(object=_escaped(message), visible=True)
