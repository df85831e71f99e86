"""The W&B-style ``Table``: rows of embeddings, labels and images, with W&B's API.

Users coming from Weights & Biases build tables with ``Table(columns=..., data=...)``,
``Table(dataframe=df)``, ``add_data``, ``add_column``/``add_col`` and
``add_computed_columns``; this class takes the same calls. Underneath, each column is held as
one numpy array (a vector column as a 2-D ``(n, d)`` array), so a table of a million 128-d
embeddings costs what its numbers cost and ``Table(dataframe=df)`` never loops over rows in
Python. Rows added one at a time with ``add_data`` wait in a buffer and are joined into the
arrays on the next read.

Every mutating call validates first and changes nothing when it fails; error messages name
the column and the row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.images import Image
from embproj_panel.schema import Schema, build_schema, column_info

STORAGE_TYPES = ("int", "float", "bool", "str", "vector", "image", "none")


@dataclass
class _Column:
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


def _where(name: object, row: int | None) -> str:
    return f"column {name!r}" + (f", row {row}" if row is not None else "")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _cell_storage(value: Any, name: object, row: int) -> str:
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
                f"{_where(name, row)}: a {value.ndim}-D array is not a table cell; "
                "wrap images in embproj_panel.Image and pass embeddings as 1-D vectors"
            )
        if not (np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value)):
            raise TypeError(f"{_where(name, row)}: vector of dtype {value.dtype} is not numeric")
        return "vector"
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, (bool, np.bool_)) or not isinstance(
                item, (int, float, np.integer, np.floating)
            ):
                raise TypeError(
                    f"{_where(name, row)}: a vector must hold only numbers; found "
                    f"{type(item).__name__} {_describe(item)}"
                )
        return "vector"
    raise TypeError(
        f"{_where(name, row)}: unsupported cell type {type(value).__name__}; cells are int, "
        "float, bool, str, None, a vector (list/tuple/1-D array of numbers) or an Image"
    )


_NUMBER = {"int", "float"}


def _merge_storage(current: str, new: str, name: object, row: int, value: Any) -> str:
    """The storage type of a column holding both kinds of cell, or a TypeError."""
    if new == "none" or new == current:
        return current
    if current == "none":
        return new
    if {current, new} <= _NUMBER:
        return "float"
    raise TypeError(
        f"{_where(name, row)}: {new} value {_describe(value)} does not fit a column of "
        f"{current} values"
    )


def _ragged(name: object, row: int, length: int, dim: int) -> ValueError:
    """The error for a vector whose length differs from the column's earlier rows."""
    return ValueError(
        f"{_where(name, row)}: vector of length {length}, but earlier rows have length {dim} "
        "(ragged vectors)"
    )


def _column_from_cells(name: object, cells: Sequence[Any], first_row: int = 0) -> _Column:
    """Build a column from Python cells, validating each; errors name the row."""
    storage = "none"
    dim = None
    for offset, value in enumerate(cells):
        row = first_row + offset
        kind = _cell_storage(value, name, row)
        storage = _merge_storage(storage, kind, name, row, value)
        if kind == "vector":
            length = len(value)
            if length == 0:
                raise ValueError(f"{_where(name, row)}: empty vector")
            if dim is None:
                dim = length
            elif length != dim:
                raise _ragged(name, row, length, dim)
    return _finish_column(storage, list(cells), dim)


def _finish_column(storage: str, cells: list[Any], dim: int | None) -> _Column:
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
        values = np.array([fill if cell is None else cell for cell in cells], dtype=dtype)
    else:  # str, image, none: object arrays
        values = np.empty(n, dtype=object)
        values[:] = cells
    return _Column(storage, values, nulls if any_null else None)


