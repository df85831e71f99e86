"""Clusters, images on the map and the gallery in a real browser, with hostile text.

Labels and thumbnails are canvas drawings, so they are found through BokehJS (the renderers'
data sources) and clicked at the pixels the plot's own scales give.
"""

from __future__ import annotations

import re
import time

import numpy as np

from tests.ui.test_browser import assert_zoomed_in, box_select, open_app, to_screen, wheel_zoom_in

# The data of every renderer of a glyph type (ImageURL, Text, ...) in the page's plots.
GLYPH_DATA_JS = """
(type) => {
  const out = [];
  for (const view of Bokeh.index.all_views()) {
    if (!view.frame || !Array.isArray(view.model.renderers)) continue;
    for (const r of view.model.renderers) {
      if (r.glyph && r.glyph.type === type && r.data_source) {
        const d = r.data_source.data;
        out.push({keys: Object.keys(d), n: (d.x || []).length,
                  x: Array.from(d.x || []), y: Array.from(d.y || []),
                  text: d.text ? Array.from(d.text) : null,
                  url: d.url ? Array.from(d.url).map(u => String(u).slice(0, 30)) : null,
                  row: d.row ? Array.from(d.row) : null, plot: view.model.id});
      }
    }
  }
  return out;
}
"""


def glyphs(page, kind: str) -> list[dict]:
    return page.evaluate(GLYPH_DATA_JS, kind)


def find_clusters(page) -> None:
    page.get_by_role("button", name="Find clusters").click()
    page.wait_for_selector("text=/\\d+ clusters · /", timeout=60_000)


