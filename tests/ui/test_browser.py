"""The app in a real browser: load, hover, box select, table clicks, UMAP, hostile labels.

Points are located through BokehJS itself (the plot view's scales turn data coordinates into
pixels), so the tests hover and drag exactly where a person would.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from _browser_support import activate_tool, page_text
from _server import server_report

import embproj_panel as ep

HOSTILE = "<img src=x onerror=window.__xss=1>"

# The scatter's plot view, its glyph renderers' data, and a data -> page-pixel mapping.
PLOT_JS = """
() => {
  const views = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range);
  if (!views.length) return null;
  const pv = views[0];
  const rect = pv.el.getBoundingClientRect();
  const sources = pv.model.renderers
    .filter(r => r.data_source && r.data_source.data.x)
    .map(r => ({n: r.data_source.data.x.length,
                x: Array.from(r.data_source.data.x).slice(0, 5000),
                y: Array.from(r.data_source.data.y).slice(0, 5000),
                selected: Array.from(r.data_source.selected.indices)}));
  const f = pv.frame.bbox;
  return {left: rect.left, top: rect.top, frame: [f.left, f.top, f.width, f.height],
          x_range: [pv.model.x_range.start, pv.model.x_range.end],
          y_range: [pv.model.y_range.start, pv.model.y_range.end], sources};
}
"""
TO_SCREEN_JS = """
([x, y]) => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const rect = pv.el.getBoundingClientRect();
  return [rect.left + pv.frame.x_scale.compute(x), rect.top + pv.frame.y_scale.compute(y)];
}
"""


def plot_state(page, timeout: float = 60_000) -> dict:
    page.wait_for_function(
        "() => [...Bokeh.index.all_views()].some(v => v.frame && v.model.x_range"
        " && v.model.renderers.length)",
        timeout=timeout,
    )
    return page.evaluate(PLOT_JS)


def open_app(page, url: str, query: str = "") -> dict:
    page.goto(url + query)
    page.wait_for_selector("text=/rows · PCA/", timeout=60_000)
    return plot_state(page)


def run_method(page, method: str, while_running=None) -> None:
    """Pick ``method``, press Compute once the server has taken it, wait for its layout.

    The Compute click waits for the server's "press Compute to run ..." line: a click sent
    before the server has applied the method would compute the old one (seen once in CI as
    a three-minute wait for a UMAP that was never asked for). The wait ends early when the
    page says the projection failed. Either failure says what the page showed (its
    sentences: the option lists would hide the status line) and what the server logged,
    with its threads' stacks: one CI run waited 180 s for a UMAP with no other clue.
    """
    page.get_by_role("button", name=method).click()
    page.wait_for_selector(f"text=/press Compute to run {re.escape(method)}/", timeout=60_000)
    page.get_by_role("button", name="Compute").first.click()
    if while_running is not None:
        while_running()
    label = re.escape(method)
    try:
        page.wait_for_selector(f"text=/rows · {label}|{label} failed/", timeout=180_000)
        failed = page.get_by_text(re.compile(f"{label} failed")).count() > 0
    except Exception as error:
        raise AssertionError(f"no {method} layout within 180 s; the page showed:\n"
                             f"{page_text(page, 3000, sentences=True)}\n"
                             f"{server_report(page.url)}") from error
    if failed:
        raise AssertionError(f"{method} failed; the page showed:\n"
                             f"{page_text(page, 3000, sentences=True)}\n"
                             f"{server_report(page.url)}")


# Scrolls the scatter's frame into the window: the table may sit under the map (a narrow
# main area, views/projector.main_area), and a click on it scrolls the map partly away.
MAP_INTO_VIEW_JS = """
() => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const r = pv.el.getBoundingClientRect();
  if (r.top < 0 || r.bottom > innerHeight) pv.el.scrollIntoView({block: "nearest"});
}
"""


def map_into_view(page) -> None:
    """Scroll the page until the scatter is in the window, as a person would to use it."""
    page.evaluate(MAP_INTO_VIEW_JS)


# True once the map's raster covers exactly the window shown and that window has equal px per
# data unit on x and y.
RASTER_FITS_JS = """
() => [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range).some(v => {
  const f = v.frame.bbox, xr = v.model.x_range, yr = v.model.y_range;
  const sx = xr.end - xr.start, sy = yr.end - yr.start;
  return v.model.renderers.some(g => {
    const d = g.data_source && g.data_source.data;
    return d && d.dw && Math.abs(d.dw[0] / sx - 1) < 0.02 && Math.abs(d.dh[0] / sy - 1) < 0.02
      && Math.abs((f.width / sx) / (f.height / sy) - 1) < 0.02;
  });
})
"""


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    """The window pixel of data point ``(x, y)``, with the map scrolled into view."""
    map_into_view(page)
    sx, sy = page.evaluate(TO_SCREEN_JS, [float(x), float(y)])
    return sx, sy


# The map's data window (its spans) and its frame, for a zoom's before and after.
WINDOW_JS = """
() => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const f = pv.frame.bbox, xr = pv.model.x_range, yr = pv.model.y_range;
  return {x: xr.end - xr.start, y: yr.end - yr.start, width: f.width, height: f.height};
}
"""


def wheel_zoom_in(page, x: float, y: float, clicks: int = 3,
                  resize_to: dict | None = None) -> tuple[dict, dict]:
    """Turn the mouse wheel ``clicks`` times over data point ``(x, y)`` (each turn halves the
    window); the map's window before and once it has stayed put for a second.

    The window must settle, not just change: the equal-scales fit (views/aspect.py) once
    undid a wheel zoom some 150 ms after it, when the zoom's new tick labels resized the
    frame before Bokeh signalled the gesture's end (300-500 ms after a turn). ``resize_to``
    (a viewport size) resizes the frame in that interval on purpose, as soon as the first
    turn has zoomed: the case that undid the zoom, made certain.
    """
    sx, sy = to_screen(page, x, y)
    before = page.evaluate(WINDOW_JS)
    page.mouse.move(sx, sy)
    for i in range(clicks):
        page.mouse.wheel(0, -300)
        if i == 0 and resize_to is not None:
            page.wait_for_function(f"() => ({WINDOW_JS})().x < 0.9 * {before['x']}",
                                   polling="raf", timeout=10_000)
            page.set_viewport_size(resize_to)
        page.wait_for_timeout(50)
    page.evaluate("window.__zoom_last = null; window.__zoom_same = 0")
    page.wait_for_function(
        f"""() => {{
          const key = JSON.stringify(({WINDOW_JS})());
          window.__zoom_same = window.__zoom_last === key ? window.__zoom_same + 1 : 0;
          window.__zoom_last = key;
          return window.__zoom_same >= 4;
        }}""", polling=250, timeout=30_000)
    return before, page.evaluate(WINDOW_JS)


def assert_zoomed_in(before: dict, after: dict) -> None:
    """Both axes zoomed in (at least one wheel turn kept), with equal px per data unit."""
    assert after["x"] < 0.75 * before["x"] and after["y"] < 0.75 * before["y"], (before, after)
    scales = (after["width"] / after["x"]) / (after["height"] / after["y"])
    assert abs(scales - 1) < 0.02, (scales, after)


def tooltip(page):
    return page.locator(".bk-Tooltip, .bk-tooltip").filter(has=page.locator("img"))


def box_select(page, frame_fraction=(0.3, 0.3, 0.7, 0.7)) -> None:
    """Drag a box over the middle of the plot frame with the box-select tool."""
    map_into_view(page)
    state = page.evaluate(PLOT_JS)
    left, top, width, height = state["frame"]
    x0 = state["left"] + left + frame_fraction[0] * width
    y0 = state["top"] + top + frame_fraction[1] * height
    x1 = state["left"] + left + frame_fraction[2] * width
    y1 = state["top"] + top + frame_fraction[3] * height
    activate_tool(page, "box-select")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()


def table_row_ids(page) -> list[int]:
    """The row positions the Tabulator shows on its current page (its first column; from
    1,000 on it writes them with thousands separators)."""
    cells = page.locator('.tabulator-row .tabulator-cell[tabulator-field="row"]')
    return [int(text.strip().replace(",", "")) for text in cells.all_inner_texts()
            if text.strip()]


def densest_point(state: dict) -> tuple[float, float]:
    """A drawn point with many neighbours: hovering it hits something for sure."""
    xs = np.asarray(state["sources"][0]["x"])
    ys = np.asarray(state["sources"][0]["y"])
    distances = np.hypot(xs[:, None] - xs[None, :200], ys[:, None] - ys[None, :200])
    best = int(np.argmax((distances < 0.05 * np.ptp(xs)).sum(axis=0)))
    return xs[best], ys[best]


def test_page_loads_with_the_digits_projection(served_app, page, screenshot):
    state = open_app(page, served_app)
    assert state["sources"][0]["n"] == 1797
    assert page.get_by_text("1,797 of 1,797 rows").count() >= 1
    assert page.locator(".tabulator-row").count() >= 5  # the table's first page
    screenshot("loaded")
    assert not page.js_errors, page.js_errors


def test_hover_shows_the_rows_image(served_app, page, screenshot):
    state = open_app(page, served_app)
    x, y = densest_point(state)
    sx, sy = to_screen(page, x, y)
    for dx in (0, 1, -1, 2):  # a couple of pointer moves, as a person's hand makes
        page.mouse.move(sx + dx, sy + dx)
        page.wait_for_timeout(300)
    tooltip(page).first.wait_for(state="visible", timeout=15_000)
    img = tooltip(page).first.locator("img").first
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    screenshot("hover")


def test_hover_on_digits_shows_the_image_without_asking_the_server(served_app, page):
    """The digits' tooltips travel with the glyphs: a hover sends no websocket message."""
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    state = open_app(page, served_app)
    page.wait_for_timeout(2000)  # the first draw's size and range reports
    x, y = densest_point(state)
    sx, sy = to_screen(page, x, y)
    before = len(sent)
    for dx in (0, 1, -1, 2):
        page.mouse.move(sx + dx, sy + dx)
        page.wait_for_timeout(100)
    tooltip(page).first.wait_for(state="visible", timeout=5_000)
    img = tooltip(page).first.locator("img").first
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    assert sent[before:] == []


