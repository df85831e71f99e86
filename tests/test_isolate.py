"""Isolate ("Project selection"): the state, the breadcrumb view, the URL, a served page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn
import pytest
import requests
from bokeh.models import Button

import embproj_panel as ep
from embproj_panel import Table, compute, datasets
from embproj_panel.features import prepare_features
from embproj_panel.state import ProjectorState
from embproj_panel.views.isolate import MAX_URL_CHARS, IsolateView, decode_rows, encode_rows

ROWS = list(range(0, 1797, 7))  # 257 rows


@pytest.fixture
def projector():
    projector = ep.Projector(datasets.digits(), color_by="target")
    projector.wait()
    return projector


def _isolated(projector, rows=ROWS):
    projector.selection = rows
    projector.isolate()
    projector.wait()
    return projector.state.projection


def test_isolated_coordinates_equal_a_direct_projection_of_those_rows(projector):
    state = projector.state
    full = state.projection
    part = _isolated(projector)
    assert state.isolated == ROWS
    np.testing.assert_array_equal(part.rows, ROWS)  # the table's row positions
    # A projection of a table made of only those rows, computed afresh: the same layout.
    frame = state.table.get_dataframe()[list(state.embedding_columns)].iloc[ROWS]
    direct = compute.project(frame.to_numpy(), "pca", cache=False)
    np.testing.assert_allclose(part.coords, direct.coords, rtol=1e-5, atol=1e-5)
    assert part.key and part.key != full.key  # its own cache entry
    assert part.key in compute.projection_cache()
    assert "isolated selection of 257" in state.status
    # Colours are the full table's colours of those rows.
    labels = state.table.get_column("target", convert_to="numpy")
    assert state.frame["row"].tolist() == ROWS
    color_of = dict(state.color.color_key)
    assert list(state.frame["color"]) == [labels[r] for r in ROWS]
    assert set(state.frame["color"]) <= set(color_of)


def test_back_restores_the_full_projection_and_the_selection(projector):
    state = projector.state
    full = state.projection
    _isolated(projector)
    assert projector.selection == ROWS
    assert "Projecting all 1,797 rows." == projector.isolate(None)
    projector.wait()
    assert state.isolated == []
    np.testing.assert_array_equal(state.projection.coords, full.coords)
    assert state.projection.cached  # from the cache, not recomputed
    assert projector.selection == ROWS
    # The selection stays in table positions throughout, and a selection made inside the
    # isolated view is the one shown when going back.
    _isolated(projector)
    projector.selection = ROWS[:5]
    selected = projector.selected_dataframe
    assert selected.index.tolist() == ROWS[:5] and selected["x"].notna().all()
    projector.isolate(None)
    projector.wait()
    assert projector.selection == ROWS[:5]


def test_search_and_neighbours_look_only_among_the_isolated_rows(projector):
    all_sevens = projector.search("7")
    _isolated(projector)
    hits = projector.search("7")
    assert set(hits) == set(all_sevens) & set(ROWS) and 0 < len(hits) < len(all_sevens)
    assert projector.search_box.message.object == f"{len(hits)} of 257 rows match"
    found = projector.neighbors(ROWS[3], k=10)
    assert len(found) == 10 and set(found["row"]) <= set(ROWS)
    # The same neighbours as an exact search over only those rows.
    matrix = prepare_features(projector.state.table, projector.state.embedding_columns).matrix
    sub = matrix[ROWS].astype(np.float64)
    sub /= np.linalg.norm(sub, axis=1, keepdims=True)
    order = np.argsort(1 - sub @ sub[3], kind="stable")
    expected = [ROWS[i] for i in order if i != 3][:10]
    assert set(found["row"]) == set(expected)
    with pytest.raises(ValueError):
        projector.neighbors(1, k=5)  # row 1 is not in the isolated projection


def test_an_empty_selection_is_a_message_not_an_error(projector):
    state = projector.state
    full = state.projection
    message = projector.isolate()
    assert message.startswith("Nothing is selected")
    assert state.isolation_note == message and state.isolated == []
    assert state.projection is full and not state.busy
    view = projector.isolation
    assert view.note.visible and view.note.object.startswith("Nothing is selected")
    with pytest.raises(ValueError, match="outside the table"):
        projector.isolate([5000])
    with pytest.raises(AttributeError, match="isolate"):
        projector.isolated = [1]


def test_isolating_rows_that_cannot_be_projected_keeps_the_full_view():
    frame = pd.DataFrame({"a": [0.0, 1, np.nan, 3, 4], "b": [1.0, 0, np.nan, 2, 5]})
    state = ProjectorState(table=Table(dataframe=frame))
    state.wait()
    state.isolate([2])
    state.wait()
    assert state.isolated == [] and len(state.projection.rows) == 4
    assert state.isolation_note.startswith("Could not project the selection of 1 rows")
    assert state.error


def test_features_of_a_subset_report_the_tables_positions():
    frame = pd.DataFrame({"a": [0.0, 1, np.nan, 3, 4, 5], "b": [1.0, 0, 2, 2, 5, 7]})
    features = prepare_features(frame, rows=[5, 2, 1, 4])
    np.testing.assert_array_equal(features.rows, [1, 4, 5])
    assert features.excluded == [(2, "'a': NaN")]
    np.testing.assert_array_equal(features.matrix[:, 1], [0, 5, 7])
    with pytest.raises(ValueError, match="outside"):
        prepare_features(frame, rows=[6])


def test_the_breadcrumb_goes_back_and_nests(projector):
    view = projector.isolation
    assert view.crumbs.objects == []  # nothing isolated: no breadcrumb
    _isolated(projector)
    root = pn.panel(view).get_root()
    labels = sorted(button.label for button in root.select({"type": Button}))
    assert labels == ["All 1,797 rows", "Project selection", "Selection of 257 rows"]
    # An isolation inside the isolation adds a crumb.
    projector.selection = ROWS[:100]
    projector.isolate()
    projector.wait()
    crumbs = [w for w in view.crumbs.objects if isinstance(w, pn.widgets.Button)]
    assert [c.label for c in crumbs] == ["All 1,797 rows", "Selection of 257 rows",
                                         "Selection of 100 rows"]
    crumbs[1].clicks += 1  # back one level
    projector.wait()
    assert projector.state.isolated == ROWS and len(projector.state.projection.rows) == 257
    projector.selection = []
    crumbs = [w for w in view.crumbs.objects if isinstance(w, pn.widgets.Button)]
    crumbs[-1].clicks += 1  # the current level: its rows selected again
    assert projector.selection == ROWS
    crumbs[0].clicks += 1  # all rows
    projector.wait()
    assert projector.state.isolated == [] and view.crumbs.objects == []
    assert len(projector.state.projection.rows) == 1797


def test_the_table_and_the_download_hold_the_isolated_rows(projector):
    _isolated(projector)
    projector.selection = []
    table = projector.table
    shown = table.tabulator._processed
    assert list(shown.index) == ROWS
    downloads = projector.downloads
    downloads.rows.value = "all"
    assert downloads.frame().index.tolist() == ROWS


def test_isolate_view_needs_no_projector():
    state = ProjectorState(table=datasets.digits())
    state.wait()
    view = IsolateView(state)
    view.button.clicks += 1
    assert view.note.visible and state.isolated == []


def test_url_encoding_round_trips_and_refuses_bad_values():
    rows = [0, 1, 2, 5, 7, 8, 100]
    assert encode_rows(rows) == "0-2_5_7-8_100"
    assert decode_rows("0-2_5_7-8_100", 101) == rows
    assert decode_rows("3,1", 5) == [1, 3]
    assert encode_rows([]) == ""
    for text, reason in [("", "names no rows"), ("1-x", "is not a row number"),
                         ("5-2", "goes backwards"), ("0-2000", "outside the table of 1,797"),
                         ("-1", "is not a row number"), ("1.5", "is not a row number"),
                         ("<script>", "is not a row number"),
                         ("1_" * MAX_URL_CHARS, "the limit is")]:
        with pytest.raises(ValueError, match=reason):
            decode_rows(text, 1797)


def _serve():
    from test_server import serve

    return serve()


def test_served_page_opens_isolated_from_the_url_and_refuses_bad_values():
    url, apps = _serve()
    assert requests.get(url + "?isolate=0-99_150_200-209", timeout=60).status_code == 200
    state = apps[0].state
    assert state.isolated == [*range(100), 150, *range(200, 210)]
    state.wait(timeout=60)
    assert len(state.projection.rows) == 111
    assert not apps[0]._message.visible
    assert requests.get(url + "?isolate=5-2_<b>", timeout=60).status_code == 200
    app = apps[1]
    assert app.state.isolated == []
    assert app._message.visible and "isolate=" in app._message.object
    assert "goes backwards" in app._message.object and "<b>" not in app._message.object
