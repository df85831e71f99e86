"""What each column of a table *is*, and the smart defaults the projector derives from that.

A column's storage type says how its cells are held (``int``, ``float``, ``bool``, ``str``,
``vector``, ``image``, ``none``); its *kind* says what it means for a projection:

``vector``       one embedding per cell;
``numeric``      a number per cell, usable as one embedding dimension;
``categorical``  few distinct values (labels such as digits' ``"target"``): good for colour;
``text``         free text (or an all-empty column);
``image``        an image per cell: shown on hover;
``id``           row identifiers: never an embedding dimension, never a colour.

The defaults follow W&B's "2D Projection" panel: the embedding is the single vector column if
there is one, else every numeric column; the colour is the best categorical column; the hover
image is the first image column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from embproj_panel.columns import column_from_series

KINDS = ("vector", "numeric", "categorical", "text", "image", "id")

# Up to this many distinct values a string or integer column reads as a set of labels.
MAX_CATEGORIES = 50

_ID_NAME = re.compile(r"^(id|idx|index|uid|uuid|key|row|row_?id|.*[_\s-]id)$", re.IGNORECASE)
_LABEL_NAME = re.compile(
    r"^(label|labels|target|targets|class|classes|y|category|categories|cluster|clusters|"
    r"group|species|kind|type|tag|.*_label|.*_class|.*_target)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ColumnInfo:
    """What one column is: its name, kind, storage dtype, distinct values and vector length."""

    name: str | int
    kind: str
    dtype: str
    n_unique: int | None = None
    dim: int | None = None


@dataclass(frozen=True)
class Schema:
    """Every column's :class:`ColumnInfo`, in table order, and the smart defaults."""

    columns: dict[str | int, ColumnInfo] = field(default_factory=dict)
    default_embedding: list[str | int] = field(default_factory=list)
    default_color: str | int | None = None
    default_hover_image: str | int | None = None

    def of_kind(self, *kinds: str) -> list[str | int]:
        """Names of the columns whose kind is one of ``kinds``, in table order."""
        return [name for name, info in self.columns.items() if info.kind in kinds]


def _is_id_name(name: object) -> bool:
    return bool(_ID_NAME.match(str(name).strip()))


def _is_label_name(name: object) -> bool:
    return bool(_LABEL_NAME.match(str(name).strip()))


def _n_unique(values: np.ndarray, nulls: np.ndarray | None) -> int:
    if nulls is not None and nulls.any():
        values = values[~nulls]
    return int(pd.unique(values).size) if values.size else 0


def column_info(
    name: str | int,
    storage: str,
    values: np.ndarray,
    nulls: np.ndarray | None = None,
) -> ColumnInfo:
    """Classify one column from its storage type and its values.

    Parameters
    ----------
    name
        The column name (names matter: ``"label"`` is a label, ``"id"`` an identifier).
    storage
        The storage type: ``int``, ``float``, ``bool``, ``str``, ``vector``, ``image`` or
        ``none``.
    values
        The cells: 1-D for scalars and images, 2-D ``(n, d)`` for vectors.
    nulls
        Optional boolean mask of empty (None) cells.
    """
    n = len(values)
    if storage == "vector":
        return ColumnInfo(name, "vector", str(values.dtype), None, int(values.shape[1]))
    if storage == "image":
        return ColumnInfo(name, "image", "image")
    if storage == "none":
        return ColumnInfo(name, "text", "none", 0)
    if storage in ("int", "float") and not _is_label_name(name):
        # Counting distinct values of every numeric dimension is the slow part of a wide
        # table's schema (128 x 1M floats: seconds); it only matters for label-like names.
        n_unique = None
    else:
        n_unique = _n_unique(values, nulls)
    if storage == "bool":
        kind = "categorical"
    elif storage == "str":
        if _is_id_name(name) or (n_unique == n and n > MAX_CATEGORIES):
            kind = "id"
        elif n_unique <= MAX_CATEGORIES or _is_label_name(name):
            kind = "categorical"
        else:
            kind = "text"
    elif storage == "int":
        if _is_id_name(name) or (n > 3 and _is_consecutive(values)):
            kind = "id"
        elif _is_label_name(name) and n_unique <= MAX_CATEGORIES:
            kind = "categorical"
        else:
            kind = "numeric"
    elif storage == "float":
        labels = (
            _is_label_name(name)
            and n_unique <= MAX_CATEGORIES
            and _label_like_floats(values, nulls)
        )
        kind = "categorical" if labels else "numeric"
    else:
        raise ValueError(f"Unknown storage type {storage!r} for column {name!r}")
    return ColumnInfo(name, kind, storage, n_unique)


def _is_consecutive(values: np.ndarray) -> bool:
    """True for 0..n-1 or 1..n in order: a row index that someone saved as a column."""
    if values.size == 0 or values[0] not in (0, 1) or values[-1] != values[0] + values.size - 1:
        return False
    return bool(np.all(np.diff(values) == 1))


def _label_like_floats(values: np.ndarray, nulls: np.ndarray | None) -> bool:
    finite = values[np.isfinite(values)]
    return bool(finite.size and np.all(finite == np.round(finite)))


def build_schema(infos: Iterable[ColumnInfo]) -> Schema:
    """Assemble a :class:`Schema` and choose the smart defaults from classified columns."""
    columns = {info.name: info for info in infos}
    vectors = [name for name, info in columns.items() if info.kind == "vector"]
    if vectors:
        embedding = [vectors[0]]
    else:
        embedding = [name for name, info in columns.items() if info.kind == "numeric"]

    def color_rank(info: ColumnInfo) -> tuple:
        # Labels by name first, then strings over numbers, then the fewest categories.
        return (not _is_label_name(info.name), info.dtype != "str", info.n_unique or 0)

    colorable = [
        info
        for info in columns.values()
        if info.kind == "categorical" and (info.n_unique or 0) >= 2
    ]
    color = min(colorable, key=color_rank).name if colorable else None
    images = [name for name, info in columns.items() if info.kind == "image"]
    return Schema(columns, embedding, color, images[0] if images else None)


def infer_schema(frame: pd.DataFrame) -> Schema:
    """The schema of a plain DataFrame, as a :class:`~embproj_panel.table.Table` would see it.

    Columns that a Table would refuse (mixed types) are classified leniently: a column of
    numbers written as strings counts as ``numeric``, anything else mixed as ``text``.
    """
    infos = []
    for name in frame.columns:
        series = frame[name]
        try:
            column = column_from_series(name, series)
        except (TypeError, ValueError):
            coerced = pd.to_numeric(series, errors="coerce")
            parsed = coerced.notna().sum()
            present = series.notna().sum()
            kind = "numeric" if present and parsed > 0.5 * present else "text"  # most cells are numbers
            infos.append(ColumnInfo(name, kind, "mixed", None))
            continue
        infos.append(column_info(name, column.storage, column.values, column.nulls))
    return build_schema(infos)
