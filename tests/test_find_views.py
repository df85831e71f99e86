"""The search box and the neighbours panel: state -> Bokeh-facing components, overlays, text."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import panel as pn
import pytest

import embproj_panel as ep
from embproj_panel import Table

XSS = "<img src=x onerror=window.__xss=1>"


@pytest.fixture
def projector():
    projector = ep.Projector(ep.datasets.digits())
    projector.state.wait()
    return projector


def test_projector_search_highlights_counts_and_selects_on_one_click(projector):
    hits = projector.search("7")
    assert len(hits) == 179 and projector.selection == []
    box = projector.search_box
    assert box.message.object == "179 of 1,797 rows match"
    assert not box.select_button.disabled
    rings = box.rings(list(hits))
    frame = projector.state.frame
    np.testing.assert_allclose(rings.data["x"], frame["x"].to_numpy()[hits])
    box.select_button.clicks += 1  # the one click
    assert projector.selection == hits.tolist()


def test_typing_in_the_box_searches_and_a_bad_regex_is_an_escaped_message(projector):
    box = projector.search_box
    box.input.value_input = "3"
    assert box.message.object == "183 of 1,797 rows match"
    box.regex.value = True
    box.input.value_input = "(<b>"
    assert box.message.object.startswith("Not a valid regular expression")
    assert "<b>" not in box.message.object and box.select_button.disabled
    with pytest.raises(ValueError, match="Not a valid regular expression"):
        projector.search("(<b>", regex=True)
    assert box.column.options == ["All text columns", "target"]
    box.regex.value = False
    box.column.value = "target"
    assert projector.search_box.find.column == "target"
    box.input.value_input = "9"
    assert box.message.object == "180 of 1,797 rows match"


def test_overlays_are_on_the_scatter_in_both_modes(projector):
    overlays = projector.scatter.overlays
    assert projector.search_box.scatter_overlay in overlays
    assert projector.neighbors_panel.scatter_overlay in overlays
    projector.state.datashade_threshold = 10  # Datashader mode: the overlays stay
    assert projector.scatter.raster
    assert projector.search_box.scatter_overlay(projector.scatter) is not None


def test_tapping_a_point_lists_its_neighbours_and_clicking_one_makes_it_the_query(projector):
    panel = projector.neighbors_panel
    projector.selection = [3]  # a tap (or a table click) selects one row
    listing = panel.list.value
    assert len(listing) == 10 and 3 not in listing["row"].tolist()
    assert list(listing.columns[:2]) == ["row", "distance"]
    assert listing["image"].str.startswith('<img src="data:image/png;base64,').all()
    expected = projector.neighbors(3)  # the same from Python: cosine, k=10
    assert listing["row"].tolist() == expected["row"].tolist()
    lines = panel.lines(3, expected["row"].tolist())
    assert len(lines.data) == 10
    first = int(listing["row"].iloc[0])
    panel._on_click(SimpleNamespace(row=0))
    assert projector.selection == [first]
    assert projector.neighbors_panel.find.query_row == first
    panel.k.value = 4
    assert len(panel.list.value) == 4
    projector.neighbors(first, k=7, metric="euclidean")
    assert panel.k.value == 7 and panel.metric.value == "euclidean"


def test_hostile_labels_and_column_names_stay_text():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"u": rng.normal(size=40), "v": rng.normal(size=40),
                          "label": [XSS if i % 2 else "ok" for i in range(40)]})
    frame.loc[5, "u"] = np.nan
    frame = frame.rename(columns={"u": XSS})
    projector = ep.Projector(Table(dataframe=frame), embedding_columns=[XSS, "v"],
                             color_by="label")
    projector.state.wait()
    hits = projector.search(XSS)
    assert len(hits) == 19  # 20 odd rows, less row 5 (not projected)
    projector.selection = [5]  # not on the map: the reason, escaped
    message = projector.neighbors_panel.message.object
    assert "left out of the projection" in message and "<img" not in message
    assert "&lt;img src=x onerror=window.__xss=1&gt;" in message
    projector.selection = [1]
    listing = projector.neighbors_panel.list
    assert XSS in listing.value["color"].tolist()  # a Tabulator text cell (escaped by Tabulator)
    assert listing.titles == {"color": "label"}
    root = pn.panel(projector).get_root()
    assert root is not None


def test_a_hostile_colour_column_name_is_an_escaped_title_in_the_neighbour_list():
    # Tabulator renders column titles as HTML: the colour column's name once became the
    # neighbour list's title unescaped, and ran in the browser (tests/ui/test_hostile_browser).
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"u": rng.normal(size=20), "v": rng.normal(size=20),
                          XSS: [XSS, "ok"] * 10})
    projector = ep.Projector(Table(dataframe=frame), embedding_columns=["u", "v"], color_by=XSS)
    projector.state.wait()
    projector.selection = [1]
    listing = projector.neighbors_panel.list
    assert XSS not in listing.value.columns
    assert listing.titles == {"color": "&lt;img src=x onerror=window.__xss=1&gt;"}
    model = listing.get_root()
    assert all(XSS not in (column.title or "") and XSS != column.field for column in model.columns)
    projector.state.close()
