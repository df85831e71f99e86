"""Hostile text through every view of the served app, in Chromium: it stays text (issue 16).

One table whose column names, labels, text, image captions, upload file name and W&B folder
name are XSS payloads is opened in ``panel serve apps/projector.py`` and driven through every
place user text is shown: the table (cells and column titles), the legend, the hover tooltip,
the search box (a payload as the query), the neighbours list (a payload as a neighbour's
label), the cluster labels on the map (clusters named by the payload column), images on the
map, the gallery's captions, the source picker, an upload's name and the error and notes
lines. After each step nothing ran (``window.__xss`` stays undefined, no dialog opened, no
``<img src=x>`` or ``<svg onload>`` element exists) and, where the page shows the text, it
shows it literally.

Canvas text (legend, cluster labels, gallery captions) is read from BokehJS's own models; HTML
text from the page. Every wait is for a condition the page reaches, bounded in time.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from _browser_support import serve_app
from test_browser import box_select, densest_point, open_app, to_screen, tooltip
from test_structure_ui import GLYPH_DATA_JS, find_clusters, map_labels, show_images

import embproj_panel as ep

IMG = "<img src=x onerror=window.__xss=1>"
SCRIPT = "<script>window.__xss=1</script>"
SVG = '"><svg onload=window.__xss=1>'
PAYLOADS = (IMG, SCRIPT, SVG)
ROWS = 300

# Elements a payload would have made had it been parsed as HTML (shadow roots included:
# Playwright's CSS locators pierce open shadow roots).
INJECTED = "img[src='x'], svg[onload], img[onerror]"
NEIGHBOURS_LIST = ".tabulator >> nth=1"  # the side column: the table, then the neighbours

# The legend's item labels (canvas text; a label field's values), as BokehJS draws them.
LEGEND_JS = """
() => {
  const out = [];
  for (const view of Bokeh.index.all_views()) {
    if (String(view.model).startsWith('Legend(')) {
      for (const item of view.model.items) out.push(...item.get_labels_list_from_label_prop());
    }
  }
  return out;
}
"""


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory, numba_warm):
    """The app over a store and a W&B folder whose names and contents are payloads."""
    root = tmp_path_factory.mktemp("hostile")
    store = root / "embproj-runs"
    rng = np.random.default_rng(0)
    centres = np.repeat(np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]]), ROWS // 3, axis=0)
    images = np.empty(ROWS, dtype=object)
    images[:] = [ep.Image(np.full((8, 8), (i * 7) % 200 + 40, dtype=np.uint8), caption=SVG)
                 for i in range(ROWS)]
    frame = pd.DataFrame({
        IMG: np.repeat(PAYLOADS, ROWS // 3),  # the colour, the clusters' names, the captions
        SCRIPT: [f"{SCRIPT} {i}" for i in range(ROWS)],  # a text column: search, table
        "x": centres[:, 0] + rng.normal(size=ROWS), "y": centres[:, 1] + rng.normal(size=ROWS),
        SVG: images,
    })
    with ep.init(project="hostile", name="run1", dir=store) as run:
        run.log({"table1": frame})
    # A W&B table (the format wandb writes) in a folder named by a payload, with payload
    # column names and cells.
    wandb_dir = root / "wandb"
    folder = wandb_dir / IMG
    folder.mkdir(parents=True)
    table = {"_type": "table", "columns": [SCRIPT, "u", "v"],
             "data": [[PAYLOADS[i % 3], float(i), float(i % 7)] for i in range(30)]}
    (folder / "hostile.table.json").write_text(json.dumps(table))
    with serve_app(store, EMBPROJ_WANDB_DIR=str(wandb_dir)) as url:
        yield url


@pytest.fixture
def watched(page):
    """The page with ``window.__xss`` reset before any script and every dialog recorded."""
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.add_init_script("window.__xss = undefined;")
    page.dialogs = dialogs
    return page


def assert_inert(page, where: str) -> None:
    assert page.evaluate("() => window.__xss") is None, f"a payload ran ({where})"
    assert not page.dialogs, f"a dialog opened ({where}): {page.dialogs}"
    assert page.locator(INJECTED).count() == 0, f"a payload became an element ({where})"


def wait_until(page, condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        page.wait_for_timeout(250)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


# A dozen views in one walk, plus its own server's start: minutes on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_hostile_text_stays_text_in_every_view(hostile_app, watched, screenshot):
    page = watched
    started = time.monotonic()
    state = open_app(page, hostile_app, "?project=hostile&run=run1&table=table1&color="
                     + urllib.parse.quote(IMG))
    assert state["sources"][0]["n"] == ROWS
    assert_inert(page, "page load")

    # Table: payload cells and column titles, as literal text.
    for text in (IMG, SCRIPT):
        page.locator(".tabulator-col-title", has_text=text).first.wait_for(timeout=15_000)
        page.locator(".tabulator-cell", has_text=text).first.wait_for(timeout=15_000)
    # Legend (canvas text): one entry per payload.
    legend = wait_until(page, lambda: page.evaluate(LEGEND_JS), "legend drawn")
    assert set(PAYLOADS) <= set(legend)
    # The colour menu and the tooltip-columns chooser (Choices.js renders HTML) list the names.
    page.locator(".choices").first.click()
    page.wait_for_timeout(500)
    page.keyboard.press("Escape")
    assert_inert(page, "table, legend, menus")

    # Hover tooltip: the colour column's name and the point's value, as text.
    sx, sy = to_screen(page, *densest_point(state))
    for dx in (0, 1, -1, 2):
        page.mouse.move(sx + dx, sy + dx)
        page.wait_for_timeout(300)
    tip = tooltip(page).first
    tip.wait_for(state="visible", timeout=20_000)
    tip.get_by_text(IMG).first.wait_for(timeout=10_000)  # its text is in a shadow root
    screenshot("tooltip")
    page.mouse.move(5, 5)
    assert_inert(page, "tooltip")

    # Search: a payload as the query (100 labels match it exactly, as a substring).
    search = page.get_by_placeholder("Search labels and text…")
    search.fill(SCRIPT)
    page.get_by_text(re.compile(r"[\d,]+ of 300 rows match")).first.wait_for(timeout=30_000)
    assert search.input_value() == SCRIPT
    assert_inert(page, "search")
    search.fill("")

    # Neighbours: a row's neighbours listed with the payload labels.
    page.get_by_role("button", name="Show all").click()
    page.locator(".tabulator").first.locator(".tabulator-row").nth(1).locator(
        ".tabulator-cell").nth(2).click()
    page.get_by_text("nearest rows to row 1").wait_for(timeout=30_000)
    listing = page.locator(NEIGHBOURS_LIST)
    listing.locator(".tabulator-cell", has_text=IMG).first.wait_for(timeout=15_000)
    assert_inert(page, "neighbours")

    # Clusters named by the payload column: labels drawn on the map (canvas text, cut to
    # fit the plot with an ellipsis when longer than it, the share kept).
    find_clusters(page)
    labels = map_labels(page, timeout=30)
    drawn = [t for t in labels["text"] if t.endswith("%)")]
    assert drawn, labels
    for text in drawn:
        value = text.rsplit(" (", 1)[0]
        assert any(p.startswith(value.rstrip("\u2026")) for p in PAYLOADS), text
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("cluster-labels")
    assert_inert(page, "cluster labels")

    # Images on the map, then the gallery of everything, captioned with the payloads.
    show_images(page)
    wait_until(page, lambda: [d for d in page.evaluate(GLYPH_DATA_JS, "ImageURL") if d["n"]],
               "images on the map")
    box_select(page, (0.02, 0.02, 0.98, 0.98))
    page.get_by_role("button", name=re.compile(r"Clear selection \(\d")).wait_for(timeout=30_000)
    page.get_by_text("Gallery", exact=True).click()
    page.wait_for_selector("text=/Page 1 of \\d+ · [\\d,]+ selected/", timeout=30_000)

    def captions():
        return [t for d in page.evaluate(GLYPH_DATA_JS, "Text") if d["text"]
                for t in d["text"] if not t.endswith("%)")]

    shown = wait_until(page, captions, "gallery captions")
    assert all(any(p.startswith(t.rstrip("\u2026")) for p in PAYLOADS) for t in shown), shown
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("gallery")
    assert_inert(page, "images, gallery")

    # The source picker lists the W&B folder's payload name as text; opening it shows its
    # payload column and cells in the table. On a fresh page: switching tables on the page
    # above (images on the map, cluster labels, the gallery shown) froze the browser's page
    # in some runs (screenshots time out): a rendering bug, see the stop note, not fixed yet.
    open_app(page, hostile_app, "?project=hostile&run=run1&table=table1")
    assert_inert(page, "page reload")
    picker = page.locator("select").first
    wandb_label = next(label for label in picker.locator("option").all_inner_texts()
                       if label.startswith("W&B /"))
    assert IMG in wandb_label
    picker.select_option(label=wandb_label)
    page.wait_for_selector("text=/30 of 30 rows/", timeout=60_000)
    page.locator(".tabulator-col-title", has_text=SCRIPT).first.wait_for(timeout=15_000)
    assert_inert(page, "W&B table")

    # Uploads named by a payload: a bad one (the error line names it) and a good one (the
    # picker's label and the notes line name it and its payload column).
    dropper = page.locator("input[type=file]").first
    dropper.set_input_files({"name": IMG + ".csv", "mimeType": "text/csv",
                             "buffer": b"a,b\n1,2\n3\n"})
    page.get_by_text("line 3 has 1 but the header has 2").wait_for(timeout=30_000)
    alert = page.get_by_text(re.compile("line 3 has 1")).first.inner_text()
    assert IMG[:10] in alert
    assert_inert(page, "bad upload")
    csv = pd.DataFrame({SVG: [PAYLOADS[i % 3] for i in range(20)],
                        "a": np.arange(20) * 0.37 % 5, "b": np.arange(20) * 0.61 % 3})
    dropper.set_input_files({"name": SVG + ".csv", "mimeType": "text/csv",
                             "buffer": csv.to_csv(index=False).encode()})
    page.wait_for_selector("text=/20 of 20 rows/", timeout=60_000)
    page.locator(".tabulator-col-title", has_text=SVG).first.wait_for(timeout=15_000)
    uploaded = [label for label in picker.locator("option").all_inner_texts()
                if label.startswith("Upload:")]
    assert uploaded and "<svg onload=window.__xss=1>" in uploaded[0], uploaded
    page.wait_for_timeout(1000)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot("upload")
    assert_inert(page, "upload")
    # BokehJS sometimes fails to paint a glyph after the table switches ("Cannot read
    # properties of undefined (reading '0')" in GlyphView._paint): a rendering bug, found
    # by this walk and not fixed yet (see the stop note); any other page error fails here.
    known = "Cannot read properties of undefined (reading '0')"
    assert not [e for e in page.js_errors if e != known], page.js_errors
    print(f"hostile walk through every view: {time.monotonic() - started:.0f} s")
