"""Side-by-side comparison: CompareState/PanelState through param, Compare through its parts
and Bokeh models (one selection, alignment, independent recomputes, moves overlay, XSS).

Every panel here is PCA (fast and deterministic); the UMAP/t-SNE path is the same job slot
as the Projector's and is exercised by the browser test and the benchmark.
"""

from __future__ import annotations

import html
import threading
import time

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import pytest
from _loop import in_loop
from bokeh.models import GlyphRenderer, ImageRGBA, Scatter, Segment

from embproj_panel import compute, trust_state
from embproj_panel.comparison import CompareState, displacements, panel_settings
from embproj_panel.table import Table
from embproj_panel.views import Compare

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

HOSTILE = "<img src=x onerror=window.__xss=1>"
N = 240


def two_checkpoints() -> Table:
    """Checkpoint b is checkpoint a turned (orthogonally, in 8-D), doubled and shifted."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, size=(4, 8))
    labels = rng.integers(0, 4, N)
    a = centres[labels] + rng.normal(size=(N, 8)) * [3, 2, 1, 1, 0.5, 0.5, 0.2, 0.2]
    turn, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    b = 2.0 * a @ turn + 5.0
    c = rng.normal(size=(N, 8))  # unrelated
    return Table(dataframe=pd.DataFrame({
        "label": np.array([HOSTILE, "b", "c", "d"], dtype=object)[labels],
        "ckpt_a": list(a), HOSTILE: list(b), "ckpt_c": list(c),
    }))


VIEWS = [{"method": "pca", "embedding_columns": ["ckpt_a"]},
         {"method": "pca", "embedding_columns": [HOSTILE]},
         {"method": "pca", "embedding_columns": ["ckpt_c"]}]


def compare(**params) -> Compare:
    view = Compare(two_checkpoints(), views=params.pop("views", VIEWS), color_by="label",
                   **params)
    view.wait(120)
    return view


def coords(panel) -> np.ndarray:
    frame = panel.state.frame.sort_values("row")
    return frame[["x", "y"]].to_numpy()


# -- views spec ---------------------------------------------------------------------------------

def test_a_view_spec_splits_into_state_settings_and_method_parameters():
    spec = panel_settings({"method": "umap", "n_neighbors": 30, "embedding_columns": ["v"]})
    assert spec == {"method": "umap", "embedding_columns": ["v"],
                    "settings": {"umap": {"n_neighbors": 30}}}
    with pytest.raises(TypeError, match="n_neighbors"):
        panel_settings({"method": "pca", "n_neighbors": 3})
    with pytest.raises(ValueError, match="Unknown method"):
        panel_settings({"method": "mds"})


def test_two_to_four_panels_and_shared_settings_only_once():
    table = two_checkpoints()
    with pytest.raises(ValueError, match="2 to 4"):
        CompareState(table, views=[{"method": "pca"}])
    with pytest.raises(ValueError, match="2 to 4"):
        CompareState(table, views=[{"method": "pca"}] * 5)
    with pytest.raises(TypeError, match="shared by every panel"):
        CompareState(table, views=[{"method": "pca", "color_by": "label"}, {"method": "pca"}])


# -- one selection ------------------------------------------------------------------------------

def test_a_selection_in_panel_2_is_the_selection_of_every_panel_and_the_table():
    view = compare()
    panels = view.panels
    panels[1].state.select([7, 3, 3, 5])
    assert view.selection == [3, 5, 7]
    assert [p.state.selection for p in panels] == [[3, 5, 7]] * 3
    assert view.table.tabulator.selection == [3, 5, 7]
    view.selection = [1]                       # from Python
    assert [p.state.selection for p in panels] == [[1]] * 3
    view.table.tabulator.selection = [2, 4]    # a click in the table
    assert view.selection == [2, 4] and panels[2].state.selection == [2, 4]
    with pytest.raises(ValueError, match="outside the table"):
        view.selection = [N]
    assert view.selection == [2, 4]


def test_colour_and_style_are_one_choice_for_every_panel():
    view = compare()
    view.panels[2].state.color_by = None
    assert [p.state.color_by for p in view.panels] == [None] * 3
    view.color_select.value = "label"
    assert [p.state.color.kind for p in view.panels] == ["categorical"] * 3
    view.panels[0].state.point_size = 12
    assert [p.state.point_size for p in view.panels] == [12] * 3


def main_scatter(root):
    renderers = [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, Scatter)]
    return max(renderers, key=lambda r: len(r.data_source.data.get("x", [])))


@in_loop
def test_brushing_panel_2_lights_up_panels_1_and_3_and_the_table():
    view = compare()
    roots = [pn.panel(panel).get_root() for panel in view.panels]
    pn.panel(view.table).get_root()
    (brush,) = [s for s in view.panels[1].scatter.streams if isinstance(s, hv.streams.Selection1D)]
    brush.event(index=[0, 1, 2, 3])
    rows = sorted(view.panels[1].state.rows_of([0, 1, 2, 3]).tolist())
    assert view.selection == rows
    for panel, root in zip(view.panels, roots):
        shown = sorted(main_scatter(root).data_source.selected.indices)
        assert shown == sorted(panel.state.positions_of(rows).tolist())
    assert view.table.tabulator.selection == rows


def rasters(root) -> list:
    return [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, ImageRGBA)]


@in_loop
def test_datashader_mode_box_in_one_panel_reshades_every_panel():
    view = compare(datashade_threshold=100)
    roots = [pn.panel(panel).get_root() for panel in view.panels]
    images = [rasters(root)[0].data_source.data["image"][0].copy() for root in roots]
    box = next(s for s in view.panels[2].scatter.streams if isinstance(s, hv.streams.BoundsXY))
    frame = view.panels[2].state.frame
    box.event(bounds=(-1.0, -1.0, 1.0, 1.0))
    inside = frame.x.between(-1, 1) & frame.y.between(-1, 1)
    assert view.selection == sorted(frame.row[inside].tolist()) and view.selection
    for root, before in zip(roots, images):
        (raster,) = rasters(root)  # the same one image, re-shaded in place
        assert not np.array_equal(raster.data_source.data["image"][0], before)


# -- alignment ----------------------------------------------------------------------------------

def test_a_turned_scaled_shifted_checkpoint_is_aligned_onto_the_first_panel():
    view = compare()
    first, second = view.panels[0], view.panels[1]
    reference = coords(first)
    np.testing.assert_allclose(coords(second), reference, atol=1e-3 * np.abs(reference).max())
    assert second.state.alignment.scale == pytest.approx(0.5, rel=1e-4)
    assert "aligned to panel 1" in second.alignment.object
    raw = second.state.raw_projection
    assert not np.allclose(raw.coords, second.state.projection.coords)
    # Off: the computed layout, without recomputing; on again: aligned again.
    view.state.align = False
    assert second.state.raw_projection is raw
    np.testing.assert_array_equal(second.state.projection.coords, raw.coords)
    assert second.state.alignment is None and "alignment is off" in second.alignment.object
    view.state.align = True
    np.testing.assert_allclose(coords(second), reference, atol=1e-3 * np.abs(reference).max())
    # The selection's exported coordinates are the shown (aligned) ones.
    view.selection = [0, 1]
    np.testing.assert_allclose(second.state.selected_dataframe[["x", "y"]].to_numpy(),
                               coords(second)[:2], rtol=1e-6)


def test_the_first_panel_is_shown_as_computed():
    view = compare()
    first = view.panels[0].state
    assert first.projection is first.raw_projection and first.alignment is None


# -- independent recomputes ---------------------------------------------------------------------

def test_panels_recompute_independently():
    view = compare()
    p1, p2, p3 = (panel.state for panel in view.panels)
    raw1, raw2, raw3 = p1.raw_projection, p2.raw_projection, p3.raw_projection
    p3.embedding_columns = ["ckpt_a"]          # only panel 3 recomputes
    view.wait(60)
    assert p1.raw_projection is raw1 and p2.raw_projection is raw2
    assert p3.raw_projection is not raw3 and p3.raw_projection.columns[0].startswith("ckpt_a")
    # A new first panel re-aligns the others without recomputing them.
    shown2 = p2.projection
    p1.embedding_columns = ["ckpt_c"]
    view.wait(60)
    assert p1.raw_projection is not raw1
    assert p2.raw_projection is raw2 and p2.projection is not shown2
    assert p2.alignment.n_shared == N


def test_each_panel_has_its_own_status_and_progress():
    view = compare()
    p1, p2, _ = view.panels
    p2.state.param.update(method="umap")   # UMAP waits for Compute: only panel 2 says so
    assert p2.state.stale and "press Compute" in p2.state.status
    assert not p1.state.stale and "PCA" in p1.state.status
    assert p1.status.line.object != p2.status.line.object


def test_a_panel_stops_assessing_its_layout_when_it_is_asked_for_a_new_one(monkeypatch):
    view = compare()
    p1, p2, p3 = (panel.state for panel in view.panels)
    real = trust_state.assess
    started, cancel_seen = threading.Event(), threading.Event()

    def blocking(*args):
        if args[1] is not p2.raw_projection or started.is_set():
            return real(*args)
        started.set()
        deadline = time.monotonic() + 60
        while not args[8]() and time.monotonic() < deadline:
            time.sleep(0.01)
        cancel_seen.set()
        raise compute.Cancelled("stopped")

    monkeypatch.setattr(trust_state, "assess", blocking)
    faith2 = view.panels[1].trust.faith
    faith2.k = 5  # panel 2 alone reassesses its layout
    assert started.wait(30)
    running = faith2._slot.job
    p2.embedding_columns = ["ckpt_c"]
    # Cancelled before the new layout lands (which may be at once: the layout can be cached
    # by an earlier test, and then a new assessment is already running).
    assert cancel_seen.wait(30) and not faith2._slot.is_current(running)
    with pytest.raises(compute.Cancelled):
        running.result(timeout=30)
    assert not view.panels[0].trust.faith.busy and not view.panels[2].trust.faith.busy
    view.wait(120)
    assert faith2.assessment.k == 5 and faith2.values is not None


# -- where did it move --------------------------------------------------------------------------

def test_displacements_join_the_two_layouts_by_row_and_sample_evenly():
    view = compare()
    first, third = view.panels[0].state, view.panels[2].state
    segments, moved = displacements(first, third, [5, 1, 9])
    assert moved == 3 and segments["row"].tolist() == [5, 1, 9]
    f1, f3 = first.frame.set_index("row"), third.frame.set_index("row")
    np.testing.assert_allclose(segments["x0"], f1.loc[[5, 1, 9], "x"])
    np.testing.assert_allclose(segments["y1"], f3.loc[[5, 1, 9], "y"])
    segments, moved = displacements(first, third, np.arange(N), limit=10)
    assert moved == N and len(segments["x0"]) == 10
    assert segments["row"][0] == 0 and segments["row"][-1] == N - 1


@in_loop
def test_the_moves_overlay_draws_the_selection_from_panel_1_in_later_panels_only():
    view = compare()
    roots = [pn.panel(panel).get_root() for panel in view.panels]

    def segment_counts():
        return [sum(len(r.data_source.data.get("x0", [])) for r in root.select(
            {"type": GlyphRenderer}) if isinstance(r.glyph, Segment)) for root in roots]

    view.selection = list(range(20))
    assert segment_counts() == [0, 0, 0]       # off by default
    view.state.show_moves = True
    assert segment_counts() == [0, 20, 20]
    assert "20 selected rows" in view.panels[2].moves_note.object
    view.state.align = False
    assert segment_counts() == [0, 0, 0]
    assert "Switch alignment on" in view.panels[1].moves_note.object


# -- hostile text -------------------------------------------------------------------------------

def markup_texts(root) -> list[str]:
    """What the browser parses as HTML: Panel's markup models unescape their text once."""
    from panel.models.markup import HTML

    return [html.unescape(model.text) for model in root.select({"type": HTML})]


