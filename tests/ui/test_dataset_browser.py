"""``embproj serve <Parquet dataset folder>`` in a real browser: pages, hover, box select and
neighbours.

The dataset (three Parquet files, 6,000 rows, row groups of 700) stays on disk: the table's
pages, the tooltip's image, the selection's rows and a row's neighbours are read on demand by
the server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_browser import (
    box_select,
    densest_point,
    open_app,
    plot_state,
    table_row_ids,
    to_screen,
    tooltip,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the helpers below
from test_cli import serving, stop, wait_for  # noqa: E402
from test_dataset import blobs, write_files  # noqa: E402

N = 6000


@pytest.fixture(scope="module")
def served_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lazy-dataset") / "data"
    X, labels = blobs(N, 12)
    write_files(folder, X, labels, files=3, row_group=700, images=True)
    process, url = serving(folder)
    try:
        wait_for(url, process)
        yield url, folder
    finally:
        stop(process)


def test_a_served_dataset_pages_hovers_and_selects(served_dataset, page, screenshot):
    url, folder = served_dataset
    labels = pq.read_table(folder).column("label").to_pylist()
    state = open_app(page, url)
    assert page.get_by_text(f"{N:,} of {N:,} rows").count() >= 1
    assert table_row_ids(page) == list(range(10))  # no selection yet: every row is listed
    first = page.locator('.tabulator-row .tabulator-cell[tabulator-field="c1"]').first
    assert first.inner_text().strip() == labels[0]
    screenshot("first-page")

    # The next page is read from the files when asked for.
    page.locator(".tabulator-page[data-page='next']").click()
    for _ in range(60):
        if table_row_ids(page) == list(range(10, 20)):
            break
        page.wait_for_timeout(250)
    assert table_row_ids(page) == list(range(10, 20))

    # Hover: the tooltip's image comes from the hovered row's row group.
    x, y = densest_point(state)
    sx, sy = to_screen(page, x, y)
    for dx in (0, 1, -1, 2):
        page.mouse.move(sx + dx, sy + dx)
        page.wait_for_timeout(300)
    tooltip(page).first.wait_for(state="visible", timeout=15_000)
    src = tooltip(page).first.locator("img").first.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    screenshot("hover")

    # A box select lists exactly the selected rows, read on demand.
    page.mouse.move(5, 5)
    box_select(page)
    page.wait_for_function(
        "() => [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0]"
        ".model.renderers.some(r => r.data_source && r.data_source.selected.indices.length)",
        timeout=15_000,
    )
    selected = set(next(s["selected"] for s in plot_state(page)["sources"] if s["selected"]))
    page.get_by_role("button", name=f"Clear selection ({len(selected):,})").wait_for(
        timeout=15_000)
    page.get_by_role("button", name="Show selection").click()
    page.wait_for_timeout(1000)
    shown = table_row_ids(page)
    assert shown and set(shown) <= selected and shown == sorted(shown)
    cells = page.locator('.tabulator-row .tabulator-cell[tabulator-field="c1"]').all_inner_texts()
    assert [c.strip() for c in cells] == [labels[row] for row in shown]
    screenshot("box-selected")
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(1500)
    screenshot("box-selected-1920")

    # A click on a row lists its neighbours: a scan of the vectors on disk, in the background.
    page.locator(".tabulator").first.locator(".tabulator-row").first.locator(
        ".tabulator-cell").nth(2).click()
    page.get_by_text(f"10 nearest rows to row {shown[0]} ").wait_for(timeout=60_000)
    listing = page.locator(".tabulator >> nth=1")  # the side column: the table, then these
    listing.locator("img[src^='data:image/png']").first.wait_for(timeout=15_000)
    assert listing.locator(".tabulator-row").count() == 10
    screenshot("neighbours")

    assert not page.js_errors, page.js_errors


def test_a_served_dataset_sorts_on_a_label(served_dataset, page, screenshot):
    # Sorting on the label (a categorical column): its keys are read on the server; the
    # thumbnail column says it does not sort.
    url, folder = served_dataset
    labels = pq.read_table(folder).column("label").to_pylist()
    open_app(page, url)
    header = page.locator('.tabulator-col[tabulator-field="c1"]')
    assert "tabulator-sortable" in header.get_attribute("class")
    thumb = page.locator('.tabulator-col[tabulator-field="thumb"]')
    assert "tabulator-sortable" not in (thumb.get_attribute("class") or "")
    for event in ("mouseenter", "mouseover", "mousemove"):  # Tabulator's header tooltip
        thumb.locator(".tabulator-col-title").dispatch_event(event)
    page.locator(".tabulator-tooltip", has_text="Not sortable").wait_for(timeout=10_000)
    screenshot("before-sort")
    header.locator(".tabulator-col-title").dispatch_event("click")
    first_label = [row for row, label in enumerate(labels) if label == min(labels)][:10]
    for _ in range(60):
        if table_row_ids(page) == first_label:
            break
        page.wait_for_timeout(250)
    assert table_row_ids(page) == first_label
    screenshot("sorted-by-label")
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(1000)
    screenshot("sorted-by-label-1920")
    assert not page.js_errors, page.js_errors
