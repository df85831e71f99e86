"""Pure HoloViews builders for the projector's scatter: points, rasters, keys, hover.

Nothing here holds state or knows about widgets: every function takes a frame, a colour
mapping and a style and returns data or a HoloViews element, so the views can rebuild cheaply
and the tests can assert on plain values without a Viewer. The pieces:

* :func:`scatter_element` is *the* scatter, from :attr:`ProjectorState.frame`, its
  :class:`~embproj_panel.colors.ColorMapping` and a :class:`ScatterStyle`: Bokeh glyphs
  (:func:`points_element`, restyled by :func:`glyph_style`) up to the datashade threshold, or
  one server-shaded RGBA image of a window (:func:`shade`, :func:`raster_element`) above it.
* :func:`scatter_key` gives a raster the legend or colorbar an RGB image lacks.
* :func:`inspect_element` is the one-row element that carries the hover tooltip (image
  thumbnail, label, chosen columns): images go to the browser only for the hovered row.
  When every row's tooltip is small enough, :func:`points_element` carries it instead
  (``hover_data``): the browser shows it without asking the server.

User strings (labels, column names) only ever reach the browser as tooltip *labels* or legend
and axis text, which Bokeh renders as text, or as placeholder values (``@{field}``), which
Bokeh HTML-escapes; no template here uses ``{safe}`` (the image's ``src`` is a data URI this
package generates, and survives the escaping as it is).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.colors import (
    COLOR,
    NAN_COLOR,
    ROW,
    SINGLE_COLOR,
    ColorMapping,
    X,
    Y,
    color_mapping,
    numeric_span,
    plot_frame,
)

__all__ = [
    "BLANK_IMAGE", "CONTEXT_COLORS", "FILL", "MAX_RASTER_PIXELS", "THUMB", "ScatterStyle",
    "ShadeCache", "category_channels", "colorbar_overlay", "extent", "glyph_style",
    "inspect_element", "legend_overlay", "point_colors", "points_element", "raster_element",
    "raster_size", "scatter_element", "scatter_key", "shade", "tooltips", "update_key",
    "warm_up",
]

# The tooltip's image field (a data URI made for the hovered row only).
THUMB = "thumb"

# The field of each point's hex colour when the colours are literal (point_colors).
FILL = "fill"

# Data URI of a 1x1 transparent GIF: the placeholder for table rows whose thumbnail has not
# been generated yet (an empty ``src`` would make some browsers request the page itself).
BLANK_IMAGE = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"

#: The most pixels a raster update has (4 bytes each): the plot data budget is 5 MB.
MAX_RASTER_PIXELS = 1_000_000


def _holoviews() -> Any:
    """HoloViews with its Bokeh backend loaded (``.opts`` needs a backend to validate)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401 - registers the backend's options

    return hv


@dataclass(frozen=True)
class ScatterStyle:
    """How the points look; changing it never recomputes a projection.

    Attributes
    ----------
    point_size
        Point size in screen pixels (rasters spread isolated points up to half of it).
    alpha
        Opacity of the points.
    colormap
        Colormap of numeric colouring (and of density when uncoloured and rasterized).
    """

    point_size: float = 6
    alpha: float = 0.8
    colormap: str = "viridis"


def _legend_columns(n: int, per_column: int = 20) -> int:
    return max(1, math.ceil(n / per_column))


