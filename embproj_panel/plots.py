"""Pure HoloViews builders for the projector's scatter: colours, points, rasters, hover, hits.

Nothing here holds state or knows about widgets: every function takes arrays or frames and
returns data or a HoloViews element, so the views can rebuild cheaply and the tests can assert
on plain values. The pieces:

* :func:`color_mapping` turns a table column into the values the plot colours by, with a
  colour key that depends only on the *whole* column, so a category keeps its colour whatever
  subset is drawn (selection overlays, rasters, re-renders).
* :func:`plot_frame` joins the 2-D coordinates with the row positions and colour values; user
  column names never reach the data source, whose fields are fixed internal names.
* :func:`points_element` draws up to :data:`DATASHADE_THRESHOLD` points as Bokeh glyphs;
  :func:`shade` draws more with Datashader on the server (one RGBA image, ``dynspread``)
  and :func:`raster_element` wraps it for the plot.
* :func:`inspect_element` is the one-row element that carries the hover tooltip (image
  thumbnail, label, chosen columns): images go to the browser only for the hovered row.
* :class:`PointIndex` maps a pointer position, a box or a lasso to row positions on the
  server, which is how hover and selection work when the points are a raster.

User strings (labels, column names) only ever reach the browser as tooltip *labels* or legend
and axis text, which Bokeh renders as text, or as placeholder values (``@{field}``), which
Bokeh HTML-escapes; no template here uses ``{safe}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

# Fixed field names of the plot's data source: the user's column names are shown as labels
# only, so a hostile name such as ``<img src=x onerror=...>`` can never become markup.
X, Y = "x", "y"
ROW = "row"
COLOR = "color"
THUMB = "thumb"

#: Above this many points the scatter is drawn with Datashader instead of Bokeh glyphs.
#: Measured on the 2-core reference machine (20 categories, float32 coordinates): a Bokeh
#: Points model of 50,000 points builds in 0.2 s and serialises to 0.3 MB, 200,000 in 0.6 s and
#: 1.1 MB; the build stays cheap but the browser's canvas starts to stutter on pan and zoom past
#: ~100,000 glyphs, and a raster costs the same ~0.7 s whatever the size. 50,000 keeps glyphs
#: (with exact tap and client-side lasso) where they are fluid and rasters everywhere else.
DATASHADE_THRESHOLD = 50_000

#: A categorical column gets at most this many distinct colours; beyond, the most frequent
#: ``MAX_COLORS - 1`` categories keep theirs and the rest share :data:`OTHER_LABEL`.
MAX_COLORS = 50
OTHER_LABEL = "(other)"
MISSING_LABEL = "(missing)"
OTHER_COLOR = "#b4b4b4"
NAN_COLOR = "#d0d0d0"
SINGLE_COLOR = "#1f77b4"

# Data URI of a 1x1 transparent GIF: the placeholder for table rows whose thumbnail has not
# been generated yet (an empty ``src`` would make some browsers request the page itself).
BLANK_IMAGE = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def _holoviews() -> Any:
    """HoloViews with its Bokeh backend loaded (``.opts`` needs a backend to validate)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401 - registers the backend's options

    return hv


def categorical_palette(n: int) -> list[str]:
    """``n`` distinguishable hex colours (``n <= MAX_COLORS``).

    Colorcet's Glasbey "category10" palette starts with the ten Category10 colours everybody
    knows and continues with colours chosen to be maximally distinct from all previous ones,
    so 10 categories look like matplotlib/Bokeh defaults and 50 stay tellable apart.
    """
    import colorcet

    if n < 0 or n > MAX_COLORS:
        raise ValueError(f"n must be between 0 and {MAX_COLORS}; got {n}")
    return list(colorcet.b_glasbey_category10[:n])


