"""Feature preparation: the one float32 matrix, and the account of what was left out."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from embproj_panel import Image, Table
from embproj_panel.features import prepare_features


def test_float32_array_is_not_copied():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    features = prepare_features(X)
    assert np.shares_memory(features.matrix, X)
    assert not features.matrix.flags.writeable  # a view of the caller's data: never written
    assert features.columns == ["x[0]", "x[1]", "x[2]", "x[3]"]
    np.testing.assert_array_equal(features.rows, np.arange(50))
    assert features.excluded == [] and features.warnings == []


def test_other_dtypes_are_copied_once_to_float32_c_order():
    X = np.asfortranarray(np.random.default_rng(0).normal(size=(40, 3)))
    features = prepare_features(X)
    assert features.matrix.dtype == np.float32 and features.matrix.flags.c_contiguous
    np.testing.assert_allclose(features.matrix, X, rtol=1e-6)
    assert not np.shares_memory(features.matrix, X)


def test_no_full_size_intermediate_copy():
    # float64 input: a float32 output is unavoidable, a float64 temporary copy is not.
    X = np.random.default_rng(0).normal(size=(400_000, 16))
    X[7, 3] = np.nan  # forces the row-filtering path too
    out_bytes = 399_999 * 16 * 4
    tracemalloc.start()
    try:
        features = prepare_features(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert features.matrix.shape == (399_999, 16)
    assert peak < 1.5 * out_bytes + 16 * 2**20, peak  # a float64 copy would add 51 MB


def test_table_vector_column_is_the_default_and_expands():
    table = Table(columns=["id", "emb", "label"])
    rng = np.random.default_rng(0)
    for i in range(6):
        table.add_data(f"r{i}", rng.normal(size=3), "a" if i % 2 else "b")
    features = prepare_features(table)
    assert features.columns == ["emb[0]", "emb[1]", "emb[2]"]
    assert features.matrix.shape == (6, 3)
    np.testing.assert_allclose(features.matrix, table.get_column("emb", "numpy"), rtol=1e-6)


def test_digits_drops_constant_pixels_and_says_so():
    import embproj_panel as ep

    features = prepare_features(ep.datasets.digits())
    assert features.matrix.shape == (1797, 61)
    assert set(features.dropped_columns) == {"pixel_0_0", "pixel_4_0", "pixel_4_7"}
    assert all(why.startswith("constant") for why in features.dropped_columns.values())
    assert any("3 columns dropped" in w for w in features.warnings)


def test_dataframe_text_numbers_are_coerced_and_counted():
    frame = pd.DataFrame({"a": ["1.5", "2", "x", "4", "5"], "b": [1.0, 2.0, 3.0, 4.0, 5.0]})
    features = prepare_features(frame, ["a", "b"])
    assert features.coerced == {"a": 4}
    np.testing.assert_array_equal(features.rows, [0, 1, 3, 4])
    assert features.excluded == [(2, "'a': 'x' is not a number")]
    assert any("4 text values in 'a' read as numbers" in w for w in features.warnings)
    assert any("1 of 5 rows left out" in w for w in features.warnings)


def test_nan_inf_and_empty_cells_are_excluded_with_reasons():
    frame = pd.DataFrame({
        "f": [1.0, np.nan, 3.0, 4.0, np.inf, 6.0],
        "i": pd.array([1, 2, None, 4, 5, 6], dtype="Int64"),
    })
    features = prepare_features(frame, ["f", "i"])
    np.testing.assert_array_equal(features.rows, [0, 3, 5])
    assert features.excluded == [(1, "'f': NaN"), (2, "'i': empty"), (4, "'f': inf")]


def test_table_none_vector_is_reported_empty():
    table = Table(columns=["emb"])
    for value in ([1.0, 2.0], None, [3.0, 5.0], [4.0, 1.0]):
        table.add_data(value)
    features = prepare_features(table)
    assert features.excluded == [(1, "'emb': empty")]
    np.testing.assert_array_equal(features.rows, [0, 2, 3])


def test_column_with_no_numbers_is_dropped_not_every_row():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "nothing": [None, None, None]})
    features = prepare_features(frame, ["a", "nothing"])
    assert features.columns == ["a"]
    assert features.dropped_columns == {"nothing": "no numeric values"}
    assert len(features.rows) == 3


def test_constant_component_of_a_vector_is_dropped_by_name():
    X = np.random.default_rng(0).normal(size=(10, 3))
    X[:, 1] = 0.5
    features = prepare_features(pd.DataFrame({"emb": list(X)}), "emb")
    assert features.columns == ["emb[0]", "emb[2]"]
    assert features.dropped_columns == {"emb[1]": "constant: every row is 0.5"}


def test_single_row_keeps_its_columns():
    features = prepare_features(np.array([[1.0, 2.0, 3.0]]))
    assert features.matrix.shape == (1, 3) and features.dropped_columns == {}


def test_bool_columns_are_zero_one():
    frame = pd.DataFrame({"flag": [True, False, True], "v": [1.0, 2.0, 4.0]})
    np.testing.assert_array_equal(prepare_features(frame, ["flag", "v"]).matrix[:, 0], [1, 0, 1])


def test_object_array_of_numeric_strings():
    X = np.array([["1", "2"], ["3", "oops"], ["5", "7"]], dtype=object)
    features = prepare_features(X)
    assert features.excluded == [(1, "'x': 'oops' is not a number")]
    np.testing.assert_array_equal(features.matrix, [[1, 2], [5, 7]])


@pytest.mark.parametrize(
    ("data", "columns", "message"),
    [
        (np.empty((0, 3)), None, "0 rows"),
        (pd.DataFrame({"a": [1.0, 2.0]}), ["b"], "No column 'b'"),
        (pd.DataFrame({"a": [1.0, 2.0]}), ["a", "a"], "more than once"),
        (pd.DataFrame({"a": ["x", "y"]}), None, "no vector or numeric column"),
        (pd.DataFrame({"a": [np.nan, np.nan], "b": [None, None]}), ["a", "b"], "no numeric"),
        (pd.DataFrame({"a": [np.nan, 1.0], "b": [1.0, np.nan]}), ["a", "b"], "all 2 rows"),
        (np.array([[1e39, 1.0], [2.0, 3.0]]), None, "too large for float32"),
        (np.zeros(5), None, "must be 2-D"),
    ],
)
def test_nothing_to_project_is_a_clear_error(data, columns, message):
    with pytest.raises(ValueError, match=message):
        prepare_features(data, columns)


def test_image_columns_cannot_be_projected():
    table = Table(columns=["img", "v"])
    table.add_data(Image(np.zeros((4, 4), dtype=np.uint8)), 1.0)
    table.add_data(Image(np.ones((4, 4), dtype=np.uint8)), 2.0)
    with pytest.raises(ValueError, match="holds images"):
        prepare_features(table, ["img"])


def test_unsupported_input_type():
    with pytest.raises(TypeError, match="Table, a pandas DataFrame or a 2-D array"):
        prepare_features({"a": [1, 2]})
