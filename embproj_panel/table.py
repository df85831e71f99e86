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
from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.columns import (
    STORAGE_TYPES,
    Column,
    cell_storage,
    check_name,
    check_names,
    column_from_array,
    column_from_cells,
    column_from_series,
    concat,
    merge_storage,
    present_mask,
    ragged_error,
    take_column,
)
from embproj_panel.schema import Schema, build_schema, column_info


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
        self._columns: dict[str | int, Column] = {}
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
            check_names(names)
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
                built = {name: column_from_cells(name, list(cells))
                         for name, cells in zip(names, cells_by_column)}
            else:
                built = {name: Column("none", np.empty(0, dtype=object)) for name in names}
            self._names, self._columns = names, built

    @classmethod
    def _from_storage(
        cls, columns: dict[str | int, tuple[str, np.ndarray, np.ndarray | None]]
    ) -> Table:
        """Build a table from columns whose storage types are already known (the Arrow codec).

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
            check_name(name, table._columns)
            has_nulls = nulls is not None and bool(np.asarray(nulls).any())
            table._columns[name] = Column(storage, values, np.asarray(nulls) if has_nulls else None)
            table._names.append(name)
        return table

    def _storage(self, name: str | int) -> tuple[str, np.ndarray, np.ndarray | None]:
        """``(storage, values, nulls)`` of a column as held, the inverse of :meth:`_from_storage`.

        For :mod:`embproj_panel.arrow`: unlike :meth:`get_column`, int and bool columns with
        empty cells stay int64 and bool (their empty cells hold 0 / False under the mask).
        """
        self._flush()
        column = self._columns[name]
        return column.storage, column.values, column.nulls

    @classmethod
    def from_wandb(cls, table: Any) -> Table:
        """A Table holding a live ``wandb.Table``; see :func:`embproj_panel.wandb_live.table_from_wandb`."""
        from embproj_panel.wandb_live import table_from_wandb  # never imports wandb or us

        return table_from_wandb(table, cls)

    # -- construction -------------------------------------------------------------------------
    def _init_from_dataframe(self, frame: pd.DataFrame) -> None:
        names = list(frame.columns)
        check_names(names)
        frame = frame.reset_index(drop=True)
        self._columns = {name: column_from_series(name, frame[name]) for name in names}
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
        check_names(names)
        self._columns = {name: column_from_array(name, array[:, i]) for i, name in enumerate(names)}
        self._names = names

    def _flush(self) -> None:
        """Join the rows buffered by ``add_data`` into the column arrays."""
        if not self._pending:
            return
        first_row = len(next(iter(self._columns.values()))) if self._columns else 0
        transposed = list(zip(*self._pending))
        merged = {}
        for name, cells in zip(self._names, transposed):
            extra = column_from_cells(name, list(cells), first_row)
            merged[name] = concat(name, self._columns[name], extra, first_row)
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
            kind = cell_storage(value, name, row_index)
            column = self._columns[name]
            merge_storage(column.storage, kind, name, row_index, value)
            if kind == "vector" and column.storage == "vector" and len(value) != column.values.shape[1]:
                raise ragged_error(name, row_index, len(value), column.values.shape[1])
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
        check_name(name, self._columns)
        n = len(self)
        column = take_column(data, name)
        if self._names and len(column) != n:
            raise ValueError(
                f"column {name!r}: add_column got {len(column)} values but the table has {n} rows"
            )
        # In place, after every check: copying the dict per call made a table of 100,000
        # columns cost 100,000**2 / 2 entry copies.
        self._columns[name] = column
        self._names.append(name)
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
                check_names([*self._names, *keys])
                new_cells = {key: [] for key in keys}
            elif list(result) != keys and set(result) != set(keys):
                raise ValueError(f"row {ndx}: computed keys {sorted(map(str, result))} differ from row 0's {sorted(map(str, keys))}")
            for key in keys:
                new_cells[key].append(result[key])
        built = {key: column_from_cells(key, cells) for key, cells in new_cells.items()}
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

    def cells(self, name: str | int, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The cells of ``rows`` of one column, as ``get_column(name, convert_to="numpy")``.

        What tooltips, images and table pages read: a lazy table
        (:class:`~embproj_panel.dataset_table.DatasetTable`) reads only those rows.
        """
        return self.get_column(name, convert_to="numpy")[np.asarray(rows, dtype=np.int64)]

    def read_blocks(self, rows: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """The block each of ``rows`` is read in (rows of one block are read together).

        None for an in-memory table: any row is at hand. A lazy table
        (:class:`~embproj_panel.dataset_table.DatasetTable`) reads whole Parquet row groups,
        so a caller choosing a few rows among many (images on the map) can prefer rows of
        few blocks.
        """
        return None

    def color_values(self, name: str | int) -> Any:
        """The column as :func:`~embproj_panel.colors.color_mapping` takes it (every row)."""
        return self.get_column(name, convert_to="numpy")

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
            if not np.array_equal(present_mask(a), present_mask(b)):
                return False
            keep = present_mask(a)
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
