"""One table column's storage: Python cells, numpy arrays or a pandas Series to typed arrays.

A column is held as one numpy array and a mask of its empty (None) cells (:class:`Column`);
this module builds and validates those from what users pass in, so that
:class:`~embproj_panel.table.Table` (the W&B API on top) and
:func:`~embproj_panel.schema.infer_schema` (which classifies a DataFrame's columns as a table
would, without building one) share one set of rules. It imports neither of them.

Errors name the column and the row.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.images import Image

STORAGE_TYPES = ("int", "float", "bool", "str", "vector", "image", "none")


@dataclass
class Column:
    """One column: its storage type, its values and a mask of empty (None) cells.

    ``values`` is int64, float64 (or the vector's float dtype), bool, object (str or Image),
    or ``(n, d)`` for vectors; ``nulls`` is None when no cell is empty.
    """

    storage: str
    values: np.ndarray
    nulls: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def cell(self, row: int) -> Any:
        if self.nulls is not None and self.nulls[row]:
            return None
        value = self.values[row]
        if self.storage == "vector":
            return value.copy()
        return value.item() if isinstance(value, np.generic) else value


def where(name: object, row: int | None) -> str:
    """``column 'x', row 3``: where a problem is, for error messages."""
    return f"column {name!r}" + (f", row {row}" if row is not None else "")


def describe(value: Any) -> str:
    """A cell's repr, cut to 40 characters for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def cell_storage(value: Any, name: object, row: int) -> str:
    """The storage type a single cell asks for; TypeError for cells a table cannot hold."""
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Image):
        return "image"
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(
                f"{where(name, row)}: a {value.ndim}-D array is not a table cell; "
                "wrap images in embproj_panel.Image and pass embeddings as 1-D vectors"
            )
        if not (np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value)):
            raise TypeError(f"{where(name, row)}: vector of dtype {value.dtype} is not numeric")
        return "vector"
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, (bool, np.bool_)) or not isinstance(
                item, (int, float, np.integer, np.floating)
            ):
                raise TypeError(
                    f"{where(name, row)}: a vector must hold only numbers; found "
                    f"{type(item).__name__} {describe(item)}"
                )
        return "vector"
    raise TypeError(
        f"{where(name, row)}: unsupported cell type {type(value).__name__}; cells are int, "
        "float, bool, str, None, a vector (list/tuple/1-D array of numbers) or an Image"
    )


NUMBER_TYPES = {"int", "float"}


def merge_storage(current: str, new: str, name: object, row: int, value: Any) -> str:
    """The storage type of a column holding both kinds of cell, or a TypeError."""
    if new == "none" or new == current:
        return current
    if current == "none":
        return new
    if {current, new} <= NUMBER_TYPES:
        return "float"
    raise TypeError(
        f"{where(name, row)}: {new} value {describe(value)} does not fit a column of "
        f"{current} values"
    )


def ragged_error(name: object, row: int, length: int, dim: int) -> ValueError:
    """The error for a vector whose length differs from the column's earlier rows."""
    return ValueError(
        f"{where(name, row)}: vector of length {length}, but earlier rows have length {dim} "
        "(ragged vectors)"
    )


def column_from_cells(name: object, cells: Sequence[Any], first_row: int = 0) -> Column:
    """Build a column from Python cells, validating each; errors name the row."""
    storage = "none"
    dim = None
    for offset, value in enumerate(cells):
        row = first_row + offset
        kind = cell_storage(value, name, row)
        storage = merge_storage(storage, kind, name, row, value)
        if kind == "vector":
            length = len(value)
            if length == 0:
                raise ValueError(f"{where(name, row)}: empty vector")
            if dim is None:
                dim = length
            elif length != dim:
                raise ragged_error(name, row, length, dim)
    return _finish_column(name, storage, list(cells), dim, first_row)


def _finish_column(
    name: object, storage: str, cells: list[Any], dim: int | None, first_row: int
) -> Column:
    n = len(cells)
    nulls = np.fromiter((cell is None for cell in cells), dtype=bool, count=n)
    any_null = bool(nulls.any())
    if storage == "vector":
        arrays = [np.asarray(cell) for cell in cells if cell is not None]
        dtype = np.result_type(*{a.dtype for a in arrays})
        if not np.issubdtype(dtype, np.floating):
            dtype = np.float64
        values = np.full((n, dim), np.nan, dtype=dtype)
        values[~nulls] = np.stack(arrays)
    elif storage in ("int", "float", "bool"):
        fill = {"int": 0, "float": np.nan, "bool": False}[storage]
        dtype = {"int": np.int64, "float": np.float64, "bool": bool}[storage]
        try:
            values = np.array([fill if cell is None else cell for cell in cells], dtype=dtype)
        except OverflowError:
            row = next(
                i for i, cell in enumerate(cells)
                if cell is not None and not -(2**63) <= cell < 2**63
            )
            raise ValueError(
                f"{where(name, first_row + row)}: the integer {describe(cells[row])} does not fit "
                "in 64 bits; store it as a float or as text"
            ) from None
    else:  # str, image, none: object arrays
        values = np.empty(n, dtype=object)
        values[:] = cells
    return Column(storage, values, nulls if any_null else None)


