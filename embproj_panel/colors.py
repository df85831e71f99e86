"""Colour mapping and the plot frame: a table column -> the colours of the scatter's points.

No plotting and no Panel here, only data, so the state can compute both and a test can assert
on plain values:

* :func:`color_mapping` turns a table column into the values the plot colours by, with a
  colour key that depends only on the *whole* column, so a category keeps its colour whatever
  subset is drawn (selection overlays, rasters, re-renders).
* :func:`plot_frame` joins the 2-D coordinates with the row positions and colour values; user
  column names never reach the data source, whose fields are fixed internal names (:data:`X`,
  :data:`Y`, :data:`ROW`, :data:`COLOR`).
* :func:`numeric_span` is the fixed span a numeric colouring is shaded and labelled with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "COLOR", "MAX_COLORS", "MISSING_LABEL", "NAN_COLOR", "OTHER_COLOR", "OTHER_LABEL", "ROW",
    "LOW_STANDS_OUT", "SINGLE_COLOR", "X", "Y", "ColorMapping", "categorical_palette",
    "color_mapping", "numeric_span", "plot_frame", "ramp",
]

# Fixed field names of the plot's data source: the user's column names are shown as labels
# only, so a hostile name such as ``<img src=x onerror=...>`` can never become markup.
X, Y = "x", "y"
ROW = "row"
COLOR = "color"

#: A categorical column gets at most this many distinct colours; beyond, the most frequent
#: ``MAX_COLORS - 1`` categories keep theirs and the rest share :data:`OTHER_LABEL`.
MAX_COLORS = 50
OTHER_LABEL = "(other)"
MISSING_LABEL = "(missing)"
OTHER_COLOR = "#b4b4b4"
NAN_COLOR = "#d0d0d0"
SINGLE_COLOR = "#1f77b4"


def ramp(stops: Sequence[str], n: int = 256) -> tuple[str, ...]:
    """``n`` hex colours interpolated linearly (in RGB) through the hex colours ``stops``."""
    rgb = np.array([[int(stop[i:i + 2], 16) for i in (1, 3, 5)] for stop in stops], float)
    at = np.linspace(0.0, 1.0, len(stops))
    where = np.linspace(0.0, 1.0, n)
    channels = [np.interp(where, at, rgb[:, c]).round().astype(int) for c in range(3)]
    return tuple(f"#{r:02x}{g:02x}{b:02x}" for r, g, b in zip(*channels))


#: A colormap for "higher is better" scores in 0..1 where the *low* values catch the eye:
#: deep red at 0 through orange to a muted grey-blue at 1 (visible on white, but the calm
#: end). Faithfulness is drawn with it.
LOW_STANDS_OUT = ramp(["#a50026", "#e34a33", "#fdae61", "#b7c9d9", "#8da5bd"])


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
    span
        Numeric only: a fixed ``(low, high)`` the colours are scaled to, whatever the values
        (faithfulness is always 0 to 1); None scales to the column's own range.
    colormap
        Numeric only: the colours this column is always drawn with (a list of hex colours,
        low to high), overriding the user's colormap; None uses the user's.
    """

    kind: Literal["none", "categorical", "numeric"]
    column: str | int | None = None
    values: Any = None
    color_key: dict[str, str] = field(default_factory=dict)
    note: str = ""
    span: tuple[float, float] | None = None
    colormap: tuple[str, ...] | None = None


def color_mapping(
    values: Sequence[Any] | np.ndarray | None,
    column: str | int | None = None,
    kind: Literal["none", "categorical", "numeric"] = "categorical",
) -> ColorMapping:
    """Colour values and a stable colour key for a whole table column.

    Parameters
    ----------
    values
        The column's cells for every table row (None when ``kind="none"``), or a
        ``pd.Categorical`` of them (its codes are used as they are).
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

    if isinstance(values, pd.Categorical):
        # Codes and categories as given (a lazy dataset's column): no object per row is made.
        codes = values.codes.astype(np.int64)
        uniques = list(values.categories)
        if (codes < 0).any():
            codes = np.where(codes < 0, len(uniques), codes)
            uniques.append(None)
    else:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
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


def numeric_span(color: ColorMapping) -> tuple[float, float]:
    """The ``(low, high)`` of a numeric colouring over the *whole* column.

    Shading with this fixed span (rather than each raster's own range) keeps a value's colour
    the same in every view: zoomed, selected or not, and in agreement with the colorbar.
    """
    if color.span is not None:
        return (float(color.span[0]), float(color.span[1]))
    values = np.asarray(color.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


