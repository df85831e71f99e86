"""Export rows of a table with their 2-D coordinates, as a DataFrame, CSV or Parquet.

:func:`selection_frame` joins a table and a projection into one DataFrame: the selected rows
(or all of them), each with its ``x`` and ``y``. :func:`to_csv_bytes` and
:func:`to_parquet_bytes` turn that frame into the bytes of a download; the app offers both, and
``projector.selected_dataframe`` is the same frame in Python. :func:`write_export` writes the
same files from :func:`selection_chunks`, a chunk of rows at a time, so a lazy dataset of any
size (:class:`~embproj_panel.dataset_table.DatasetTable`) is exported in bounded memory.

What each format keeps
----------------------
================  ======================================  ==================================
column            CSV                                     Parquet
================  ======================================  ==================================
row position      first column, ``row``                   first column, ``row``
x, y              float32 values, empty if not projected  float32, null if not projected
scalars           as text                                 typed (nullable ints and bools)
vectors           left out (see :func:`csv_omitted`)      fixed-size lists of their floats
images            left out (see :func:`csv_omitted`)      ``struct<png, caption>``
================  ======================================  ==================================

The Parquet layout of vectors and images is the run store's (both write them through
:mod:`embproj_panel.arrow`), so a Parquet export uploads again through
:func:`embproj_panel.uploads.parse_upload` with its vectors and images (and captions) restored. CSV is for spreadsheets, so it neutralises *formula injection*:
any text cell (and any column name) that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading apostrophe, so that Excel, LibreOffice or Google Sheets show it
as text instead of evaluating it (OWASP's advice for CSV injection). Numbers are not changed:
``-1.5`` stays a number.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from embproj_panel.dataset_table import DatasetTable
from embproj_panel.images import Image
from embproj_panel.table import Table

if TYPE_CHECKING:
    from embproj_panel.compute import Projection

__all__ = [
    "FORMULA_PREFIXES",
    "KINDS_ATTR",
    "csv_omitted",
    "selection_chunks",
    "selection_frame",
    "to_csv_bytes",
    "to_parquet_bytes",
    "write_export",
]

#: A text cell starting with one of these is a formula to a spreadsheet (OWASP list).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: ``DataFrame.attrs`` key where :func:`selection_frame` records its vector and image columns.
KINDS_ATTR = "embproj_column_kinds"


def _free_name(base: str, taken: Iterable[Any]) -> str:
    """``base``, or ``base`` with underscores appended until no column has that name."""
    taken = set(taken)
    name = base
    while name in taken:
        name += "_"
    return name


def _positions(rows: Any, n_rows: int) -> np.ndarray:
    """Validated, sorted, unique row positions (``None`` means every row)."""
    if rows is None:
        return np.arange(n_rows, dtype=np.int64)
    positions = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows)
    if positions.size == 0:
        return np.empty(0, dtype=np.int64)
    if positions.ndim != 1:
        raise ValueError(f"rows must be a 1-D list of row positions; got shape {positions.shape}")
    if positions.dtype == bool or not np.issubdtype(positions.dtype, np.integer):
        raise TypeError(f"rows must be integer row positions; got {positions.dtype} values")
    out_of_range = positions[(positions < 0) | (positions >= n_rows)]
    if out_of_range.size:
        raise ValueError(
            f"rows {out_of_range[:3].tolist()} are not positions in a table of {n_rows} rows"
        )
    return np.unique(positions.astype(np.int64))


def _coordinates(projection: Projection | None, n_rows: int) -> np.ndarray:
    """An (n_rows, 2) float32 array: each row's coordinates, NaN where it was not projected."""
    coords = np.full((n_rows, 2), np.nan, dtype=np.float32)
    if projection is None:
        return coords
    rows = np.asarray(projection.rows)
    values = np.asarray(projection.coords)
    if values.ndim != 2 or values.shape[1] != 2 or len(values) != len(rows):
        raise ValueError(
            f"projection.coords must be (n, 2) aligned with projection.rows; got shape "
            f"{values.shape} for {len(rows)} rows"
        )
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(
            f"The projection refers to row {int(rows.max())}, but the table has {n_rows} rows: "
            "was it computed from another table?"
        )
    coords[rows] = values
    return coords


