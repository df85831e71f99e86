"""A lazy Parquet dataset: embeddings that stay on disk until a partition is needed.

``Dataset("data/*.parquet")`` (a folder, a glob or a list of files; any URL ``fsspec``
handles) reads only the files' footers when it opens: the schema, the row groups and their
row counts. Rows are read on demand, a few row groups at a time, by the Dask engine that
projects them (:mod:`embproj_panel._dask_engine`) or by :meth:`Dataset.read_rows` (tooltips,
table pages, exports).

The columns are those the run store writes (see :mod:`embproj_panel.store`): a vector column
as an Arrow ``fixed_size_list`` (a variable ``list`` of numbers is read too, if every row has
the same length), int, float, bool and str columns, and images as
``struct<png: binary, caption: string>``. Every file must have the same schema; a dataset whose
files differ is refused with a message naming them.

A dataset has a :attr:`~Dataset.fingerprint`: the SHA-256 of every file's path, size,
modification time and row-group metadata. Projections are cached under it, and every read
checks the file it reads against it, so a file that changes or vanishes while a job runs
makes the job fail (and cache nothing) instead of mixing two versions of the data.

Large tables logged to the run store are written with :func:`write_dataset` (a folder of
Parquet files with bounded row groups), and :func:`embproj_panel.load_table` returns them as a
:class:`Dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DATASET_MIN_ROWS",
    "Dataset",
    "DatasetChanged",
    "dataset_min_rows",
    "write_dataset",
]

#: Tables of at least this many rows are logged as a partitioned Parquet dataset and loaded
#: back lazily; ``$EMBPROJ_DATASET_MIN_ROWS`` overrides it (see :func:`dataset_min_rows`).
DATASET_MIN_ROWS = 1_000_000

# Rows per row group and per file when the store writes a dataset: a row group is the unit
# of every on-demand read (a tooltip reads one), so it stays small (64K rows x 128 float32 =
# 32 MB); a file holds 16 of them.
ROW_GROUP_ROWS = 65_536
FILE_ROWS = 16 * ROW_GROUP_ROWS

# Default rows per Dask partition (whole row groups are grouped up to this many rows).
PARTITION_ROWS = 262_144

_PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_GLOB_CHARACTERS = frozenset("*?[")


class DatasetChanged(RuntimeError):
    """A file of the dataset changed, vanished or appeared since the dataset was opened."""


def dataset_min_rows() -> int:
    """Rows from which the store writes a table as a lazy dataset.

    Returns
    -------
    int
        ``$EMBPROJ_DATASET_MIN_ROWS`` if set (an integer >= 1), else :data:`DATASET_MIN_ROWS`.
    """
    configured = os.environ.get("EMBPROJ_DATASET_MIN_ROWS")
    if not configured:
        return DATASET_MIN_ROWS
    try:
        value = int(configured)
    except ValueError:
        raise ValueError(
            f"EMBPROJ_DATASET_MIN_ROWS must be a whole number of rows; got {configured!r}."
        ) from None
    if value < 1:
        raise ValueError(f"EMBPROJ_DATASET_MIN_ROWS must be at least 1; got {value}.")
    return value


# -- files and pieces -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """One Parquet file as it was when the dataset was opened.

    Attributes
    ----------
    path
        The path as the file system knows it (no protocol for local files).
    size, mtime
        Bytes and modification time (``None`` where the file system does not say).
    row_groups
        Rows in each row group.
    start
        Position (in the whole dataset) of the file's first row.
    """

    path: str
    size: int | None
    mtime: str | None
    row_groups: tuple[int, ...]
    start: int

    @property
    def n_rows(self) -> int:
        return sum(self.row_groups)


@dataclass(frozen=True)
class Piece:
    """Consecutive row groups of one file: the unit of work of a Dask task.

    Picklable and small: tasks carry it to workers, which open the file themselves.
    """

    index: int
    file: FileInfo
    row_groups: tuple[int, ...]
    start: int
    n_rows: int
    fs: Any
    display: str

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The piece's rows (only ``columns``), after checking the file is unchanged.

        Raises
        ------
        DatasetChanged
            The file vanished, or its size, modification time or row groups differ from
            when the dataset was opened.
        """
        check_unchanged(self.fs, self.file, self.display)
        try:
            with self.fs.open(self.file.path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                groups = tuple(parquet.metadata.row_group(i).num_rows
                               for i in range(parquet.metadata.num_row_groups))
                if groups != self.file.row_groups:
                    raise DatasetChanged(_changed(self.display, "its row groups differ"))
                table = parquet.read_row_groups(list(self.row_groups),
                                                columns=list(columns) if columns else None)
        except FileNotFoundError:
            raise DatasetChanged(_changed(self.display, "it no longer exists")) from None
        if table.num_rows != self.n_rows:
            raise DatasetChanged(_changed(self.display, "its rows differ"))
        return table


def _changed(display: str, what: str) -> str:
    return (f"{display} changed while the dataset was in use ({what}); nothing was cached. "
            "Open the dataset again to use the new data.")


def _stat(fs: Any, path: str) -> tuple[int | None, str | None]:
    info = fs.info(path)
    size = info.get("size")
    mtime = None
    for key in ("mtime", "LastModified", "last_modified", "updated", "ETag", "etag", "created"):
        if info.get(key) is not None:
            mtime = str(info[key])
            break
    return (int(size) if size is not None else None), mtime


def check_unchanged(fs: Any, file: FileInfo, display: str) -> None:
    """Raise :class:`DatasetChanged` if ``file`` vanished or its size or mtime changed."""
    try:
        size, mtime = _stat(fs, file.path)
    except FileNotFoundError:
        raise DatasetChanged(_changed(display, "it no longer exists")) from None
    if size != file.size:
        raise DatasetChanged(_changed(display, f"size {file.size:,} -> {size:,} bytes"))
    if mtime != file.mtime:
        raise DatasetChanged(_changed(display, f"modified at {mtime}, opened at {file.mtime}"))


# -- the dataset ------------------------------------------------------------------------------


class Dataset:
    """Parquet files read lazily as one table of embeddings.

    Parameters
    ----------
    source
        A folder (every ``*.parquet``, ``*.parq`` or ``*.pq`` file below it, skipping names
        that start with ``.`` or ``_``), a glob (``"data/*.parquet"``), a file, or a list of
        any of these. URLs (``s3://``, ``gcs://``, ``memory://`` ...) work where ``fsspec``
        has a file system for them. Files are taken in sorted order.
    scheduler
        Where the Dask work runs: None (``$EMBPROJ_DASK_SCHEDULER`` if set, else Dask's local
        threaded scheduler on this machine), ``"threads"``, ``"synchronous"``, the address of
        a ``dask.distributed`` scheduler (``"tcp://host:8786"``) or a
        ``distributed.Client``.
    storage_options
        Passed to ``fsspec`` (credentials, endpoints).
    partition_rows
        Whole row groups are grouped into Dask partitions of up to this many rows (default
        262,144). Results do not depend on it.

    Raises
    ------
    FileNotFoundError
        Nothing matches ``source`` (an empty glob or folder, a missing file).
    ValueError
        The files' schemas differ (the message names the files and the differences), or a
        file is not Parquet.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike],
                 scheduler: Any = None, *, storage_options: dict[str, Any] | None = None,
                 partition_rows: int = PARTITION_ROWS) -> None:
        if not isinstance(partition_rows, (int, np.integer)) or partition_rows < 1:
            raise ValueError(f"partition_rows must be a positive integer; got {partition_rows!r}.")
        self.source = source
        self.scheduler = scheduler
        self.storage_options = dict(storage_options or {})
        self.partition_rows = int(partition_rows)
        self.fs, paths = _resolve(source, self.storage_options)
        self.files, self.arrow_schema = _open_files(self.fs, paths, self._display)
        self.column_types = {field.name: _storage(field.type) for field in self.arrow_schema}
        self._dims = _vector_dims(self)
        self.fingerprint = _fingerprint(self)
        self._starts = np.array([f.start for f in self.files] + [self.n_rows], dtype=np.int64)
        self._group_starts: np.ndarray | None = None
        self._schema = None

    # -- what it holds ------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows in the whole dataset (from the files' metadata)."""
        return sum(f.n_rows for f in self.files)

    def __len__(self) -> int:
        return self.n_rows

    @property
    def columns(self) -> list[str]:
        """Column names, in file order."""
        return list(self.arrow_schema.names)

    def vector_dim(self, column: str) -> int:
        """Length of the vectors of ``column`` (a vector column)."""
        return self._dims[column]

    @property
    def schema(self):
        """The :class:`~embproj_panel.schema.Schema`: kinds judged from the first row group.

        Vector and image columns are classified by their Arrow types alone; labels, ids and
        numbers from the values of the first row group (at most a few tens of thousands of
        rows are read, never the whole dataset).
        """
        if self._schema is None:
            from embproj_panel.schema import build_schema, column_info

            scalar = [name for name, kind in self.column_types.items()
                      if kind in ("int", "float", "bool", "str")]
            first = self.pieces(partition_rows=1)[0].read(scalar) if scalar else None
            infos = []
            for name, storage in self.column_types.items():
                if storage == "vector":
                    values = np.empty((0, self._dims[name]), dtype=np.float32)
                    infos.append(column_info(name, "vector", values))
                elif storage == "image":
                    infos.append(column_info(name, "image", np.empty(0, dtype=object)))
                elif storage in ("int", "float", "bool", "str"):
                    column = first.column(name)
                    nulls = column.is_null().to_numpy(zero_copy_only=False)
                    values = column.to_numpy(zero_copy_only=False)
                    infos.append(column_info(name, storage, values, nulls))
                elif storage == "none":
                    infos.append(column_info(name, "none", np.empty(0, dtype=object)))
            self._schema = build_schema(infos)
        return self._schema

    def __repr__(self) -> str:
        return (f"Dataset({self.n_rows:,} rows x {len(self.column_types)} columns in "
                f"{len(self.files)} file(s), {self.columns})")

    # -- reading ------------------------------------------------------------------------------
    def _display(self, path: str) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else self.fs.unstrip_protocol(path)

    def pieces(self, partition_rows: int | None = None) -> list[Piece]:
        """The dataset cut into Dask partitions: whole row groups of one file, in order.

        Parameters
        ----------
        partition_rows
            Rows per partition at most (a larger row group is a partition of its own);
            default :attr:`partition_rows`.
        """
        limit = partition_rows or self.partition_rows
        pieces: list[Piece] = []
        for file in self.files:
            groups: list[int] = []
            start = rows = 0
            position = file.start
            for group, count in enumerate(file.row_groups):
                if groups and rows + count > limit:
                    pieces.append(Piece(len(pieces), file, tuple(groups), start, rows, self.fs,
                                        self._display(file.path)))
                    groups, rows = [], 0
                if not groups:
                    start = position
                groups.append(group)
                rows += count
                position += count
            if groups:
                pieces.append(Piece(len(pieces), file, tuple(groups), start, rows, self.fs,
                                    self._display(file.path)))
        return pieces

    def row_groups_of(self, positions: Iterable[int] | np.ndarray) -> np.ndarray:
        """The row group (numbered across the whole dataset, in file order) of each position.

        :meth:`read_rows` reads whole row groups: rows of one group cost one read.
        """
        positions = np.asarray(list(positions) if not isinstance(positions, np.ndarray)
                               else positions, dtype=np.int64).ravel()
        return np.searchsorted(self.row_group_starts, positions, side="right") - 1

    @property
    def row_group_starts(self) -> np.ndarray:
        """The first position of each row group (numbered as :meth:`row_groups_of` does)."""
        if self._group_starts is None:
            self._group_starts = np.concatenate(
                [f.start + np.cumsum((0, *f.row_groups[:-1]), dtype=np.int64)
                 for f in self.files if f.row_groups] or [np.zeros(0, dtype=np.int64)])
        return self._group_starts

    def read_rows(self, positions: Iterable[int] | np.ndarray,
                  columns: Sequence[str] | None = None) -> pa.Table:
        """Rows at ``positions`` (in the whole dataset), reading only their row groups.

        Parameters
        ----------
        positions
            Row positions, in any order (the result follows it; repeats are allowed).
        columns
            Columns to read (default every column).

        Returns
        -------
        pyarrow.Table
            One row per position.

        Raises
        ------
        IndexError
            A position outside ``0 .. n_rows - 1``.
        DatasetChanged
            A file changed since the dataset was opened.
        """
        positions = np.asarray(list(positions) if not isinstance(positions, np.ndarray)
                               else positions, dtype=np.int64).ravel()
        if positions.size and (positions.min() < 0 or positions.max() >= self.n_rows):
            bad = positions[(positions < 0) | (positions >= self.n_rows)][0]
            raise IndexError(f"Row {int(bad)} is outside this dataset's {self.n_rows:,} rows.")
        if columns is not None:
            unknown = [c for c in columns if c not in self.column_types]
            if unknown:
                raise KeyError(f"No column(s) {unknown} in this dataset; it has {self.columns}.")
        names = list(columns) if columns is not None else self.columns
        if not positions.size:
            return self.arrow_schema.empty_table().select(names)
        parts, order = [], []
        file_of = np.searchsorted(self._starts, positions, side="right") - 1
        for index in np.unique(file_of):
            file = self.files[index]
            mine = np.flatnonzero(file_of == index)
            local = positions[mine] - file.start
            bounds = np.cumsum((0, *file.row_groups))
            group_of = np.searchsorted(bounds, local, side="right") - 1
            groups = np.unique(group_of)
            piece = Piece(-1, file, tuple(int(g) for g in groups),
                          file.start + int(bounds[groups[0]]),
                          int(sum(file.row_groups[g] for g in groups)), self.fs,
                          self._display(file.path))
            table = piece.read(names)
            # Rows of the chosen groups are concatenated: map each local row into them.
            offsets = np.zeros(len(file.row_groups), dtype=np.int64)
            offsets[groups] = np.cumsum([0] + [file.row_groups[g] for g in groups[:-1]])
            parts.append(table.take(pa.array(offsets[group_of] + local - bounds[group_of])))
            order.append(mine)
        result = pa.concat_tables(parts)
        inverse = np.empty(positions.size, dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(positions.size)
        return result.take(pa.array(inverse))

    def read_row_groups(self, groups: Iterable[int],
                        columns: Sequence[str] | None = None) -> dict[int, pa.Table]:
        """Whole row groups (numbered as :meth:`row_groups_of` does): group -> its rows.

        One read per file, and no row is copied (each group is a slice of its file's read).

        Raises
        ------
        DatasetChanged
            A file changed since the dataset was opened.
        """
        wanted = sorted({int(g) for g in groups})
        starts = self.row_group_starts
        names = list(columns) if columns is not None else self.columns
        out: dict[int, pa.Table] = {}
        first = 0  # the dataset-wide number of each file's first group
        for file in self.files:
            count = len(file.row_groups)
            local = [g - first for g in wanted if first <= g < first + count]
            if local:
                piece = Piece(-1, file, tuple(local), int(starts[first + local[0]]),
                              int(sum(file.row_groups[g] for g in local)), self.fs,
                              self._display(file.path))
                table = piece.read(names)
                at = 0
                for g in local:
                    out[first + g] = table.slice(at, file.row_groups[g])
                    at += file.row_groups[g]
            first += count
        return out

    def to_table(self):
        """Every row in memory, as the :class:`~embproj_panel.table.Table` the store loads.

        For code that needs the whole table (the app, until it draws from a Dataset);
        columns of types the store never writes (``"other"``) are left out.
        """
        from embproj_panel.arrow import table_from_arrow

        specs = [{"name": name, "type": kind} for name, kind in self.column_types.items()
                 if kind != "other"]
        table = pa.concat_tables([piece.read([s["name"] for s in specs])
                                  for piece in self.pieces()])
        return table_from_arrow(table, specs)

    def check(self) -> None:
        """Raise :class:`DatasetChanged` if any file changed, vanished or appeared."""
        for file in self.files:
            check_unchanged(self.fs, file, self._display(file.path))
        _, paths = _resolve(self.source, self.storage_options)
        if sorted(paths) != sorted(f.path for f in self.files):
            added = sorted(set(paths) - {f.path for f in self.files})
            raise DatasetChanged(
                f"The dataset's files changed while it was in use: {len(added)} file(s) "
                f"appeared ({', '.join(map(self._display, added[:3]))}); nothing was cached. "
                "Open the dataset again to use the new data."
            )

# -- opening ----------------------------------------------------------------------------------


def _resolve(source: Any, storage_options: dict[str, Any]) -> tuple[Any, list[str]]:
    """The file system and the sorted, de-duplicated Parquet paths that ``source`` names."""
    import fsspec

    if isinstance(source, (str, os.PathLike)):
        sources = [source]
    elif isinstance(source, Iterable):
        sources = list(source)
    else:
        raise TypeError(
            f"A Dataset is read from a folder, a glob, a file or a list of them; got "
            f"{type(source).__name__}."
        )
    if not sources:
        raise FileNotFoundError("A Dataset needs at least one file; the list is empty.")
    fs = None
    paths: list[str] = []
    for item in sources:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"File names must be str or paths; got {type(item).__name__}.")
        text = os.fspath(item)
        item_fs, path = fsspec.core.url_to_fs(text, **storage_options)
        if fs is None:
            fs = item_fs
        elif type(item_fs) is not type(fs):
            raise ValueError(f"All files of a dataset must be on one file system; {text!r} is "
                             f"not on the first one's ({fs.protocol}).")
        if _GLOB_CHARACTERS & set(path):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise FileNotFoundError(f"No files match {text!r}.")
        elif fs.isdir(path):
            base = path.rstrip("/")
            found = sorted(
                p for p in fs.find(path)
                if p.endswith(_PARQUET_SUFFIXES)
                and not any(part.startswith((".", "_"))
                            for part in p[len(base):].strip("/").split("/"))
            )
            if not found:
                raise FileNotFoundError(
                    f"No Parquet files ({', '.join('*' + s for s in _PARQUET_SUFFIXES)}) in the "
                    f"folder {text!r}."
                )
        elif fs.isfile(path):
            found = [path]
        else:
            raise FileNotFoundError(f"No such file or folder: {text!r}.")
        paths.extend(found)
    return fs, sorted(dict.fromkeys(paths))


def _open_files(fs: Any, paths: list[str], display) -> tuple[list[FileInfo], pa.Schema]:
    """Each file's size, mtime and row groups; the shared schema (or a refusal naming files)."""
    files: list[FileInfo] = []
    schemas: list[pa.Schema] = []
    start = 0
    for path in paths:
        size, mtime = _stat(fs, path)
        try:
            with fs.open(path, "rb") as handle:
                metadata = pq.ParquetFile(handle).metadata
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{display(path)} is not a readable Parquet file: {exc}") from None
        groups = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
        files.append(FileInfo(path, size, mtime, groups, start))
        schemas.append(metadata.schema.to_arrow_schema().remove_metadata())
        start += sum(groups)
    first = schemas[0]
    differing = [(file, schema) for file, schema in zip(files, schemas) if not schema.equals(first)]
    if differing:
        lines = [f"{display(file.path)}: {_schema_difference(first, schema)}"
                 for file, schema in differing[:5]]
        more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
        raise ValueError(
            f"The files do not share one schema, so they cannot be read as one dataset. "
            f"Compared with {display(files[0].path)} ({_describe(first)}): "
            + "; ".join(lines) + more + "."
        )
    return files, first


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def _schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    missing = [name for name in first.names if name not in other.names]
    extra = [name for name in other.names if name not in first.names]
    changed = [f"{f.name!r} is {other.field(f.name).type} (not {f.type})"
               for f in first if f.name in other.names and other.field(f.name).type != f.type]
    parts = []
    if missing:
        parts.append(f"lacks {', '.join(map(repr, missing))}")
    if extra:
        parts.append(f"has extra {', '.join(map(repr, extra))}")
    parts.extend(changed)
    if not parts:
        parts.append("the same columns in another order")
    return ", ".join(parts)


def _storage(arrow_type: pa.DataType) -> str:
    """The store's storage name for an Arrow type (``"other"`` for what it never writes)."""
    if pa.types.is_fixed_size_list(arrow_type) or pa.types.is_list(arrow_type) \
            or pa.types.is_large_list(arrow_type):
        value = arrow_type.value_type
        if pa.types.is_floating(value) or pa.types.is_integer(value):
            return "vector"
        return "other"
    if pa.types.is_struct(arrow_type):
        from embproj_panel.arrow import image_fields

        return "image" if image_fields(arrow_type) else "other"
    if pa.types.is_dictionary(arrow_type):
        return _storage(arrow_type.value_type)
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "str"
    if pa.types.is_null(arrow_type):
        return "none"
    return "other"


def _vector_dims(dataset: Dataset) -> dict[str, int]:
    """Each vector column's length: from the type, or the first row of a variable list."""
    dims = {}
    for field in dataset.arrow_schema:
        if dataset.column_types[field.name] != "vector":
            continue
        if pa.types.is_fixed_size_list(field.type):
            dims[field.name] = field.type.list_size
            continue
        # A variable-length list: its first non-empty row sets the length every row must have.
        for piece in dataset.pieces(partition_rows=1):
            lengths = pc.list_value_length(piece.read([field.name]).column(0)).drop_null()
            if len(lengths):
                dims[field.name] = int(lengths[0].as_py())
                break
        else:
            dims[field.name] = 0
    return dims


def _fingerprint(dataset: Dataset) -> str:
    """SHA-256 of every file's path, size, mtime and row groups, and the schema."""
    document = {
        "schema": _describe(dataset.arrow_schema),
        "files": [[dataset._display(f.path), f.size, f.mtime, list(f.row_groups)]
                  for f in dataset.files],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


# -- the feature matrix of one piece ----------------------------------------------------------


def feature_columns(dataset: Dataset, columns: str | Sequence[str] | None) -> list[str]:
    """The columns to project: the schema's default embedding unless given.

    Raises
    ------
    ValueError
        An unknown column, one that holds no numbers (images, text), or no default.
    """
    if columns is None:
        chosen = [str(c) for c in dataset.schema.default_embedding]
        if not chosen:
            raise ValueError(
                f"This dataset has no vector column and no numeric columns to project; its "
                f"columns are {dataset.columns}. Name the columns with columns=."
            )
        return chosen
    chosen = [columns] if isinstance(columns, str) else [str(c) for c in columns]
    if not chosen:
        raise ValueError("Nothing to project: no columns were selected.")
    for name in chosen:
        if name not in dataset.column_types:
            raise ValueError(f"No column {name!r} in this dataset; its columns are "
                             f"{dataset.columns}.")
        kind = dataset.column_types[name]
        if kind not in ("vector", "float", "int", "bool"):
            raise ValueError(f"Column {name!r} holds {kind} values, not numbers: it cannot "
                             "be projected.")
    return chosen


def feature_names(dataset: Dataset, columns: list[str]) -> list[str]:
    """One name per matrix column (``emb[0]`` ... for a vector column), as features.py."""
    names: list[str] = []
    for name in columns:
        if dataset.column_types[name] == "vector":
            names.extend(f"{name}[{i}]" for i in range(dataset.vector_dim(name)))
        else:
            names.append(name)
    return names


def piece_matrix(piece: Piece, columns: list[str], dims: dict[str, int]
                 ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """The float32 features of one piece's usable rows.

    Returns
    -------
    matrix
        ``(m, d)`` float32 of the rows kept.
    rows
        Their int64 positions in the whole dataset (ascending).
    excluded
        ``(position, reason)`` for each row left out (an empty cell, NaN or inf).

    Raises
    ------
    ValueError
        A variable-length vector column whose row has another length than the dataset's
        vectors (naming the file, the row and both lengths).
    DatasetChanged
        The file changed since the dataset was opened.
    """
    table = piece.read(columns)
    m = table.num_rows
    blocks, reasons = [], []
    for name in columns:
        column = table.column(name).combine_chunks()
        if dims.get(name) is not None:
            block = _vector_block(column, dims[name], piece, name)
        else:
            block = column.to_numpy(zero_copy_only=False).astype(np.float32).reshape(m, 1)
        empty = column.is_null().to_numpy(zero_copy_only=False)
        blocks.append(block)
        reasons.append((name, empty))
    matrix = np.hstack(blocks) if len(blocks) > 1 else np.ascontiguousarray(blocks[0])
    bad = np.zeros(m, dtype=bool)
    why: dict[int, str] = {}
    start = 0
    for (name, empty), block in zip(reasons, blocks):
        width = block.shape[1]
        finite = np.isfinite(matrix[:, start:start + width]).all(axis=1)
        for row in np.flatnonzero(~finite & ~bad):
            why[int(row)] = f"{name!r}: empty" if empty[row] else f"{name!r}: NaN or inf"
        bad |= ~finite
        start += width
    keep = ~bad
    rows = piece.start + np.flatnonzero(keep)
    excluded = [(piece.start + row, why[row]) for row in sorted(why)]
    if bad.any():
        matrix = matrix[keep]
    return np.ascontiguousarray(matrix, dtype=np.float32), rows.astype(np.int64), excluded


def _vector_block(column: pa.Array, dim: int, piece: Piece, name: str) -> np.ndarray:
    """``(m, dim)`` float32 of a vector column; empty cells are NaN rows."""
    m = len(column)
    if pa.types.is_fixed_size_list(column.type):
        child = column.values.slice(column.offset * dim, m * dim)
        values = child.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        block = values.reshape(m, dim)
        if column.null_count:
            block = block.copy()
            block[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
        return block
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(present & (lengths != dim))
    if wrong.size:
        row = int(wrong[0])
        raise ValueError(
            f"Vectors of different lengths in column {name!r}: row {piece.start + row:,} (in "
            f"{piece.display}) has {int(lengths[row])} values, but this dataset's vectors have "
            f"{dim} (the length of the first row). Every row must have the same length."
        )
    block = np.full((m, dim), np.nan, dtype=np.float32)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    block[present] = flat.reshape(-1, dim)
    return block


# -- writing ----------------------------------------------------------------------------------


def write_dataset(table: pa.Table, folder: str | os.PathLike, *, file_rows: int | None = None,
                  row_group_rows: int | None = None) -> Path:
    """Write ``table`` as a folder of Parquet files with bounded row groups, atomically.

    The files are written into a temporary sibling folder that is renamed to ``folder`` at
    the end, so a reader never sees half a dataset. Vector columns skip dictionary encoding
    and statistics (high-entropy floats gain nothing from them), as the store's single files,
    and compression (see :func:`write_part`).

    Parameters
    ----------
    table
        The rows, as the store's codec builds them.
    folder
        The dataset folder to create (it must not exist).
    file_rows, row_group_rows
        Rows per file and per row group (default :data:`FILE_ROWS`, :data:`ROW_GROUP_ROWS`).

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; a dataset is never overwritten.")
    file_rows = FILE_ROWS if file_rows is None else file_rows
    row_group_rows = ROW_GROUP_ROWS if row_group_rows is None else row_group_rows
    if file_rows < 1 or row_group_rows < 1:
        raise ValueError("file_rows and row_group_rows must be positive.")
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        n_files = max(1, -(-table.num_rows // file_rows))
        for index in range(n_files):
            write_part(table.slice(index * file_rows, file_rows), temporary / part_name(index),
                       row_group_rows)
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder


def part_name(index: int) -> str:
    """The file name of a dataset's ``index``-th file (sorted order is file order)."""
    return f"part-{index:05d}.parquet"


def write_part(table: pa.Table, path: str | os.PathLike, row_group_rows: int | None = None
               ) -> None:
    """Write one file of a dataset, flushed to disk (the settings of :func:`write_dataset`)."""
    scalar = [f.name for f in table.schema if not pa.types.is_fixed_size_list(f.type)]
    # Vectors uncompressed: Snappy saved 1% of a float32 embedding's bytes and cost 40% of
    # the time to read it back (every projection reads every vector).
    compression = {path: "snappy" if field.name in scalar else "none"
                   for field in table.schema for path in _leaf_paths(field.name, field.type)}
    pq.write_table(table, path, row_group_size=row_group_rows or ROW_GROUP_ROWS,
                   use_dictionary=scalar, write_statistics=scalar, compression=compression)
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _leaf_paths(name: str, arrow_type: pa.DataType) -> list[str]:
    """Parquet's column paths under a field (a per-column option is given per leaf)."""
    if pa.types.is_struct(arrow_type):
        return [path for i in range(arrow_type.num_fields)
                for path in _leaf_paths(f"{name}.{arrow_type.field(i).name}",
                                        arrow_type.field(i).type)]
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) \
            or pa.types.is_fixed_size_list(arrow_type):
        return _leaf_paths(f"{name}.list.element", arrow_type.value_type)
    if pa.types.is_dictionary(arrow_type):
        return _leaf_paths(name, arrow_type.value_type)
    return [name]