def points_element(
    frame: pd.DataFrame,
    color: ColorMapping,
    *,
    point_size: float = 6,
    alpha: float = 0.8,
    colormap: str = "viridis",
    selected: Sequence[int] | None = None,
    axis_label: str = "",
    hover_data: Mapping[str, Sequence[Any]] | None = None,
    hover_tooltips: list[tuple[str, str]] | None = None,
    literal_colors: bool = False,
) -> Any:
    """A Bokeh-glyph scatter of ``frame`` with box/lasso/tap selection.

    Parameters
    ----------
    frame
        From :func:`plot_frame`.
    color
        The colour mapping used to build ``frame``.
    point_size, alpha, colormap
        Style; ``colormap`` applies to numeric colouring.
    selected
        Positions *in frame* to highlight (others are dimmed, not hidden); None or empty
        means no selection.
    axis_label
        Prefix of the axis labels, e.g. ``"UMAP"`` gives ``UMAP 1`` / ``UMAP 2``.
    hover_data
        Internal field -> one value per frame row (tooltip text, thumbnail data URIs): sent
        with the points, with a hover tool showing ``hover_tooltips`` in the browser alone.
        None: no hover tool and only coordinates, row and colour in the glyphs' source.
    hover_tooltips
        From :func:`tooltips`, over ``hover_data``'s fields (and ``row``, ``color``).
    literal_colors
        Colour each point with its hex colour from :func:`point_colors` (field
        :data:`FILL`) instead of a HoloViews colour mapper, legend and colorbar: any colour
        change, of any kind, is then new data for the same glyph, and :func:`update_key`
        draws the legend or colorbar.

    Returns
    -------
    holoviews.Points
    """
    hv = _holoviews()

    vdims = [ROW] + ([COLOR] if COLOR in frame else [])
    if literal_colors:
        frame = frame.assign(**{FILL: point_colors(frame, color, colormap)})
        vdims.append(FILL)
    if hover_data:
        frame = frame.assign(**{name: np.asarray(values, dtype=object)
                                for name, values in hover_data.items()})
        vdims += [name for name in hover_data if name not in vdims]
    points = hv.Points(frame, kdims=[X, Y], vdims=vdims)
    opts: dict[str, Any] = dict(
        size=point_size,
        alpha=alpha,
        # Dim, never hide, what is not selected; selected points keep the full alpha.
        selection_alpha=alpha,
        nonselection_alpha=max(0.04, alpha * 0.15),
        selected=list(selected) if selected is not None else [],
        tools=["box_select", "lasso_select", "tap"],
        **_common_opts(axis_label),
    )
    # Literal colours as ``fill_color``: HoloViews names the source's column after the style,
    # and ``color`` is the colour *value* field the tooltips show. The outline would be the
    # same colour: none is drawn.
    opts.update(dict(fill_color=FILL, line_color=None, show_legend=False) if literal_colors
                else _color_opts(color, colormap))
    if hover_data:
        # The hovered point gets the ring the server-side hover draws (inspect_element).
        opts.update(tools=[*opts["tools"], "hover"], hover_tooltips=hover_tooltips or [],
                    hover_line_color="#222222", hover_line_width=2,
                    hover_fill_alpha=alpha)
    return points.opts(**opts)


def _common_opts(axis_label: str) -> dict[str, Any]:
    return dict(
        responsive=True,
        min_height=300,
        xlabel=f"{axis_label} 1".strip(),
        ylabel=f"{axis_label} 2".strip(),
        # Box select is the drag on open (brushing is what the map is for); pan is one click
        # away in the toolbar, and the wheel zooms.
        active_tools=["wheel_zoom", "box_select"],
        default_tools=["pan", "wheel_zoom", "reset", "save"],
        toolbar="above",
    )


def _color_opts(color: ColorMapping, colormap: str) -> dict[str, Any]:
    if color.kind == "categorical":
        return dict(
            color=COLOR,
            cmap=dict(color.color_key),
            show_legend=True,
            legend_position="right",
            legend_cols=_legend_columns(len(color.color_key)),
            # Bokeh draws the legend on the canvas: the column name is text, never HTML.
            legend_opts={"title": str(color.column)},
        )
    if color.kind == "numeric":
        return dict(
            color=COLOR,
            cmap=colormap_of(color, colormap),
            colorbar=True,
            clabel=str(color.column),
            clipping_colors={"NaN": NAN_COLOR},
            **({"clim": numeric_span(color)} if color.span is not None else {}),
        )
    return dict(color=SINGLE_COLOR)


def colormap_of(color: ColorMapping, colormap: str | Sequence[str]) -> Any:
    """The colormap ``color`` is drawn with: its own fixed one (faithfulness), else the user's."""
    return list(color.colormap) if color.colormap is not None else colormap


