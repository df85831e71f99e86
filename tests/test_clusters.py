"""Clusters on the 2-D layout: blobs recovered on every path (exact, sparse graph, sample +
nearest), ids by size, unprojected rows, progress/cancel, and the label text of each kind."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from embproj_panel.clusters import (
    EXACT_MAX_ROWS,
    UNCLUSTERED,
    Cancelled,
    default_min_cluster_size,
    find_clusters,
    label_clusters,
    short_text,
)


def blobs(n: int, centres: int = 6, spread: float = 1.0, seed: int = 0):
    """Gaussian blobs on a ring of radius 30: every pair of centres at least 30 apart."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(centres) / centres
    middle = 30 * np.column_stack([np.cos(angle), np.sin(angle)]) / np.sin(np.pi / centres)
    truth = rng.integers(0, centres, n)
    return middle[truth] + spread * rng.normal(size=(n, 2)), truth


@pytest.mark.parametrize("n", [600, EXACT_MAX_ROWS + 2_000])  # exact path, sparse-graph path
def test_well_separated_blobs_are_recovered(n):
    X, truth = blobs(n)
    result = find_clusters(X)
    assert result.n_clusters == 6
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    assert result.labels.dtype == np.int64 and result.labels.shape == (n,)


def test_sparse_graph_agrees_with_exact_hdbscan():
    from sklearn.cluster import HDBSCAN

    X, _ = blobs(EXACT_MAX_ROWS + 1_000, centres=5, spread=2.5, seed=3)
    ours = find_clusters(X, min_cluster_size=60, min_samples=8)
    exact = HDBSCAN(min_cluster_size=60, min_samples=8, copy=True).fit(X).labels_
    assert adjusted_rand_score(exact, ours.labels) >= 0.99


def test_sample_then_nearest_recovers_blobs_and_says_so():
    X, truth = blobs(12_000, seed=1)
    result = find_clusters(X, max_rows=3_000, random_state=7)
    assert result.n_sampled == 3_000
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    assert any("random sample of 3,000 of the 12,000" in w and "nearest sampled row" in w
               for w in result.warnings)
    again = find_clusters(X, max_rows=3_000, random_state=7)
    np.testing.assert_array_equal(result.labels, again.labels)


def test_ids_run_from_the_largest_cluster_down():
    rng = np.random.default_rng(0)
    sizes = [100, 400, 250]
    X = np.concatenate([rng.normal(size=(s, 2)) + [60 * i, 0] for i, s in enumerate(sizes)])
    result = find_clusters(X, min_cluster_size=30)
    assert list(result.sizes) == [400, 250, 100]
    assert (result.labels[100:500] == 0).all() and (result.labels[:100] == 2).all()
    # each centre is a member's position, the one nearest its cluster's median
    for cluster, (row, centre) in enumerate(zip(result.representatives, result.centers)):
        assert result.labels[row] == cluster
        np.testing.assert_array_equal(X[row], centre)


def test_rows_without_a_position_are_unclustered_and_counted():
    X, truth = blobs(1_000)
    X[::10] = np.nan
    X[5, 1] = np.inf
    result = find_clusters(X)
    assert (result.labels[::10] == UNCLUSTERED).all() and result.labels[5] == UNCLUSTERED
    assert "101 of 1,000 rows have no 2-D position" in result.warnings[0]
    placed = np.isfinite(X).all(axis=1)
    assert adjusted_rand_score(truth[placed], result.labels[placed]) >= 0.9


def test_noise_far_from_the_blobs_is_unclustered():
    X, _ = blobs(2_000)
    rng = np.random.default_rng(5)
    outliers = rng.uniform(-500, 500, size=(15, 2)) + 1_000  # fewer than min_cluster_size
    result = find_clusters(np.concatenate([X, outliers]))
    assert result.min_cluster_size == 20
    assert (result.labels[-15:] == UNCLUSTERED).all()
    assert result.n_clusters == 6


def test_degenerate_inputs_do_not_fail():
    line = np.column_stack([np.r_[np.arange(3_000), np.arange(3_000) + 10_000] / 10.0,
                            np.zeros(6_000)])  # collinear: no Delaunay triangulation exists
    result = find_clusters(line, min_cluster_size=100)
    assert result.n_clusters == 2
    dupes = np.repeat(blobs(300)[0], 20, axis=0)  # every point 20 times: zero distances
    result = find_clusters(dupes, min_cluster_size=300)
    assert result.n_clusters == 6
    few = find_clusters(np.zeros((3, 2)))
    assert result.n_clusters and few.n_clusters == 0 and "Too few" in few.warnings[0]
    nothing = find_clusters(np.full((50, 2), np.nan))
    assert (nothing.labels == UNCLUSTERED).all()