def test_a_hostile_column_name_and_labels_stay_text_in_every_panel():
    view = compare(views=[VIEWS[1], VIEWS[0]])
    root = pn.panel(view).get_root()
    texts = markup_texts(root)
    assert any("&lt;img src=x" in text for text in texts)   # the title names the column
    assert not any("<img" in text for text in texts)
    titles = [html.unescape(title) for title in view.table.tabulator.titles.values()]
    assert titles and not any("<img" in title for title in titles)
    assert view.panels[0].title.object.endswith("&lt;img src=x onerror=window.__xss=1&gt;")
    assert view.panels[0].state.color.color_key.keys() >= {HOSTILE}  # a label, drawn as text


# -- the app's compare mode ---------------------------------------------------------------------

def test_the_compare_query_value_is_parsed_with_clear_messages():
    from embproj_panel.compare_app import DEFAULT_VIEWS, compare_href, parse_views

    assert parse_views("") == DEFAULT_VIEWS
    views = [{"method": "pca"}, {"method": "umap", "n_neighbors": 30}]
    assert parse_views(views) == views                 # Panel's location decodes JSON itself
    assert parse_views('[{"method": "pca"}, {"method": "tsne"}]')[1] == {"method": "tsne"}
    for bad, message in (("[{", "not JSON"), ('{"method": "pca"}', "list of views"),
                         ('[{"method": "pca"}]', "2 to 4"), ("[" + "1," * 3000 + "1]", "longer")):
        with pytest.raises(ValueError, match=message):
            parse_views(bad)
    href = compare_href("p", "r", "t", views)
    assert href.startswith("?project=p&run=r&table=t&compare=")
    hostile = compare_href(views=[{"method": "pca", "embedding_columns": [HOSTILE]},
                                  {"method": "pca"}])
    assert "<" not in hostile and "%3Cimg" in hostile   # percent-encoded, then href-escaped


def test_compare_app_opens_the_default_comparison_outside_a_session():
    from embproj_panel.compare_app import CompareApp

    app = CompareApp()
    try:
        assert [p.state.method for p in app.compare.panels] == ["pca", "umap"]
        assert app.views == '[{"method":"pca"},{"method":"umap"}]'
        app.compare.panels[1].state.settings["umap"].n_neighbors = 30
        app.compare.panels[1].state.embedding_columns = ["pixel_3_3", "pixel_4_4"]
        assert '"n_neighbors":30' in app.views and '"pixel_3_3"' in app.views
        assert app.single_view_href() == "?"
    finally:
        app.close()
