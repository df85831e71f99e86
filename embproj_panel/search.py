"""Find rows by text: case-insensitive substring (or regular-expression) search over columns.

:class:`TableSearch` answers "which rows of this table mention *seven*?" over one text or
categorical column, or all of them, and returns sorted row positions. It never rescans the
table: each column is reduced once, on its first search, to its distinct values and one
integer code per row (:func:`pandas.factorize`), and the distinct values are kept as Arrow
arrays (casefolded, and as they are). A query then tests each distinct value once, in C++:
a substring is :func:`pyarrow.compute.match_substring` over the casefolded values (exactly
``needle.casefold() in value.casefold()``), a regular expression
:func:`pyarrow.compute.match_substring_regex` (RE2, case-insensitive) when its syntax means
the same in RE2 as in Python's :mod:`re` (literals, sets, ``.``, groups, alternation,
repeats, ``^``; see ``_portable``), else ``re.search`` on each distinct value. The answer
maps back to rows through the codes (a gather of a few ms). A column of labels with ten
values costs almost nothing per query, however many rows it has. The first query on a
column pays the factorisation and the Arrow arrays (about 1-2 s for 1,000,000 distinct
strings); ``benchmarks/bench_search.py`` prints both, against ``Series.str.contains``.

A lazy dataset's columns are never read whole: each query reads the searched columns a
Parquet piece at a time and tests each piece's distinct values the same way
(:class:`BatchSearch`), so memory stays that of one piece and nothing is kept.

Searchable columns are the schema's ``text`` and ``categorical`` columns and ``id`` columns
stored as text (file names, keys): what a person might type. Categorical numbers (digits'
``target``) are searched as their text (``"7"``). Empty cells never match.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_QUERY_LENGTH", "ColumnSearch", "TableSearch", "compile_query"]

# A regular expression is run on every distinct value; a bounded pattern bounds the work a
# query can ask for (a hostile pattern can still backtrack, which is why the app searches
# in a worker thread).
MAX_QUERY_LENGTH = 1000


def compile_query(query: str, regex: bool = False) -> re.Pattern | str:
    """The casefolded substring, or the compiled case-insensitive pattern, for ``query``.

    Raises
    ------
    ValueError
        For a query that is not text, longer than :data:`MAX_QUERY_LENGTH`, or an invalid
        regular expression (the message says what is wrong and where).
    """
    if not isinstance(query, str):
        raise ValueError(f"A search query is text; got {type(query).__name__}.")
    if len(query) > MAX_QUERY_LENGTH:
        raise ValueError(f"The query is {len(query):,} characters long; the limit is "
                         f"{MAX_QUERY_LENGTH:,}.")
    if not regex:
        return query.casefold()
    try:
        return re.compile(query, re.IGNORECASE)
    except re.error as err:
        where = f" at position {err.pos}" if err.pos is not None else ""
        raise ValueError(f"Not a valid regular expression: {err.msg}{where}.") from None
    except (OverflowError, RecursionError):
        raise ValueError("Not a valid regular expression: it is too complex.") from None


class ColumnSearch:
    """One column's distinct values and the code of each row, built once.

    Parameters
    ----------
    values
        The column's cells (1-D); None/NaN are empty.
    nulls
        Optional mask of empty cells (a Table's ``column_nulls``).
    """

    def __init__(self, values: Sequence[Any] | np.ndarray, nulls: np.ndarray | None = None
                 ) -> None:
        import pyarrow as pa

        cells = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        codes, uniques = pd.factorize(cells, use_na_sentinel=True)
        if nulls is not None and nulls.any():
            codes = np.where(nulls, -1, codes)
        self.n_rows = len(codes)
        self.codes = codes.astype(np.int32 if len(uniques) < 2**31 else np.int64)
        self.values = [v if isinstance(v, str) else str(v) for v in np.asarray(uniques, dtype=object)]
        # The distinct values as Arrow arrays: a substring is one C++ scan of the casefolded
        # values (the same test as ``needle in value.casefold()``), a portable regex one RE2
        # scan of the values (see _portable).
        self._folded = pa.array([v.casefold() for v in self.values], type=pa.large_string())
        self._values = pa.array(self.values, type=pa.large_string())
        self._newlines = any("\n" in v for v in self.values)

    def matches(self, pattern: re.Pattern | str) -> np.ndarray:
        """Boolean mask over rows: which rows' value contains ``pattern`` (see compile_query)."""
        hit = _value_hits(pattern, self.values, self._folded, self._values, self._newlines)
        lookup = np.append(hit, False)  # code -1 (an empty cell) reads the last entry
        return lookup[self.codes]


def _value_hits(pattern: re.Pattern | str, values: list[str], folded: Any, arrow_values: Any,
                newlines: bool) -> np.ndarray:
    """Which distinct ``values`` contain ``pattern``: one Arrow scan (or ``re`` per value).

    ``folded`` and ``arrow_values`` are the values casefolded and as they are, as Arrow
    arrays; ``newlines`` says whether any value holds a newline (see :func:`_portable`).
    """
    import pyarrow.compute as pc

    if isinstance(pattern, str):
        return pc.match_substring(folded, pattern).to_numpy(zero_copy_only=False)
    if _portable(pattern, newlines):
        return pc.match_substring_regex(arrow_values, pattern.pattern, ignore_case=True
                                        ).to_numpy(zero_copy_only=False)
    # Python-only syntax: test each distinct value with re
    return np.fromiter(map(bool, map(pattern.search, values)), dtype=bool, count=len(values))


class BatchSearch:
    """One column searched batch by batch as it is read: nothing kept, memory of one batch.

    For a lazy dataset (:class:`~embproj_panel.dataset_table.DatasetTable`), whose columns
    are never read whole: each query reads the column a Parquet piece at a time (that column
    only), dictionary-encodes the piece in Arrow, tests the piece's distinct values as
    :class:`ColumnSearch` tests a column's (the same casefolded substring, RE2 or ``re``
    test, so the same rows match) and maps the answer to the piece's rows.

    Parameters
    ----------
    batches
        Called once per query: yields the column's Arrow arrays in row order.
    n_rows
        Rows in all the batches.
    """

    def __init__(self, batches: Any, n_rows: int) -> None:
        self._batches = batches
        self.n_rows = n_rows

    def matches(self, pattern: re.Pattern | str) -> np.ndarray:
        """Boolean mask over rows: which rows' value contains ``pattern`` (see compile_query)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        hit = np.zeros(self.n_rows, dtype=bool)
        start = 0
        for column in self._batches():
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            encoded = pc.dictionary_encode(column)
            values = [v if isinstance(v, str) else str(v)
                      for v in encoded.dictionary.to_pylist()]
            found = _value_hits(pattern, values,
                                pa.array([v.casefold() for v in values], type=pa.large_string()),
                                pa.array(values, type=pa.large_string()),
                                any("\n" in v for v in values))
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            hit[start:start + len(codes)] = np.append(found, False)[codes]
            start += len(codes)
        if start != self.n_rows:
            raise RuntimeError(f"The column's batches held {start:,} rows, not {self.n_rows:,}.")
        return hit


# The pattern syntax whose meaning is the same in Python's re and in RE2 (Arrow's regexes):
# literals, sets of literals and ranges, ".", groups, alternation, bounded repeats and "^"
# (and "$" when no value holds a newline, where Python's "$" also matches before one).
# Anything else - classes such as \d or \w (Unicode in re, ASCII in RE2), \b, lookaround,
# backreferences, inline flags, possessive repeats, "{,n}", POSIX "[:alpha:]" - runs in re.
_OPS = _parser = None


def _portable(pattern: re.Pattern, newlines: bool) -> bool:
    """Whether RE2 (case-insensitive) matches exactly what ``pattern`` (re.IGNORECASE) does."""
    global _OPS, _parser
    source = pattern.pattern
    if re.search(r"\\[A-Za-z0-9]|\{,|\[:", source) or not source.isprintable():
        return False
    if _parser is None:
        try:
            import re._constants as constants
            import re._parser as parser
        except ImportError:  # Python < 3.11
            import sre_constants as constants  # type: ignore[no-redef]
            import sre_parse as parser  # type: ignore[no-redef]
        _parser = parser
        _OPS = constants
    c = _OPS
    try:
        tree = _parser.parse(source, pattern.flags)
    except Exception:  # noqa: BLE001 - not parseable here: re decides
        return False
    if tree.state.flags & ~(re.IGNORECASE | re.UNICODE):
        return False  # an inline flag such as (?s) or (?x)
    ends = {c.AT_BEGINNING, c.AT_BEGINNING_STRING} | (set() if newlines else {c.AT_END})

    def ok(items: Any) -> bool:
        for op, av in items:
            if op in (c.LITERAL, c.NOT_LITERAL, c.ANY):
                continue
            if op is c.IN:
                if any(o not in (c.LITERAL, c.RANGE, c.NEGATE) for o, _ in av):
                    return False
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, sub = av
                if low > 1000 or (high != c.MAXREPEAT and high > 1000) or not ok(sub):
                    return False
            elif op is c.SUBPATTERN:
                _group, add, remove, sub = av
                if add or remove or not ok(sub):
                    return False
            elif op is c.BRANCH:
                if not all(ok(branch) for branch in av[1]):
                    return False
            elif op is c.AT:
                if av not in ends:
                    return False
            else:
                return False
        return True

    return ok(tree)


class TableSearch:
    """Search one table's text and categorical columns (an index per column, built on demand).

    Parameters
    ----------
    data
        A :class:`~embproj_panel.table.Table` or a pandas DataFrame.

    Thread-safe: two searches may run at once; a column's index is built only once.
    """

    def __init__(self, data: Any) -> None:
        from embproj_panel.dataset_table import DatasetTable
        from embproj_panel.table import Table

        self._lazy = data if isinstance(data, DatasetTable) else None
        if self._lazy is not None:  # searched batch by batch, never read whole (BatchSearch)
            schema = data.schema
            self._read = None
        elif isinstance(data, Table):
            schema = data.schema
            self._read = lambda name: (data.get_column(name, convert_to="numpy"),
                                       data.column_nulls(name))
        elif isinstance(data, pd.DataFrame):
            from embproj_panel.schema import infer_schema

            schema = infer_schema(data)
            self._read = lambda name: (data[name].to_numpy(dtype=object), None)
        else:
            raise TypeError(f"Cannot search a {type(data).__name__}: pass a Table or a DataFrame.")
        self.n_rows = len(data)
        self.columns: list[Any] = [
            name for name, info in schema.columns.items()
            if info.kind in ("text", "categorical")
            or (info.kind == "id" and info.dtype in ("str", "mixed"))
        ]
        self._all = list(schema.columns)
        self._kinds = {name: info.kind for name, info in schema.columns.items()}
        self._indexes: dict[Any, ColumnSearch] = {}
        self._lock = threading.Lock()

    def index(self, column: Any) -> ColumnSearch | BatchSearch:
        """The (cached) :class:`ColumnSearch` of ``column``; ValueError if it is not searchable.

        For a lazy dataset, a :class:`BatchSearch` that reads the column at each query.
        """
        if column not in self.columns:
            if column in self._all:
                raise ValueError(
                    f"Column {str(column)!r} holds {self._kinds[column]} values, which cannot be "
                    f"searched as text; searchable columns: {self._names()}.")
            raise ValueError(f"No column {str(column)!r}; searchable columns: {self._names()}.")
        if self._lazy is not None:
            lazy = self._lazy
            return BatchSearch(lambda: lazy.column_batches(column), self.n_rows)
        with self._lock:
            found = self._indexes.get(column)
            if found is None:
                values, nulls = self._read(column)
                found = self._indexes[column] = ColumnSearch(values, nulls)
        return found

    def search(self, query: str, column: Any = None, regex: bool = False) -> np.ndarray:
        """Sorted int64 positions of the rows whose ``column`` (None: any searchable) matches.

        Substring mode is case-insensitive (both sides casefolded); ``regex=True`` is
        ``re.search`` with ``re.IGNORECASE``. An empty query matches every non-empty cell.

        Raises
        ------
        ValueError
            A bad regular expression (a readable message), an unknown or unsearchable column.
        """
        pattern = compile_query(query, regex)
        names = self.columns if column is None else [column]
        if column is None and not names:
            return np.empty(0, dtype=np.int64)
        hit = np.zeros(self.n_rows, dtype=bool)
        for name in names:
            hit |= self.index(name).matches(pattern)
        return np.flatnonzero(hit).astype(np.int64)

    def _names(self) -> str:
        return ", ".join(repr(str(name)) for name in self.columns) or "none"
