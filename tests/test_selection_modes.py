"""Selection tools: box select active on open; Bokeh's selection modes on glyphs and rasters;
a click on a legend entry selects its category."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import pytest
from _loop import in_loop
from bokeh import events
from bokeh.models import BoxSelectTool, LassoSelectTool, Plot, TapTool, WheelZoomTool

from embproj_panel import datasets
from embproj_panel.views import Projector
from embproj_panel.views.scatter import combine_selection, gesture_mode


def _projector(**settings) -> Projector:
    view = Projector(datasets.digits(), **settings)
    view.state.wait(timeout=120)
    return view


def _figure(root) -> Plot:
    return next(p for p in root.select({"type": Plot}) if p.select_one({"type": BoxSelectTool}))


def _stream(view, kind):
    return next(s for s in view.scatter.streams if isinstance(s, kind))


@in_loop
@pytest.mark.parametrize("threshold", [1_000_000, 1_000])  # glyphs, then a raster
def test_box_select_is_the_active_drag_on_open(threshold):
    view = _projector(datashade_threshold=threshold)
    figure = _figure(pn.panel(view.scatter).get_root())
    assert isinstance(figure.toolbar.active_drag, BoxSelectTool)
    assert isinstance(figure.toolbar.active_scroll, WheelZoomTool)
    assert figure.select_one({"type": LassoSelectTool}) is not None


@in_loop
def test_raster_box_in_append_mode_adds_to_the_first_box():
    view = _projector(datashade_threshold=1_000)
    figure = _figure(pn.panel(view.scatter).get_root())
    assert view.scatter.raster
    frame = view.state.frame

    def inside(x0, y0, x1, y1):
        mask = frame.x.between(x0, x1) & frame.y.between(y0, y1)
        return set(frame.row[mask.to_numpy()].tolist())

    box = _stream(view, hv.streams.BoundsXY)
    box.event(bounds=(-20.0, -20.0, 0.0, 0.0))
    first = inside(-20, -20, 0, 0)
    assert set(view.state.selection) == first
    figure.select_one({"type": BoxSelectTool}).mode = "append"  # the tool's mode menu
    box.event(bounds=(5.0, 5.0, 25.0, 25.0))
    second = inside(5, 5, 25, 25)
    assert second and set(view.state.selection) == first | second
    # Back to replace; shift held at the start of the drag appends, as BokehJS has it.
    figure.select_one({"type": BoxSelectTool}).mode = "replace"
    box.event(bounds=(-20.0, -20.0, 0.0, 0.0))
    assert set(view.state.selection) == first
    figure._trigger_event(events.PanStart(figure, modifiers={"shift": True, "ctrl": False,
                                                             "alt": False}))
    box.event(bounds=(5.0, 5.0, 25.0, 25.0))
    assert set(view.state.selection) == first | second
    # The keys belong to one gesture: the next plain box replaces.
    box.event(bounds=(5.0, 5.0, 25.0, 25.0))
    assert set(view.state.selection) == second
    # Lasso, shift+ctrl: subtract.
    figure._trigger_event(events.PanStart(figure, modifiers={"shift": True, "ctrl": True,
                                                             "alt": False}))
    lasso = _stream(view, hv.streams.Lasso)
    lasso.event(geometry=np.array([[5.0, 5.0], [15.0, 5.0], [15.0, 25.0], [5.0, 25.0]]))
    assert set(view.state.selection) == second - inside(5, 5, 15, 25)
    # Tap with the tap tool in append mode adds one point.
    figure.select_one({"type": TapTool}).mode = "append"
    before = set(view.state.selection)
    row = frame.row.iat[0]
    _stream(view, hv.streams.Tap).event(x=float(frame.x.iat[0]), y=float(frame.y.iat[0]))
    assert set(view.state.selection) == before | {int(row)}


def test_modes_combine_as_bokeh_defines_them():
    assert gesture_mode("replace") == "replace"
    assert gesture_mode("xor", shift=True) == "append"
    assert gesture_mode("replace", ctrl=True) == "intersect"
    assert gesture_mode("replace", shift=True, ctrl=True) == "subtract"
    current, new = [1, 2, 3], [3, 4]
    expected = {"replace": [3, 4], "append": [1, 2, 3, 4], "intersect": [3],
                "subtract": [1, 2], "xor": [1, 2, 4], "toggle": [1, 2, 4]}
    for mode, rows in expected.items():
        assert combine_selection(current, new, mode).tolist() == rows, mode


@in_loop
@pytest.mark.parametrize("threshold", [1_000_000, 1_000])  # glyphs, then a raster
def test_a_click_on_a_legend_entry_selects_that_category(threshold):
    from bokeh.models import Legend

    view = _projector(datashade_threshold=threshold, color_by="target")
    figure = _figure(pn.panel(view.scatter).get_root())
    legend = next(m for m in figure.right if isinstance(m, Legend) and m.visible)
    labels = [item.label.value for item in legend.items]
    assert labels == [str(i) for i in range(10)]  # one item per category, literal text
    seven = next(item for item in legend.items if item.label.value == "7")
    legend._trigger_event(events.LegendItemClick(legend, seven))
    target = view.state.table.get_column("target", convert_to="numpy")
    assert view.state.selection == np.flatnonzero(target.astype(str) == "7").tolist()
    # colour by the clusters: the same legend, relabelled; "unclustered" picks the -1 rows
    ids = view.find_clusters(min_cluster_size=60)
    view.color_by = "cluster"
    shown = {item.label.value: item for item in legend.items}
    assert set(shown) == {"unclustered" if c == -1 else str(c) for c in set(ids.tolist())}
    assert (ids == -1).any()
    legend._trigger_event(events.LegendItemClick(legend, shown["unclustered"]))
    assert view.state.selection == np.flatnonzero(ids == -1).tolist()
    legend._trigger_event(events.LegendItemClick(legend, shown["0"]))
    assert view.state.selection == np.flatnonzero(ids == 0).tolist()
