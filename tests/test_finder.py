"""FindState driven through param: search hits, the selection, neighbours, hostile text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestNeighbors

from embproj_panel import Table, datasets
from embproj_panel.features import prepare_features
from embproj_panel.finder import FindState
from embproj_panel.state import ProjectorState

XSS = "<img src=x onerror=window.__xss=1>"


@pytest.fixture
def digits_state():
    state = ProjectorState(table=datasets.digits())
    state.wait()
    return state


def test_search_highlights_without_selecting_then_one_call_selects(digits_state):
    find = FindState(digits_state)
    hits = find.search("7")
    labels = np.asarray(digits_state.table.get_column("target", convert_to="numpy"))
    np.testing.assert_array_equal(hits, np.flatnonzero(labels == "7"))
    assert find.hits == hits.tolist()
    assert find.search_message == "179 of 1,797 rows match"
    assert digits_state.selection == []  # highlighted only
    find.select_hits()
    assert digits_state.selection == hits.tolist()


def test_typing_a_query_is_the_same_as_calling_search(digits_state):
    find = FindState(digits_state)
    find.query = "3"
    assert find.search_message == "183 of 1,797 rows match"
    find.param.update(query="^[13]$", regex=True)
    assert len(find.hits) == 182 + 183
    find.query = ""
    assert find.hits == [] and find.search_message == ""


def test_bad_regex_is_a_message_in_the_state_and_a_value_error_in_python(digits_state):
    find = FindState(digits_state)
    with pytest.raises(ValueError, match="Not a valid regular expression: missing \\)"):
        find.search("(7", regex=True)
    assert find.hits == [] and find.search_message.startswith("Not a valid regular expression")
    find.param.update(query="[", regex=True)  # from a widget: no exception, the message
    assert "unterminated character set" in find.search_message
    with pytest.raises(ValueError, match="No column 'nope'"):
        find.search("7", column="nope")


def test_hostile_text_is_searched_as_text_and_hits_only_projected_rows():
    frame = pd.DataFrame({"u": [0.0, 1, 2, np.nan, 4], "v": [1.0, 0, 3, 2, 5],
                          "label": [XSS, "b", XSS, XSS, "c"]})
    state = ProjectorState(table=Table(dataframe=frame), embedding_columns=["u", "v"])
    state.wait()
    find = FindState(state)
    # Row 3 has no u, so it is not on the map: it cannot be highlighted or counted.
    assert find.search(XSS).tolist() == [0, 2]
    assert find.search_message == "2 of 4 rows match"


def test_neighbors_equal_sklearn_and_list_the_rows_columns(digits_state):
    find = FindState(digits_state)
    frame = find.neighbors(5, k=10, metric="euclidean")
    X = prepare_features(digits_state.table).matrix.astype(np.float64)
    dist, ids = NearestNeighbors(n_neighbors=11).fit(X).kneighbors(X[[5]])
    assert frame["row"].tolist() == ids[0, 1:].tolist()
    np.testing.assert_allclose(frame["distance"], dist[0, 1:], rtol=1e-9)
    assert {"image", "target"} <= set(frame.columns)
    assert find.query_row == 5 and find.neighbor_rows == frame["row"].tolist()
    assert find.neighbor_message == "10 nearest rows to row 5 by euclidean distance."
    cosine = find.neighbors(5)  # cosine, the default metric, with the k just used
    assert len(cosine) == 10 and find.metric == "euclidean"
    find.metric = "cosine"
    assert find.neighbors(5)["row"].tolist() != [] and 5 not in find.neighbor_rows


def test_neighbors_k_clamped_and_excluded_rows_explained():
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) ** 0.5,
                          "name": [f"r{i}" for i in range(30)]})
    frame.loc[7, "a"] = np.nan
    state = ProjectorState(table=Table(dataframe=frame), embedding_columns=["a", "b"])
    state.wait()
    find = FindState(state)
    with pytest.warns(UserWarning, match="k=500 is outside 1-100 and there are only 28"):
        out = find.neighbors(0, k=500)
    assert len(out) == 28 and find.k == 100
    assert find.neighbor_message.startswith("k=500 is outside")
    with pytest.raises(ValueError, match=r"Row 7 was left out of the projection \('a': NaN\)"):
        find.neighbors(7)


def test_a_new_projection_clears_neighbours_and_reruns_the_search(digits_state):
    find = FindState(digits_state)
    find.search("7")
    find.neighbors(0)
    digits_state.param.update(embedding_columns=digits_state.embedding_columns[:32])
    digits_state.wait()
    assert find.query_row is None and find.neighbor_rows == []
    assert find.search_message == "179 of 1,797 rows match"