def _column_from_series(name: object, series: pd.Series) -> _Column:
    """Build a column from a pandas Series without a Python loop over numeric rows."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype).astype(object).where(series.notna(), None)
    dtype = series.dtype
    nulls = series.isna().to_numpy()
    any_null = bool(nulls.any())
    if pd.api.types.is_bool_dtype(dtype):
        values = series.fillna(False).to_numpy(dtype=bool)
        return _Column("bool", values, nulls if any_null else None)
    if pd.api.types.is_integer_dtype(dtype):
        values = series.fillna(0).to_numpy(dtype=np.int64)
        return _Column("int", values, nulls if any_null else None)
    if pd.api.types.is_float_dtype(dtype):
        # NaN in a float column is a value (it may be a real measurement gone bad), not None.
        # float32 stays float32: a wide table of float32 dimensions should not double in size.
        dtype = np.float32 if dtype == np.float32 else np.float64
        return _Column("float", series.to_numpy(dtype=dtype, na_value=np.nan), None)
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        text = np.array(series.astype(str), dtype=object)
        text[nulls] = None
        return _Column("str", text, nulls if any_null else None)
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return _Column("str", _shared_strings(series), nulls if any_null else None)
    if not pd.api.types.is_object_dtype(dtype):
        raise TypeError(f"{_where(name, None)}: unsupported dtype {dtype}")

    values = np.array(series, dtype=object)  # a writable copy: cells are replaced below
    present = values[~nulls] if any_null else values
    inferred = pd.api.types.infer_dtype(present, skipna=False)
    if inferred == "empty":
        out = np.empty(len(values), dtype=object)
        return _Column("none", out, nulls if any_null else None)
    if inferred == "string":
        return _Column("str", _shared_strings(series), nulls if any_null else None)
    if inferred in ("boolean", "integer", "floating", "mixed-integer-float", "decimal"):
        # Python objects (e.g. ints with None): reuse the per-cell path, which promotes/refuses.
        return _column_from_cells(name, [None if null else v for v, null in zip(values, nulls)])
    first = present[0]
    if isinstance(first, Image):
        bad = np.flatnonzero([not isinstance(v, Image) for v in values])
        bad = [i for i in bad if not nulls[i]]
        if bad:
            row = int(bad[0])
            raise TypeError(
                f"{_where(name, row)}: {type(values[row]).__name__} value "
                f"{_describe(values[row])} in a column of images"
            )
        values[nulls] = None
        return _Column("image", values, nulls if any_null else None)
    if isinstance(first, (np.ndarray, list, tuple)):
        return _vector_column_from_objects(name, values, nulls)
    # Anything else (mixed str/number, dicts, ...): the per-cell path names the first bad row.
    return _column_from_cells(name, [None if null else v for v, null in zip(values, nulls)])


def _vector_column_from_objects(name: object, values: np.ndarray, nulls: np.ndarray) -> _Column:
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
        column = _column_from_cells(name, [None if null else v for v, null in zip(values, nulls)])
        if column.storage != "vector":
            raise TypeError(f"{_where(name, None)}: expected a column of vectors")
        return column
    if not np.issubdtype(stacked.dtype, np.floating):
        stacked = stacked.astype(np.float64)
    if any_null:
        full = np.full((len(values), stacked.shape[1]), np.nan, dtype=stacked.dtype)
        full[present_rows] = stacked
        stacked = full
    return _Column("vector", stacked, nulls if any_null else None)


def _column_from_array(name: object, array: np.ndarray) -> _Column:
    """Build a column from a numpy array: 2-D numeric is a vector column."""
    if array.ndim == 2 and np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        if array.shape[1] == 0:
            raise ValueError(f"{_where(name, None)}: vectors of length 0")
        values = array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)
        return _Column("vector", np.array(values, copy=True))
    if array.ndim != 1:
        raise ValueError(f"{_where(name, None)}: column data must be 1-D or 2-D, got {array.ndim}-D")
    # dtype=object keeps pandas from converting strings to its own str dtype and back.
    dtype = object if array.dtype == object else None
    return _column_from_series(name, pd.Series(array, dtype=dtype, copy=True))


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


def _take_column(data: Any, name: object) -> _Column:
    if isinstance(data, pd.Series):
        return _column_from_series(name, data.reset_index(drop=True))
    if isinstance(data, np.ndarray):
        return _column_from_array(name, data)
    if isinstance(data, (list, tuple)):
        return _column_from_cells(name, list(data))
    raise TypeError(
        f"{_where(name, None)}: column data must be a list, tuple, numpy array or pandas Series; "
        f"got {type(data).__name__}"
    )


def _concat(name: object, base: _Column, extra: _Column, first_row: int) -> _Column:
    """Append ``extra`` below ``base``, promoting int+float and checking vector lengths."""
    storage = base.storage
    if extra.storage != "none" and storage != "none" and extra.storage != storage:
        if {storage, extra.storage} <= _NUMBER:
            storage = "float"
        else:
            row = first_row + int(np.flatnonzero(_present(extra))[0])
            raise TypeError(
                f"{_where(name, row)}: {extra.storage} value does not fit a column of "
                f"{storage} values"
            )
    elif storage == "none":
        storage = extra.storage
    n_base, n_extra = len(base), len(extra)
    if storage == "vector":
        dims = {c.values.shape[1] for c in (base, extra) if c.storage == "vector"}
        if len(dims) > 1:
            raise _ragged(name, first_row, extra.values.shape[1], base.values.shape[1])
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
                    values[start:start + len(c)][~_present(c)] = np.nan
    else:
        values = np.concatenate([base.values.astype(object), extra.values.astype(object)])
    nulls = np.concatenate([~_present(base), ~_present(extra)])
    assert len(values) == n_base + n_extra
    return _Column(storage, values, nulls if nulls.any() else None)


def _present(column: _Column) -> np.ndarray:
    if column.storage == "none":
        return np.zeros(len(column), dtype=bool)
    if column.nulls is None:
        return np.ones(len(column), dtype=bool)
    return ~column.nulls


def _check_name(name: Any, existing: Sequence[Any]) -> None:
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise TypeError(f"Column names must be str or int; got {type(name).__name__} {_describe(name)}")
    if name in existing:
        raise ValueError(f"Duplicate column name {name!r}")


class Table:
    """A table of embeddings, labels and images, with the API of ``wandb.Table``.

    Parameters
    ----------
    columns
        Column names (str or int). Defaults as in W&B: ``["Input", "Output", "Expected"]``;
        for an ndarray that is not 3 columns wide (where W&B fails), ``"Column_0"``, ... .
    data
        A list of rows (each a list of cells) or a 2-D ndarray (one column per array column).
    rows
        An alias of ``data``, as in W&B.
    dataframe
        A pandas DataFrame; when given, ``columns`` and ``data`` are ignored (as in W&B).

    Cells are int, float, bool, str, None, a vector (a list/tuple of numbers or a 1-D ndarray)
    or an :class:`~embproj_panel.Image`.
    """

    def __init__(
        self,
        columns: Sequence[str | int] | None = None,
        data: Sequence[Sequence[Any]] | np.ndarray | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: pd.DataFrame | None = None,
    ) -> None:
        self._names: list[str | int] = []
        self._columns: dict[str | int, _Column] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._schema: Schema | None = None
        if data is None:
            data = rows
        if dataframe is not None:
            if not isinstance(dataframe, pd.DataFrame):
                raise TypeError(f"dataframe must be a pandas DataFrame; got {type(dataframe).__name__}")
            self._init_from_dataframe(dataframe)
        elif isinstance(data, np.ndarray):
            self._init_from_ndarray(data, columns)
        else:
            if columns is None:
                columns = ["Input", "Output", "Expected"]
            names = list(columns)
            for i, name in enumerate(names):
                _check_name(name, names[:i])
            if data is not None:
                data = list(data)
                for row_index, row in enumerate(data):
                    if not isinstance(row, (list, tuple, np.ndarray)):
                        raise TypeError(f"row {row_index}: a row must be a list or tuple; got {type(row).__name__}")
                    if len(row) != len(names):
                        raise ValueError(
                            f"row {row_index}: has {len(row)} cells but the table has "
                            f"{len(names)} columns {names}"
                        )
                cells_by_column = list(zip(*data)) if data else [()] * len(names)
                built = {name: _column_from_cells(name, list(cells))
                         for name, cells in zip(names, cells_by_column)}
            else:
                built = {name: _Column("none", np.empty(0, dtype=object)) for name in names}
            self._names, self._columns = names, built

    @classmethod
    def _from_storage(
        cls, columns: dict[str | int, tuple[str, np.ndarray, np.ndarray | None]]
    ) -> Table:
        """Build a table from columns whose storage types are already known (the run store).

        ``columns`` maps each name to ``(storage, values, nulls)`` exactly as
        :attr:`column_types` / :meth:`get_column` / :meth:`column_nulls` give them; nothing is
        re-inferred, so an all-None str column or an empty vector column keeps its type.
        """
        lengths = {len(values) for _, values, _ in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        table = cls(columns=[])
        for name, (storage, values, nulls) in columns.items():
            if storage not in STORAGE_TYPES:
                raise ValueError(f"column {name!r}: unknown storage type {storage!r}")
            _check_name(name, table._names)
            has_nulls = nulls is not None and bool(np.asarray(nulls).any())
            table._columns[name] = _Column(storage, values, np.asarray(nulls) if has_nulls else None)
            table._names.append(name)
        return table

    # -- construction -------------------------------------------------------------------------
    def _init_from_dataframe(self, frame: pd.DataFrame) -> None:
        names = list(frame.columns)
        for i, name in enumerate(names):
            _check_name(name, names[:i])
        frame = frame.reset_index(drop=True)
        self._columns = {name: _column_from_series(name, frame[name]) for name in names}
        self._names = names

    def _init_from_ndarray(self, array: np.ndarray, columns: Sequence[str | int] | None) -> None:
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"data as an ndarray must be 2-D; got shape {array.shape}")
        if columns is not None:
            names = list(columns)
        elif array.shape[1] == 3:
            names = ["Input", "Output", "Expected"]
        else:
            names = [f"Column_{i}" for i in range(array.shape[1])]
        if len(names) != array.shape[1]:
            raise ValueError(f"data has {array.shape[1]} columns but {len(names)} names were given")
        for i, name in enumerate(names):
            _check_name(name, names[:i])
        self._columns = {name: _column_from_array(name, array[:, i]) for i, name in enumerate(names)}
        self._names = names

    def _flush(self) -> None:
        """Join the rows buffered by ``add_data`` into the column arrays."""
        if not self._pending:
            return
        first_row = len(next(iter(self._columns.values()))) if self._columns else 0
        transposed = list(zip(*self._pending))
        merged = {}
        for name, cells in zip(self._names, transposed):
            extra = _column_from_cells(name, list(cells), first_row)
            merged[name] = _concat(name, self._columns[name], extra, first_row)
        self._columns = merged
        self._pending = []

    def _touch(self) -> None:
        self._schema = None

    # -- W&B API -------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str | int]:
        """The column names, in order (a copy)."""
        return list(self._names)

    @property
    def data(self) -> list[list[Any]]:
        """All rows as lists of cells, as ``wandb.Table.data`` (builds Python objects)."""
        return [row for _, row in self.iterrows()]

    def __len__(self) -> int:
        self._flush()
        if not self._columns:
            return 0
        return len(next(iter(self._columns.values())))

    def add_data(self, *row: Any) -> None:
        """Append one row; its cells are checked against the columns' types first."""
        if len(row) != len(self._names):
            raise ValueError(
                f"row {len(self)}: add_data got {len(row)} cells but the table has "
                f"{len(self._names)} columns {self._names}"
            )
        row_index = len(self)
        for name, value in zip(self._names, row):
            kind = _cell_storage(value, name, row_index)
            column = self._columns[name]
            _merge_storage(column.storage, kind, name, row_index, value)
            if kind == "vector" and column.storage == "vector" and len(value) != column.values.shape[1]:
                raise _ragged(name, row_index, len(value), column.values.shape[1])
        self._pending.append(tuple(row))
        try:
            self._flush_if_large()
        finally:
            self._touch()

    def _flush_if_large(self) -> None:
        # A column whose type is still open (all None so far) can only be checked against
        # buffered rows on flush; flushing on every row in that case keeps errors immediate.
        open_types = any(self._columns[n].storage == "none" for n in self._names)
        if open_types or len(self._pending) >= 1024:
            pending = self._pending
            saved = self._columns
            try:
                self._flush()
            except (TypeError, ValueError):
                self._columns, self._pending = saved, pending[:-1]
                raise

    def add_column(self, name: str | int, data: Any, optional: bool = False) -> None:
        """Add a column; ``data`` is a list, tuple, ndarray (2-D: a vector column) or Series."""
        del optional  # accepted for W&B compatibility; every column here may hold None
        _check_name(name, self._names)
        n = len(self)
        column = _take_column(data, name)
        if self._names and len(column) != n:
            raise ValueError(
                f"column {name!r}: add_column got {len(column)} values but the table has {n} rows"
            )
        self._columns = {**self._columns, name: column}
        self._names = [*self._names, name]
        self._touch()

    add_col = add_column

    def add_computed_columns(self, fn: Callable[..., dict[str, Any]]) -> None:
        """Add the columns that ``fn`` computes from each row.

        ``fn(ndx, row)`` gets the row index and the row as a dict and returns a dict of new
        cells, W&B's positional order. The seed docs write ``lambda row, ndx: ...``: when the
        function's parameters are named ``row`` and ``ndx`` they are passed by keyword, so both
        spellings work. Every row must return the same keys; nothing is added unless all rows
        succeed.
        """
        try:
            parameters = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            parameters = []
        by_keyword = {"row", "ndx"} <= set(parameters)
        new_cells: dict[Any, list[Any]] = {}
        keys: list[Any] | None = None
        for ndx, row in self.iterrows():
            row_dict = dict(zip(self._names, row))
            result = fn(row=row_dict, ndx=ndx) if by_keyword else fn(ndx, row_dict)
            if not isinstance(result, dict):
                raise TypeError(f"row {ndx}: add_computed_columns' function must return a dict; got {type(result).__name__}")
            if keys is None:
                keys = list(result)
                for i, key in enumerate(keys):
                    _check_name(key, [*self._names, *keys[:i]])
                new_cells = {key: [] for key in keys}
            elif list(result) != keys and set(result) != set(keys):
                raise ValueError(f"row {ndx}: computed keys {sorted(map(str, result))} differ from row 0's {sorted(map(str, keys))}")
            for key in keys:
                new_cells[key].append(result[key])
        built = {key: _column_from_cells(key, cells) for key, cells in new_cells.items()}
        self._columns = {**self._columns, **built}
        self._names = [*self._names, *built]
        self._touch()

    def get_column(self, name: str | int, convert_to: str | None = None) -> Any:
        """A column's cells: a list, or with ``convert_to="numpy"`` an ndarray.

        For a vector column the ndarray is 2-D ``(n, d)``, empty rows NaN; for int/bool
        columns with empty cells, a float or object array with NaN/None there.
        """
        self._flush()
        if name not in self._columns:
            raise KeyError(f"No column {name!r}; the columns are {self._names}")
        column = self._columns[name]
        if convert_to is None:
            return [column.cell(i) for i in range(len(column))]
        if convert_to != "numpy":
            raise ValueError(f"convert_to must be None or 'numpy'; got {convert_to!r}")
        if column.nulls is None or column.storage in ("vector", "float", "str", "image"):
            return column.values
        if column.storage == "int":
            out = column.values.astype(np.float64)
            out[column.nulls] = np.nan
            return out
        out = column.values.astype(object)
        out[column.nulls] = None
        return out

    def get_dataframe(self) -> pd.DataFrame:
        """The table as a DataFrame: vectors as an object column of 1-D arrays, ``Image`` cells."""
        self._flush()
        data = {}
        for name in self._names:
            column = self._columns[name]
            if column.storage == "vector":
                cells = np.empty(len(column), dtype=object)
                cells[:] = list(column.values)
                if column.nulls is not None:
                    cells[column.nulls] = None
                data[name] = cells
            elif column.storage == "int" and column.nulls is not None:
                data[name] = pd.array(np.where(column.nulls, 0, column.values), dtype="Int64")
                data[name][column.nulls] = pd.NA
            elif column.storage == "bool" and column.nulls is not None:
                data[name] = pd.array(column.values, dtype="boolean")
                data[name][column.nulls] = pd.NA
            else:
                data[name] = column.values
        return pd.DataFrame(data, columns=self._names)

    def iterrows(self) -> Iterator[tuple[int, list[Any]]]:
        """Yield ``(index, row)`` with each row a list of cells, as ``wandb.Table.iterrows``."""
        self._flush()
        columns = [self._columns[name] for name in self._names]
        for i in range(len(self)):
            yield i, [column.cell(i) for column in columns]

    # -- beyond W&B ----------------------------------------------------------------------------
    @property
    def column_types(self) -> dict[str | int, str]:
        """Each column's storage type: int, float, bool, str, vector, image or none."""
        self._flush()
        return {name: self._columns[name].storage for name in self._names}

    def column_nulls(self, name: str | int) -> np.ndarray | None:
        """Boolean mask of the empty (None) cells of a column, or None if it has none."""
        self._flush()
        return self._columns[name].nulls

    @property
    def schema(self) -> Schema:
        """Every column's kind and the smart defaults (cached until the table changes)."""
        self._flush()
        if self._schema is None:
            self._schema = build_schema(
                column_info(name, c.storage, c.values, c.nulls)
                for name, c in self._columns.items()
            )
        return self._schema

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        if self.columns != other.columns or self.column_types != other.column_types:
            return False
        for name in self._names:
            a, b = self._columns[name], other._columns[name]
            if not np.array_equal(_present(a), _present(b)):
                return False
            keep = _present(a)
            if a.storage in ("vector", "float"):
                if a.values.dtype != b.values.dtype or not np.array_equal(
                    a.values[keep], b.values[keep], equal_nan=True
                ):
                    return False
            elif not all(x == y for x, y in zip(a.values[keep], b.values[keep])):
                return False
        return True

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"Table({len(self)} rows, columns={self._names!r})"
