"""Text search: substring and regex matches, which columns are searched, bad input."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from embproj_panel import Table, datasets
from embproj_panel.search import MAX_QUERY_LENGTH, ColumnSearch, TableSearch, compile_query

XSS = "<img src=x onerror=window.__xss=1>"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["Seven", "eleven", None, "SEVENTY", "six", XSS, "sev en"],
        "kind": pd.Categorical(["odd", "odd", "even", "even", "even", "odd", "odd"]),
        "emb": [np.arange(3.0) + i for i in range(7)],
        "score": np.linspace(0, 1, 7),
    })


def _reference(values, query, regex):
    """Row by row, the obvious way: what the index must agree with."""
    out = []
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        text = str(value)
        if regex:
            found = re.search(query, text, re.IGNORECASE) is not None
        else:
            found = query.casefold() in text.casefold()
        if found:
            out.append(i)
    return out


def test_substring_is_case_insensitive_and_sorted(frame):
    search = TableSearch(frame)
    found = search.search("SEVEN", column="name")
    assert found.dtype == np.int64
    assert found.tolist() == [0, 3]  # "Seven", "SEVENTY"; not "sev en", not the empty cell


def test_regex_mode_is_case_insensitive_re_search(frame):
    search = TableSearch(frame)
    assert search.search(r"^s.*n$", column="name", regex=True).tolist() == [0, 6]
    assert search.search(r"ev(en)?", column="name", regex=True).tolist() == [0, 1, 3, 6]
    # The same characters as a substring are literal text, not a pattern.
    assert search.search(r"^s", column="name").tolist() == []


def test_all_columns_is_the_union_of_text_and_categorical_columns(frame):
    search = TableSearch(frame)
    assert search.columns == ["name", "kind"]  # vectors and numbers are not text
    assert search.search("odd").tolist() == [0, 1, 5, 6]
    assert search.search("v").tolist() == [0, 1, 2, 3, 4, 6]  # "even" rows too; row 5 neither


def test_hostile_text_is_matched_as_text(frame):
    search = TableSearch(frame)
    assert search.search(XSS).tolist() == [5]
    assert search.search("<IMG SRC", column="name").tolist() == [5]
    assert search.search(re.escape(XSS), column="name", regex=True).tolist() == [5]


def test_empty_cells_never_match_and_empty_query_matches_every_value(frame):
    search = TableSearch(frame)
    assert search.search("", column="name").tolist() == [0, 1, 3, 4, 5, 6]
    assert 2 not in search.search(".*", column="name", regex=True)


def test_bad_regex_is_a_readable_value_error(frame):
    search = TableSearch(frame)
    with pytest.raises(ValueError, match=r"Not a valid regular expression: missing \), "
                                         r"unterminated subpattern at position 0"):
        search.search("(seven", regex=True)
    with pytest.raises(ValueError, match="Not a valid regular expression: nothing to repeat"):
        search.search("*", column="name", regex=True)
    # As a substring the same text is fine.
    assert search.search("(seven").tolist() == []


def test_unknown_and_unsearchable_columns_say_which_columns_can_be_searched(frame):
    search = TableSearch(frame)
    with pytest.raises(ValueError, match=r"No column 'nope'; searchable columns: 'name', 'kind'"):
        search.search("x", column="nope")
    with pytest.raises(ValueError, match=r"Column 'emb' holds vector values, which cannot be"):
        search.search("x", column="emb")
    with pytest.raises(ValueError, match="limit is 1,000"):
        search.search("x" * (MAX_QUERY_LENGTH + 1))
    with pytest.raises(ValueError, match="A search query is text"):
        compile_query(7)


def test_digits_labels_and_counts():
    table = datasets.digits()
    search = TableSearch(table)
    assert search.columns == ["target"]
    sevens = search.search("7")
    expected = np.flatnonzero(np.asarray(table.get_column("target", convert_to="numpy")) == "7")
    np.testing.assert_array_equal(sevens, expected)
    assert len(sevens) == 179


def test_categorical_numbers_are_searched_as_text():
    table = Table(dataframe=pd.DataFrame({"label": [3, 17, 7, None, 7], "x": [1.0, 2, 3, 4, 5]}))
    search = TableSearch(table)
    assert search.search("7", column="label").tolist() == [1, 2, 4]


def test_index_agrees_with_a_row_by_row_reference_on_random_text():
    rng = np.random.default_rng(3)
    alphabet = np.array(list("abcAB .*-Éé"))
    values = ["".join(rng.choice(alphabet, size=rng.integers(0, 8))) for _ in range(400)]
    values = [None if i % 37 == 0 else v for i, v in enumerate(values)]
    column = ColumnSearch(np.asarray(values, dtype=object))
    for query, regex in [("ab", False), ("É", False), (".", False), ("a.b", True),
                         ("^b|c$", True), ("é+", True), ("", False)]:
        found = np.flatnonzero(column.matches(compile_query(query, regex)))
        assert found.tolist() == _reference(values, query, regex), (query, regex)


def test_a_column_is_indexed_once():
    frame = pd.DataFrame({"name": [f"item {i}" for i in range(100)]})
    calls = []
    search = TableSearch(frame)
    read = search._read
    search._read = lambda name: calls.append(name) or read(name)
    search.search("1", column="name")
    search.search("2", column="name")
    search.search("3")
    assert calls == ["name"]


def test_arrow_and_re_agree_on_hostile_unicode_and_python_only_syntax():
    # Substrings and portable regexes run in Arrow (RE2), the rest in re; every answer must
    # be re's (casefold for substrings): special foldings, newlines, NUL, "$", \d, (?s)...
    values = ["Img_001_Seven.png", "ſtar", "STRASSE", "straße", "a\nb", "x$y", "Σίσυφος",
              "KELVIN \u212a", "42", None, "ab{2}", "日本語", "nul\x00cat", "٣ arabic three",
              XSS, "tab\there", "émile"]
    column = ColumnSearch(np.asarray(values, dtype=object))
    patterns = ["^img_0+1", "seven|star", "s+t", "b$", "^$", "[a-c]", ".", "ß", "σ", "k",
                "\\d+", "\\w+e", "(?s)a.b", "a{2}", "a{,2}", "(a)\\1", "^(?:st|x)",
                "e\\.p", "[^a-z]", "k{1,2}", "STR.SSE", "<img", "x\\$", "\\bcat", "[É]",
                "(?=s)t", "a|", "s*?e", "\\Acat", "x{2,1001}"]
    with pytest.warns(FutureWarning):  # "[[:" is a possible nested set for re, not RE2
        patterns.append(compile_query("[[:alpha:]]", True).pattern)
    for query in patterns:
        found = np.flatnonzero(column.matches(re.compile(query, re.IGNORECASE)))
        assert found.tolist() == _reference(values, query, True), query
    for query in ["ss", "STR", "ß", "k", "\x00", "\n", "É", "<", "三", ""]:
        found = np.flatnonzero(column.matches(compile_query(query)))
        assert found.tolist() == _reference(values, query, False), query


def test_only_portable_patterns_go_to_arrow():
    from embproj_panel.search import _portable

    for query in ["^img_0+42", "seven|star", "[a-c]+x", "a{2,5}", "(?:ab)+", "e\\.p", "b$"]:
        assert _portable(re.compile(query, re.I), newlines=False), query
    for query in ["\\d", "\\w", "\\b", "(?s).", "(a)\\1", "(?=a)", "a{,2}", "a{1001}",
                  "a*+", "\\u00e9"]:
        assert not _portable(re.compile(query, re.I), newlines=False), query
    assert not _portable(re.compile("b$", re.I), newlines=True)  # re's "$" before a newline