def column_from_series(name: object, series: pd.Series) -> Column:
    """Build a column from a pandas Series without a Python loop over numeric rows."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and (
        dtype.kind in "bif" or (dtype.kind == "u" and dtype.itemsize < 8)
    ):
        return column_from_array(name, series.to_numpy())  # no empty cells to look for
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype).astype(object).where(series.notna(), None)
    dtype = series.dtype
    nulls = series.isna().to_numpy()
    any_null = bool(nulls.any())
    if pd.api.types.is_bool_dtype(dtype):
        values = series.fillna(False).to_numpy(dtype=bool)
        return Column("bool", values, nulls if any_null else None)
    if pd.api.types.is_integer_dtype(dtype):
        values = series.fillna(0).to_numpy(dtype=np.int64)
        return Column("int", values, nulls if any_null else None)
    if pd.api.types.is_float_dtype(dtype):
        # NaN in a float column is a value (it may be a real measurement gone bad), not None.
        # float32 stays float32: a wide table of float32 dimensions should not double in size.
        dtype = np.float32 if dtype == np.float32 else np.float64
        return Column("float", series.to_numpy(dtype=dtype, na_value=np.nan), None)
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        text = np.array(series.astype(str), dtype=object)
        text[nulls] = None
        return Column("str", text, nulls if any_null else None)
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return Column("str", _shared_strings(series), nulls if any_null else None)
    if not pd.api.types.is_object_dtype(dtype):
        raise TypeError(f"{where(name, None)}: unsupported dtype {dtype}")

    values = np.array(series, dtype=object)  # a writable copy: cells are replaced below
    present = values[~nulls] if any_null else values
    inferred = pd.api.types.infer_dtype(present, skipna=False)
    if inferred == "empty":
        out = np.empty(len(values), dtype=object)
        return Column("none", out, nulls if any_null else None)
    if inferred == "string":
        return Column("str", _shared_strings(series), nulls if any_null else None)
    if inferred in ("boolean", "integer", "floating", "mixed-integer-float", "decimal"):
        # Python objects (e.g. ints with None): reuse the per-cell path, which promotes/refuses.
        return column_from_cells(name, [None if null else v for v, null in zip(values, nulls)])
    first = present[0]
    if isinstance(first, Image):
        bad = np.flatnonzero([not isinstance(v, Image) for v in values])
        bad = [i for i in bad if not nulls[i]]
        if bad:
            row = int(bad[0])
            raise TypeError(
                f"{where(name, row)}: {type(values[row]).__name__} value "
                f"{describe(values[row])} in a column of images"
            )
        values[nulls] = None
        return Column("image", values, nulls if any_null else None)
    if isinstance(first, (np.ndarray, list, tuple)):
        return _vector_column_from_objects(name, values, nulls)
    # Anything else (mixed str/number, dicts, ...): the per-cell path names the first bad row.
    return column_from_cells(name, [None if null else v for v, null in zip(values, nulls)])


def _vector_column_from_objects(name: object, values: np.ndarray, nulls: np.ndarray) -> Column:
    """Stack an object column of vectors into (n, d) in C; locate bad rows only on failure."""
    any_null = bool(nulls.any())
    present_rows = np.flatnonzero(~nulls) if any_null else None
    present = values[present_rows] if any_null else values
    try:
        stacked = np.stack(present) if len(present) else np.empty((0, 0))
    except (ValueError, TypeError):
        stacked = None
    if stacked is None or stacked.ndim != 2 or not np.issubdtype(stacked.dtype, np.number) \
            or stacked.dtype == bool or stacked.shape[1] == 0:
        # Slow path, errors only: the per-cell validator names the first offending row.
        column = column_from_cells(name, [None if null else v for v, null in zip(values, nulls)])
        if column.storage != "vector":
            raise TypeError(f"{where(name, None)}: expected a column of vectors")
        return column
    if not np.issubdtype(stacked.dtype, np.floating):
        stacked = stacked.astype(np.float64)
    if any_null:
        full = np.full((len(values), stacked.shape[1]), np.nan, dtype=stacked.dtype)
        full[present_rows] = stacked
        stacked = full
    return Column("vector", stacked, nulls if any_null else None)


def column_from_array(name: object, array: np.ndarray) -> Column:
    """Build a column from a numpy array: 2-D numeric is a vector column."""
    if array.ndim == 2 and np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        if array.shape[1] == 0:
            raise ValueError(f"{where(name, None)}: vectors of length 0")
        values = array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)
        return Column("vector", np.array(values, copy=True))
    if array.ndim != 1:
        raise ValueError(f"{where(name, None)}: column data must be 1-D or 2-D, got {array.ndim}-D")
    # Plain numbers and booleans have no empty cells: no pandas round trip (a wide table of
    # 100,000 columns would pay it 100,000 times). The dtypes are what the Series path gives.
    kind = array.dtype.kind
    if kind == "b":
        return Column("bool", array.astype(bool, copy=True))
    if kind == "i" or (kind == "u" and array.dtype.itemsize < 8):
        return Column("int", array.astype(np.int64, copy=True))
    if kind == "f":
        return Column("float", array.astype(np.float32 if array.dtype == np.float32 else np.float64))
    # dtype=object keeps pandas from converting strings to its own str dtype and back.
    dtype = object if array.dtype == object else None
    return column_from_series(name, pd.Series(array, dtype=dtype, copy=True))


def _shared_strings(series: pd.Series) -> np.ndarray:
    """An object array of the column's strings, None where empty, one object per distinct value.

    A million labels drawn from twenty classes then cost twenty str objects and an 8 MB array
    of references, instead of a million strings (pandas' own str dtype would give us those).
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    distinct = np.empty(len(uniques) + 1, dtype=object)
    distinct[:-1] = np.asarray(uniques, dtype=object)
    distinct[-1] = None  # code -1 (an empty cell) indexes the last slot
    return distinct[codes]


def take_column(data: Any, name: object) -> Column:
    """Build a column from what ``Table.add_column`` takes: a Series, ndarray, list or tuple."""
    if isinstance(data, pd.Series):
        return column_from_series(name, data.reset_index(drop=True))
    if isinstance(data, np.ndarray):
        return column_from_array(name, data)
    if isinstance(data, (list, tuple)):
        return column_from_cells(name, list(data))
    raise TypeError(
        f"{where(name, None)}: column data must be a list, tuple, numpy array or pandas Series; "
        f"got {type(data).__name__}"
    )


def concat(name: object, base: Column, extra: Column, first_row: int) -> Column:
    """Append ``extra`` below ``base``, promoting int+float and checking vector lengths."""
    storage = base.storage
    if extra.storage != "none" and storage != "none" and extra.storage != storage:
        if {storage, extra.storage} <= NUMBER_TYPES:
            storage = "float"
        else:
            row = first_row + int(np.flatnonzero(present_mask(extra))[0])
            raise TypeError(
                f"{where(name, row)}: {extra.storage} value does not fit a column of "
                f"{storage} values"
            )
    elif storage == "none":
        storage = extra.storage
    n_base, n_extra = len(base), len(extra)
    if storage == "vector":
        dims = {c.values.shape[1] for c in (base, extra) if c.storage == "vector"}
        if len(dims) > 1:
            raise ragged_error(name, first_row, extra.values.shape[1], base.values.shape[1])
        dim = dims.pop()
        dtype = np.result_type(*[c.values for c in (base, extra) if c.storage == "vector"])
        parts = [c.values if c.storage == "vector" else np.full((len(c), dim), np.nan, dtype)
                 for c in (base, extra)]
        values = np.concatenate(parts).astype(dtype, copy=False)
    elif storage in ("int", "float", "bool"):
        dtype = {"int": np.int64, "float": np.float64, "bool": bool}[storage]
        parts = [c.values.astype(dtype) if c.storage != "none" else np.zeros(len(c), dtype)
                 for c in (base, extra)]
        values = np.concatenate(parts)
        if storage == "float":
            for start, c in ((0, base), (n_base, extra)):
                if c.nulls is not None or c.storage == "none":
                    values[start:start + len(c)][~present_mask(c)] = np.nan
    else:
        values = np.concatenate([base.values.astype(object), extra.values.astype(object)])
    nulls = np.concatenate([~present_mask(base), ~present_mask(extra)])
    assert len(values) == n_base + n_extra
    return Column(storage, values, nulls if nulls.any() else None)


def present_mask(column: Column) -> np.ndarray:
    """Boolean mask of the cells that hold a value (an all-None column has none)."""
    if column.storage == "none":
        return np.zeros(len(column), dtype=bool)
    if column.nulls is None:
        return np.ones(len(column), dtype=bool)
    return ~column.nulls


def check_name(name: Any, existing: Container[Any]) -> None:
    """Refuse a column name that is not a str or int, or that ``existing`` already has.

    ``existing`` is best a set or dict: a table may have 100,000 columns.
    """
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise TypeError(f"Column names must be str or int; got {type(name).__name__} {describe(name)}")
    if name in existing:
        raise ValueError(f"Duplicate column name {name!r}")


def check_names(names: Iterable[Any]) -> None:
    """:func:`check_name` for each of ``names`` against those before it, in linear time."""
    seen: set[Any] = set()
    for name in names:
        check_name(name, seen)
        seen.add(name)

