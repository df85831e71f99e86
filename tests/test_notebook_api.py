"""What a notebook user reaches for: the Projector's settings, compute(), wait(), the table echo.

Driven through the Python API and the Bokeh models, as the notebook test drives them through
JupyterLab (tests/notebook); the messages the browser sends are replayed here as Panel
receives them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn
import pytest
from _loop import in_loop
from bokeh.document import Document
from panel.models.tabulator import SelectionEvent

import embproj_panel as ep
from embproj_panel import datasets


@pytest.fixture(scope="module")
def digits():
    return datasets.digits()


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return ep.Table(dataframe=pd.DataFrame({
        "embedding": list(rng.normal(size=(120, 8)).astype(np.float32)),
        "label": rng.choice(["a", "b", "c"], 120),
    }))


# -- settings on the Projector itself -----------------------------------------------------------


def test_state_settings_are_read_and_set_on_the_projector(digits):
    projector = ep.Projector(digits).wait()
    assert projector.method == "pca" and projector.color_by == "target"
    projector.method = "umap"  # used to land in the instance's __dict__ and do nothing
    assert projector.state.method == "umap" and projector.stale
    projector.color_by = None
    projector.point_size = 9
    assert projector.state.color_by is None and projector.state.point_size == 9
    assert "method" not in vars(projector)
    with pytest.raises(ValueError, match="color_by"):
        projector.color_by = "no such column"


def test_what_cannot_be_set_on_the_projector_says_what_to_do(digits):
    projector = ep.Projector(digits).wait()
    with pytest.raises(AttributeError, match="read-only.*projector.compute"):
        projector.projection = None
    with pytest.raises(AttributeError, match="read-only"):
        projector.busy = True
    with pytest.raises(AttributeError, match=r"state\.set_table"):
        projector.table = digits
    with pytest.raises(AttributeError, match=r"settings\['umap'\]\.n_neighbors"):
        projector.n_neighbors = 30
    with pytest.raises(AttributeError, match="no setting 'colour_by'.*color_by"):
        projector.colour_by = "target"
    assert projector.table is projector.parts["table"]  # the parts are untouched


def test_compute_runs_the_pending_projection_and_wait_blocks_until_it_is_shown(small,
                                                                               numba_warm):
    projector = ep.Projector(small, method="pca").wait()
    pca = projector.projection
    projector.method = "umap"
    projector.state.settings["umap"].n_neighbors = 10
    assert projector.projection is pca  # pending: UMAP runs when asked
    projector.compute()
    assert projector.wait(timeout=240) is projector
    assert projector.projection.method == "umap" and not projector.busy
    assert not projector.stale and "UMAP" in projector.state.status


# -- the table's page selection never overwrites a larger plot selection ------------------------

# _notebook_page_document: each page below gets a document of its own, as a notebook output
# does. Without one, get_root() takes Bokeh's current document, which a served test earlier in
# the process can leave pointing at its (dead) session's: Bokeh's curdoc() answers first from
# a process-wide list of documents that servers patch in while running an app (an entry stays
# when a server is stopped midway), and Panel's run_app then makes one Bokeh's current
# document. Panel would schedule this page's updates on that session's stopped loop (CI,
# stop 20: the page selection stayed []); conftest's reset_output() covers only the second.


@in_loop
def test_a_restated_table_page_selection_keeps_the_plot_selection(digits):
    projector = ep.Projector(digits).wait()
    root = pn.panel(projector).get_root(Document())  # see _notebook_page_document
    rows = list(range(0, 1000, 20))  # 50 rows: five table pages
    projector.selection = rows
    tabulator = projector.table.tabulator
    model = tabulator._models[root.ref["id"]][0]
    # What the browser sends after a patch of the visible page (Panel's tabulator.ts
    # reassigns source.selected.indices): the page's rows, as page positions.
    tabulator._process_events({"indices": list(range(10))})
    assert projector.selection == rows
    assert model.source.selected.indices == list(range(10))  # the page still shows them


@in_loop
def test_a_table_click_still_selects_its_row(digits):
    projector = ep.Projector(digits).wait()
    root = pn.panel(projector).get_root(Document())  # see _notebook_page_document
    projector.selection = list(range(0, 1000, 20))
    tabulator = projector.table.tabulator
    model = tabulator._models[root.ref["id"]][0]
    # A plain click on the 4th row of the first page: remote pagination sends it as a
    # SelectionEvent (flush: the clicked row only).
    tabulator._process_event(SelectionEvent(model=model, indices=[3], selected=True, flush=True))
    assert projector.selection == [60]
