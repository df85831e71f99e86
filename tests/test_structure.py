"""ClusterState: the ``cluster`` derived column (colour, table, export), labels, background runs with
progress and cancel, stale results dropped, a new layout invalidating the clusters."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

import embproj_panel.structure as structure
from embproj_panel.clusters import UNCLUSTERED, Cancelled
from embproj_panel.state import ProjectorState
from embproj_panel.structure import ClusterState
from embproj_panel.table import Table

HOSTILE = "<img src=x onerror=window.__xss=1>"


def blob_table(n: int = 900, extra: dict | None = None) -> Table:
    """Three far-apart blobs in 4-d (PCA keeps them apart), a label and a free-text column
    (300 distinct values: text, not categories)."""
    rng = np.random.default_rng(0)
    truth = np.arange(n) % 3
    centres = np.array([[0, 0, 0, 0], [40, 0, 0, 0], [0, 40, 0, 0]], dtype=float)
    vectors = centres[truth] + rng.normal(size=(n, 4))
    words = np.array(["apple banana cherry", "rocket orbit launch", "violin cello sonata"])
    frame = pd.DataFrame({"embedding": list(vectors), "label": truth.astype(str),
                          "text": [f"the {w} words, take {i % 100}" for i, w in enumerate(words[truth])], **(extra or {})})
    return Table(dataframe=frame)


@pytest.fixture
def state():
    s = ProjectorState(table=blob_table(), method="pca")
    s.wait()
    yield s
    s.close()


def test_run_adds_a_cluster_column_usable_like_any_other(state):
    clusters = ClusterState(state)
    labels = clusters.run()
    truth = np.arange(900) % 3
    assert labels.dtype == np.int64 and labels.shape == (900,)
    assert len(set(labels.tolist())) == 3
    assert (pd.crosstab(labels, truth).to_numpy() > 0).sum() == 3  # one blob each
    # the state's derived column (the user's table is left alone)
    assert clusters.column == "cluster" and "cluster" not in state.table.columns
    np.testing.assert_array_equal(state.derived["cluster"].values, labels)
    np.testing.assert_array_equal(state.cells("cluster", [0, 5]), labels[[0, 5]])
    # colour by it (categories, -1 "unclustered"), see it in exports; no new projection
    projection = state.projection
    assert "cluster" in state.param.color_by.objects.values()
    state.color_by = "cluster"
    assert state.color.kind == "categorical" and state.projection is projection
    assert list(state.color.color_key) == [str(c) for c in sorted(set(labels.tolist()))]
    assert state.color.values[7] == str(labels[7])
    state.select([0, 1])
    assert state.selected_dataframe["cluster"].tolist() == labels[[0, 1]].tolist()
    assert "3 clusters" in clusters.status and "0 rows unclustered" in clusters.status


def test_labels_from_each_kind_of_column(state):
    clusters = ClusterState(state)
    assert clusters.label_column == "label"  # the colour column
    clusters.run()
    assert sorted(label.text for c, label in clusters.labels.items()) == [
        "0 (100%)", "1 (100%)", "2 (100%)"]
    clusters.label_column = "text"
    assert {frozenset(label.text.split()) for label in clusters.labels.values()} == {
        frozenset({"apple", "banana", "cherry"}), frozenset({"rocket", "orbit", "launch"}),
        frozenset({"violin", "cello", "sonata"})}
    with pytest.raises(ValueError, match="cannot name clusters"):
        clusters.run(label_column="embedding")


def test_rerun_replaces_the_column_and_a_users_cluster_column_is_kept(state):
    table = blob_table(extra={"cluster": ["mine"] * 900})
    state.set_table(table)
    state.wait()
    clusters = ClusterState(state)
    first = clusters.run(min_cluster_size=50)
    assert clusters.column == "cluster_"
    assert table.get_column("cluster", convert_to="numpy")[0] == "mine"  # untouched
    again = clusters.run(min_cluster_size=600)  # too big: nothing
    assert (again == UNCLUSTERED).all() and not (first == UNCLUSTERED).all()
    np.testing.assert_array_equal(state.derived["cluster_"].values, again)
    assert list(state.derived) == ["cluster_"]
    state.color_by = "cluster_"  # all unclustered: one category, named
    assert list(state.color.color_key) == ["unclustered"]
    assert "No clusters of at least 600 rows" in clusters.status


def test_rows_not_projected_are_unclustered(state):
    vectors = list(np.random.default_rng(1).normal(size=(300, 4)))
    vectors[7] = np.array([np.nan] * 4)
    state.set_table(Table(dataframe=pd.DataFrame({"embedding": vectors})))
    state.wait()
    labels = ClusterState(state).run(min_cluster_size=5)
    assert labels[7] == UNCLUSTERED and len(labels) == 300


def test_background_find_reports_progress_and_applies_once(state):
    clusters = ClusterState(state)
    seen = []
    clusters.param.watch(lambda e: seen.append(e.new), ["progress"])
    clusters.param.trigger("find")
    assert clusters.busy
    clusters.wait()
    assert not clusters.busy and clusters.progress == 1.0 and clusters.clustering is not None
    assert clusters.column == "cluster" and len(clusters.labels) == 3


def slow_find(monkeypatch, started: threading.Event):
    """find_clusters that waits, polling cancel, until its test lets it finish."""
    real = structure.find_clusters
    release = threading.Event()

    def fake(coords, size=None, progress=None, cancel=None):
        started.set()
        while not release.wait(0.01):
            if cancel is not None and cancel():
                raise Cancelled("Cancelled.")
        return real(coords, size)

    monkeypatch.setattr(structure, "find_clusters", fake)
    return release


def running_search(state, monkeypatch) -> tuple[ClusterState, threading.Event]:
    """A ClusterState whose background search has started and waits for ``release``."""
    started = threading.Event()
    release = slow_find(monkeypatch, started)
    clusters = ClusterState(state)
    clusters.param.trigger("find")
    assert started.wait(10)
    return clusters, release


def test_cancel_stops_the_search_and_keeps_nothing_new(state, monkeypatch):
    clusters, _ = running_search(state, monkeypatch)
    clusters.param.trigger("cancel")
    clusters.wait(10)
    assert not clusters.busy and clusters.clustering is None
    assert clusters.status.startswith("Cancelled") and "cluster" not in state.derived


def test_a_result_for_an_old_layout_is_dropped(state, monkeypatch):
    clusters, release = running_search(state, monkeypatch)
    state.embedding_columns = ["embedding"]  # same columns, but ask again: a new projection
    state.param.trigger("compute")
    state.wait()
    release.set()
    clusters.wait(10)
    assert clusters.clustering is None and "cluster" not in state.derived


def test_a_new_layout_makes_the_clusters_stale(state):
    clusters = ClusterState(state)
    clusters.run()
    state.param.update(method="umap")
    state.param.trigger("compute")
    state.wait(300)
    assert clusters.labels == {} and clusters.clustering is None
    assert "layout changed" in clusters.status
    assert (state.derived["cluster"].values == UNCLUSTERED).all()


def test_hostile_label_values_stay_plain_text(state):
    table = blob_table(extra={"hostile": [HOSTILE] * 900})
    state.set_table(table)
    state.wait()
    clusters = ClusterState(state)
    clusters.run(label_column="hostile")
    assert {label.text for c, label in clusters.labels.items() if c >= 0} == {
        HOSTILE + " (100%)"}


def test_no_layout_yet_is_a_clear_message():
    state = ProjectorState()
    clusters = ClusterState(state)
    with pytest.raises(ValueError, match="No layout yet"):
        clusters.run()
    clusters.param.trigger("find")
    assert "No layout yet" in clusters.error


def test_close_stops_a_running_search(state, monkeypatch):
    clusters, _ = running_search(state, monkeypatch)
    clusters.close()
    deadline = time.monotonic() + 10
    while clusters._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not clusters._thread.is_alive()