def test_box_select_fills_the_table_and_table_click_highlights(served_app, page, screenshot):
    state = open_app(page, served_app)
    box_select(page)
    page.wait_for_function(
        "() => [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0]"
        ".model.renderers.some(r => r.data_source && r.data_source.selected.indices.length)",
        timeout=15_000,
    )
    state = plot_state(page)
    selected = set(next(s["selected"] for s in state["sources"] if s["selected"]))
    assert 0 < len(selected) < 1797
    # The page counts the selection, and the table lists exactly the selected rows.
    page.get_by_role("button", name=f"Clear selection ({len(selected):,})").wait_for(
        timeout=15_000)
    page.get_by_role("button", name="Show selection").click()
    page.wait_for_timeout(1000)
    shown = table_row_ids(page)
    assert shown and set(shown) <= selected
    screenshot("box-selected")

    # Clicking a table row selects just that row, and the plot highlights its point.
    page.get_by_role("button", name="Show all").click()
    page.wait_for_timeout(1000)
    row = page.locator(".tabulator-row").nth(3)
    row_id = int(row.locator('[tabulator-field="row"]').inner_text().strip())
    row.locator(".tabulator-cell").nth(2).click()
    page.wait_for_function(
        """(row) => {
          const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
          return pv.model.renderers.some(r => r.data_source && r.data_source.data.x &&
            r.data_source.selected.indices.length === 1 &&
            r.data_source.selected.indices[0] === row);
        }""",
        arg=row_id,
        timeout=15_000,
    )
    screenshot("table-click")


