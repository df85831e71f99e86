"""Neighbours of a lazy dataset's row: an exact scan a piece at a time equals in-memory search.

Pure functions over a dataset of three Parquet files cut into many small pieces (so that the
k best cross piece boundaries), against :class:`~embproj_panel.neighbors.NeighborIndex` over
the same rows in memory and scikit-learn's brute force.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from embproj_panel.dataset import Dataset, feature_names
from embproj_panel.dataset_neighbors import dataset_neighbors, projected_columns
from embproj_panel.neighbors import NeighborIndex
from embproj_panel.reducers import Cancelled
from tests.test_dataset import blobs, write_files

N, D = 2400, 12


@pytest.fixture()
def data(tmp_path):
    X, labels = blobs(N, D)
    X[[5, 900]] = np.nan  # two rows the projection leaves out
    write_files(tmp_path / "data", X, labels, files=3, row_group=150)
    dataset = Dataset(tmp_path / "data", partition_rows=300)
    kept = np.flatnonzero(np.isfinite(X).all(axis=1))
    projection = SimpleNamespace(
        rows=kept, columns=feature_names(dataset, ["emb"]),
        excluded=[(5, "'emb': NaN or inf"), (900, "'emb': NaN or inf")])
    return dataset, projection, X


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_scan_equals_the_in_memory_exact_search_and_sklearn(data, metric):
    dataset, projection, X = data
    assert len(dataset.pieces()) >= 8
    rows = projection.rows
    index = NeighborIndex(X[rows], metric, rows=rows)
    reference = NearestNeighbors(n_neighbors=11, metric=metric, algorithm="brute").fit(X[rows])
    for row in (0, 299, 300, 1234, N - 1):
        found = dataset_neighbors(dataset, projection, row, 10, metric)
        expected = index.query(row, 10)
        np.testing.assert_array_equal(found.rows, expected.rows)
        np.testing.assert_allclose(found.distances, expected.distances, rtol=1e-12)
        assert row not in found.rows and found.exact and found.metric == metric
        dist, ids = reference.kneighbors(X[[row]], 11)
        assert set(rows[ids[0]]) - {row} >= set(found.rows[:8])  # ties aside
        np.testing.assert_allclose(found.distances, dist[0][1:], atol=1e-5)


def test_an_isolated_projection_searches_only_its_rows(data):
    dataset, projection, X = data
    isolated = SimpleNamespace(rows=projection.rows[projection.rows % 3 == 0],
                               columns=projection.columns, excluded=projection.excluded)
    found = dataset_neighbors(dataset, isolated, 300, 10, "euclidean")
    assert set(found.rows) <= set(isolated.rows)
    expected = NeighborIndex(X[isolated.rows], "euclidean", rows=isolated.rows).query(300, 10)
    np.testing.assert_array_equal(found.rows, expected.rows)
    with pytest.raises(ValueError, match="not among the"):
        dataset_neighbors(dataset, isolated, 301, 10)


def test_excluded_rows_say_why_and_k_is_clamped_with_a_note(data):
    dataset, projection, _ = data
    with pytest.raises(ValueError, match=r"Row 900 was left out of the projection \('emb': NaN"):
        dataset_neighbors(dataset, projection, 900)
    with pytest.raises(ValueError, match="does not exist"):
        dataset_neighbors(dataset, projection, -1)
    found = dataset_neighbors(dataset, projection, 7, 500)
    assert len(found.rows) == 100 and "k=500 is outside 1-100" in found.note


def test_progress_goes_piece_by_piece_and_cancel_stops_it(data):
    dataset, projection, _ = data
    seen: list[float] = []
    dataset_neighbors(dataset, projection, 10, progress=seen.append)
    assert len(seen) == len(dataset.pieces()) and seen == sorted(seen) and seen[-1] == 1.0
    with pytest.raises(Cancelled):
        dataset_neighbors(dataset, projection, 10, cancel=lambda: True)


def test_the_projections_columns_are_read_back_or_refused(data):
    dataset, projection, _ = data
    assert projected_columns(dataset, projection) == ["emb"]
    other = SimpleNamespace(rows=projection.rows, columns=["emb[0]", "emb[1]"], excluded=[])
    with pytest.raises(ValueError, match="not this dataset's"):
        projected_columns(dataset, other)