def _label(value: Any) -> str:
    """The legend/tooltip text of one categorical cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING_LABEL
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


_DIGITS = re.compile(r"(\d+)")


def _natural_key(label: str) -> tuple:
    # "2" before "10" and "c2" before "c10"; numbers before words; the missing marker last.
    if label == MISSING_LABEL:
        return (2, 0.0, ())
    try:
        return (0, float(label), ())
    except ValueError:
        parts = _DIGITS.split(label)
        return (1, 0.0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


@dataclass(frozen=True)
class ColorMapping:
    """How the scatter is coloured, for every row of the table.

    Attributes
    ----------
    kind
        ``"none"`` (one colour), ``"categorical"`` (a colour per label) or ``"numeric"``
        (a colormap).
    column
        The table column coloured by (the user's name), or None.
    values
        One value per *table* row: a ``pd.Categorical`` of labels whose categories are exactly
        the keys of ``color_key``, float64 for numeric (NaN where empty), None for ``"none"``.
    color_key
        Label -> hex colour, in legend order (categorical only).
    note
        A sentence for the status line when something was merged or is missing, else ``""``.
    """

    kind: Literal["none", "categorical", "numeric"]
    column: str | int | None = None
    values: Any = None
    color_key: dict[str, str] = field(default_factory=dict)
    note: str = ""


def color_mapping(
    values: Sequence[Any] | np.ndarray | None,
    column: str | int | None = None,
    kind: Literal["none", "categorical", "numeric"] = "categorical",
) -> ColorMapping:
    """Colour values and a stable colour key for a whole table column.

    Parameters
    ----------
    values
        The column's cells for every table row (None when ``kind="none"``).
    column
        The column's name, kept for labels and messages.
    kind
        ``"categorical"``: labels (any values; None/NaN become ``"(missing)"``), coloured with
        :func:`categorical_palette` in natural order; with more than :data:`MAX_COLORS`
        labels, the ``MAX_COLORS - 1`` most frequent keep a colour and the rest become
        ``"(other)"`` (grey), which ``note`` states. ``"numeric"``: floats for a colormap.

    Returns
    -------
    ColorMapping
    """
    if kind == "none" or values is None:
        return ColorMapping("none")
    if kind == "numeric":
        numbers = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce")
        floats = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = int(np.isnan(floats).sum())
        note = (
            f"{missing:,} row(s) have no value in {column!s} and are drawn grey."
            if missing
            else ""
        )
        return ColorMapping("numeric", column, floats, {}, note)
    if kind != "categorical":
        raise ValueError(f"kind must be 'none', 'categorical' or 'numeric'; got {kind!r}")

    array = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(array, use_na_sentinel=False)
    labels = np.array([_label(u) for u in uniques], dtype=object)
    # Different raw values can share a label (1 and 1.0, None and NaN): merge them.
    label_codes, distinct = pd.factorize(labels)
    per_row = label_codes[codes]
    counts = np.bincount(per_row, minlength=len(distinct))
    note = ""
    if len(distinct) > MAX_COLORS:
        keep = MAX_COLORS - 1
        # Most frequent first; ties broken by natural order so the choice is deterministic.
        order = sorted(range(len(distinct)), key=lambda i: (-counts[i], _natural_key(distinct[i])))
        kept = sorted((distinct[i] for i in order[:keep]), key=_natural_key)
        merged = len(distinct) - keep
        merged_rows = int(counts[order[keep:]].sum())
        note = (
            f"{column!s} has {len(distinct):,} categories: the {keep} most frequent have their "
            f"own colour; {merged:,} others ({merged_rows:,} rows) are grey {OTHER_LABEL!r}."
        )
        key = dict(zip(kept, categorical_palette(keep)))
        key[OTHER_LABEL] = OTHER_COLOR
    else:
        ordered = sorted(distinct, key=_natural_key)
        key = dict(zip(ordered, categorical_palette(len(ordered))))
        if MISSING_LABEL in key:
            key[MISSING_LABEL] = NAN_COLOR
    # Codes straight from the factorization (labels not in the key are "(other)"): a
    # Categorical built from a million label objects would hash them all again.
    position = {label: i for i, label in enumerate(key)}
    other = position.get(OTHER_LABEL, -1)
    remap = np.array([position.get(label, other) for label in distinct], dtype=np.int64)
    categorical = pd.Categorical.from_codes(remap[per_row], categories=list(key))
    return ColorMapping("categorical", column, categorical, key, note)


def plot_frame(
    coords: np.ndarray,
    rows: np.ndarray,
    color: ColorMapping,
) -> pd.DataFrame:
    """The scatter's data: one row per projected point, internal field names only.

    Parameters
    ----------
    coords
        ``(n, 2)`` projected coordinates.
    rows
        The table row position of each coordinate (rows excluded from the projection are
        simply absent).
    color
        The colour mapping of the whole table (indexed by ``rows``).

    Returns
    -------
    pandas.DataFrame
        Columns ``x``, ``y``, ``row`` and, unless ``color.kind == "none"``, ``color``.
    """
    coords = np.asarray(coords)
    rows = np.asarray(rows, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(rows):
        raise ValueError(
            f"coords must be (n, 2) with one row position each; got {coords.shape} and "
            f"{rows.shape}"
        )
    data: dict[str, Any] = {X: coords[:, 0], Y: coords[:, 1], ROW: rows}
    if color.kind == "categorical":
        data[COLOR] = color.values[rows]
    elif color.kind == "numeric":
        data[COLOR] = color.values[rows]
    return pd.DataFrame(data)


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

    Returns
    -------
    holoviews.Points
    """
    hv = _holoviews()

    vdims = [ROW] + ([COLOR] if COLOR in frame else [])
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
    opts.update(_color_opts(color, colormap))
    return points.opts(**opts)


def _common_opts(axis_label: str) -> dict[str, Any]:
    return dict(
        responsive=True,
        min_height=300,
        xlabel=f"{axis_label} 1".strip(),
        ylabel=f"{axis_label} 2".strip(),
        active_tools=["wheel_zoom", "pan"],
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
            cmap=colormap,
            colorbar=True,
            clabel=str(color.column),
            clipping_colors={"NaN": NAN_COLOR},
        )
    return dict(color=SINGLE_COLOR)


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


def numeric_span(color: ColorMapping) -> tuple[float, float]:
    """The ``(low, high)`` of a numeric colouring over the *whole* column.

    Shading with this fixed span (rather than each raster's own range) keeps a value's colour
    the same in every view: zoomed, selected or not, and in agreement with the colorbar.
    """
    values = np.asarray(color.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


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
            return _shade_categories(canvas, data, color)
        if color.kind == "numeric":
            agg = canvas.points(data, X, Y, agg=ds.mean(COLOR))
            return tf.shade(agg, cmap=_palette(colormap), how="linear",
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


def _shade_categories(canvas: Any, data: pd.DataFrame, color: ColorMapping) -> Any:
    """Each pixel in the count-weighted mean colour of its points, alpha by their number.

    What ``tf.shade`` does with a ``count_cat`` aggregate, without the aggregate: that is a
    ``width x height x categories`` array, and shading it takes ~250 MB at 1000 x 600 with 20
    categories. Summing each point's colour channels takes four ``width x height`` arrays.
    """
    import datashader as ds
    import datashader.transfer_functions as tf

    key = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in color.color_key.values()],
                   dtype=np.float32)
    # ``values`` is a Categorical over exactly the key's labels, so every code is valid.
    rgb = key[np.asarray(data[COLOR].cat.codes)]
    channels = pd.DataFrame({X: data[X].to_numpy(), Y: data[Y].to_numpy(),
                             "r": rgb[:, 0], "g": rgb[:, 1], "b": rgb[:, 2]})
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
        color=COLOR, cmap=_palette(colormap), clim=(low, high), colorbar=True,
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


class PointIndex:
    """Hit testing on the server: which points are near a position, in a box or a lasso.

    Points are sorted by x once, so a query only looks at the slab of points whose x falls in
    range: a hover over a million points touches thousands, not a million.

    Parameters
    ----------
    x, y
        Coordinates; positions returned by the queries index these arrays.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"x and y must be 1-D of equal length; got {x.shape} and {y.shape}")
        # float32 coordinates stay float32 (a million rows: 8 MB less per axis; hit testing
        # needs no more precision than the projection has).
        dtype = np.result_type(x.dtype, y.dtype, np.float32)
        self._order = np.argsort(x, kind="stable")
        self._x = x[self._order].astype(dtype, copy=False)
        self._y = y[self._order].astype(dtype, copy=False)

    def __len__(self) -> int:
        return len(self._x)

    def _slab(self, x0: float, x1: float) -> slice:
        lo = int(np.searchsorted(self._x, x0, side="left"))
        hi = int(np.searchsorted(self._x, x1, side="right"))
        return slice(lo, hi)

    def nearest(self, px: float, py: float, rx: float, ry: float) -> int | None:
        """The point closest to ``(px, py)`` inside the ellipse of radii ``(rx, ry)``.

        Radii are per axis because the axes of a zoomed plot have different scales; pass the
        data distance of a few screen pixels in each direction.

        Returns
        -------
        int or None
            Position of the point, or None if no point is that close.
        """
        if not len(self) or not (rx > 0 and ry > 0) or not np.isfinite([px, py]).all():
            return None
        window = self._slab(px - rx, px + rx)
        dx = (self._x[window] - px) / rx
        dy = (self._y[window] - py) / ry
        dist = dx * dx + dy * dy
        if not dist.size:
            return None
        best = int(np.argmin(dist))
        if dist[best] > 1.0:
            return None
        return int(self._order[window][best])

    def in_box(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Sorted positions of the points inside the box (edges included)."""
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        window = self._slab(x0, x1)
        ys = self._y[window]
        hits = self._order[window][(ys >= y0) & (ys <= y1)]
        return np.sort(hits)

    def in_polygon(self, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
        """Sorted positions of the points inside the polygon (even-odd rule), as a lasso."""
        px = np.asarray(xs, dtype=np.float64)
        py = np.asarray(ys, dtype=np.float64)
        if px.shape != py.shape or px.ndim != 1:
            raise ValueError("polygon xs and ys must be 1-D of equal length")
        if len(px) < 3:
            return np.zeros(0, dtype=np.int64)
        window = self._slab(px.min(), px.max())
        cx, cy = self._x[window], self._y[window]
        keep = (cy >= py.min()) & (cy <= py.max())
        cx, cy = cx[keep], cy[keep]
        candidates = self._order[window][keep]
        inside = np.zeros(len(cx), dtype=bool)
        # Ray casting, one polygon edge at a time: O(edges x candidates) without a Python
        # loop over points.
        x_prev, y_prev = px[-1], py[-1]
        for x_cur, y_cur in zip(px, py):
            crosses = (y_cur > cy) != (y_prev > cy)
            if crosses.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    x_at = (x_prev - x_cur) * (cy - y_cur) / (y_prev - y_cur) + x_cur
                inside ^= crosses & (cx < x_at)
            x_prev, y_prev = x_cur, y_cur
        return np.sort(candidates[inside])


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

