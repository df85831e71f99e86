"""Nearest rows in the original space: equal to scikit-learn's brute force, exclusions, k."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from embproj_panel import datasets
from embproj_panel.features import prepare_features
from embproj_panel.neighbors import (
    AnnoyForest,
    NeighborIndex,
    clamp_k,
    clear_cache,
    neighbor_index,
)
from embproj_panel.reducers import Cancelled


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _data(n=400, d=12, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_queries_equal_sklearn_brute_force(metric):
    X = _data()
    index = NeighborIndex(X, metric)
    assert index.exact_queries
    reference = NearestNeighbors(n_neighbors=11, metric=metric, algorithm="brute")
    dist, ids = reference.fit(X.astype(np.float64)).kneighbors(X.astype(np.float64))
    for row in range(len(X)):
        found = index.query(row, k=10)
        assert row not in found.rows  # never its own neighbour
        np.testing.assert_array_equal(found.rows, ids[row, 1:])
        np.testing.assert_allclose(found.distances, dist[row, 1:], rtol=1e-9, atol=1e-12)
        assert found.exact and found.metric == metric and found.note is None


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_graph_equals_sklearn_brute_force(metric):
    X = _data(300, 8, seed=1)
    reference = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute")
    _, ids = reference.fit(X.astype(np.float64)).kneighbors()  # without each row itself
    np.testing.assert_array_equal(NeighborIndex(X, metric).graph(7), ids)


def test_ties_are_broken_by_row_position():
    # Integer pixels: many rows sit at exactly the same distance from a query.
    X = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [2, 2], [1, 0]], dtype=np.float32)
    found = NeighborIndex(X, "euclidean").query(0, k=4)
    np.testing.assert_array_equal(found.rows, [1, 2, 3, 4])
    found = NeighborIndex(X, "euclidean").query(1, k=2)
    np.testing.assert_array_equal(found.rows, [6, 0])  # the duplicate first, at distance 0
    assert found.distances[0] == 0.0


def test_rows_are_table_positions_and_excluded_rows_say_why():
    X = np.random.default_rng(2).normal(size=(50, 4))
    X[[3, 17], 1] = np.nan
    features = prepare_features(X)
    index = NeighborIndex(features.matrix, "euclidean", rows=features.rows,
                          excluded=features.excluded)
    found = index.query(20, k=5)
    assert 3 not in found.rows and 17 not in found.rows and 20 not in found.rows
    kept = np.delete(X, [3, 17], axis=0)
    ref = NearestNeighbors(n_neighbors=6).fit(kept).kneighbors(kept[[18]])[1][0, 1:]
    np.testing.assert_array_equal(found.rows, features.rows[ref])  # mapped back to positions
    with pytest.raises(ValueError, match=r"Row 17 was left out of the projection \('x': NaN\)"):
        index.query(17)
    with pytest.raises(ValueError, match="Row 50 is not among the 48 rows searched"):
        index.query(50)
    with pytest.raises(ValueError, match="positions start at 0"):
        index.query(-1)
    with pytest.raises(ValueError, match="A row is a whole-number position; got 2.5"):
        index.query(2.5)
    assert index.query(np.int32(20), k=5).row == 20


def test_k_is_clamped_with_a_warning_and_a_note():
    index = NeighborIndex(_data(200), "cosine")
    with pytest.warns(UserWarning, match="k=500 is outside 1-100; using k=100"):
        found = index.query(0, k=500)
    assert len(found.rows) == 100 and found.note == "k=500 is outside 1-100; using k=100."
    with pytest.warns(UserWarning, match="k=0 is outside 1-100; using k=1"):
        assert len(index.query(0, k=0).rows) == 1
    small = NeighborIndex(_data(5), "cosine")
    with pytest.warns(UserWarning, match="only 4 other rows; using k=4"):
        assert len(small.query(0, k=10).rows) == 4
    assert clamp_k(10) == (10, None)
    with pytest.raises(ValueError, match="whole number"):
        clamp_k("ten")


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="metric must be one of 'cosine', 'euclidean'"):
        NeighborIndex(_data(10), "manhattan")


def test_zero_vectors_are_at_cosine_distance_one():
    X = _data(30, 4)
    X[5] = 0.0
    found = NeighborIndex(X, "cosine").query(5, k=29)
    np.testing.assert_allclose(found.distances, 1.0)
    far = NeighborIndex(X, "cosine").query(0, k=29)
    assert far.distances[list(far.rows).index(5)] == 1.0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_forest_queries_rerank_exactly_and_find_most_neighbours(metric):
    rng = np.random.default_rng(4)
    centers = rng.normal(size=(20, 16)) * 4
    X = (centers[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    exact = NeighborIndex(X, metric)
    approx = NeighborIndex(X, metric, exact_max_cells=0)  # every query from the forest
    assert not approx.exact_queries and not approx.ready
    before = approx.query(7, k=10)
    assert before.exact  # until the forest exists, queries stay exact
    approx.build()
    assert approx.ready
    recall = []
    for row in range(0, 3000, 50):
        want, got = exact.query(row, k=10), approx.query(row, k=10)
        assert not got.exact and row not in got.rows
        # Whatever the forest proposes carries its exact distance, nearest first.
        assert np.all(np.diff(got.distances) >= 0)
        for r, dist in zip(got.rows, got.distances):
            np.testing.assert_allclose(dist, exact._distances(row, np.array([r]))[0])
        recall.append(len(set(want.rows) & set(got.rows)) / 10)
    assert np.mean(recall) >= 0.95


def test_forest_is_the_same_for_the_same_seed():
    X = _data(2000, 8)
    a = AnnoyForest(X, "euclidean", seed=3, n_trees=5).query(None, 5)[0]
    b = AnnoyForest(X, "euclidean", seed=3, n_trees=5).query(None, 5)[0]
    np.testing.assert_array_equal(a, b)


def test_background_build_reports_progress_and_can_be_cancelled():
    X = _data(20_000, 8)
    index = NeighborIndex(X, "euclidean", exact_max_cells=0)
    handle = index.build_async()
    assert index.build_async() is handle or handle.done  # one build at a time
    forest = handle.future.result(timeout=120)
    assert handle.progress == 1.0 and index.ready and forest is index._forest
    assert index.build_async().future.result() is forest  # built once

    seen = []
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        AnnoyForest(X, "euclidean", progress=seen.append, cancel=lambda: next(calls))
    assert seen and 0 < seen[-1] < 1  # stopped while adding rows


def test_cache_is_keyed_by_content_and_metric():
    X = _data(100)
    a = neighbor_index(X, "cosine")
    assert neighbor_index(X.copy(), "cosine") is a
    assert neighbor_index(X, "euclidean") is not a
    Y = X.copy()
    Y[0, 0] += 1.0
    assert neighbor_index(Y, "cosine") is not a


def test_digits_pixels_neighbours_are_mostly_the_same_digit():
    table = datasets.digits()
    features = prepare_features(table)
    labels = np.asarray(table.get_column("target", convert_to="numpy"))
    index = NeighborIndex(features.matrix, "cosine", rows=features.rows)
    same = np.mean([np.mean(labels[index.query(row).rows] == labels[row])
                    for row in range(0, 1797, 7)])
    assert same > 0.9


def test_neighbors_frame_lists_rows_distances_and_the_rows_columns():
    import pandas as pd

    from embproj_panel.neighbors import neighbors_frame

    table = datasets.digits()
    features = prepare_features(table)
    found = NeighborIndex(features.matrix, "cosine", rows=features.rows).query(0, k=5)
    frame = neighbors_frame(table, found)
    assert list(frame.columns[:4]) == ["row", "distance", "image", "target"]
    np.testing.assert_array_equal(frame["row"], found.rows)
    np.testing.assert_array_equal(frame["distance"], found.distances)
    labels = np.asarray(table.get_column("target", convert_to="numpy"))
    assert frame["target"].tolist() == labels[found.rows].tolist()
    assert frame["image"].iloc[0] is table.get_column("image", convert_to="numpy")[found.rows[0]]
    clash = pd.DataFrame({"row": [10, 11, 12], "distance": ["a", "b", "c"],
                          "x": [0.0, 1.0, 3.0]})
    near = NeighborIndex(clash[["x"]].to_numpy(), "euclidean").query(0, k=2)
    out = neighbors_frame(clash, near)
    assert out["row"].tolist() == [1, 2] and out["row (column)"].tolist() == [11, 12]
    assert out["distance (column)"].tolist() == ["b", "c"]


def test_run_in_background_reports_progress_cancel_and_errors():
    import threading

    from embproj_panel.neighbors import run_in_background

    started = threading.Event()

    def work(progress, cancel):
        progress(0.25)
        started.set()
        while not cancel():
            threading.Event().wait(0.01)
        raise Cancelled("stopped")

    task = run_in_background(work)
    assert started.wait(10) and task.progress == 0.25 and not task.done
    assert task.cancel()
    with pytest.raises(Cancelled, match="stopped"):
        task.future.result(timeout=10)
    assert not task.cancel()  # already finished
    ok = run_in_background(lambda progress, cancel: 42)
    assert ok.future.result(timeout=10) == 42 and ok.progress == 1.0


def test_projection_index_is_shared_by_faithfulness_and_queries():
    import embproj_panel as ep
    from embproj_panel.neighbors import projection_index

    X = np.random.default_rng(9).normal(size=(120, 6))
    X[4, 2] = np.nan
    projection = ep.project(X, "pca", cache=False)
    index = projection_index(X, projection, "euclidean")
    assert projection_index(X, projection, "euclidean") is index
    ep.faithfulness(X, projection, k=5)
    assert index._graph is not None  # the graph faithfulness built is kept on that index
    with pytest.raises(ValueError, match=r"Row 4 was left out of the projection \('x': NaN\)"):
        index.query(4)
    np.testing.assert_array_equal(index.rows, projection.rows)