def test_bad_arguments_have_clear_messages():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        find_clusters(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="min_cluster_size must be at least 2"):
        find_clusters(X, min_cluster_size=1)
    with pytest.raises(TypeError, match="min_cluster_size must be an integer"):
        find_clusters(X, min_cluster_size=5.5)
    with pytest.raises(ValueError, match="min_samples must be at most"):
        find_clusters(X, min_samples=1_000)


def test_min_cluster_size_scales_with_rows():
    assert default_min_cluster_size(100) == 5
    assert default_min_cluster_size(1_797) == 18
    assert default_min_cluster_size(1_000_000) == 10_000
    result = find_clusters(blobs(2_000)[0])
    assert result.min_cluster_size == 20 and result.min_samples == 10


def test_progress_rises_to_one_and_cancel_stops():
    X, _ = blobs(20_000)
    seen: list[float] = []
    find_clusters(X, max_rows=8_000, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) > 4
    assert all(a <= b for a, b in zip(seen, seen[1:]))

    calls = threading.Event()

    def cancel() -> bool:
        if calls.is_set():
            return True
        calls.set()
        return False

    with pytest.raises(Cancelled):
        find_clusters(X, cancel=cancel)


# -- labels -----------------------------------------------------------------------------------


def test_categorical_labels_are_the_majority_value_and_share():
    X, truth = blobs(3_000, centres=4)
    result = find_clusters(X)
    values = truth.astype(object)
    flip = np.flatnonzero(truth == 0)[:30]  # 30 rows of blob 0 carry another value
    values[flip] = "noise"
    labels = label_clusters(result, values, "categorical")
    for cluster in range(result.n_clusters):
        members = result.labels == cluster
        majority = np.bincount(truth[members]).argmax()
        share = np.mean(values[members] == majority)
        assert labels[cluster].text == f"{majority} ({share:.0%})"
        assert labels[cluster].share == pytest.approx(share)
        assert labels[cluster].size == members.sum()
        assert (labels[cluster].x, labels[cluster].y) == tuple(result.centers[cluster])


def test_categorical_label_reads_label_floats_as_integers_and_empty_clusters():
    X, truth = blobs(800, centres=2)
    result = find_clusters(X)
    labels = label_clusters(result, truth.astype(float) + 6, "categorical")
    assert {label.text for label in labels.values()} == {"6 (100%)", "7 (100%)"}
    empty = label_clusters(result, [None] * 800, "categorical")
    assert {label.text for label in empty.values()} == {"(empty)"}


def test_text_labels_are_the_top_class_terms():
    X, truth = blobs(1_200, centres=3)
    result = find_clusters(X)
    words = {0: "apple banana cherry", 1: "rocket orbit launch", 2: "violin cello sonata"}
    rng = np.random.default_rng(0)
    docs = [f"the {words[t]} and {rng.choice(['common', 'shared'])} words 42" for t in truth]
    labels = label_clusters(result, docs, "text")
    for cluster in range(3):
        blob = np.bincount(truth[result.labels == cluster]).argmax()
        assert set(labels[cluster].text.split()) == set(words[blob].split())


def test_image_labels_point_at_the_most_central_member():
    X, _ = blobs(600)
    result = find_clusters(X)
    labels = label_clusters(result, None, "image")
    for cluster, label in labels.items():
        if cluster == UNCLUSTERED:
            continue
        assert label.row == result.representatives[cluster]
        assert label.text == f"cluster {cluster}"


def test_unclustered_gets_its_own_label_and_xss_stays_text():
    X, truth = blobs(1_000, centres=2)
    X[:10] = np.nan
    result = find_clusters(X)
    payload = "<img src=x onerror=window.__xss=1>"
    labels = label_clusters(result, np.where(truth == 0, payload, "b"), "categorical")
    assert labels[UNCLUSTERED].text == "unclustered" and labels[UNCLUSTERED].size == 10
    assert any(label.text == payload + " (100%)" for label in labels.values())  # verbatim


def test_label_text_is_one_short_line():
    assert short_text("a\nb\t c") == "a b c"
    assert short_text("x" * 100) == "x" * 39 + "\u2026"
    assert short_text("abc\u202edef") == "abcdef"  # a bidi override cannot flip the label
    assert short_text(7.0) == "7" and short_text(7.5) == "7.5"


def test_label_arguments_are_checked():
    result = find_clusters(blobs(300)[0])
    with pytest.raises(ValueError, match="kind must be one of"):
        label_clusters(result, [1] * 300, "colour")
    with pytest.raises(ValueError, match="has 2 entries but the clustering has 300"):
        label_clusters(result, [1, 2], "categorical")
    with pytest.raises(ValueError, match="needs the column's values"):
        label_clusters(result, None, "text")
