"""Per-point faithfulness: equal to brute force, k clamped, excluded rows, trustworthiness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.manifold import trustworthiness

import embproj_panel as ep
from embproj_panel import Table, datasets
from embproj_panel.features import prepare_features
from embproj_panel.neighbors import NeighborIndex, clear_cache, original_matrix
from embproj_panel.trust import assess, knn_2d, preservation


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _brute_knn(X: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Every pairwise distance in float64, each row sorted by (distance, position)."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "euclidean":
        D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)  # squared: same order
    else:
        norms = np.linalg.norm(X, axis=1)
        outer = norms[:, None] * norms[None, :]
        D = 1.0 - np.divide(X @ X.T, outer, out=np.zeros_like(outer), where=outer > 0)
    np.fill_diagonal(D, np.inf)
    positions = np.broadcast_to(np.arange(len(X)), D.shape)
    return np.lexsort((positions, D), axis=1)[:, :k]


def _brute_faithfulness(X, coords, k, metric):
    high = _brute_knn(X, k, metric)
    low = _brute_knn(coords, k, "euclidean")
    return np.array([len(set(a) & set(b)) / k for a, b in zip(high, low)])


def test_digits_pca_equals_brute_force_exactly():
    table = datasets.digits()
    projection = ep.project(table, "pca")
    values = ep.faithfulness(table, projection)  # k=10, euclidean
    X = prepare_features(table).matrix
    expected = _brute_faithfulness(X, projection.coords, 10, "euclidean")
    assert values.shape == (1797,) and values.dtype == np.float64
    np.testing.assert_array_equal(values, expected)  # ties included: integer pixels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_random_data_equals_brute_force_exactly(metric, k):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(250, 6)).astype(np.float32)
    projection = ep.project(X, "pca", cache=False)
    values = ep.faithfulness(X, projection, k=k, metric=metric)
    np.testing.assert_array_equal(values, _brute_faithfulness(X, projection.coords, k, metric))


def test_two_d_ties_and_duplicate_points_are_broken_by_position():
    # Ten copies of one point and a lattice: more rows tie at the k-th distance than a
    # KD-tree query of k + spare returns.
    coords = np.vstack([np.zeros((12, 2)), np.array([[x, y] for x in range(5) for y in range(5)])])
    np.testing.assert_array_equal(knn_2d(coords, 3), _brute_knn(coords, 3, "euclidean"))
    np.testing.assert_array_equal(knn_2d(coords, 10), _brute_knn(coords, 10, "euclidean"))


def test_a_rotated_lattice_of_duplicate_points_equals_brute_force():
    # Two integer pixel columns of digits: a 17 x 17 lattice, hundreds of rows on some
    # points, rotated by PCA, so distances that tie on the lattice differ in the last bits.
    # The KD-tree's own radius search then missed rows at the edge and k=25 failed.
    table = datasets.digits()
    coords = ep.project(table, "pca", columns=["pixel_3_3", "pixel_4_4"]).coords
    for k in (10, 25):
        np.testing.assert_array_equal(knn_2d(coords, k), _brute_knn(coords, k, "euclidean"))
    np.testing.assert_array_equal(knn_2d(coords, 25, chunk=100),
                                  _brute_knn(coords, 25, "euclidean"))


def test_a_row_is_never_its_own_neighbour_and_identical_spaces_score_one():
    coords = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    projection = ep.project(coords, "pca", cache=False)  # PCA of 2-D data: a rotation
    values = ep.faithfulness(coords, projection, k=7)
    np.testing.assert_allclose(values, 1.0)
    assert not (knn_2d(coords, 7) == np.arange(100)[:, None]).any()


def test_preservation_counts_shared_neighbours_and_ignores_missing_ones():
    high = np.array([[1, 2, 3], [0, -1, -1]])
    low = np.array([[3, 2, 9], [2, 0, 5]])
    np.testing.assert_allclose(preservation(high, low), [2 / 3, 1 / 3])


def test_k_is_clamped_with_a_message():
    X = np.random.default_rng(1).normal(size=(60, 4))
    projection = ep.project(X, "pca", cache=False)
    with pytest.warns(UserWarning, match="k=0 is outside 1-100; using k=1"):
        low = ep.faithfulness(X, projection, k=0)
    np.testing.assert_array_equal(low, _brute_faithfulness(X.astype(np.float32),
                                                           projection.coords, 1, "euclidean"))
    with pytest.warns(UserWarning, match="k=500 is outside 1-100 and there are only 59 other rows; using k=59"):
        assert np.all(ep.faithfulness(X, projection, k=500) == 1.0)  # every other row
    report = assess(X, projection, k=250)
    assert report.k == 59 and "using k=59" in report.notes[0]


def test_excluded_rows_get_no_value_and_values_follow_projection_order():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80),
                          "c": rng.normal(size=80), "label": ["x"] * 80})
    frame.loc[[5, 40], "b"] = np.nan
    projection = ep.project(frame, "pca", cache=False)
    assert 5 not in projection.rows and len(projection.rows) == 78
    values = ep.faithfulness(frame, projection, k=5)
    assert values.shape == (78,)
    kept = frame.drop(index=[5, 40])[["a", "b", "c"]].to_numpy(np.float32)
    np.testing.assert_array_equal(values, _brute_faithfulness(kept, projection.coords, 5,
                                                              "euclidean"))
    # Other columns that leave out a projected row: said, not guessed.
    frame["d"] = rng.normal(size=80)
    frame.loc[9, "d"] = np.nan
    with pytest.raises(ValueError, match=r"row 9 has no value there \('d': NaN\)"):
        ep.faithfulness(frame, projection, columns=["a", "d"])


def test_columns_default_to_the_projections_vector_columns():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(120, 5))
    table = Table(dataframe=pd.DataFrame({"emb": list(vectors), "other": list(rng.normal(
        size=(120, 3))), "name": [f"r{i}" for i in range(120)]}))
    projection = ep.project(table, "pca", columns="emb", cache=False)
    assert projection.columns[0] == "emb[0]"
    np.testing.assert_allclose(original_matrix(table, projection), vectors, rtol=1e-6)
    values = ep.faithfulness(table, projection, k=4)
    expected = _brute_faithfulness(vectors.astype(np.float32), projection.coords, 4, "euclidean")
    np.testing.assert_array_equal(values, expected)
    other = ep.faithfulness(table, projection, k=4, columns="other")
    assert not np.array_equal(other, values)  # a different original space
    with pytest.raises(ValueError, match="is not in the source"):
        ep.faithfulness(pd.DataFrame({"x": range(120)}), projection)


def test_unknown_metric_is_refused():
    X = np.random.default_rng(4).normal(size=(30, 3))
    with pytest.raises(ValueError, match="metric must be one of"):
        ep.faithfulness(X, ep.project(X, "pca", cache=False), metric="manhattan")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_trustworthiness_over_every_row_equals_sklearn(metric):
    X = np.random.default_rng(5).normal(size=(300, 8)).astype(np.float32)
    projection = ep.project(X, "pca", cache=False)
    report = assess(X, projection, k=10, metric=metric)
    assert report.sample == 300 and report.trust_stderr == 0.0
    expected = trustworthiness(X.astype(np.float64), projection.coords, n_neighbors=10,
                               metric=metric)
    assert report.trustworthiness == pytest.approx(expected, abs=1e-12)
    assert "all rows" in report.summary()


def test_trustworthiness_on_a_sample_is_stated_and_close():
    X = np.random.default_rng(6).normal(size=(600, 8)).astype(np.float32)
    projection = ep.project(X, "pca", cache=False)
    full = assess(X, projection, k=10).trustworthiness
    part = assess(X, projection, k=10, sample=200, seed=1)
    assert part.sample == 200 and "random sample of 200 of 600 rows" in part.summary()
    assert abs(part.trustworthiness - full) < 4 * part.trust_stderr + 1e-9


def test_forest_graph_above_the_exact_limit(monkeypatch):
    import embproj_panel.neighbors as neighbors

    monkeypatch.setattr(neighbors, "EXACT_GRAPH_MAX_ROWS", 500)
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(10, 12)) * 5
    X = (centers[rng.integers(0, 10, 2000)] + rng.normal(size=(2000, 12))).astype(np.float32)
    graph = NeighborIndex(X, "euclidean").graph(10)  # from the forest
    exact = _brute_knn(X, 10, "euclidean")
    assert not (graph == np.arange(2000)[:, None]).any()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(graph, exact)])
    assert recall > 0.8  # 0.88 with Annoy's default search on this hard (12-d noise) data
    wider = NeighborIndex(X, "euclidean")
    wider._forest = NeighborIndex(X, "euclidean").build()
    more = wider.graph(10, search_k=20 * 11 * wider._forest.n_trees)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(more, exact)]) > 0.97


def test_the_forest_is_let_go_after_the_graph_unless_single_queries_need_it(monkeypatch):
    import embproj_panel.neighbors as neighbors

    monkeypatch.setattr(neighbors, "EXACT_GRAPH_MAX_ROWS", 500)
    X = np.random.default_rng(8).normal(size=(1500, 8)).astype(np.float32)
    index = NeighborIndex(X, "euclidean")    # single rows exhaustive, the graph from a forest
    graph = index.graph(10)
    assert index._forest is None and index.ready     # only the graph is held
    np.testing.assert_array_equal(index.graph(4), graph[:, :4])  # a smaller k: no forest
    assert index._forest is None
    assert index.graph(12).shape == (1500, 12) and index._forest is None  # built, let go
    queried = NeighborIndex(X, "euclidean", exact_max_cells=0)  # rows asked of the forest
    queried.graph(10)
    assert queried._forest is not None


@pytest.mark.slow
def test_mean_orders_pca_and_umap_as_sklearn_trustworthiness_does(numba_warm):
    table = datasets.digits()
    X = prepare_features(table).matrix
    means, trusts = {}, {}
    for method in ("pca", "umap"):
        projection = ep.project(table, method, random_state=0)
        means[method] = ep.faithfulness(table, projection).mean()
        trusts[method] = trustworthiness(X, projection.coords, n_neighbors=10)
    assert (means["umap"] > means["pca"]) == (trusts["umap"] > trusts["pca"])
    assert means["umap"] > means["pca"]  # and the difference is the expected one


def test_assess_async_matches_assess_and_can_be_cancelled():
    from embproj_panel.trust import assess_async

    X = np.random.default_rng(8).normal(size=(200, 5)).astype(np.float32)
    projection = ep.project(X, "pca", cache=False)
    task = assess_async(X, projection, k=6)
    result = task.future.result(timeout=60)
    assert task.progress == 1.0
    np.testing.assert_array_equal(result.values, assess(X, projection, k=6).values)
    assert result.summary().startswith("Faithfulness (k=6, euclidean): mean ")
    with pytest.raises(ValueError, match="metric must be one of"):
        assess_async(X, projection, metric="hamming")
    from embproj_panel.reducers import Cancelled

    with pytest.raises(Cancelled):
        assess(X, projection, k=6, cancel=lambda: True)