def legend_overlay(color: ColorMapping) -> Any:
    """An invisible element that gives a raster a categorical legend (rasters have none).

    One point per category, at NaN (never drawn), coloured through the same colour key: a
    single glyph whose legend Bokeh groups by category, so 50 categories cost one renderer,
    not 50.

    Returns
    -------
    holoviews.Points or None
        None unless ``color`` is categorical.
    """
    hv = _holoviews()

    if color.kind != "categorical":
        return None
    labels = list(color.color_key)
    data = {
        X: np.full(len(labels), np.nan),
        Y: np.full(len(labels), np.nan),
        # The legend's title is the column name, drawn on the canvas as text.
        COLOR: pd.Categorical(labels, categories=labels),
    }
    title = hv.Dimension(COLOR, label=str(color.column))
    return hv.Points(data, kdims=[X, Y], vdims=[title]).opts(
        color=COLOR, cmap=dict(color.color_key), size=8, show_legend=True,
        legend_position="right", legend_cols=_legend_columns(len(labels)),
        legend_opts={"title": str(color.column)}, tools=[],
    )


def _palette(colormap: str | Sequence[str], n: int = 256) -> list[str]:
    """``n`` hex colours of a named colormap (or the given list)."""
    from holoviews.plotting.util import process_cmap

    if not isinstance(colormap, str):
        return list(colormap)
    return list(process_cmap(colormap, ncolors=n))


#: The grey of the unselected rows while something is selected (low and high density).
CONTEXT_COLORS = ("#e6e6e6", "#9a9a9a")


def shade(
    frame: pd.DataFrame,
    color: ColorMapping,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    selected: np.ndarray | None = None,
    colormap: str | Sequence[str] = "viridis",
    spread: int = 2,
    cache: ShadeCache | None = None,
) -> np.ndarray:
    """Datashade ``frame`` to one RGBA image on the server.

    The browser receives ``width x height x 4`` bytes whatever the number of rows or of
    categories (a per-category ``count_cat`` stack would be ``x 4 x categories``).
    Categories are shaded through the whole column's colour key and numbers through the whole
    column's span (:func:`numeric_span`), so colours are stable under zoom and selection.

    Parameters
    ----------
    frame
        From :func:`plot_frame`.
    color
        The colour mapping used to build ``frame``.
    x_range, y_range
        The data window to aggregate.
    width, height
        Size of the image in pixels.
    selected
        Positions *in frame* of the selected rows, or None: with a selection every row is
        drawn grey and the selected rows in their colours on top (linked brushing).
    colormap
        Colormap of numeric values (density when uncoloured).
    spread
        Maximum pixels ``dynspread`` grows isolated points by.
    cache
        Keeps what shading ``frame`` needs in any window (each point's category colour), so
        the next zoom of the same frame and colouring does not make it again.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 4)`` uint8 RGBA, first row at the *top* (as ``hv.RGB`` expects).
    """
    import datashader as ds
    import datashader.transfer_functions as tf

    width, height = max(int(width), 1), max(int(height), 1)
    canvas = ds.Canvas(plot_width=width, plot_height=height,
                       x_range=tuple(map(float, x_range)), y_range=tuple(map(float, y_range)))

    def colored(data: pd.DataFrame) -> Any:
        if color.kind == "categorical":
            channels = (cache.channels(data, color, x_range)
                        if cache is not None and data is frame
                        else category_channels(data, color))
            return _shade_categories(canvas, channels, color)
        if color.kind == "numeric":
            agg = canvas.points(data, X, Y, agg=ds.mean(COLOR))
            return tf.shade(agg, cmap=_palette(colormap_of(color, colormap)), how="linear",
                            span=numeric_span(color))
        agg = canvas.points(data, X, Y, agg=ds.count())
        return tf.shade(agg, cmap=_palette(colormap), how="eq_hist")

    if selected is None:
        image = colored(frame)
    else:
        context = tf.shade(canvas.points(frame, X, Y, agg=ds.count()),
                           cmap=list(CONTEXT_COLORS), how="eq_hist")
        chosen = frame.iloc[np.asarray(selected, dtype=np.int64)]
        image = tf.stack(context, colored(chosen)) if len(chosen) else context
    image = tf.dynspread(image, threshold=0.5, max_px=int(spread))
    rgba = np.ascontiguousarray(image.data).view(np.uint8).reshape(height, width, 4)
    # Datashader's first row is the bottom one.
    return rgba[::-1]


