"""The W&B-style Table: every method, every cell type, every error path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embproj_panel as ep
from embproj_panel.table import Table


def snapshot(table: Table):
    """Everything observable about a table, to prove a failed call changed nothing."""
    rows = [[cell.tolist() if isinstance(cell, np.ndarray) else cell for cell in row]
            for row in table.data]
    return (table.columns, len(table), table.column_types, rows)


# -- construction ---------------------------------------------------------------------------
def test_columns_and_rows():
    table = Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])
    assert table.columns == ["a", "b"]
    assert len(table) == 2
    assert table.column_types == {"a": "int", "b": "str"}
    assert list(table.iterrows()) == [(0, [1, "x"]), (1, [2, "y"])]
    assert table.data == [[1, "x"], [2, "y"]]


def test_rows_alias_and_wandb_default_columns():
    assert Table(rows=[[1, 2, 3]]).columns == ["Input", "Output", "Expected"]
    assert Table(data=np.zeros((2, 3))).columns == ["Input", "Output", "Expected"]
    assert Table(data=np.zeros((2, 4))).columns == ["Column_0", "Column_1", "Column_2", "Column_3"]


def test_ndarray_data_gives_one_numeric_column_per_array_column():
    array = np.arange(6, dtype=float).reshape(3, 2)
    table = Table(columns=["x", "y"], data=array)
    assert table.column_types == {"x": "float", "y": "float"}
    np.testing.assert_array_equal(table.get_column("y", convert_to="numpy"), [1, 3, 5])
    array[0, 0] = 99  # the table holds its own copy
    assert table.get_column("x")[0] == 0


def test_dataframe_wins_over_columns_and_data():
    frame = pd.DataFrame({"p": [1.5, 2.5]})
    table = Table(columns=["ignored"], data=[[1]], dataframe=frame)
    assert table.columns == ["p"]
    assert table.get_column("p") == [1.5, 2.5]


def test_every_cell_type_round_trips():
    image = ep.Image(np.eye(4))
    row = [1, 2.5, True, "text", None, [1.0, 2.0], (3, 4), np.array([5.0, 6.0], dtype=np.float32), image]
    names = ["i", "f", "b", "s", "n", "list", "tuple", "array", "img"]
    table = Table(columns=names, data=[row])
    assert table.column_types == {
        "i": "int", "f": "float", "b": "bool", "s": "str", "n": "none",
        "list": "vector", "tuple": "vector", "array": "vector", "img": "image",
    }
    _, cells = next(table.iterrows())
    assert cells[:5] == [1, 2.5, True, "text", None]
    np.testing.assert_array_equal(cells[5], [1.0, 2.0])
    np.testing.assert_array_equal(cells[6], [3.0, 4.0])
    assert table.get_column("array", convert_to="numpy").dtype == np.float32
    assert cells[8] == image


def test_int_and_float_mix_to_float_and_none_is_kept():
    table = Table(columns=["a"], data=[[1], [2.5], [None]])
    assert table.column_types == {"a": "float"}
    assert table.get_column("a") == [1.0, 2.5, None]


def test_int_column_with_none():
    table = Table(columns=["a"], data=[[1], [None]])
    assert table.column_types == {"a": "int"}
    assert table.get_column("a") == [1, None]
    values = table.get_column("a", convert_to="numpy")
    assert values[0] == 1 and np.isnan(values[1])
    assert table.get_dataframe()["a"].dtype == "Int64"


def test_vector_column_numpy_is_2d_and_none_rows_are_nan():
    table = Table(columns=["v"], data=[[[1, 2]], [None], [[3, 4]]])
    matrix = table.get_column("v", convert_to="numpy")
    assert matrix.shape == (3, 2)
    assert np.isnan(matrix[1]).all()
    assert table.get_column("v")[1] is None
    assert table.column_nulls("v").tolist() == [False, True, False]


# -- add_data, add_column, add_computed_columns -------------------------------------------------
def test_add_data_appends_rows_and_keeps_types():
    table = Table(columns=["label", "embedding"])
    for i in range(3000):  # past the internal buffer size
        table.add_data(str(i % 3), np.full(4, i, dtype=np.float32))
    assert len(table) == 3000
    matrix = table.get_column("embedding", convert_to="numpy")
    assert matrix.shape == (3000, 4) and matrix.dtype == np.float32
    assert matrix[2999, 0] == 2999
    assert table.get_column("label")[:4] == ["0", "1", "2", "0"]


def test_add_column_and_alias():
    table = Table(columns=["a"], data=[[1], [2]])
    table.add_column("v", np.ones((2, 3)))
    table.add_col("s", ["x", "y"])
    table.add_column(7, pd.Series([0.5, 1.5], index=[10, 20]))  # index is ignored
    assert table.columns == ["a", "v", "s", 7]
    assert table.column_types == {"a": "int", "v": "vector", "s": "str", 7: "float"}
    assert table.get_column(7) == [0.5, 1.5]


def test_add_column_to_empty_table_sets_length():
    table = Table(columns=[])
    table.add_column("x", [1, 2, 3])
    assert len(table) == 3


@pytest.mark.parametrize("order", ["ndx_row", "row_ndx"])
def test_add_computed_columns_both_spellings(order):
    table = Table(columns=["a"], data=[[1], [2]])
    if order == "ndx_row":
        table.add_computed_columns(lambda ndx, row: {"b": row["a"] * 10 + ndx})
    else:  # the seed's spelling: lambda row, ndx
        table.add_computed_columns(lambda row, ndx: {"b": row["a"] * 10 + ndx})
    assert table.get_column("b") == [10, 21]


def test_add_computed_columns_can_add_embeddings():
    table = Table(columns=["a"], data=[[1.0], [2.0]])
    table.add_computed_columns(lambda ndx, row: {"embedding": np.array([row["a"], -row["a"]])})
    assert table.get_column("embedding", convert_to="numpy").tolist() == [[1, -1], [2, -2]]


def test_get_dataframe_types():
    table = Table(columns=["v", "s", "img"], data=[[[1.0, 2.0], "a", ep.Image(np.zeros((2, 2)))]])
    frame = table.get_dataframe()
    assert list(frame.columns) == ["v", "s", "img"]
    assert isinstance(frame["v"][0], np.ndarray)
    assert isinstance(frame["img"][0], ep.Image)


def test_get_column_errors():
    table = Table(columns=["a"], data=[[1]])
    with pytest.raises(KeyError, match="'b'"):
        table.get_column("b")
    with pytest.raises(ValueError, match="convert_to"):
        table.get_column("a", convert_to="torch")


# -- bad input: message names column and row, table unchanged -----------------------------------
@pytest.mark.parametrize(
    "row, error, message",
    [
        (("x",), ValueError, "row 2: add_data got 1 cells"),
        (("x", [1.0, 2.0, 3.0]), ValueError, r"column 'v', row 2: vector of length 3.*ragged"),
        ((5, [1.0, 2.0]), TypeError, r"column 'label', row 2: int value 5 does not fit .* str"),
        (("x", "not a vector"), TypeError, r"column 'v', row 2: str value"),
        (("x", [1.0, "a"]), TypeError, r"column 'v', row 2: a vector must hold only numbers"),
        (("x", {"a": 1}), TypeError, r"column 'v', row 2: unsupported cell type dict"),
        (("x", np.zeros((2, 2))), TypeError, r"column 'v', row 2: a 2-D array is not a table cell"),
    ],
)
def test_add_data_errors_leave_table_unchanged(row, error, message):
    table = Table(columns=["label", "v"], data=[["a", [0.0, 1.0]], ["b", [1.0, 0.0]]])
    before = snapshot(table)
    with pytest.raises(error, match=message):
        table.add_data(*row)
    assert snapshot(table) == before
    table.add_data("c", [2.0, 2.0])  # still usable
    assert len(table) == 3


def test_add_data_error_while_column_type_is_open():
    table = Table(columns=["a"])
    table.add_data(None)
    table.add_data(1)
    before = snapshot(table)
    with pytest.raises(TypeError, match="column 'a', row 2"):
        table.add_data("x")
    assert snapshot(table) == before


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"columns": ["a", "a"], "data": [[1, 2]]}, ValueError, "Duplicate column name 'a'"),
        ({"columns": ["a", 1.5]}, TypeError, "Column names must be str or int; got float"),
        ({"columns": ["a", None]}, TypeError, "got NoneType"),
        ({"columns": ["a", True]}, TypeError, "got bool"),
        ({"columns": ["a"], "data": [[1, 2]]}, ValueError, "row 0: has 2 cells but the table has 1"),
        ({"columns": ["a"], "data": [[1], ["x"]]}, TypeError, "column 'a', row 1: str value 'x'"),
        ({"columns": ["v"], "data": [[[1, 2]], [[1]]]}, ValueError, "column 'v', row 1: vector of length 1"),
        ({"columns": ["v"], "data": [[[]]]}, ValueError, "column 'v', row 0: empty vector"),
        ({"columns": ["a"], "data": [[True], [1]]}, TypeError, "column 'a', row 1: int value 1"),
        ({"columns": ["a"], "data": [5]}, TypeError, "row 0: a row must be a list"),
        ({"dataframe": [[1]]}, TypeError, "dataframe must be a pandas DataFrame"),
    ],
)
def test_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        Table(**kwargs)


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"v": [[1.0, 2.0], [1.0, 2.0], [1.0]]}), "column 'v', row 2: vector of length 1"),
        (pd.DataFrame({"m": [1.0, "a"]}), "column 'm', row 1: str value 'a'"),
        (pd.DataFrame({"m": ["a", 2]}), "column 'm', row 1: int value 2"),
        (pd.DataFrame({"img": [ep.Image(np.zeros((2, 2))), "x"]}), "column 'img', row 1: str value"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "Duplicate column name 'a'"),
        (pd.DataFrame([[1]], columns=[1.5]), "Column names must be str or int"),
    ],
)
def test_dataframe_errors(frame, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Table(dataframe=frame)


def test_add_column_errors_leave_table_unchanged():
    table = Table(columns=["a"], data=[[1], [2]])
    before = snapshot(table)
    with pytest.raises(ValueError, match="column 'b': add_column got 3 values but the table has 2 rows"):
        table.add_column("b", [1, 2, 3])
    with pytest.raises(ValueError, match="Duplicate column name 'a'"):
        table.add_column("a", [1, 2])
    with pytest.raises(ValueError, match="column 'c', row 1: vector of length 1"):
        table.add_column("c", [[1, 2], [3]])
    with pytest.raises(TypeError, match="column 'd'"):
        table.add_column("d", {"x": 1})
    assert snapshot(table) == before


def test_add_computed_columns_errors_leave_table_unchanged():
    table = Table(columns=["a"], data=[[1], [2]])
    before = snapshot(table)
    with pytest.raises(TypeError, match="row 0: .* must return a dict"):
        table.add_computed_columns(lambda ndx, row: 5)
    with pytest.raises(ValueError, match="row 1: computed keys"):
        table.add_computed_columns(lambda ndx, row: {"b": 1} if ndx == 0 else {"c": 1})
    with pytest.raises(TypeError, match="column 'b', row 1"):
        table.add_computed_columns(lambda ndx, row: {"b": 1 if ndx == 0 else "x"})
    with pytest.raises(ZeroDivisionError):
        table.add_computed_columns(lambda ndx, row: {"b": 1 / (ndx - 1)})
    assert snapshot(table) == before


# -- large input is vectorised -----------------------------------------------------------------
def test_dataframe_vector_column_is_stacked_without_per_row_python(monkeypatch):
    """A DataFrame of vectors must go through np.stack, never the per-cell validator."""
    import embproj_panel.columns as columns_module

    def fail(*args, **kwargs):
        raise AssertionError("per-cell path used for a clean vector column")

    monkeypatch.setattr(columns_module, "column_from_cells", fail)
    vectors = np.random.default_rng(0).normal(size=(20_000, 16)).astype(np.float32)
    frame = pd.DataFrame({"embedding": list(vectors), "label": np.arange(20_000) % 7})
    table = Table(dataframe=frame)
    np.testing.assert_array_equal(table.get_column("embedding", convert_to="numpy"), vectors)


# -- property: any table built from rows gives its rows back -----------------------------------
cells = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.text(max_size=8),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1000, 1000), st.text(max_size=6),
                          st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3)),
                min_size=1, max_size=20))
def test_rows_round_trip(rows):
    data = [list(row) for row in rows]
    table = Table(columns=["i", "s", "v"], data=data)
    rebuilt = Table(dataframe=table.get_dataframe())
    assert rebuilt == table
    for (_, got), want in zip(table.iterrows(), data):
        assert got[0] == want[0] and got[1] == want[1]
        np.testing.assert_array_equal(got[2], want[2])


def test_float32_vectors_with_none_stay_float32():
    table = Table(columns=["v"], data=[[np.ones(2, np.float32)], [None]])
    matrix = table.get_column("v", convert_to="numpy")
    assert matrix.dtype == np.float32 and np.isnan(matrix[1]).all()


def test_from_storage_adopts_types_as_given():
    table = Table._from_storage({
        "s": ("str", np.array([None, None], dtype=object), np.array([True, True])),
        "v": ("vector", np.zeros((2, 3), np.float32), None),
    })
    assert table.column_types == {"s": "str", "v": "vector"}
    assert table.get_column("s") == [None, None]
    with pytest.raises(ValueError, match="different lengths"):
        Table._from_storage({"a": ("int", np.zeros(2, np.int64), None), "b": ("int", np.zeros(3, np.int64), None)})


def test_repeated_strings_share_one_object_per_value():
    labels = np.array(["a", "b", "c"] * 1000, dtype=object)
    for table in (Table(columns=["l"], data=labels[:, None]),
                  Table(dataframe=pd.DataFrame({"l": pd.Series(labels, dtype="str")}))):
        values = table.get_column("l", convert_to="numpy")
        assert values.tolist() == labels.tolist()
        assert len({id(value) for value in values}) == 3