def map_labels(page, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for data in glyphs(page, "Text"):
            if data["text"] and any(t.endswith("%)") for t in data["text"]):
                return data
        page.wait_for_timeout(250)
    raise AssertionError("no cluster labels drawn")


def map_images(page, plot: str | None = None) -> list[dict]:
    return [d for d in glyphs(page, "ImageURL") if d["n"] and (plot is None or d["plot"] == plot)]


# Clicks the checkbox whose label reads ``label`` (Bokeh widgets live in shadow roots).
CHECK_JS = """
(label) => {
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { const found = walk(el.shadowRoot); if (found) return found; }
      if (el.tagName === 'INPUT' && el.type === 'checkbox') {
        // the input may sit directly in a shadow root, its label text in a sibling
        const scope = el.parentElement || el.getRootNode();
        const texts = [...scope.querySelectorAll('span, label, div')]
          .map(e => e.textContent.trim());
        if (texts.includes(label)) return el;
      }
    }
    return null;
  };
  const box = walk(document);
  if (!box) return null;
  if (!box.checked) box.click();
  return box.checked;
}
"""


def show_images(page) -> None:
    assert page.evaluate(CHECK_JS, "Show images on the map") is True


def test_find_clusters_draws_labels_and_a_click_selects_the_cluster(served_app, page,
                                                                   screenshot):
    open_app(page, served_app)
    find_clusters(page)
    labels = map_labels(page)
    assert 0 < len(labels["text"]) <= 30
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("labels")
    # click the first (largest) label: its cluster is selected and listed
    sx, sy = to_screen(page, labels["x"][0], labels["y"][0])
    page.mouse.click(sx, sy)
    # the scatter's own pick of the point under the label may land first; it is undone
    button = page.get_by_role("button", name=re.compile(r"Clear selection \((\d[\d,]*)"))
    count = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and count <= 30:
        if button.count():
            count = int(re.search(r"\(([\d,]+)", button.inner_text()).group(1).replace(",", ""))
        page.wait_for_timeout(200)
    assert count > 30  # a cluster, not the one point under the label
    screenshot("label-clicked")
    assert not page.js_errors


def test_show_images_then_zoom_redraws_them(served_app, page, screenshot):
    open_app(page, served_app)
    show_images(page)
    page.wait_for_function(
        "() => [...Bokeh.index.all_views()].some(v => Array.isArray(v.model.renderers) && v.model.renderers"
        ".some(r => r.glyph && r.glyph.type === 'ImageURL' && r.data_source.data.url"
        " && r.data_source.data.url.length > 0))", timeout=30_000)
    before = map_images(page)[0]
    assert 0 < before["n"] <= 200 and all(u.startswith("data:image/png") for u in before["url"])
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("images")
    # zoom in with the mouse wheel over the middle of the plot: it zooms in (the images'
    # redraw on the new window must not undo it), and new images come within seconds
    start = time.monotonic()
    window_before, window_after = wheel_zoom_in(
        page, float(np.median(before["x"])), float(np.median(before["y"])), clicks=6)
    assert_zoomed_in(window_before, window_after)
    rows_before = sorted(before["row"])
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline:
        found = map_images(page, before["plot"])
        if found and sorted(found[0]["row"]) != rows_before:
            after = found[0]
            break
        page.wait_for_timeout(100)
    assert after is not before, "the images were not chosen again after the zoom"
    print(f"images redrawn {time.monotonic() - start:.2f} s after the zoom began")
    screenshot("images-zoomed")
    assert not page.js_errors


def test_gallery_shows_the_selection_and_a_click_rings_the_point(served_app, page,
                                                                 screenshot):
    open_app(page, served_app)
    box_select(page)
    page.get_by_role("button", name=re.compile(r"Clear selection \(\d")).wait_for(timeout=30_000)
    page.get_by_text("Gallery", exact=True).click()
    page.wait_for_selector("text=/Page 1 of \\d+ · [\\d,]+ selected/", timeout=20_000)
    deadline = time.monotonic() + 20
    tiles = []
    while time.monotonic() < deadline and not tiles:
        tiles = [d for d in map_images(page) if d["n"] and max(d["x"]) <= 6]
        page.wait_for_timeout(200)
    assert tiles and 0 < tiles[0]["n"] <= 24
    screenshot("gallery")
    # click the first tile (grid coordinates 0.5, -0.42 in the gallery's own plot), scrolled
    # into the window first (in a narrow main area the tabs sit under the map)
    gallery_plot = tiles[0]["plot"]
    sx, sy = page.evaluate(
        """([id, x, y]) => {
          const pv = [...Bokeh.index.all_views()].find(v => v.model.id === id);
          pv.el.scrollIntoView({block: "nearest"});
          const rect = pv.el.getBoundingClientRect();
          return [rect.left + pv.frame.x_scale.compute(x), rect.top + pv.frame.y_scale.compute(y)];
        }""", [gallery_plot, 0.5, -0.42])
    page.mouse.click(sx, sy)
    # the red ring (GalleryView.ring) around one point of the scatter
    page.wait_for_function(
        "() => [...Bokeh.index.all_views()].some(v => Array.isArray(v.model.renderers) && v.model.renderers"
        ".some(r => r.glyph && r.glyph.type === 'Scatter' && r.data_source.data.x"
        " && r.data_source.data.x.length === 1"
        " && JSON.stringify(r.glyph.line_color).includes('d62728')))",
        timeout=20_000)
    screenshot("gallery-highlight")
    assert not page.js_errors


def test_screenshots_at_two_sizes(served_app, page, screenshot):
    open_app(page, served_app)
    find_clusters(page)
    show_images(page)
    page.wait_for_timeout(3000)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("1400x900")
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(4000)
    screenshot("1920x1080")
    map_labels(page)
    assert not page.js_errors


# Each legend entry's label and the centre of its element on the page (Bokeh 3 draws the
# legend's entries as DOM elements, their labels as text).
LEGEND_ENTRIES_JS = """
() => {
  const out = [];
  for (const view of Bokeh.index.all_views()) {
    if (!String(view.model).startsWith('Legend(') || !view.model.visible) continue;
    for (const entry of view.entries || []) {
      const r = entry.el.getBoundingClientRect();
      if (r.width > 0) out.push({label: String(entry.label), x: r.left + r.width / 2,
                                 y: r.top + r.height / 2});
    }
  }
  return out;
}
"""

# The column titles of the page's first Tabulator (the table view), as shown.
TABLE_TITLES_JS = """
() => {
  const walk = (root, out) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot, out);
      if (el.classList && el.classList.contains('tabulator-col-title')) out.push(el.textContent.trim());
    }
    return out;
  };
  return walk(document, []);
}
"""


def selected_count(page, timeout: float = 20.0, wanted: int | None = None) -> int:
    """The count in the "Clear selection (N)" button once it shows one (``wanted`` if given)."""
    button = page.get_by_role("button", name=re.compile(r"Clear selection \((\d[\d,]*)"))
    count, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if button.count():
            count = int(re.search(r"\(([\d,]+)", button.inner_text()).group(1).replace(",", ""))
            if wanted is None or count == wanted:
                return count
        page.wait_for_timeout(200)
    return count


def test_cluster_column_in_the_table_at_once_and_a_legend_click_selects(served_app, page,
                                                                        screenshot):
    import embproj_panel as ep

    open_app(page, served_app)
    assert "cluster" not in page.evaluate(TABLE_TITLES_JS)
    find_clusters(page)
    deadline = time.monotonic() + 20
    while "cluster" not in page.evaluate(TABLE_TITLES_JS) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert "cluster" in page.evaluate(TABLE_TITLES_JS)  # no reopening needed
    # the legend of the colour column (the digit): clicking "7" selects the sevens
    entries = {e["label"]: e for e in page.evaluate(LEGEND_ENTRIES_JS)}
    assert set(entries) == {str(i) for i in range(10)}
    target = ep.datasets.digits().get_column("target", convert_to="numpy")
    sevens = int((target.astype(str) == "7").sum())
    page.mouse.click(entries["7"]["x"], entries["7"]["y"])
    assert selected_count(page, wanted=sevens) == sevens
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("legend-clicked")
    assert not page.js_errors
