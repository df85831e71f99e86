"""The map gets the room: its frame's size at common window sizes, and equal axis scales.

Measured in the served app through BokehJS (the plot view's frame and ranges), as a person
sees it: at 1400x900, 1920x1080 and a 1280x720 laptop, with the sidebar open and collapsed,
in glyph mode, in Datashader mode and in Compare's panels. PCA layouts are isotropic, so one
data unit must take as many pixels on x as on y (:mod:`embproj_panel.views.aspect`).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

import embproj_panel as ep

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

# On-screen area (clipped to the window) of the sidebar and of the table.
AREAS_JS = """
() => {
  const area = el => {
    if (!el) return 0;
    const r = el.getBoundingClientRect();
    const w = Math.min(r.right, innerWidth) - Math.max(r.left, 0);
    const h = Math.min(r.bottom, innerHeight) - Math.max(r.top, 0);
    return w > 0 && h > 0 ? w * h : 0;
  };
  const deep = (root, sel) => {
    const found = root.querySelector(sel);
    if (found) return found;
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { const inner = deep(el.shadowRoot, sel); if (inner) return inner; }
    }
    return null;
  };
  return {sidebar: area(document.querySelector("#sidebar")),
          table: area(deep(document, ".tabulator"))};
}
"""

SIZES = [(1400, 900), (1920, 1080), (1280, 720)]


def equal_scales(view: dict) -> float:
    """x px per unit over y px per unit (1 when the scales are equal)."""
    return view["px_x"] / view["px_y"]


def the_map(page) -> dict:
    (view,) = page.evaluate(MAPS_JS)
    return view


def settle(page) -> None:
    page.wait_for_timeout(1500)  # the layout and the callback's range change, then a paint


@pytest.fixture(scope="module")
def room_tables(ui_store):
    """A table over the Datashader threshold, and two checkpoints to compare."""
    rng = np.random.default_rng(3)
    n = 60_000  # over ProjectorState.datashade_threshold (50,000): a raster
    labels = rng.integers(0, 5, n)
    # A wide, flat cloud: the layout's extent is about 4:1, far from a wide frame's aspect.
    vectors = rng.normal(size=(n, 4)) * np.array([8.0, 2.0, 0.5, 0.5])
    vectors[:, :2] += rng.normal(scale=4, size=(5, 2))[labels]
    big = pd.DataFrame({"embedding": list(vectors.astype(np.float32)),
                        "label": labels.astype(str)})
    small = rng.normal(size=(300, 6))
    ckpts = pd.DataFrame({"label": rng.integers(0, 3, 300).astype(str),
                          "ckpt_a": list(small * [5, 1, 1, 1, 1, 1]),
                          "ckpt_b": list(small * [1, 4, 1, 1, 1, 1])})
    with ep.init(project="room", name="run1", dir=ui_store) as run:
        run.log({"big": big, "ckpts": ckpts})
    views = [{"method": "pca", "embedding_columns": ["ckpt_a"]},
             {"method": "pca", "embedding_columns": ["ckpt_b"]}]
    return {"raster": "?project=room&run=run1&table=big&color=label",
            "compare": "?project=room&run=run1&table=ckpts&color=label&compare="
                       + quote(json.dumps(views))}


def test_the_map_fills_its_pane_with_equal_scales_at_every_window_size(served_app, page,
                                                                        screenshot):
    page.goto(served_app)
    page.wait_for_selector("text=/rows · PCA/", timeout=60_000)
    page.wait_for_function(f"() => ({MAPS_JS})().length === 1", timeout=60_000)
    settle(page)
    first = the_map(page)
    seen = {}
    for sidebar in ("open", "collapsed"):
        if sidebar == "collapsed":
            page.locator("#sidebar-button").click()
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            settle(page)
            view = seen[width, height, sidebar] = the_map(page)
            where = f"{width}x{height}, sidebar {sidebar}: {view['width']:.0f}x" \
                    f"{view['height']:.0f} px frame"
            print(where, f"x/y px per unit {equal_scales(view):.4f}")
            assert abs(equal_scales(view) - 1) < 0.02, where
            # The legend sits outside the data: right of the frame, not over it.
            for left, _top, _w, _h in view["legends"]:
                assert left >= view["frame"][0] + view["frame"][2] - 1, where
            if (width, height) in ((1400, 900), (1920, 1080)):
                screenshot(f"{width}x{height}-sidebar-{sidebar}")
            if (width, height) == (1400, 900):
                areas = page.evaluate(AREAS_JS)
                frame_area = view["width"] * view["height"]
                assert view["width"] >= 700 and view["height"] >= 400, where
                # The largest thing on screen: more than the sidebar and the table show.
                assert frame_area > areas["sidebar"] and frame_area > areas["table"], \
                    (where, areas)
    assert seen[1920, 1080, "open"]["width"] >= 850
    assert seen[1280, 720, "open"]["width"] >= 650
    # Back where it began: the same window of data (resizing never drifts the zoom; the
    # frame may differ by a few pixels, a line of text wrapping otherwise).
    page.locator("#sidebar-button").click()
    page.set_viewport_size({"width": 1400, "height": 900})
    settle(page)
    back = the_map(page)
    for axis in ("x", "y"):
        span = first[axis][1] - first[axis][0]
        assert np.allclose(back[axis], first[axis], atol=0.03 * span), (axis, first, back)


def test_a_datashader_map_is_shaded_for_the_widened_window(served_app, room_tables, page):
    page.goto(served_app + room_tables["raster"])
    page.wait_for_selector("text=/60,000 of 60,000 rows · PCA/", timeout=120_000)
    page.wait_for_function(f"() => ({MAPS_JS})().some(v => v.images.length)",
                           timeout=120_000)
    # The server shades the window the browser widened (its RangeXY stream): wait for it.
    page.wait_for_function(
        f"""() => ({MAPS_JS})().some(v => v.images.length
            && Math.abs(v.images[0][0] / (v.x[1] - v.x[0]) - 1) < 0.02
            && Math.abs(v.images[0][1] / (v.y[1] - v.y[0]) - 1) < 0.02
            && Math.abs(v.px_x / v.px_y - 1) < 0.02)""", timeout=60_000)
    view = the_map(page)
    assert view["width"] >= 700 and abs(equal_scales(view) - 1) < 0.02, view


def test_compare_panels_keep_equal_scales(served_app, room_tables, page):
    page.goto(served_app + room_tables["compare"], timeout=120_000)
    page.wait_for_function(f"() => ({MAPS_JS})().length === 2", timeout=120_000)
    page.locator("text=/aligned to panel 1/").first.wait_for(timeout=60_000)
    settle(page)
    views = page.evaluate(MAPS_JS)
    ratios = [round(equal_scales(view), 4) for view in views]
    print("compare panels x/y px per unit", ratios)
    assert all(abs(ratio - 1) < 0.02 for ratio in ratios), ratios
