"""A lazy :class:`~embproj_panel.dataset.Dataset` seen as the table the projector shows.

:class:`DatasetTable` is the one adapter between a Parquet dataset and the state and views:
it *is* a :class:`~embproj_panel.table.Table` (so ``ProjectorState.table`` takes it and the
views keep asking the questions they ask of any table), but it holds no rows. It answers

* the row count, the column names and storage types, the schema (the dataset's, judged from
  its first row group);
* the values a colour needs (:meth:`DatasetTable.color_values`): a categorical column as a
  ``pd.Categorical`` of codes and its few categories, a numeric one as float64, read one
  column at a time and kept (that is what the plot draws);
* the cells of some rows (:meth:`DatasetTable.cells`, :meth:`DatasetTable.take`) for
  tooltips, images, table pages and exports, read from the rows' Parquet row groups only.
  The image cells of the row groups read last are kept (:data:`IMAGE_GROUP_CACHE_BYTES` of
  encoded images per table, least recently used out first): every view of images on the
  map reads its thumbnails mostly from the same few row groups (``ImageCells(blocks=)``),
  so the next pan or zoom reads none again.

A whole scalar column (numbers, labels) can still be read with :meth:`get_column`, or a
piece at a time with :meth:`column_batches` (what text search reads); a whole
vector or image column cannot (that is the data the dataset is kept on disk for), and asking
for one raises :class:`LazyColumnError`, which names what to use instead. The projection
itself runs out of core on the dataset (:func:`embproj_panel.compute.project` unwraps
:attr:`DatasetTable.dataset`). Views never learn about Dask or Parquet.

Sessions may share one ``DatasetTable`` (``embproj serve DATASET``): it is read-only, and the
colour values it keeps are the same for every session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from embproj_panel.dataset import Dataset
from embproj_panel.schema import Schema
from embproj_panel.table import Table

__all__ = ["IMAGE_GROUP_CACHE_BYTES", "DatasetTable", "LazyColumnError"]

#: The most bytes of encoded image cells a :class:`DatasetTable` keeps, by whole row group.
#: A row group whose images alone are larger is never kept.
IMAGE_GROUP_CACHE_BYTES = 64 * 2**20


class LazyColumnError(ValueError):
    """A whole vector or image column of a lazy dataset was asked for (it stays on disk)."""


class DatasetTable(Table):
    """A :class:`Dataset` as a read-only :class:`Table` that reads rows on demand.

    Parameters
    ----------
    dataset
        The lazy Parquet dataset.

    Attributes
    ----------
    dataset
        The dataset (what :func:`~embproj_panel.compute.project` projects, out of core).
    reads
        How many times rows were read from the files (every :meth:`cells`, :meth:`take` and
        whole-column read counts once; image cells all in kept row groups are no read);
        tests and benchmarks look at it.
    """

    def __init__(self, dataset: Dataset) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"DatasetTable wraps a Dataset; got {type(dataset).__name__}")
        super().__init__(columns=[])
        self.dataset = dataset
        # Columns of types the store never writes ("other") are not shown (as to_table).
        self._types = {name: kind for name, kind in dataset.column_types.items()
                       if kind != "other"}
        self._colors: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self.reads = 0
        # (image column, row group) -> that group's cells as Arrow, least recently used first.
        self._image_groups: OrderedDict[tuple[Any, int], pa.ChunkedArray] = OrderedDict()
        self._image_group_bytes = 0

    # -- what it holds ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.dataset.n_rows

    @property
    def columns(self) -> list[str | int]:
        return list(self._types)

    @property
    def column_types(self) -> dict[str | int, str]:
        return dict(self._types)

    @property
    def schema(self) -> Schema:
        return self.dataset.schema

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetTable) and other.dataset.fingerprint == \
            self.dataset.fingerprint

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"DatasetTable({self.dataset!r})"

    # -- refusing what would change it --------------------------------------------------------
    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("A lazy dataset's table is read-only: write a new dataset instead.")

    add_data = add_column = add_computed_columns = _read_only

    # -- reading ------------------------------------------------------------------------------
    def _check(self, name: Any) -> str:
        if name not in self._types:
            raise KeyError(f"No column {name!r}; the columns are {self.columns}")
        return self._types[name]

    def _read(self, rows: np.ndarray | None, names: Sequence[Any]) -> Table:
        """The rows (every row if None) of ``names`` as an in-memory Table, through the codec."""
        from embproj_panel.arrow import table_from_arrow

        with self._lock:
            self.reads += 1
        names = list(names)
        if rows is None:
            arrow = pa.concat_tables([piece.read(names) for piece in self.dataset.pieces()])
        else:
            arrow = self.dataset.read_rows(rows, names)
        return table_from_arrow(arrow.select(names),
                                [{"name": name, "type": self._types[name]} for name in names])

    def get_column(self, name: str | int, convert_to: str | None = None) -> Any:
        """A whole scalar column (numbers, labels, text), read from every file.

        Raises
        ------
        LazyColumnError
            For a vector or image column: those are read by rows (:meth:`cells`).
        """
        storage = self._check(name)
        if storage in ("vector", "image"):
            raise LazyColumnError(
                f"Column {name!r} holds {storage}s of a lazy dataset of {len(self):,} rows, "
                "which stay on disk: they are read a few rows at a time (DatasetTable.cells), "
                "never whole."
            )
        return self._read(None, [name]).get_column(name, convert_to)

    def column_nulls(self, name: str | int) -> np.ndarray | None:
        """The empty cells of a scalar column; None for vectors and images (not read whole)."""
        storage = self._check(name)
        if storage in ("vector", "image"):
            return None
        return self._read(None, [name]).column_nulls(name)

    def column_batches(self, name: str | int) -> Iterator[pa.ChunkedArray]:
        """One scalar column, a Parquet piece at a time (only that column; bounded memory).

        Each piece counts as one read (:attr:`reads`). Vector and image columns are refused
        as by :meth:`get_column`.
        """
        storage = self._check(name)
        if storage in ("vector", "image"):
            raise LazyColumnError(f"Column {name!r} holds {storage}s: it is not read whole.")
        for piece in self.dataset.pieces():
            with self._lock:
                self.reads += 1
            yield piece.read([name]).column(0)

    def get_dataframe(self) -> pd.DataFrame:
        raise LazyColumnError(
            f"A lazy dataset of {len(self):,} rows is not read into one DataFrame; take rows "
            "with DatasetTable.take(rows), or export it (embproj_panel.export.write_export)."
        )

    def iterrows(self) -> Any:
        return self.get_dataframe()

    def cells(self, name: str | int, rows: Iterable[int] | np.ndarray) -> np.ndarray:
        """The cells of ``rows`` of one column (vectors as a 2-D array), as ``get_column``."""
        storage = self._check(name)
        rows = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64)
        if storage == "image" and rows.size:
            return self._image_cells(name, rows)
        return self._read(rows, [name]).get_column(name, convert_to="numpy")

    def _image_cells(self, name: Any, rows: np.ndarray) -> np.ndarray:
        """Image cells of ``rows`` through the kept row groups (whole groups read once)."""
        from embproj_panel.arrow import table_from_arrow

        if rows.min() < 0 or rows.max() >= len(self):
            return self._read(rows, [name]).get_column(name, convert_to="numpy")  # its error
        dataset = self.dataset
        groups = dataset.row_groups_of(rows)
        wanted = np.unique(groups).tolist()
        starts = dataset.row_group_starts
        chunks: dict[int, pa.ChunkedArray] = {}
        with self._lock:
            for group in wanted:
                found = self._image_groups.get((name, group))
                if found is not None:
                    self._image_groups.move_to_end((name, group))
                    chunks[group] = found
        missing = [g for g in wanted if g not in chunks]
        if missing:
            # One read of the missing groups, whole (what reading some of their rows costs).
            read = dataset.read_row_groups(missing, [name])
            with self._lock:
                self.reads += 1
                for group in missing:
                    chunks[group] = read[group].column(0)
                    self._keep_image_group((name, group), chunks[group])
        # Each group's rows taken from its own chunk (a take over all the chunks at once would
        # join them first: a copy of every kept group), then put back in the rows' order.
        parts, order = [], []
        for group in wanted:
            mine = np.flatnonzero(groups == group)
            parts.append(chunks[group].take(pa.array(rows[mine] - starts[group])))
            order.append(mine)
        inverse = np.empty(rows.size, dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(rows.size)
        taken = pa.chunked_array([c for part in parts for c in part.chunks],
                                 type=parts[0].type).combine_chunks().take(pa.array(inverse))
        return table_from_arrow(pa.table({name: taken}), [{"name": name, "type": "image"}]
                                ).get_column(name, convert_to="numpy")

    def _keep_image_group(self, key: tuple[Any, int], cells: pa.ChunkedArray) -> None:
        """Keep one row group's image cells, within :data:`IMAGE_GROUP_CACHE_BYTES` (lock held)."""
        size = cells.nbytes
        if size > IMAGE_GROUP_CACHE_BYTES or key in self._image_groups:
            return
        self._image_groups[key] = cells
        self._image_group_bytes += size
        while self._image_group_bytes > IMAGE_GROUP_CACHE_BYTES:
            _, old = self._image_groups.popitem(last=False)
            self._image_group_bytes -= old.nbytes

    @property
    def image_cache_bytes(self) -> int:
        """Bytes of image cells kept (at most :data:`IMAGE_GROUP_CACHE_BYTES`)."""
        return self._image_group_bytes

    def read_blocks(self, rows: Iterable[int] | np.ndarray) -> np.ndarray:
        """The Parquet row group of each of ``rows``: :meth:`cells` reads whole row groups."""
        return self.dataset.row_groups_of(rows)

    def take(self, rows: Iterable[int] | np.ndarray,
             columns: Sequence[Any] | None = None) -> Table:
        """An in-memory :class:`Table` of ``rows`` (in that order) and ``columns`` (default all)."""
        rows = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64)
        names = list(self._types) if columns is None else [c for c in columns if self._check(c)]
        return self._read(rows, names)

    def color_values(self, name: str | int) -> Any:
        """What :func:`~embproj_panel.colors.color_mapping` needs of a column, kept once read.

        A numeric column (the schema's ``numeric`` kind) as float64 (NaN where empty); any
        other as a ``pd.Categorical``: integer codes (-1 where empty; pandas keeps them as
        small as the categories allow) and the distinct values,
        dictionary-encoded file by file, so no Python object per row is ever made.
        """
        with self._lock:
            if name in self._colors:
                return self._colors[name]
        storage = self._check(name)
        if storage in ("vector", "image"):
            raise LazyColumnError(f"Column {name!r} holds {storage}s: it cannot colour points.")
        if self.schema.columns[name].kind == "numeric":
            values: Any = self._read(None, [name]).get_column(name, convert_to="numpy")
            values = np.asarray(values, dtype=np.float64)
        else:
            values = self._categories(name)
        with self._lock:
            self._colors[name] = values
        return values

    def sortable(self, name: str | int) -> bool:
        """Whether the table can be sorted on ``name`` (:meth:`sort_key`): numbers, labels."""
        return name in self._types and self.schema.columns[name].kind in ("numeric",
                                                                          "categorical")

    def sort_key(self, name: str | int) -> np.ndarray:
        """A float64 key per row that sorts as the column's values (NaN where empty).

        Only numeric and categorical columns: the key is the colour values (:meth:`color_values`,
        read once, one column, and kept), for a categorical column each row's category's
        rank (numbers in numeric order, text without regard to case, as Tabulator sorts).
        A text or id column of mostly distinct values would need every value in memory, so
        it is refused.

        Raises
        ------
        LazyColumnError
            A column that is not numeric or categorical.
        """
        if not self.sortable(name):
            raise LazyColumnError(
                f"Column {name!r} of a lazy dataset cannot be sorted: sorting reads the whole "
                "column, which is done only for numbers and labels (few distinct values).")
        values = self.color_values(name)
        if not isinstance(values, pd.Categorical):
            return values
        categories = list(values.categories)
        numbers = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                      for v in categories)
        order = sorted(range(len(categories)),
                       key=(lambda i: categories[i]) if numbers
                       else (lambda i: str(categories[i]).lower()))
        rank = np.empty(len(categories) + 1, dtype=np.float64)
        rank[order] = np.arange(len(categories))
        rank[-1] = np.nan  # code -1: an empty cell
        return rank[values.codes]

    def _categories(self, name: Any) -> pd.Categorical:
        with self._lock:
            self.reads += 1
        codes, dictionaries = [], []
        for piece in self.dataset.pieces():
            column = piece.read([name]).column(0)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            encoded = pc.dictionary_encode(column.combine_chunks())
            dictionaries.append(encoded.dictionary)
            codes.append(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
        # One category list for every file: map each file's dictionary into it.
        if dictionaries:
            merged = pa.concat_arrays(dictionaries).unique()
        else:
            merged = pa.array([], type=self.dataset.arrow_schema.field(name).type)
        out = np.empty(len(self), dtype=np.int32)
        start = 0
        for local, dictionary in zip(codes, dictionaries):
            where = pc.index_in(dictionary, value_set=merged).to_numpy(zero_copy_only=False)
            mapped = np.where(local >= 0, where[np.maximum(local, 0)] if len(where) else -1, -1)
            out[start:start + len(local)] = mapped
            start += len(local)
        categories = pd.Index(merged.to_pylist(), dtype=object)
        return pd.Categorical.from_codes(out, categories=categories)
