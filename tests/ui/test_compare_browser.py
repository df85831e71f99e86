"""The compare mode in a real browser: three panels, a brush in panel 2 lights up panels 1
and 3 and the table; the URL records the comparison; hostile names stay text."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pytest
from _browser_support import activate_tool

import embproj_panel as ep

HOSTILE = "<img src=x onerror=window.__xss=1>"

# Every plot view (panel), in reading order, with its frame and its points' selection.
PANELS_JS = """
() => [...Bokeh.index.all_views()]
  .filter(v => v.frame && v.model.x_range &&
               v.model.renderers.some(r => r.data_source && r.data_source.data.x &&
                                           r.data_source.data.x.length > 50))
  .map(v => {
    const rect = v.el.getBoundingClientRect();
    const f = v.frame.bbox;
    const xr = v.model.x_range, yr = v.model.y_range;
    const points = v.model.renderers.filter(r => r.data_source && r.data_source.data.x)
      .sort((a, b) => b.data_source.data.x.length - a.data_source.data.x.length)[0];
    return {left: rect.left, top: rect.top, frame: [f.left, f.top, f.width, f.height],
            span: [xr.end - xr.start, yr.end - yr.start],
            scales: (f.width / (xr.end - xr.start)) / (f.height / (yr.end - yr.start)),
            selected: points.data_source.selected.indices.length};
  })
  .sort((a, b) => (a.top - b.top) || (a.left - b.left))
"""


def check_box(page, label: str) -> None:
    """Click the checkbox of ``label`` (Bokeh puts each one in its own shadow root)."""
    boxes = page.locator("input[type=checkbox]")
    roots = boxes.evaluate_all("els => els.map(e => e.getRootNode().textContent)")
    (index,) = [i for i, text in enumerate(roots) if text.endswith(label) or label in text[-80:]]
    boxes.nth(index).click()


@pytest.fixture(scope="module")
def checkpoints(ui_store):
    """Two checkpoints of 300 rows (the second a turned copy) and noise, hostile names."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    a = rng.normal(0, 6, (4, 8))[labels] + rng.normal(size=(300, 8))
    turn, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    frame = pd.DataFrame({
        "label": np.array([HOSTILE, "b", "c", "d"], dtype=object)[labels],
        "ckpt_a": list(a), HOSTILE: list(2 * a @ turn + 3), "ckpt_c": list(rng.normal(size=(300, 8))),
    })
    with ep.init(project="compare", name="run1", dir=ui_store) as run:
        run.log({"ckpts": frame})
    views = [{"method": "pca", "embedding_columns": ["ckpt_a"]},
             {"method": "pca", "embedding_columns": [HOSTILE]},
             {"method": "pca", "embedding_columns": ["ckpt_c"]}]
    return ("?project=compare&run=run1&table=ckpts&color=label&compare="
            + quote(json.dumps(views)))