def _selected_count(page) -> int:
    button = page.get_by_role("button", name=re.compile(r"Clear selection \(\d"))
    button.wait_for(timeout=30_000)
    return int(re.sub(r"\D", "", button.inner_text()))


def test_box_select_is_active_on_open_and_shift_adds_a_second_box(served_app, page,
                                                                 screenshot):
    open_app(page, served_app)
    icon = page.locator(".bk-tool-icon-box-select").first
    assert icon.evaluate(
        "el => (el.getRootNode().host || el.parentElement).classList.contains('bk-active')")
    box_select(page, (0.15, 0.15, 0.45, 0.45))
    first = _selected_count(page)
    page.keyboard.down("Shift")
    box_select(page, (0.55, 0.55, 0.85, 0.85))
    page.keyboard.up("Shift")
    page.wait_for_function(
        f"() => /Clear selection \\((?!{first:,}\\))/.test(document.body.innerText) || true")
    page.wait_for_timeout(2000)
    both = _selected_count(page)
    screenshot("shift-box")
    assert both > first > 0


def test_switching_to_umap_shows_progress_then_new_coordinates(served_app, page, screenshot):
    state = open_app(page, served_app)
    pca_x = state["sources"][0]["x"][:50]
    run_method(page, "UMAP")
    state = plot_state(page)
    assert state["sources"][0]["n"] == 1797
    assert not np.allclose(state["sources"][0]["x"][:50], pca_x)
    screenshot("umap")


def test_progress_is_visible_while_tsne_runs(served_app, page):
    open_app(page, served_app)
    # While openTSNE runs, the page shows a progress bar and stays responsive.
    def while_running():
        page.locator("progress >> visible=true").first.wait_for(state="visible", timeout=30_000)
        assert page.get_by_role("button", name="PCA").is_enabled()

    run_method(page, "t-SNE", while_running)


