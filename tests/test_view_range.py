"""How soon the server hears of a zoom (``embproj_panel.views.view_range``): the scatter's
figure ends a wheel zoom's interaction after ``LOD_TIMEOUT_MS`` (BokehJS's 500 ms default was
half of a zoom's redraw time at 1M rows), and its one range callback does not wait again on
the server, in glyph and in raster mode, with images following the view."""

from __future__ import annotations

import panel as pn
import pytest
from bokeh.models import Plot

import embproj_panel as ep
from embproj_panel.views import Projector
from embproj_panel.views.view_range import LOD_TIMEOUT_MS

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")


@pytest.fixture(scope="module")
def digits():
    return ep.datasets.digits()


@pytest.mark.parametrize("raster", [False, True])
def test_a_zoom_reaches_the_server_without_fixed_waits(digits, raster):
    from holoviews.plotting.bokeh.callbacks import RangeXYCallback

    projector = Projector(digits, method="pca")
    try:
        projector.state.wait()
        if raster:
            projector.state.datashade_threshold = 100
        projector.show_images = True
        root = pn.panel(projector).get_root()
        assert projector.scatter.raster is raster
        (plot,) = projector.scatter.pane._plots.values()
        plot = plot[0] if isinstance(plot, tuple) else plot
        figure = plot.state
        assert figure.lod_timeout == LOD_TIMEOUT_MS < 500
        # The map is the page's only figure that reports ranges.
        assert [p for p in root.select({"type": Plot}) if p.lod_timeout != 500] == [figure]
        callbacks = [cb for sub in plot.traverse(lambda p: p)
                     for cb in getattr(sub, "callbacks", []) if isinstance(cb, RangeXYCallback)]
        # One callback (one redraw per zoom) for the points and the images...
        assert len(callbacks) == 1
        assert {id(s.source) for s in callbacks[0].streams} == {
            id(projector.scatter.view_source)}
        # ... that handles a range event at once (HoloViews' own waits 100-150 ms).
        assert callbacks[0].debounce is None and RangeXYCallback.debounce == 100
    finally:
        projector.state.close()