def _cells(table: Table, name: Any, storage: str, positions: np.ndarray) -> Any:
    """One column's cells at ``positions``, typed as ``Table.get_dataframe`` types them."""
    nulls = table.column_nulls(name)
    nulls = None if nulls is None else nulls[positions]
    values = table.get_column(name, convert_to="numpy")
    if storage == "none":
        return np.full(len(positions), None, dtype=object)
    if storage == "vector":
        cells = np.empty(len(positions), dtype=object)
        cells[:] = list(values[positions])
        if nulls is not None:
            cells[nulls] = None
        return cells
    # get_column fills the gaps of int and bool columns with NaN/None; nullable arrays keep
    # the ints ints and the gaps empty, as get_dataframe does.
    if storage == "int" and nulls is not None:
        taken = np.where(nulls, 0, values[positions]).astype(np.int64)
        return pd.arrays.IntegerArray(taken, nulls)
    if storage == "bool" and nulls is not None:
        taken = np.where(nulls, False, values[positions]).astype(bool)
        return pd.arrays.BooleanArray(taken, nulls)
    return values[positions]


def selection_frame(
    table: Table,
    projection: Projection | None,
    rows: Iterable[int] | np.ndarray | None = None,
    *,
    vectors: bool = True,
    images: bool = True,
    extra: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The chosen rows of ``table`` with their 2-D coordinates.

    Parameters
    ----------
    table
        The table that was projected.
    projection
        Its projection (``coords`` aligned with ``rows``, positions into ``table``), or None
        when there is none yet (every coordinate is then NaN).
    rows
        Row positions to export (e.g. the selection), in any order, repeats allowed; None
        exports every row. An empty selection gives an empty frame with all the columns.
    vectors, images
        Whether to keep the vector and image columns (as 1-D arrays and ``Image`` objects,
        as ``Table.get_dataframe`` does). Leave them out for a CSV of a large table.
    extra
        Name -> one value per *table* row: columns computed from the layout that are not in
        the table (``faithfulness``), added after the table's columns (a name the table
        already has gets underscores appended).

    Returns
    -------
    pandas.DataFrame
        Indexed by row position (index name ``"row"``) in table order, each row once; the
        columns are ``x`` and ``y`` (float32) then the table's columns in order. A row the
        projection left out (NaN or infinite values, for example) is kept, with NaN ``x`` and
        ``y``: an export never drops a row silently. If the table already has a column named
        ``x``, ``y`` or ``row``, underscores are appended to the new name (``x_``).

    Raises
    ------
    ValueError
        If a row position is outside the table, or the projection does not fit the table.
    TypeError
        If ``rows`` are not integers.
    """
    n_rows = len(table)
    positions = _positions(rows, n_rows)
    return _frame(table, _coordinates(projection, n_rows), positions, vectors, images,
                  _extra_columns(extra, n_rows))


def _extra_columns(extra: Mapping[str, Any] | None, n_rows: int) -> dict[str, np.ndarray]:
    """``extra`` as arrays of one value per table row, or a ValueError naming the column."""
    out = {}
    for name, values in (extra or {}).items():
        values = np.asarray(values)
        if len(values) != n_rows:
            raise ValueError(f"extra column {name!r} has {len(values):,} values for a table "
                             f"of {n_rows:,} rows")
        out[name] = values
    return out


def _frame(table: Table, coords: np.ndarray, positions: np.ndarray, vectors: bool,
           images: bool, extra: dict[str, np.ndarray]) -> pd.DataFrame:
    """:func:`selection_frame` of validated ``positions``, given every row's coordinates and
    the validated ``extra`` columns."""
    names = table.columns
    x_name = _free_name("x", names)
    y_name = _free_name("y", [*names, x_name])
    data: dict[Any, Any] = {x_name: coords[positions, 0], y_name: coords[positions, 1]}
    kept = {name: storage for name, storage in table.column_types.items()
            if (storage != "vector" or vectors) and (storage != "image" or images)}
    # A lazy dataset's table reads these rows of these columns only, from their row groups.
    source, where = ((table.take(positions, list(kept)), np.arange(len(positions)))
                     if isinstance(table, DatasetTable) else (table, positions))
    for name, storage in kept.items():
        data[name] = _cells(source, name, storage, where)
    for name, values in extra.items():
        data[_free_name(name, data)] = values[positions]
    index = pd.Index(positions, name=_free_name("row", [*data]))
    frame = pd.DataFrame(data, index=index, columns=list(data))
    # The writers need to know which columns hold vectors and images even when the frame is
    # empty and there is no cell to look at.
    frame.attrs[KINDS_ATTR] = {
        name: storage
        for name, storage in table.column_types.items()
        if storage in ("vector", "image") and name in data
    }
    return frame


# -- writers -----------------------------------------------------------------------------------


def _first_present(series: pd.Series) -> Any:
    present = series[series.notna()] if series.dtype == object else series
    return present.iloc[0] if len(present) else None


def _special_kind(frame: pd.DataFrame, name: Any) -> str | None:
    """``"vector"`` or ``"image"`` for a column holding those cells, else None.

    Taken from ``frame.attrs`` when :func:`selection_frame` recorded it, else from the cells.
    """
    declared = frame.attrs.get(KINDS_ATTR, {})
    if name in declared:
        return declared[name]
    series = frame[name]
    if series.dtype != object:
        return None
    first = _first_present(series)
    if isinstance(first, Image):
        return "image"
    if isinstance(first, (np.ndarray, list, tuple)):
        return "vector"
    return None


def csv_omitted(frame: pd.DataFrame) -> list[Any]:
    """The columns :func:`to_csv_bytes` leaves out of ``frame``: its vectors and images.

    The app says so next to the CSV download, so nothing goes missing without a word.
    """
    return [name for name in frame.columns if _special_kind(frame, name) is not None]


def _defuse(text: Any) -> Any:
    if isinstance(text, str) and text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _defuse_column(series: pd.Series) -> pd.Series:
    if not (
        pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)
    ):
        return series
    risky = np.fromiter(
        (isinstance(cell, str) and cell.startswith(FORMULA_PREFIXES) for cell in series),
        dtype=bool,
        count=len(series),
    )
    if not risky.any():
        return series
    out = series.astype(object)  # a copy: the caller's frame is not changed
    out[risky] = ["'" + cell for cell in series[risky]]
    return out


def to_csv_bytes(frame: pd.DataFrame, header: bool = True) -> bytes:
    """``frame`` as UTF-8 CSV, safe to open in a spreadsheet.

    The index (row positions) is the first column. Vector and image columns are left out
    (:func:`csv_omitted` names them; use Parquet to keep them). Text cells and column names
    that start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return get a leading
    apostrophe so that spreadsheets do not run them as formulas; numbers are untouched.
    Missing values are empty cells.

    Parameters
    ----------
    frame
        Typically a :func:`selection_frame`.
    header
        Whether to begin with the line of column names (the chunks after the first of a
        streamed export have none).

    Returns
    -------
    bytes
        The CSV file's contents.
    """
    omitted = set(csv_omitted(frame))
    kept = [name for name in frame.columns if name not in omitted]
    out = pd.DataFrame(
        {i: _defuse_column(frame[name]) for i, name in enumerate(kept)}, index=frame.index
    )
    out.columns = [_defuse(str(name)) for name in kept]
    out.index.name = _defuse(str(frame.index.name)) if frame.index.name is not None else None
    buffer = io.StringIO()
    out.to_csv(buffer, index=True, header=header, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


def _arrow_cells(name: Any, series: pd.Series, kind: str) -> Any:
    """A column of vector or Image cells in the run store's layout (:mod:`embproj_panel.arrow`)."""
    import pyarrow as pa

    from embproj_panel.arrow import column_to_arrow
    from embproj_panel.columns import column_from_series

    column = column_from_series(name, series.reset_index(drop=True))
    if column.storage == "none":  # no cell to look at, or every one empty
        if kind == "image":
            return column_to_arrow("image", column.values, column.nulls)
        return pa.nulls(len(series), type=pa.list_(pa.float32()))  # no vector to take a length from
    if column.storage != kind:
        raise TypeError(f"column {name!r} is declared {kind} but holds {column.storage} cells")
    return column_to_arrow(column.storage, column.values, column.nulls)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as a Parquet file that keeps every column.

    The index (row positions) becomes the first column; vectors are Arrow fixed-size lists
    of their float type, images ``struct<png: binary, caption: string>`` (the run store's
    layout), nullable ints and bools stay nullable, NaN coordinates are nulls. Uploading the
    file again (:func:`embproj_panel.uploads.parse_upload`) restores vectors and images.

    Parameters
    ----------
    frame
        Typically a :func:`selection_frame`.

    Returns
    -------
    bytes
        The Parquet file's contents.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(_arrow_frame(frame), buffer)
    return buffer.getvalue().to_pybytes()


