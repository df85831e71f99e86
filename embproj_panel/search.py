"""Find rows by text: case-insensitive substring (or regular-expression) search over columns.

:class:`TableSearch` answers "which rows of this table mention *seven*?" over one text or
categorical column, or all of them, and returns sorted row positions. It never rescans the
table: each column is reduced once, on its first search, to its distinct values (casefolded)
and one integer code per row (:func:`pandas.factorize`). A query then tests each distinct
value once (a C-level ``map`` over a list, about 40 ms for 1,000,000 distinct strings;
``re.search`` about 130 ms) and maps the answer back to rows through the codes (a gather of
a few ms). A column of labels with ten values costs almost nothing per query, however many
rows it has. A rarer substring is first looked for in all distinct values joined into one
string (one C-level scan, a few ms). The first query on a column also pays the factorisation (about 1 s for
1,000,000 distinct strings; ``benchmarks/bench_search.py`` prints both).

Searchable columns are the schema's ``text`` and ``categorical`` columns and ``id`` columns
stored as text (file names, keys): what a person might type. Categorical numbers (digits'
``target``) are searched as their text (``"7"``). Empty cells never match.
"""

from __future__ import annotations

import itertools
import operator
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
        cells = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        codes, uniques = pd.factorize(cells, use_na_sentinel=True)
        if nulls is not None and nulls.any():
            codes = np.where(nulls, -1, codes)
        self.n_rows = len(codes)
        self.codes = codes.astype(np.int32 if len(uniques) < 2**31 else np.int64)
        self.values = [v if isinstance(v, str) else str(v) for v in np.asarray(uniques, dtype=object)]
        self.folded = [v.casefold() for v in self.values]
        # Every distinct value in one string, NUL-separated: a rare substring is then found by
        # one C-level scan instead of a test per value. Unusable if a value holds a NUL.
        self._text: str | None = None
        if not any("\x00" in v for v in self.folded):
            self._text = "\x00".join(self.folded)
            lengths = np.fromiter(map(len, self.folded), dtype=np.int64, count=len(self.folded))
            self._starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])

    def matches(self, pattern: re.Pattern | str) -> np.ndarray:
        """Boolean mask over rows: which rows' value contains ``pattern`` (see compile_query)."""
        n = len(self.values)
        if isinstance(pattern, str):
            hit = self._scan(pattern)
            if hit is None:
                hit = np.fromiter(map(operator.contains, self.folded, itertools.repeat(pattern)),
                                  dtype=bool, count=n)
        else:
            hit = np.fromiter(map(bool, map(pattern.search, self.values)), dtype=bool, count=n)
        lookup = np.append(hit, False)  # code -1 (an empty cell) reads the last entry
        return lookup[self.codes]


    def _scan(self, needle: str) -> np.ndarray | None:
        """Values containing ``needle``, found in the joined text; None when a per-value test
        is cheaper (an empty or very common needle) or the text cannot be used."""
        text = self._text
        if text is None or not needle or "\x00" in needle:
            return None
        n = len(self.values)
        # Each occurrence costs a Python step below: past n/8 of them, testing values wins.
        if text.count(needle) > max(64, n // 8):
            return None
        where = np.fromiter((m.start() for m in re.finditer(re.escape(needle), text)),
                            dtype=np.int64)
        hit = np.zeros(n, dtype=bool)
        hit[np.searchsorted(self._starts, where, side="right") - 1] = True
        return hit


class TableSearch:
    """Search one table's text and categorical columns (an index per column, built on demand).

    Parameters
    ----------
    data
        A :class:`~embproj_panel.table.Table` or a pandas DataFrame.

    Thread-safe: two searches may run at once; a column's index is built only once.
    """

    def __init__(self, data: Any) -> None:
        from embproj_panel.table import Table

        if isinstance(data, Table):
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

    def index(self, column: Any) -> ColumnSearch:
        """The (cached) :class:`ColumnSearch` of ``column``; ValueError if it is not searchable."""
        if column not in self.columns:
            if column in self._all:
                raise ValueError(
                    f"Column {str(column)!r} holds {self._kinds[column]} values, which cannot be "
                    f"searched as text; searchable columns: {self._names()}.")
            raise ValueError(f"No column {str(column)!r}; searchable columns: {self._names()}.")
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