def test_hostile_labels_and_column_names_are_text(served_app, ui_store, page, screenshot):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        HOSTILE: [HOSTILE, "plain"] * 20,
        "x": rng.normal(size=40),
        "y": rng.normal(size=40),
        "note": [HOSTILE] * 40,
    })
    with ep.init(project="hostile", name="run1", dir=ui_store) as run:
        run.log({"table1": frame})
    page.add_init_script("window.__xss = undefined;")
    state = open_app(page, served_app, "?project=hostile&run=run1&table=table1")
    assert state["sources"][0]["n"] == 40
    # The label and the column name show as literal text in the table, and nothing is injected.
    page.locator(".tabulator-cell", has_text=HOSTILE).first.wait_for(timeout=15_000)
    page.locator(".tabulator-col-title", has_text=HOSTILE).first.wait_for(timeout=15_000)
    x, y = state["sources"][0]["x"][0], state["sources"][0]["y"][0]
    sx, sy = to_screen(page, x, y)
    page.mouse.move(sx, sy)
    page.wait_for_timeout(1500)
    # Open the tooltip-columns chooser (Choices.js renders its options as HTML) and the colour
    # menu: the hostile name is listed in both.
    page.locator(".choices").first.click()
    page.wait_for_timeout(1000)
    screenshot("hostile")
    page.keyboard.press("Escape")
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("img[src='x']").count() == 0


@pytest.fixture(scope="module")
def large_table(ui_store):
    """200,000 rows in 20 clusters with an image column, logged to the app's store."""
    rng = np.random.default_rng(1)
    n, d = 200_000, 16
    labels = rng.integers(0, 20, n)
    centers = rng.normal(scale=6, size=(20, d)).astype(np.float32)
    vectors = centers[labels] + rng.normal(size=(n, d)).astype(np.float32)
    glyphs = [ep.Image(np.full((8, 8), i * 12, dtype=np.uint8)) for i in range(20)]
    images = np.empty(n, dtype=object)
    images[:] = [glyphs[i] for i in labels]
    frame = pd.DataFrame({"embedding": list(vectors), "label": labels.astype(str), "image": images})
    with ep.init(project="large", name="run1", dir=ui_store) as run:
        run.log({"big": frame})
    return "?project=large&run=run1&table=big"


def test_two_hundred_thousand_rows_hover_and_select(served_app, large_table, ui_store, page,
                                                     screenshot):
    page.goto(served_app + large_table)
    page.wait_for_selector("text=/200,000 of 200,000 rows · PCA/", timeout=120_000)
    plot_state(page)
    # Equal scales in Datashader mode too: the browser widens the ranges to the frame's shape
    # (views/aspect.py) and the server shades that window (its RangeXY stream), not the data's.
    page.wait_for_function(RASTER_FITS_JS, timeout=60_000)
    page.wait_for_timeout(2000)
    screenshot("large-loaded")
    # Hover the middle of a cluster: the server looks the nearest row up and sends its image.
    projection = ep.project(ep.load_table("large", "run1", "big", dir=ui_store), "pca")
    labels = ep.load_table("large", "run1", "big", dir=ui_store).get_column("label", "numpy")
    cluster = projection.coords[labels[projection.rows] == "0"]
    cx, cy = np.median(cluster, axis=0)
    sx, sy = to_screen(page, cx, cy)
    for dx in (0, 1, -1, 2):
        page.mouse.move(sx + dx, sy + dx)
        page.wait_for_timeout(500)
    tooltip(page).first.wait_for(state="visible", timeout=20_000)
    assert tooltip(page).first.locator("img").first.get_attribute("src").startswith("data:image/png")
    screenshot("large-hover")
    x0, y0 = to_screen(page, *(cluster.min(axis=0)))
    x1, y1 = to_screen(page, *(cluster.max(axis=0)))
    activate_tool(page, "box-select")
    page.mouse.move(x0, y1)
    page.mouse.down()
    page.mouse.move(x1, y0, steps=8)
    page.mouse.up()
    page.get_by_role("button", name=re.compile(r"Clear selection \(\d")).wait_for(timeout=30_000)
    page.get_by_role("button", name="Show selection").click()
    page.wait_for_timeout(1500)
    shown = table_row_ids(page)
    assert shown and all(labels[row] == "0" for row in shown)
    screenshot("large-selected")
    # A wheel zoom over the cluster zooms in on both axes with equal scales, and the server
    # shades the new window (the equal-scales fit must not undo the zoom in Datashader mode).
    assert_zoomed_in(*wheel_zoom_in(page, cx, cy))
    page.wait_for_function(RASTER_FITS_JS, timeout=60_000)
