"""Compare: each panel's own faithfulness in its header (computed in the background, once per
computed layout, one k for all), and linked pan/zoom at the Bokeh-model level."""

from __future__ import annotations

import html
import re

import numpy as np
import panel as pn
import pytest
from _loop import in_loop
from bokeh.plotting import figure
from test_compare import VIEWS, compare, two_checkpoints

import embproj_panel as ep
from embproj_panel.neighbors import clear_cache
from embproj_panel.views import Compare

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

LINE = re.compile(r"faithfulness mean \d\.\d\d · trustworthiness \d\.\d\d \(k=(\d+), all 240 rows\)")


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    clear_cache()
    yield
    clear_cache()


def test_each_panel_header_shows_its_own_faithfulness():
    view = compare()
    table = view.state.table
    means = []
    for panel in view.panels:
        raw = panel.state.raw_projection
        expected = ep.faithfulness(table, raw, k=10)
        np.testing.assert_array_equal(panel.faithfulness[raw.rows], expected)
        assessment = panel.trust.faith.assessment
        assert assessment.mean == pytest.approx(expected.mean())
        assert LINE.fullmatch(panel.trust.line.object), panel.trust.line.object
        means.append(f"{assessment.mean:.2f}")
        assert f"faithfulness mean {means[-1]}" in panel.trust.line.object
    # The checkpoints differ (panel 3's is unrelated noise): so do their means.
    assert len(set(means)) > 1
    # A comparison's panels do not add a colour column: the colour is one shared choice.
    assert "faithfulness" not in view.state.reference.param.color_by.objects.values()
    # The line is in each panel's header, as text.
    texts = [html.unescape(m.text) for m in pn.panel(view.panels[1]).get_root().select(
        {"type": pn.models.markup.HTML})]
    assert any(LINE.fullmatch(text) for text in texts)


def test_realigning_does_not_recompute_and_one_k_sets_every_panel():
    view = compare()
    p1, p2, _ = view.panels
    job2 = p2.trust.faith._slot.job
    shown2 = p2.state.projection
    p1.state.embedding_columns = ["ckpt_c"]     # panel 2 is re-aligned, not recomputed
    view.wait(60)
    assert p2.state.projection is not shown2
    assert p2.trust.faith._slot.job is job2
    assert p1.trust.faith._slot.job is not None
    view.k_input.value = 5
    view.wait(60)
    for panel in view.panels:
        assert panel.trust.faith.assessment.k == 5
        assert LINE.fullmatch(panel.trust.line.object).group(1) == "5"


def _ranges(root) -> tuple[set[int], set[int]]:
    figures = list(root.select({"type": figure}))
    assert len(figures) == len(VIEWS)
    return {id(f.x_range) for f in figures}, {id(f.y_range) for f in figures}


@in_loop
def test_linked_zoom_shares_the_panels_ranges_and_can_be_switched_off():
    view = compare()
    assert view.linked_zoom and view.zoom_toggle.value
    root = pn.panel(view).get_root()
    x_ranges, y_ranges = _ranges(root)
    assert len(x_ranges) == 1 and len(y_ranges) == 1     # one x range, one y range
    view.zoom_toggle.value = False
    x_ranges, y_ranges = _ranges(root)
    assert len(x_ranges) == 3 and len(y_ranges) == 3     # each panel its own again
    view.linked_zoom = True
    x_ranges, y_ranges = _ranges(root)
    assert len(x_ranges) == 1 and len(y_ranges) == 1


@in_loop
def test_plots_that_land_after_the_page_is_built_are_linked_too():
    # The app's page is a template: Panel's own linking missed a plot that replaced a panel's
    # empty pane later (every panel whose projection lands after the page is built).
    from bokeh.document import Document

    view = Compare(two_checkpoints(), views=VIEWS, color_by="label")
    page = pn.template.FastListTemplate(main=[view.main_area()], sidebar=[*view.controls])
    document = page.server_doc(Document())
    assert not list(document.select({"type": figure}))  # nothing has landed yet
    view.wait(120)
    figures = list(document.select({"type": figure}))
    assert len(figures) == 3
    assert len({id(f.x_range) for f in figures}) == 1
    assert len({id(f.y_range) for f in figures}) == 1
    view.close()


def test_linked_zoom_off_from_the_start():
    view = compare(linked_zoom=False)
    x_ranges, y_ranges = _ranges(pn.panel(view).get_root())
    assert len(x_ranges) == 3 and len(y_ranges) == 3


def test_the_url_can_switch_linked_zoom_off(monkeypatch):
    from embproj_panel.compare_app import CompareApp
    from embproj_panel.views import session

    query = {"compare": '[{"method":"pca"},{"method":"pca","embedding_columns":["pixel_3_3",'
                        '"pixel_4_4"]}]', "zoom": "false"}
    monkeypatch.setattr(session, "url_query", lambda: dict(query))
    app = CompareApp()
    try:
        assert app.compare.linked_zoom is False
        assert not any(panel.scatter.pane.linked_axes for panel in app.compare.panels)
    finally:
        app.close()


TWO_PCA = ('[{"method":"pca"},{"method":"pca","embedding_columns":["pixel_3_3",'
           '"pixel_4_4"]}]')


def test_the_compare_url_records_the_faithfulness_k_and_reads_it_back(location):
    from urllib.parse import parse_qs, urlencode

    from embproj_panel.compare_app import CompareApp

    url = location("?" + urlencode({"compare": TWO_PCA, "k": "25"}))
    app = CompareApp()
    try:
        assert not app._message.visible
        assert [panel.trust.faith.k for panel in app.compare.panels] == [25, 25]
        app.compare.wait(60)
        assert [panel.trust.faith.assessment.k for panel in app.compare.panels] == [25, 25]
        app.compare.k_input.value = 12         # changed in the page: the URL follows
        assert parse_qs(url.search[1:])["k"] == ["12"]
        assert app.compare.panels[1].trust.faith.k == 12
    finally:
        app.close()


@pytest.mark.parametrize("value", ["0", "101", "abc", "7.5", "<b>x</b>"])
def test_a_bad_k_in_the_compare_url_is_refused_with_a_note(location, value):
    from urllib.parse import parse_qs, urlencode

    from embproj_panel.compare_app import CompareApp

    url = location("?" + urlencode({"compare": TWO_PCA, "k": value}))
    app = CompareApp()
    try:
        assert [panel.trust.faith.k for panel in app.compare.panels] == [10, 10]
        message = app._message.object
        assert app._message.visible and "from 1 to 100" in message and "k=10 is used" in message
        assert "<b>" not in message and "Traceback" not in message
        assert parse_qs(url.search[1:])["k"] == ["10"]  # the k in use, not the refused one
    finally:
        app.close()
