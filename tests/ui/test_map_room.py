"""The map gets the room: its frame's size at common window sizes, and equal axis scales.

Measured in the served app through BokehJS (the plot view's frame and ranges), as a person
sees it. One page on the digits sample, resized from one window size to the next (no new
page, no new server): at 1400x900 the table goes under the map, at 1920x1080 and with the
sidebar collapsed it sits beside it, and a PCA layout keeps one data unit as many pixels on x
as on y throughout (:mod:`embproj_panel.views.aspect`) and after a wheel zoom. The same
property in Datashader mode and in Compare's linked panels is checked by the tests that
already open those pages
(``test_browser.test_two_hundred_thousand_rows_hover_and_select``,
``test_compare_browser``), so no table is logged and no projection is computed here.
"""

from __future__ import annotations

import numpy as np

from tests.ui.test_browser import assert_zoomed_in, wheel_zoom_in

# Every projector map on the page (its x axis reads "PCA 1", "UMAP 1" or "t-SNE 1"): the
# frame's size and place, px per data unit on each axis, the legend's box, the image's window.
MAPS_JS = """
() => [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range
    && v.model.below.some(a => /^(PCA|UMAP|t-SNE) 1$/.test(a.axis_label ?? ""))
    && v.el.getBoundingClientRect().width > 0).map(v => {
  const f = v.frame.bbox, r = v.el.getBoundingClientRect();
  const xr = v.model.x_range, yr = v.model.y_range;
  const legends = [...v.renderer_views.values()]
      .filter(l => l.model.type === "Legend" && l.model.visible && l.bbox)
      .map(l => [l.bbox.left, l.bbox.top, l.bbox.width, l.bbox.height]);
  const images = v.model.renderers.filter(g => g.data_source && g.data_source.data.dw)
      .map(g => [g.data_source.data.dw[0], g.data_source.data.dh[0]]);
  return {left: r.left + f.left, top: r.top + f.top, width: f.width, height: f.height,
          frame: [f.left, f.top, f.width, f.height],
          x: [xr.start, xr.end], y: [yr.start, yr.end],
          px_x: f.width / (xr.end - xr.start), px_y: f.height / (yr.end - yr.start),
          legends, images};
})
"""

# True once the one map's frame and ranges are the same as at the previous poll and its
# scales are equal: the layout and the callback's range change are done. (A fixed wait per
# window size made the earlier version of this test take minutes on a busy machine.)
SETTLED_JS = f"""
() => {{
  const maps = ({MAPS_JS})();
  if (maps.length !== 1) return false;
  const v = maps[0];
  const key = JSON.stringify([v.width, v.height, v.x, v.y, innerWidth, innerHeight]);
  const same = window.__room_last === key;
  window.__room_last = key;
  return same && v.width > 0 && Math.abs(v.px_x / v.px_y - 1) < 0.02;
}}
"""

# The table's box on the page (Panel renders into shadow roots, which querySelector does not
# enter), and the on-screen area (clipped to the window) of the sidebar and of the table.
TABLE_JS = """
() => {
  const deep = (root, sel) => {
    const found = root.querySelector(sel);
    if (found) return found;
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { const inner = deep(el.shadowRoot, sel); if (inner) return inner; }
    }
    return null;
  };
  const area = el => {
    if (!el) return 0;
    const r = el.getBoundingClientRect();
    const w = Math.min(r.right, innerWidth) - Math.max(r.left, 0);
    const h = Math.min(r.bottom, innerHeight) - Math.max(r.top, 0);
    return w > 0 && h > 0 ? w * h : 0;
  };
  const table = deep(document, ".tabulator");
  const r = table.getBoundingClientRect();
  return {left: r.left, top: r.top, table: area(table),
          sidebar: area(document.querySelector("#sidebar"))};
}
"""


def equal_scales(view: dict) -> float:
    """x px per unit over y px per unit (1 when the scales are equal)."""
    return view["px_x"] / view["px_y"]


def settled_map(page) -> dict:
    page.evaluate("window.scrollTo(0, 0); window.__room_last = null")
    page.wait_for_function(SETTLED_JS, polling=250, timeout=30_000)
    (view,) = page.evaluate(MAPS_JS)
    return view


def test_the_map_fills_its_pane_with_equal_scales_at_every_window_size(served_app, page,
                                                                        screenshot):
    page.goto(served_app)  # the default viewport, 1400x900
    page.wait_for_selector("text=/rows · PCA/", timeout=60_000)
    first = settled_map(page)
    steps = [((1400, 900), "open"), ((1920, 1080), "open"), ((1280, 720), "open"),
             ((1400, 900), "collapsed")]
    for (width, height), sidebar in steps:
        page.set_viewport_size({"width": width, "height": height})
        if sidebar == "collapsed":
            page.locator("#sidebar-button").click()
        view = settled_map(page)
        table = page.evaluate(TABLE_JS)
        where = (f"{width}x{height}, sidebar {sidebar}: {view['width']:.0f}x"
                 f"{view['height']:.0f} px frame")
        print(where, f"x/y px per unit {equal_scales(view):.4f}")
        # The legend sits outside the data: right of the frame, not over it.
        for left, _top, _w, _h in view["legends"]:
            assert left >= view["frame"][0] + view["frame"][2] - 1, where
        # The table: under the map when the main area is narrow, beside it otherwise.
        beside = table["left"] >= view["left"] + view["width"]
        under = table["top"] >= view["top"] + view["height"]
        assert beside != under, (where, table)
        if (width, height, sidebar) == (1400, 900, "open"):
            assert under and view["width"] >= 700 and view["height"] >= 400, where
            # The largest thing on screen: more than the sidebar and the table show.
            frame_area = view["width"] * view["height"]
            assert frame_area > table["sidebar"] and frame_area > table["table"], (where, table)
        elif (width, height) == (1920, 1080):
            assert beside and view["width"] >= 850 and view["height"] >= 700, where
        elif (width, height) == (1280, 720):
            assert under and view["width"] >= 650 and view["height"] >= 350, where
        else:  # 1400x900 with the sidebar collapsed: room for both side by side
            assert beside and view["width"] >= 700, where
        if (width, height) != (1280, 720):
            screenshot(f"{width}x{height}-sidebar-{sidebar}")
    # Back where it began: the same window of data (resizing never drifts the zoom; the
    # frame may differ by a few pixels, a line of text wrapping otherwise).
    page.locator("#sidebar-button").click()
    back = settled_map(page)
    for axis in ("x", "y"):
        span = first[axis][1] - first[axis][0]
        assert np.allclose(back[axis], first[axis], atol=0.03 * span), (axis, first, back)
    # And the wheel zooms in, on both axes, the scales still equal, though the frame changes
    # its size during the zoom (as the zoom's own tick labels may make it do): the fit
    # follows the zoom at every step, not only at the gesture's end.
    before, after = wheel_zoom_in(page, np.mean(back["x"]), np.mean(back["y"]), clicks=1,
                                  resize_to={"width": 1400, "height": 860})
    assert after["height"] < before["height"], (before, after)  # the frame was resized
    assert_zoomed_in(before, after)
