"""Search box and neighbours panel in a real browser: count, highlights, list, hostile text."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_browser import HOSTILE, open_app  # tests/ui is on the path (pytest rootdir-relative)

import embproj_panel as ep

NEIGHBOURS_LIST = ".tabulator >> nth=1"  # the side column: the table, then the neighbours


def _rings(page) -> int:
    """How many search rings the scatter draws (the overlay's glyph renderer)."""
    return page.evaluate("""() => {
      const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
      return Math.max(0, ...pv.model.renderers
        .filter(r => r.data_source && r.data_source.data.x && r.glyph
                && r.glyph.fill_alpha !== undefined && r.glyph.fill_alpha.value === 0)
        .map(r => r.data_source.data.x.length));
    }""")


def test_typing_a_query_counts_rings_and_selects(served_app, page, screenshot):
    open_app(page, served_app)
    box = page.get_by_placeholder("Search labels and text…")
    box.fill("7")
    page.get_by_text("179 of 1,797 rows match").wait_for(timeout=30_000)
    page.wait_for_function("() => true")
    page.wait_for_timeout(1500)
    assert _rings(page) == 179
    screenshot("search")
    page.get_by_role("button", name="Select matches").click()
    page.get_by_role("button", name="Clear selection (179)").wait_for(timeout=15_000)
    # A bad regex: the readable message, the query echoed as text, no traceback. Bokeh's
    # Checkbox is an <input> beside a <div class="bk-label"> (no <label>), inside the
    # widget's shadow root: it has no accessible name, so find it by its widget's text.
    box.fill("[<b>x")
    regex = page.locator(".bk-Checkbox", has_text="Regex").locator("input[type=checkbox]")
    regex.check()
    assert regex.is_checked()
    message = page.get_by_text("Not a valid regular expression: unterminated character set")
    message.wait_for(timeout=15_000)
    assert box.input_value() == "[<b>x"  # the query, as typed, in the box
    assert page.locator("b", has_text="x").count() == 0  # never markup
    assert "Traceback" not in page.content()
    assert page.get_by_role("button", name="Select matches").is_disabled()
    screenshot("bad-regex")


def test_clicking_a_row_lists_its_neighbours_with_thumbnails(served_app, page, screenshot):
    open_app(page, served_app)
    page.get_by_role("button", name="Show all").click()
    page.wait_for_timeout(1000)
    page.locator(".tabulator").first.locator(".tabulator-row").nth(2).locator(
        ".tabulator-cell").nth(2).click()
    page.get_by_text("10 nearest rows to row").wait_for(timeout=30_000)
    listing = page.locator(NEIGHBOURS_LIST)
    listing.locator("img[src^='data:image/png']").first.wait_for(timeout=15_000)
    assert listing.locator(".tabulator-row").count() == 10
    screenshot("neighbours")


def test_hostile_label_query_and_neighbour_stay_text(served_app, ui_store, page, screenshot):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"label": [HOSTILE, "plain"] * 20, "u": rng.normal(size=40),
                          "v": rng.normal(size=40)})
    with ep.init(project="hostile-find", name="run1", dir=ui_store) as run:
        run.log({"table1": frame})
    page.add_init_script("window.__xss = undefined;")
    open_app(page, served_app, "?project=hostile-find&run=run1&table=table1")
    page.get_by_placeholder("Search labels and text…").fill(HOSTILE)
    page.get_by_text("20 of 40 rows match").wait_for(timeout=30_000)
    page.get_by_role("button", name="Show all").click()
    page.wait_for_timeout(1000)
    page.locator(".tabulator").first.locator(".tabulator-row").nth(1).locator(
        ".tabulator-cell").nth(2).click()
    page.get_by_text("nearest rows to row 1").wait_for(timeout=30_000)
    page.locator(NEIGHBOURS_LIST).locator(".tabulator-cell", has_text=HOSTILE).first.wait_for(
        timeout=15_000)
    screenshot("hostile-find")
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("img[src='x']").count() == 0