def _arrow_frame(frame: pd.DataFrame) -> Any:
    """``frame`` as the Arrow table :func:`to_parquet_bytes` writes (the index first)."""
    import pyarrow as pa

    index_name = frame.index.name if frame.index.name is not None else "row"
    names = [str(index_name)]
    arrays = [pa.array(frame.index.to_numpy())]
    for name in frame.columns:
        series = frame[name]
        kind = _special_kind(frame, name)
        if kind is not None:
            arrays.append(_arrow_cells(name, series, kind))
        else:
            arrays.append(pa.array(series, from_pandas=True))
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


# -- streaming: any number of rows, a chunk in memory at a time ----------------------------------

#: Rows per chunk of :func:`selection_chunks` (a lazy dataset's row group).
CHUNK_ROWS = 65_536


def selection_chunks(
    table: Table,
    projection: Projection | None,
    rows: Iterable[int] | np.ndarray | None = None,
    *,
    vectors: bool = True,
    images: bool = True,
    extra: Mapping[str, np.ndarray] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """:func:`selection_frame` in consecutive chunks of at most ``chunk_rows`` rows.

    Concatenated, the chunks are the frame :func:`selection_frame` returns. A lazy table
    (:class:`~embproj_panel.dataset_table.DatasetTable`) reads each chunk's rows from its
    Parquet row groups, so only one chunk of cells is in memory at a time.
    """
    n_rows = len(table)
    positions = _positions(rows, n_rows)
    coords = _coordinates(projection, n_rows)
    columns = _extra_columns(extra, n_rows)
    for start in range(0, max(len(positions), 1), chunk_rows):
        yield _frame(table, coords, positions[start:start + chunk_rows], vectors, images,
                     columns)


def write_export(
    table: Table,
    projection: Projection | None,
    target: str | os.PathLike | Any,
    format: str = "parquet",
    rows: Iterable[int] | np.ndarray | None = None,
    *,
    extra: Mapping[str, np.ndarray] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Write rows of ``table`` with their coordinates to ``target``, a chunk at a time.

    The same file :func:`to_parquet_bytes` / :func:`to_csv_bytes` make of a
    :func:`selection_frame`, written from :func:`selection_chunks` so that a lazy dataset of
    any size is exported in the memory of one chunk.

    Parameters
    ----------
    table, projection, rows, extra
        As :func:`selection_frame` (``rows=None``: every row).
    target
        A path, or a binary file object.
    format
        ``"parquet"`` (every column; one row group per chunk) or ``"csv"`` (vectors and
        images left out, formula-safe, see :func:`to_csv_bytes`).

    Returns
    -------
    int
        The number of rows written.
    """
    import pyarrow.parquet as pq

    if format not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv'; got {format!r}")
    keep = format == "parquet"
    chunks = selection_chunks(table, projection, rows, vectors=keep, images=keep, extra=extra,
                              chunk_rows=chunk_rows)
    written = 0
    close = isinstance(target, (str, os.PathLike))
    sink = open(target, "wb") if close else target  # noqa: SIM115 - closed below
    writer = None
    try:
        for i, frame in enumerate(chunks):
            if format == "csv":
                sink.write(to_csv_bytes(frame, header=i == 0))
            else:
                arrow = _arrow_frame(frame)
                if writer is None:
                    writer = pq.ParquetWriter(sink, arrow.schema)
                writer.write_table(arrow.cast(writer.schema))
            written += len(frame)
    finally:
        if writer is not None:
            writer.close()
        if close:
            sink.close()
    return written