def category_channels(data: pd.DataFrame, color: ColorMapping) -> pd.DataFrame:
    """``x``, ``y`` and each point's category colour as ``r``, ``g``, ``b`` (float32)."""
    key = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in color.color_key.values()],
                   dtype=np.float32)
    # ``values`` is a Categorical over exactly the key's labels, so every code is valid.
    rgb = key[np.asarray(data[COLOR].cat.codes)]
    return pd.DataFrame({X: data[X].to_numpy(), Y: data[Y].to_numpy(),
                         "r": rgb[:, 0], "g": rgb[:, 1], "b": rgb[:, 2]})


class ShadeCache:
    """The :func:`category_channels` of the last frame and colouring one view shaded.

    A zoom shades the same frame again in another window: its points' colours are the same
    (making them is about a third of a 1,000,000-row shade). They are kept sorted by ``x``,
    so a zoomed-in window aggregates only the points between its left and right edges (a
    slice, no copy) instead of testing every point. One per view (it holds that view's
    frame), never shared at module level.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, Any] | None = None
        self._channels: pd.DataFrame | None = None
        self._x: np.ndarray | None = None

    def channels(self, data: pd.DataFrame, color: ColorMapping,
                 x_range: tuple[float, float] | None = None) -> pd.DataFrame:
        """:func:`category_channels` of ``data`` (the points with ``x0 <= x <= x1`` of them,
        with ``x_range``), made again only for another frame or colour mapping (compared by
        identity: both are replaced, never changed in place)."""
        key = self._key
        if key is None or key[0] is not data or key[1] is not color:
            self._key, self._channels, self._x = None, None, None  # let the old frame go
            channels = category_channels(data, color)
            order = np.argsort(channels[X].to_numpy(), kind="stable")  # NaN last
            self._channels = channels.iloc[order].reset_index(drop=True)
            self._x = self._channels[X].to_numpy()
            self._key = (data, color)
        if x_range is None:
            return self._channels
        # Datashader draws x0 <= x <= x1 (x1 in the last column): exactly these points.
        low = int(np.searchsorted(self._x, x_range[0], side="left"))
        high = int(np.searchsorted(self._x, x_range[1], side="right"))
        return self._channels.iloc[low:high]


def _shade_categories(canvas: Any, channels: pd.DataFrame, color: ColorMapping) -> Any:
    """Each pixel in the count-weighted mean colour of its points, alpha by their number.

    What ``tf.shade`` does with a ``count_cat`` aggregate, without the aggregate: that is a
    ``width x height x categories`` array, and shading it takes ~250 MB at 1000 x 600 with 20
    categories. Summing each point's colour channels (``channels``, from
    :func:`category_channels`) takes four ``width x height`` arrays.
    """
    import datashader as ds
    import datashader.transfer_functions as tf

    agg = canvas.points(channels, X, Y, agg=ds.summary(
        n=ds.count(), r=ds.sum("r"), g=ds.sum("g"), b=ds.sum("b")))
    # A one-colour cmap makes tf.shade vary only the alpha, as it does for categories.
    image = tf.shade(agg["n"], cmap="black", how="eq_hist")
    pixels = image.data.view(np.uint8).reshape(*image.shape, 4)
    count = agg["n"].to_numpy()
    drawn = count > 0
    for channel, name in enumerate("rgb"):
        pixels[..., channel][drawn] = np.rint(agg[name].to_numpy()[drawn] / count[drawn])
    return image


def raster_element(
    rgba: np.ndarray,
    bounds: tuple[float, float, float, float],
    *,
    alpha: float = 1.0,
    axis_label: str = "",
) -> Any:
    """An ``hv.RGB`` of a :func:`shade` image covering ``bounds`` ``(x0, y0, x1, y1)``.

    It carries the box, lasso and tap tools: selections on a raster are mapped to rows on
    the server (:class:`PointIndex`).
    """
    hv = _holoviews()

    element = hv.RGB(rgba, bounds=tuple(map(float, bounds)), kdims=[X, Y],
                     vdims=["R", "G", "B", "A"])
    return element.opts(alpha=alpha, tools=["box_select", "lasso_select", "tap"],
                        **_common_opts(axis_label))


def colorbar_overlay(color: ColorMapping, colormap: str | Sequence[str] = "viridis") -> Any:
    """An invisible element that gives a shaded raster its colorbar (an RGB image has none).

    Two points at NaN (never drawn) whose colour spans the column's values, with the same
    colormap and span as :func:`shade`.

    Returns
    -------
    holoviews.Points or None
        None unless ``color`` is numeric.
    """
    hv = _holoviews()

    if color.kind != "numeric":
        return None
    low, high = numeric_span(color)
    data = {X: np.full(2, np.nan), Y: np.full(2, np.nan), COLOR: np.array([low, high])}
    return hv.Points(data, kdims=[X, Y], vdims=[COLOR]).opts(
        color=COLOR, cmap=_palette(colormap_of(color, colormap)), clim=(low, high), colorbar=True,
        clabel=str(color.column), size=0, tools=[],
    )


def tooltips(
    color_label: str | None,
    columns: Sequence[tuple[str, str]],
    with_image: bool,
) -> list[tuple[str, str]]:
    """The hover tooltip: ``(label, template)`` pairs for Bokeh's ``HoverTool``.

    Labels may be any user text (Bokeh renders tuple labels as text nodes); templates only
    reference internal fields, whose values Bokeh escapes. The single HTML snippet is the
    image, whose ``src`` is a data URI generated here, never user text.

    Parameters
    ----------
    color_label
        The name of the colour column (its value is the ``color`` field), or None.
    columns
        ``(user label, internal field)`` pairs for the extra tooltip columns.
    with_image
        Whether to show the ``thumb`` field as an image.
    """
    out: list[tuple[str, str]] = []
    if with_image:
        out.append(
            (
                "",
                f'<img src="@{{{THUMB}}}" alt="" width="96" height="96" '
                'style="image-rendering: pixelated; object-fit: contain; '
                'border: 1px solid #ddd; background: #fff">',
            )
        )
    if color_label is not None:
        out.append((str(color_label), f"@{{{COLOR}}}"))
    out.extend((str(label), f"@{{{name}}}") for label, name in columns)
    out.append(("row", f"@{{{ROW}}}"))
    return out


def inspect_element(
    record: dict[str, Any] | None,
    fields: Sequence[str],
    tips: list[tuple[str, str]],
    *,
    point_size: float = 6,
) -> Any:
    """The hovered point, drawn as a ring that carries the image tooltip.

    Hover is resolved on the server (see :class:`PointIndex`): the browser receives one row,
    with its thumbnail, instead of every row's image.

    Parameters
    ----------
    record
        Field -> value for the hovered row (``x``, ``y``, ``row`` and every name in
        ``fields``), or None when nothing is under the pointer.
    fields
        The non-coordinate fields the tooltip references, in order.
    tips
        From :func:`tooltips`.
    point_size
        Size of the scatter's points; the ring is drawn a little larger.
    """
    hv = _holoviews()

    vdims = [ROW, *[name for name in fields if name != ROW]]
    if record is None:
        data: dict[str, Any] = {X: np.zeros(0), Y: np.zeros(0)}
        data.update({name: np.zeros(0, dtype=object) for name in vdims})
        data[ROW] = np.zeros(0, dtype=np.int64)
    else:
        data = {name: [record[name]] for name in (X, Y, *vdims)}
    return hv.Points(data, kdims=[X, Y], vdims=vdims).opts(
        size=point_size + 8,
        marker="circle",
        fill_alpha=0,
        line_color="#222222",
        line_width=2,
        tools=["hover"],
        hover_tooltips=tips,
        selection_alpha=1,
        nonselection_alpha=1,
    )


def point_colors(frame: pd.DataFrame, color: ColorMapping,
                 colormap: str | Sequence[str] = "viridis") -> np.ndarray:
    """The hex colour of each point of ``frame``, as :func:`shade` colours it.

    Categories through the colour key, numbers through ``colormap`` (or the mapping's own
    fixed one, :func:`colormap_of`) over the whole column's
    span (:func:`numeric_span`; missing values :data:`NAN_COLOR`), else :data:`SINGLE_COLOR`.
    """
    if color.kind == "categorical":
        key = np.array(list(color.color_key.values()), dtype=object)
        return key[np.asarray(frame[COLOR].cat.codes)]
    if color.kind == "numeric":
        palette = np.array(_palette(colormap_of(color, colormap)), dtype=object)
        low, high = numeric_span(color)
        values = frame[COLOR].to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        index = np.zeros(len(values), dtype=np.int64)
        index[finite] = np.clip(((values[finite] - low) / (high - low) * len(palette)).astype(
            np.int64), 0, len(palette) - 1)
        out = palette[index]
        out[~finite] = NAN_COLOR
        return out
    return np.full(len(frame), SINGLE_COLOR, dtype=object)


# plot.handles key of the legend and colorbar models update_key owns.
_KEY_MODELS = "embproj_key"


def update_key(plot: Any, color: ColorMapping, colormap: str | Sequence[str] = "viridis",
               on_pick: Callable[[str], None] | None = None) -> None:
    """HoloViews hook body: the figure's legend (categories) or colorbar (numbers), in place.

    Made once per plot (a legend and a colorbar) and then only updated, so a colour change of
    any kind keeps the figure, its renderers and the user's zoom. Titles and labels are
    canvas text: any column name or label is safe.

    The legend has one item per category, each over its own invisible swatch glyph (one NaN
    point in the category's colour): Bokeh's ``LegendItemClick`` names the item clicked,
    never an entry of a grouped item, and HoloViews keeps only the first item of several
    that share a renderer. The items are a fixed pool, relabelled in place, because
    HoloViews also remembers every item it has seen and merges a new one into an old one of
    the same label. With ``on_pick``, a click on an entry calls ``on_pick(label)`` on the
    server (the view selects that category's rows); Bokeh's own click policies only hide
    or mute a renderer, so the legend keeps the "none" policy.
    """
    from bokeh import events
    from bokeh.models import ColorBar, Legend, LinearColorMapper

    figure = plot.state
    models = plot.handles.get(_KEY_MODELS)
    if models is None or models[0] not in figure.right:
        legend = Legend(items=[], title_text_font_style="italic", visible=False)
        colorbar = ColorBar(color_mapper=LinearColorMapper(palette=_palette("viridis")),
                            visible=False)
        figure.add_layout(legend, "right")
        figure.add_layout(colorbar, "right")
        if on_pick is not None:
            legend.on_event(events.LegendItemClick, partial(_legend_pick, on_pick))
        models = plot.handles[_KEY_MODELS] = (legend, colorbar, [])
    legend, colorbar, pool = models
    title = "" if color.column is None else str(color.column)
    categorical, numeric = color.kind == "categorical", color.kind == "numeric"
    key = color.color_key if categorical else {}
    while len(pool) < len(key):
        pool.append(_legend_slot(figure))
    for item, (label, hex_color) in zip(pool, key.items()):
        _set_slot(item, label, hex_color)
    for item in pool[len(key):]:
        item.renderers[0].visible = False  # HoloViews drops an item whose glyph is hidden
    if list(legend.items) != pool[:len(key)]:
        legend.items = pool[:len(key)]
    legend.update(visible=categorical, title=title if categorical else None,
                  ncols=_legend_columns(len(key)))
    mapper = colorbar.color_mapper
    low, high = numeric_span(color) if numeric else (0.0, 1.0)
    palette = _palette(colormap_of(color, colormap))
    if list(mapper.palette) != palette:
        mapper.palette = palette
    mapper.update(low=low, high=high, nan_color=NAN_COLOR)
    colorbar.update(visible=numeric, title=title if numeric else None)


def _legend_slot(figure: Any) -> Any:
    """One legend item over its own swatch: a renderer of one NaN point (never drawn)."""
    from bokeh.core.properties import field
    from bokeh.models import ColumnDataSource, GlyphRenderer, LegendItem, Scatter

    source = ColumnDataSource({X: [math.nan], Y: [math.nan], FILL: [SINGLE_COLOR]})
    swatch = GlyphRenderer(data_source=source, glyph=Scatter(
        x=X, y=Y, size=8, fill_color=field(FILL), line_color=field(FILL)))
    figure.renderers = [*figure.renderers, swatch]
    return LegendItem(label="", renderers=[swatch], index=0)


def _set_slot(item: Any, label: str, hex_color: str) -> None:
    from bokeh.core.properties import value

    # value(): the label is literal text, never a column name nor a template.
    if _item_label(item) != label:
        item.label = value(label)
    swatch = item.renderers[0]
    if list(swatch.data_source.data[FILL]) != [hex_color]:
        swatch.data_source.data = {X: [math.nan], Y: [math.nan], FILL: [hex_color]}
    swatch.visible = True


def _item_label(item: Any) -> str | None:
    """The literal text of a legend item's label (None when it has none)."""
    label = item.label
    found = getattr(label, "value", None)
    if found is None and isinstance(label, dict):
        found = label.get("value")
    return None if found is None else str(found)


def _legend_pick(on_pick: Callable[[str], None], event: Any) -> None:
    """A legend entry was clicked: its category, by the item's label."""
    label = _item_label(event.item)
    if label is not None:
        on_pick(label)


def glyph_style(points: Any, color: ColorMapping, style: ScatterStyle,
                selected: Sequence[int] | None = None) -> Any:
    """``points`` (from :func:`points_element`) restyled, as a clone over the *same* data.

    HoloViews sends a restyle of the same data object as new glyph properties only, so a
    change of size, opacity, colormap or selection never resends the points.
    """
    return points.opts(
        size=style.point_size, alpha=style.alpha, selection_alpha=style.alpha,
        nonselection_alpha=max(0.04, style.alpha * 0.15),
        selected=list(selected) if selected is not None else [],
        **({"cmap": colormap_of(color, style.colormap)} if color.kind == "numeric" else {}),
        clone=True,
    )


def extent(frame: pd.DataFrame) -> tuple[float, float, float, float]:
    """The frame's ``(x0, y0, x1, y1)`` with a 2.5 % margin (the window before any zoom)."""
    bounds = []
    for axis in (X, Y):
        values = frame[axis].to_numpy()
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 1)
        pad = (high - low) * 0.025 or 0.5
        bounds.append((low - pad, high + pad))
    (x0, x1), (y0, y1) = bounds
    return (x0, y0, x1, y1)


def raster_size(width: int | None, height: int | None) -> tuple[int, int]:
    """The raster's pixel size for a plot frame of ``width x height`` screen pixels.

    Before the browser reports a size, the pane's minimum height and a 3:2 frame. A very
    large frame gets a coarser image (at most :data:`MAX_RASTER_PIXELS`), which the browser
    stretches: an update stays under 4 MB.
    """
    width, height = (int(width), int(height)) if width and height else (600, 400)
    if width * height > MAX_RASTER_PIXELS:
        shrink = (MAX_RASTER_PIXELS / (width * height)) ** 0.5
        width, height = max(1, int(width * shrink)), max(1, int(height * shrink))
    return width, height


def scatter_element(
    frame: pd.DataFrame,
    color: ColorMapping,
    style: ScatterStyle = ScatterStyle(),
    *,
    raster: bool = False,
    selected: Sequence[int] | np.ndarray | None = None,
    window: tuple[float, float, float, float] | None = None,
    size: tuple[int, int] | None = None,
    axis_label: str = "",
    base: Any = None,
    hover_data: Mapping[str, Sequence[Any]] | None = None,
    hover_tooltips: list[tuple[str, str]] | None = None,
    literal_colors: bool = False,
    shade_cache: ShadeCache | None = None,
) -> Any:
    """The scatter the projector shows: glyphs, or one Datashader image above the threshold.

    Parameters
    ----------
    frame
        :attr:`ProjectorState.frame` (from :func:`~embproj_panel.colors.plot_frame`).
    color
        The colour mapping ``frame`` was built with.
    style
        Point size, opacity and colormap.
    raster
        Draw one server-shaded RGBA image (Datashader) instead of a glyph per point.
    selected
        Positions *in frame* of the selected rows, or None for no selection: glyphs dim the
        others; a raster draws every row grey and the selected ones in colour on top.
    window
        Raster only: the data window ``(x0, y0, x1, y1)`` to shade; default :func:`extent`.
    size
        Raster only: the plot frame's ``(width, height)`` in screen pixels (see
        :func:`raster_size`).
    axis_label
        Prefix of the axis labels, e.g. ``"UMAP"`` gives ``UMAP 1`` / ``UMAP 2``.
    base
        Glyphs only: an element this function returned earlier *for the same frame*; it is
        restyled instead of rebuilt, so HoloViews does not resend the points.
    hover_data, hover_tooltips
        Glyphs only: tooltips that travel with the points (see :func:`points_element`).
    literal_colors
        Glyphs only: each point's own hex colour, no colour mapper (see
        :func:`points_element`).
    shade_cache
        Raster only: the view's :class:`ShadeCache` (see :func:`shade`).

    Returns
    -------
    holoviews.Points or holoviews.RGB
    """
    if raster:
        x0, y0, x1, y1 = window if window is not None else extent(frame)
        width, height = raster_size(*(size or (None, None)))
        chosen = None if selected is None else np.asarray(selected)
        rgba = shade(frame, color, x_range=(x0, x1), y_range=(y0, y1), width=width,
                     height=height, selected=chosen, colormap=style.colormap,
                     spread=max(1, int(style.point_size // 2)), cache=shade_cache)
        return raster_element(rgba, (x0, y0, x1, y1), alpha=style.alpha,
                              axis_label=axis_label)
    if base is None:
        base = points_element(frame, color, point_size=style.point_size, alpha=style.alpha,
                              colormap=style.colormap, axis_label=axis_label,
                              hover_data=hover_data, hover_tooltips=hover_tooltips,
                              literal_colors=literal_colors)
    return glyph_style(base, ColorMapping("none") if literal_colors else color, style, selected)


def scatter_key(color: ColorMapping, style: ScatterStyle = ScatterStyle()) -> Any:
    """The legend (categories) or colorbar (numbers) of a raster, or None when uncoloured.

    An RGB image has neither: invisible glyphs provide them, in the shading's colours.
    """
    key = legend_overlay(color)
    return key if key is not None else colorbar_overlay(color, style.colormap)


def warm_up() -> float:
    """Compile Datashader's aggregations for the scatter's dtypes on a tiny frame.

    Datashader compiles (numba) each aggregation the first time it meets a new combination
    of reduction and column types: 1-3 s each on the reference machine, paid by the first
    user who colours a large table one way or another. Running this once per process in the
    background moves that cost off the first request.

    Returns
    -------
    float
        Seconds it took.
    """
    import time

    began = time.perf_counter()
    frame = pd.DataFrame({
        X: np.array([0.0, 1.0, 0.5, np.nan], dtype=np.float32),
        Y: np.array([0.0, 1.0, 0.5, np.nan], dtype=np.float32),
        ROW: np.arange(4, dtype=np.int64),
    })
    window = dict(x_range=(0, 1), y_range=(0, 1), width=8, height=8)
    # Exactly what the scatter runs: each colouring, and a selection over grey rows.
    for color in (
        color_mapping(["a", "b", "a", "b"], "warm-up"),
        color_mapping([1.0, 2.0, None, 4.0], "warm-up", kind="numeric"),
        ColorMapping("none"),
    ):
        data = plot_frame(frame[[X, Y]].to_numpy(), frame[ROW].to_numpy(), color)
        shade(data, color, **window)
    shade(data, color, selected=np.array([0, 1]), **window)
    return time.perf_counter() - began