def test_a_brush_in_panel_2_lights_up_panels_1_and_3_and_the_table(served_app, checkpoints,
                                                                     page, screenshot):
    page.add_init_script("window.__xss = undefined;")
    page.goto(served_app + checkpoints, timeout=120_000)
    page.wait_for_function(f"() => ({PANELS_JS})().length === 3", timeout=120_000)
    page.locator("text=/aligned to panel 1/").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    panels = page.evaluate(PANELS_JS)
    # PCA is isotropic: equal px per unit on x and y (views/aspect.py). The linked panels
    # share one window, fitted to the first panel's frame; the others are as equal as their
    # frames' shapes allow (a wider legend leaves a narrower frame).
    scales = [round(p["scales"], 4) for p in panels]
    print("x/y px per unit in the three panels", scales)
    assert abs(scales[0] - 1) < 0.02 and all(abs(ratio - 1) < 0.1 for ratio in scales), scales
    left, top, width, height = panels[1]["frame"]
    x0, y0 = panels[1]["left"] + left + 0.2 * width, panels[1]["top"] + top + 0.2 * height
    x1, y1 = panels[1]["left"] + left + 0.8 * width, panels[1]["top"] + top + 0.8 * height
    activate_tool(page, "box-select", nth=1)   # panel 2's toolbar
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    page.wait_for_function(
        f"() => ({PANELS_JS})().every(p => p.selected > 0)", timeout=30_000)
    counts = [p["selected"] for p in page.evaluate(PANELS_JS)]
    # The same rows in all three (every row is projected in every panel).
    assert len(set(counts)) == 1 and 0 < counts[0] < 300
    page.get_by_role("button", name=f"Clear selection ({counts[0]})").wait_for(timeout=15_000)
    # Where did it move: lines from panel 1 in panels 2 and 3.
    check_box(page, "Where did it move")
    page.locator(f"text=/Lines from panel 1 for {counts[0]} selected rows/").first.wait_for(
        timeout=30_000)
    page.wait_for_timeout(1500)
    # The brush changed panel 1's header, so its frame is no longer the others' shape: the
    # shared window stays put (two frames fitting it in turn once widened it to ±1e307).
    for panel, before in zip(page.evaluate(PANELS_JS), panels):
        assert all(now < 1.5 * was for now, was in zip(panel["span"], before["span"])), \
            (panel, before)
    screenshot("compare-brushed-1400")
    # The URL is the comparison (Panel's location writes it back compactly).
    query = unquote(page.url)
    assert re.search(r"compare=\[", query) and "moves=true" in query
    # The hostile column name (panel 2's title) and labels are text; nothing ran.
    page.get_by_text(f"2 · PCA · {HOSTILE}", exact=True).wait_for(timeout=15_000)
    page.locator(".tabulator-cell", has_text=HOSTILE).first.wait_for(timeout=15_000)
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("img[src='x']").count() == 0
    assert not page.js_errors
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(2500)
    screenshot("compare-brushed-1920")


# Every panel's x range: its model id and window, in reading order.
RANGES_JS = PANELS_JS.replace(
    "return {left: rect.left,",
    "return {x: v.model.x_range.id, y: v.model.y_range.id, start: v.model.x_range.start, "
    "end: v.model.x_range.end, left: rect.left,")


def test_pan_and_zoom_one_panel_and_the_others_follow(served_app, checkpoints, page, screenshot):
    page.goto(served_app + checkpoints, timeout=120_000)
    page.wait_for_function(f"() => ({RANGES_JS})().length === 3", timeout=120_000)
    page.locator("text=/aligned to panel 1/").first.wait_for(timeout=60_000)
    page.wait_for_function(f"() => new Set(({RANGES_JS})().map(p => p.x)).size === 1",
                           timeout=30_000)
    before = page.evaluate(RANGES_JS)
    panels_before = page.evaluate(PANELS_JS)
    assert len({p["y"] for p in before}) == 1
    left, top, width, height = before[0]["frame"]
    # What panel 2's frame shows (its pixels): it must be drawn again for panel 1's zoom.
    f2 = panels_before[1]
    clip = {"x": f2["left"] + f2["frame"][0], "y": f2["top"] + f2["frame"][1],
            "width": f2["frame"][2], "height": f2["frame"][3]}
    panel_2_before = page.screenshot(clip=clip)
    page.mouse.move(before[0]["left"] + left + width / 2, before[0]["top"] + top + height / 2)
    for _ in range(3):
        page.mouse.wheel(0, -200)   # zoom in over panel 1 (the wheel zoom is active)
        page.wait_for_timeout(300)
    page.wait_for_timeout(1000)
    after = page.evaluate(RANGES_JS)
    width_before = before[2]["end"] - before[2]["start"]
    width_after = after[2]["end"] - after[2]["start"]
    assert width_after < 0.9 * width_before      # panel 3 followed panel 1's zoom
    # Both axes zoomed (the equal-scales fit of the shared window did not undo it) and
    # panel 1, whose frame the shared window is fitted to, keeps equal scales.
    zoomed = page.evaluate(PANELS_JS)
    assert zoomed[0]["span"][1] < 0.9 * panels_before[0]["span"][1], (panels_before, zoomed)
    assert abs(zoomed[0]["scales"] - 1) < 0.02, zoomed
    # Panel 2 shows the zoom too, not only its ranges (a plot view repaints on changes of the
    # ranges it was built with, and Compare shares them later: views/aspect.py).
    assert page.screenshot(clip=clip) != panel_2_before, "panel 2 was not drawn again"
    screenshot("compare-zoomed-together")
    check_box(page, "Pan and zoom the panels together")
    page.wait_for_function(f"() => new Set(({RANGES_JS})().map(p => p.x)).size === 3",
                           timeout=60_000)
    assert not page.js_errors
