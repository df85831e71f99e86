"""Turn a table (or DataFrame, or 2-D array) into the one float32 matrix a reducer fits.

:func:`prepare_features` picks the embedding columns (the table's smart default unless told
otherwise), reads numbers written as text, leaves out rows that hold NaN, inf or unreadable
values, drops columns that carry no information (constant, or with no number at all) and
says what it did about each: nothing is dropped silently.

Memory matters here: a 1,000,000 x 128 float32 embedding is 512 MB, so the input is scanned
in row chunks (bounded temporaries) and copied into the output at most once; a float32,
C-contiguous input with nothing to drop is not copied at all (the result is a read-only
view).

Naming: ``Features.columns`` has one name per matrix column. A scalar column keeps its name
(``str(name)``); a vector column ``emb`` of length d becomes ``"emb[0]"`` ... ``"emb[d-1]"``;
a plain 2-D array is treated as one vector column called ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Features", "prepare_features"]

# Rows scanned per chunk: big enough for numpy to be efficient, small enough that the
# temporaries (masks, float32 casts) stay a few MB even for 1,000-d vectors.
_CHUNK_BYTES = 1 << 24


@dataclass(frozen=True)
class Features:
    """The matrix to project and an account of everything that was left out.

    Attributes
    ----------
    matrix
        ``(n_kept, d)`` float32, C-contiguous. Read-only when it is a view of the input.
    rows
        int64 positions (in the input) of the ``n_kept`` rows of ``matrix``, ascending.
    columns
        One name per matrix column (see the module docstring for vector columns).
    excluded
        ``(row_position, reason)`` for every input row left out, ascending by position; for
        example ``(7, "'emb': NaN")`` or ``(3, "'age': 'n/a' is not a number")``.
    dropped_columns
        Feature name -> why it was dropped (``"constant: every row is 0.5"``,
        ``"no numeric values"``).
    coerced
        Column name -> how many text cells were read as numbers (only non-zero counts).
    warnings
        Human-readable sentences summarising the above, for display.
    n_input_rows
        How many rows the input had.
    """

    matrix: np.ndarray
    rows: np.ndarray
    columns: list[str]
    excluded: list[tuple[int, str]] = field(default_factory=list)
    dropped_columns: dict[str, str] = field(default_factory=dict)
    coerced: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    n_input_rows: int = 0


@dataclass
class _Source:
    """One input column as a 2-D numeric array (a view when possible), plus its history."""

    name: str
    values: np.ndarray  # (n, d_c), any real dtype; never written to
    names: list[str]  # feature names of its d_c columns
    unparsed: np.ndarray | None = None  # object array of the raw cells, where coercion failed
    nulls: np.ndarray | None = None  # rows whose cell was empty (None)
    n_text: int = 0  # text cells read as numbers


def prepare_features(
    data: Any,
    columns: str | int | Sequence[str | int] | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
) -> Features:
    """Build the float32 feature matrix of ``data`` and report what was excluded.

    Parameters
    ----------
    data
        An :class:`~embproj_panel.table.Table`, a pandas DataFrame, or a 2-D array (numbers,
        or an object array of numbers and numeric strings).
    columns
        Column name(s) to project. ``None`` uses the smart default: the table's (or the
        DataFrame's inferred) ``schema.default_embedding``; every column of an array. Vector
        columns contribute all their components; numeric, boolean and text columns one each
        (text is read with :func:`pandas.to_numeric`).
    rows
        Positions of the input rows to use (an isolated selection); None uses every row.
        ``Features.rows`` and ``excluded`` are then still positions in the whole input.

    Returns
    -------
    Features
        The matrix and the account of excluded rows, dropped columns and coerced cells.

    Raises
    ------
    ValueError
        When there is nothing to project: no rows, no columns, unknown or non-numeric
        (image) columns; ``rows`` outside the input.
    TypeError
        When ``data`` is not a Table, DataFrame or array.
    """
    sources, n = _sources(data, columns)
    positions = None
    if rows is not None:
        positions = _positions(rows, n)
        sources = [_subset(source, positions) for source in sources]
        n = len(positions)
    if n == 0:
        raise ValueError("Nothing to project: the data has 0 rows.")
    if not sources:
        raise ValueError("Nothing to project: no columns were selected.")
    return _assemble(sources, n, positions)


def _positions(rows: Any, n: int) -> np.ndarray:
    """``rows`` as sorted, unique int64 positions in an input of ``n`` rows (checked)."""
    array = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows))
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"rows must be a 1-D list of integer row positions; got {array.dtype} "
                        f"values of shape {array.shape}")
    bad = array[(array < 0) | (array >= n)]
    if bad.size:
        raise ValueError(f"Row positions {bad[:5].tolist()} are outside the input of {n:,} rows")
    return np.unique(array).astype(np.int64)


def _subset(source: _Source, positions: np.ndarray) -> _Source:
    """``source`` restricted to the rows at ``positions`` (one copy of those rows)."""
    return _Source(
        source.name, source.values[positions], source.names,
        unparsed=None if source.unparsed is None else source.unparsed[positions],
        nulls=None if source.nulls is None else source.nulls[positions],
        n_text=source.n_text,
    )


# -- reading the input ------------------------------------------------------------------------


def _sources(data: Any, columns: Any) -> tuple[list[_Source], int]:
    from embproj_panel.table import Table

    if isinstance(data, Table):
        return _table_sources(data, columns), len(data)
    if isinstance(data, pd.DataFrame):
        return _frame_sources(data, columns), len(data)
    if isinstance(data, (np.ndarray, list, tuple)):
        array = np.asarray(data)
        if array.ndim != 2:
            raise ValueError(
                f"A plain array to project must be 2-D (rows x dimensions); got shape {array.shape}."
            )
        if columns is not None:
            raise ValueError("columns= only applies to a Table or DataFrame, not a plain array.")
        if array.shape[1] == 0:
            return [], array.shape[0]
        return [_array_source("x", array, [f"x[{i}]" for i in range(array.shape[1])])], len(array)
    raise TypeError(
        f"Cannot project a {type(data).__name__}: pass a Table, a pandas DataFrame or a 2-D array."
    )


def _selected(columns: Any, available: list[Any], default: list[Any], what: str) -> list[Any]:
    if columns is None:
        if not default:
            raise ValueError(
                f"Nothing to project: the {what} has no vector or numeric column "
                f"(columns: {', '.join(map(repr, available)) or 'none'})."
            )
        return list(default)
    if isinstance(columns, (str, int)):
        columns = [columns]
    names = list(columns)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(
            f"No column {', '.join(map(repr, unknown))} in the {what}; "
            f"the columns are {', '.join(map(repr, available))}."
        )
    repeated = sorted({repr(name) for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Column {', '.join(repeated)} selected more than once.")
    return names


def _table_sources(table: Any, columns: Any) -> list[_Source]:
    names = _selected(columns, table.columns, table.schema.default_embedding, "table")
    types = table.column_types
    sources = []
    for name in names:
        storage = types[name]
        label = str(name)
        if storage == "image":
            raise ValueError(
                f"Column {label!r} holds images, which cannot be projected; choose vector or "
                "numeric columns."
            )
        values = table.get_column(name, convert_to="numpy")
        nulls = table.column_nulls(name)
        if storage == "vector":
            names_c = [f"{label}[{i}]" for i in range(values.shape[1])]
            sources.append(_Source(label, values, names_c, nulls=nulls))
        elif storage in ("int", "float"):
            sources.append(_Source(label, values.reshape(-1, 1), [label], nulls=nulls))
        elif storage == "bool":
            sources.append(_object_source(label, values) if values.dtype == object
                           else _Source(label, values.reshape(-1, 1), [label]))
            if values.dtype == object:
                sources[-1].nulls = nulls
        else:  # str, none: numbers written as text, or nothing at all
            sources.append(_object_source(label, values))
    return sources


def _frame_sources(frame: pd.DataFrame, columns: Any) -> list[_Source]:
    available = list(frame.columns)
    if columns is None:
        from embproj_panel.schema import infer_schema

        default = infer_schema(frame).default_embedding
    else:
        default = []
    names = _selected(columns, available, default, "DataFrame")
    sources = []
    for name in names:
        series = frame[name]
        label = str(name)
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
            if pd.api.types.is_complex_dtype(series.dtype):
                raise ValueError(f"Column {label!r} holds complex numbers, which cannot be projected.")
            dtype = np.float32 if series.dtype == np.float32 else np.float64
            if isinstance(series.dtype, np.dtype):
                # NaN in a float column is a value gone bad (reported as NaN), not an empty cell.
                nulls = np.zeros(len(series), dtype=bool)
                values = series.to_numpy()  # no copy for a plain numpy-backed column
            else:  # nullable (Int64, Float64, boolean): <NA> is an empty cell
                nulls = series.isna().to_numpy()
                values = series.to_numpy(dtype=dtype, na_value=np.nan)
            sources.append(_Source(label, values.reshape(-1, 1), [label],
                                   nulls=nulls if nulls.any() else None))
            continue
        cells = series.to_numpy(dtype=object)
        vector = _stack_vectors(cells)
        if vector is not None:
            values, nulls = vector
            sources.append(_Source(label, values, [f"{label}[{i}]" for i in range(values.shape[1])],
                                   nulls=nulls))
        else:
            sources.append(_object_source(label, cells))
    return sources


def _stack_vectors(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    """An object column of equal-length numeric vectors as ``(n, d)``; None if it is not one."""
    from embproj_panel.images import Image

    nulls = np.fromiter((cell is None or (isinstance(cell, float) and np.isnan(cell))
                         for cell in cells), dtype=bool, count=len(cells))
    present = cells[~nulls]
    if not len(present):
        return None
    first = present[0]
    if isinstance(first, Image):
        raise ValueError("A column of images cannot be projected; choose vector or numeric columns.")
    if not isinstance(first, (np.ndarray, list, tuple)):
        return None
    try:
        stacked = np.asarray(np.stack([np.asarray(cell) for cell in present]))
    except ValueError as err:
        raise ValueError(f"A column of vectors has vectors of different lengths ({err}).") from None
    if stacked.ndim != 2 or stacked.dtype.kind not in "fiub":
        raise ValueError("A column of vectors must hold 1-D vectors of numbers.")
    if not nulls.any():
        return stacked, None
    full = np.full((len(cells), stacked.shape[1]), np.nan,
                   dtype=np.result_type(stacked.dtype, np.float32))
    full[~nulls] = stacked
    return full, nulls


def _array_source(label: str, array: np.ndarray, names: list[str]) -> _Source:
    if array.dtype.kind in "fiub":
        return _Source(label, array, names)
    if array.dtype.kind == "c":
        raise ValueError("Complex numbers cannot be projected.")
    if array.dtype.kind in "OUS":
        flat = _object_source(label, array.reshape(-1).astype(object))
        values = flat.values.reshape(array.shape)
        unparsed = None if flat.unparsed is None else flat.unparsed.reshape(array.shape)
        return _Source(label, values, names, unparsed=unparsed, nulls=None)
    raise ValueError(f"An array of dtype {array.dtype} cannot be projected.")


def _object_source(label: str, cells: np.ndarray) -> _Source:
    """Numbers from a column of text/objects: parsed cells counted, unparseable kept for reports."""
    nulls = pd.isna(cells)
    numbers = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    failed = ~nulls & np.isnan(numbers)
    # A real NaN float in an object column parses to NaN too; it is a NaN, not unreadable text.
    failed &= np.fromiter((not isinstance(c, (float, np.floating)) for c in cells),
                          dtype=bool, count=len(cells))
    n_text = sum(isinstance(c, (str, bytes)) for c in cells[~failed & ~nulls])
    return _Source(label, numbers.reshape(-1, 1), [label],
                   unparsed=np.where(failed, cells, None) if failed.any() else None,
                   nulls=nulls if nulls.any() else None, n_text=int(n_text))


# -- scanning and copying ---------------------------------------------------------------------


def _chunks(n: int, width: int) -> list[tuple[int, int]]:
    step = max(1024, _CHUNK_BYTES // max(1, 8 * width))
    return [(start, min(n, start + step)) for start in range(0, n, step)]


def _assemble(sources: list[_Source], n: int, positions: np.ndarray | None = None
              ) -> Features:
    width = sum(s.values.shape[1] for s in sources)
    chunks = _chunks(n, width)
    names = [name for s in sources for name in s.names]

    # Pass 1: which rows are finite everywhere, which columns have any finite value, and the
    # float32 min/max of each column over the finite rows (a constant column has min == max).
    row_ok = np.ones(n, dtype=bool)
    col_any = np.zeros(width, dtype=bool)
    col_min = np.full(width, np.inf, dtype=np.float32)
    col_max = np.full(width, -np.inf, dtype=np.float32)
    for start, stop in chunks:
        finite = np.concatenate([np.isfinite(s.values[start:stop]) for s in sources], axis=1)
        col_any |= finite.any(axis=0)
        ok = finite.all(axis=1)
        row_ok[start:stop] = ok
        _update_range(sources, start, stop, ok, col_min, col_max)

    dropped: dict[str, str] = {}
    dead = ~col_any
    if dead.any():
        for i in np.flatnonzero(dead):
            dropped[names[i]] = "no numeric values"
        # Rows were judged on every column; judge them again on the live ones only.
        col_min[:] = np.inf
        col_max[:] = -np.inf
        for start, stop in chunks:
            finite = np.concatenate([np.isfinite(s.values[start:stop]) for s in sources], axis=1)
            ok = finite[:, ~dead].all(axis=1)
            row_ok[start:stop] = ok
            _update_range(sources, start, stop, ok, col_min, col_max)

    rows = np.flatnonzero(row_ok).astype(np.int64)
    excluded = _reasons(sources, np.flatnonzero(~row_ok), ~dead)
    if positions is not None:  # a subset: say everything in the whole input's positions
        rows = positions[rows]
        excluded = [(int(positions[row]), why) for row, why in excluded]
    if dead.all():
        raise ValueError(
            f"Nothing to project: no numeric values in {', '.join(repr(s.name) for s in sources)}."
        )
    if not len(rows):
        raise ValueError(
            f"Nothing to project: all {n} rows were left out. "
            + " ".join(_warnings(n, excluded, {}, {}))
        )
    keep_col = ~dead
    too_big = keep_col & (np.isinf(col_min) | np.isinf(col_max))
    if too_big.any():
        raise ValueError(
            "Values too large for float32 (beyond 3.4e38) in "
            f"{', '.join(repr(names[i]) for i in np.flatnonzero(too_big)[:5])}; rescale them."
        )
    if len(rows) >= 2:  # one row is constant in every column, and still worth a point
        constant = keep_col & (col_min == col_max)
        for i in np.flatnonzero(constant):
            dropped[names[i]] = f"constant: every row is {col_min[i]:.6g}"
        keep_col &= ~constant
    matrix = _copy(sources, chunks, row_ok, keep_col, len(rows))
    coerced = {s.name: s.n_text for s in sources if s.n_text}
    kept_names = [name for name, keep in zip(names, keep_col) if keep]
    warnings = _warnings(n, excluded, dropped, coerced)
    return Features(matrix, rows, kept_names, excluded, dropped, coerced, warnings, n)


def _update_range(sources, start, stop, ok, col_min, col_max) -> None:
    if not ok.any():
        return
    offset = 0
    for s in sources:
        d = s.values.shape[1]
        block = s.values[start:stop]
        if not ok.all():
            block = block[ok]
        with np.errstate(over="ignore"):  # beyond float32's range: inf, reported by caller
            block = block.astype(np.float32, copy=False)
        np.minimum(col_min[offset:offset + d], block.min(axis=0), out=col_min[offset:offset + d])
        np.maximum(col_max[offset:offset + d], block.max(axis=0), out=col_max[offset:offset + d])
        offset += d


def _copy(sources, chunks, row_ok, keep_col, n_kept) -> np.ndarray:
    """The one copy: kept rows and columns of every source into a float32 C-ordered matrix."""
    if len(sources) == 1 and row_ok.all() and keep_col.all():
        only = sources[0].values
        if only.dtype == np.float32 and only.flags.c_contiguous:
            view = only.view()
            view.flags.writeable = False  # shared with the caller's data: never written
            return view
    out = np.empty((n_kept, int(keep_col.sum())), dtype=np.float32)
    row = 0
    for start, stop in chunks:
        ok = row_ok[start:stop]
        k = int(ok.sum())
        if k == 0:
            continue
        offset, col = 0, 0
        for s in sources:
            d = s.values.shape[1]
            keep = keep_col[offset:offset + d]
            n_keep = int(keep.sum())
            if n_keep:
                block = s.values[start:stop]
                if k != stop - start:
                    block = block[ok]
                if n_keep != d:
                    block = block[:, keep]
                out[row:row + k, col:col + n_keep] = block  # casts to float32 in place
            offset += d
            col += n_keep
        row += k
    return out


def _reasons(sources: list[_Source], bad_rows: np.ndarray, live: np.ndarray) -> list[tuple[int, str]]:
    """Why each bad row was left out, naming the column and the offending value."""
    if not len(bad_rows):
        return []
    parts: list[list[str]] = [[] for _ in bad_rows]
    offset = 0
    for s in sources:
        d = s.values.shape[1]
        live_c = live[offset:offset + d]
        offset += d
        if not live_c.any():
            continue
        block = np.asarray(s.values[bad_rows])[:, live_c]
        is_nan = np.isnan(block).any(axis=1)
        is_inf = np.isinf(block).any(axis=1)
        for i, row in enumerate(bad_rows):
            if not (is_nan[i] or is_inf[i]):
                continue
            if s.unparsed is not None:
                raw = s.unparsed[row]
                if isinstance(raw, np.ndarray):  # a row of a 2-D object array
                    raw = next((v for v in raw[live_c] if v is not None), None)
                if raw is not None:
                    parts[i].append(f"{s.name!r}: {_short(raw)} is not a number")
                    continue
            if s.nulls is not None and s.nulls[row]:
                parts[i].append(f"{s.name!r}: empty")
            elif is_nan[i]:
                parts[i].append(f"{s.name!r}: NaN")
            else:
                parts[i].append(f"{s.name!r}: inf")
    return [(int(row), "; ".join(p)) for row, p in zip(bad_rows, parts)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _warnings(n, excluded, dropped, coerced) -> list[str]:
    out = []
    for name, count in coerced.items():
        out.append(f"{count} text value{'s' if count != 1 else ''} in {name!r} read as numbers.")
    if excluded:
        shown = ", ".join(f"row {row} ({why})" for row, why in excluded[:3])
        more = f" and {len(excluded) - 3} more" if len(excluded) > 3 else ""
        out.append(f"{len(excluded)} of {n} rows left out: {shown}{more}.")
    if dropped:
        shown = ", ".join(f"{name!r} ({why})" for name, why in list(dropped.items())[:5])
        more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
        out.append(f"{len(dropped)} column{'s' if len(dropped) != 1 else ''} dropped: {shown}{more}.")
    return out
