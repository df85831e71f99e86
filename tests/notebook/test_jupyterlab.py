"""The README's notebook example in a real JupyterLab 4, driven by Chromium as a user drives it.

The notebook holds the README's first notebook code block, read from README.md (so the
documented example is what is tested). The page runs it; the tests then check what the user
sees (the scatter, the table, the settings, the hover image) and, through a second client of
the same kernel, what the kernel holds (``projector.selection``, ``selected_dataframe``).
The page is loaded with every request outside the local JupyterLab refused and recorded, as
on a machine without internet.

Points are found through BokehJS itself (the plot view's scales turn data coordinates into
pixels), so the tests hover and drag where a person would.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _browser_support import offline_gate

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "screenshots"

# The first test also starts JupyterLab, the kernel and the first projection (90-120 s on a
# loaded 2-core machine); every wait below has its own shorter bound.
pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("diagnose_failure")]

NOTEBOOK = "projector.ipynb"
README_MARKER = "In a notebook, the same component:"

# The projector's plot view (the one Bokeh figure with data ranges), its renderers' data and
# its frame in page pixels.
PLOT_JS = """
() => {
  const views = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range);
  if (!views.length) return null;
  const pv = views[0];
  const rect = pv.el.getBoundingClientRect();
  const sources = pv.model.renderers
    .filter(r => r.data_source && r.data_source.data.x)
    .map(r => ({n: r.data_source.data.x.length,
                x: Array.from(r.data_source.data.x),
                y: Array.from(r.data_source.data.y),
                selected: Array.from(r.data_source.selected.indices)}));
  const f = pv.frame.bbox;
  return {left: rect.left, top: rect.top, width: rect.width, height: rect.height,
          frame: [f.left, f.top, f.width, f.height], sources,
          loading: !!pv.el.closest('.pn-loading') || !!document.querySelector(
            '.jp-OutputArea .pn-loading')};
}
"""
TO_SCREEN_JS = """
([x, y]) => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const rect = pv.el.getBoundingClientRect();
  return [rect.left + pv.frame.x_scale.compute(x), rect.top + pv.frame.y_scale.compute(y)];
}
"""
TO_DATA_JS = """
([sx, sy]) => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const rect = pv.el.getBoundingClientRect();
  return [pv.frame.x_scale.invert(sx - rect.left), pv.frame.y_scale.invert(sy - rect.top)];
}
"""
ACTIVATE_BOX_SELECT_JS = """
() => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  pv.model.toolbar.tools.find(t => t.type === "BoxSelectTool").active = true;
}
"""
SCROLL_PLOT_JS = """
() => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  pv.el.scrollIntoView({block: "center"});
}
"""
NEXT_FRAME_JS = "() => new Promise(resolve => requestAnimationFrame(() => resolve()))"
HAS_PLOT_JS = (
    "() => window.Bokeh && Bokeh.index && [...Bokeh.index.all_views()].some("
    "v => v.frame && v.model.x_range && v.model.renderers.some("
    "r => r.data_source && r.data_source.data.x && r.data_source.data.x.length))"
)


def readme_notebook_example() -> str:
    """The first Python block after the README's notebook sentence."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split(README_MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, "README's notebook section lost its example"
    return match.group(1)


#: What the README's example imports, imported in the kernel while the browser loads
#: JupyterLab (the example's cell then spends its time on what it shows, not on imports).
WARM_IMPORTS = ("import embproj_panel, panel, holoviews, datashader, umap, PIL, "
                "sklearn.datasets, sklearn.decomposition")


@pytest.fixture(scope="module")
def notebook(jupyter_lab, browser, comm_state):
    """The README example opened and run in JupyterLab; yields (page, kernel, requests)."""
    jupyter_lab.write_notebook(NOTEBOOK, [readme_notebook_example()])
    jupyter_lab.start_kernel(NOTEBOOK)
    kernel = jupyter_lab.kernel_client(NOTEBOOK)
    kernel.submit(WARM_IMPORTS)  # queued before the page's cell, which waits for it
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    # Offline: only the local JupyterLab answers; everything else is refused and recorded.
    gate, outside = offline_gate(jupyter_lab.url)
    context.route("**/*", gate)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    # The page's console, printed with a failure (the page reports rejected updates there).
    page.console_log = []
    page.on("console", lambda m: page.console_log.append(f"{m.type}: {m.text}"[:6000]))
    page.set_default_timeout(60_000)
    page.goto(jupyter_lab.lab_url(NOTEBOOK))
    page.wait_for_function("() => window.jupyterapp && jupyterapp.shell.currentWidget"
                           " && jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
    page.evaluate("() => jupyterapp.shell.currentWidget.sessionContext.ready")
    page.evaluate("() => jupyterapp.commands.execute('notebook:run-all-cells')")
    # The second client's request queues behind the cell: it returns once the cell has run
    # (and keeps the kernel's main shell busy while the page builds the output).
    kernel.run("projector.state.wait(timeout=120)", timeout=300)
    try:
        page.wait_for_function(HAS_PLOT_JS, timeout=60_000)
    except Exception as exc:
        shot(page, "not-rendered")
        print("The page's console:\n" + "\n".join(page.console_log))
        print("The output's comm:", kernel.value(comm_state, timeout=30))
        raise AssertionError(
            f"The projector did not render in JupyterLab (screenshot in {SCREENSHOTS}); "
            f"requests refused (outside the local server): {outside}; "
            f"page errors: {page.js_errors}"
        ) from exc
    page.evaluate(SCROLL_PLOT_JS)
    try:
        yield page, kernel, outside
    finally:
        kernel.close()
        context.close()


def plot_state(page) -> dict:
    page.wait_for_function(HAS_PLOT_JS, timeout=60_000)
    return page.evaluate(PLOT_JS)


def output(page):
    """The first cell's output area (where the projector is shown)."""
    return page.locator(".jp-Cell-outputArea").first


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"notebook-{name}.png"))


def test_renders_scatter_table_and_settings_with_nothing_from_outside(notebook):
    page, kernel, outside = notebook
    state = plot_state(page)
    assert state["sources"][0]["n"] == kernel.value("len(projector.state.frame)") == 1797
    area = output(page)
    area.locator(".tabulator-row").nth(4).wait_for(state="attached")  # the table's page
    assert area.get_by_text("Embedding columns").count()  # the settings
    assert area.get_by_role("button", name="Compute").count()
    assert area.get_by_text(re.compile(r"1,797 of 1,797 rows")).count()
    shot(page, "loaded")
    assert not outside, f"requests outside the local server: {outside}"
    assert not page.js_errors, page.js_errors


LAYOUT_JS = """
() => {
  const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
  const status = [...Bokeh.index.all_views()].find(
    v => v.model.type.endsWith("HTML") && (v.model.text || "").includes("rows ·"));
  const el = status.el, style = getComputedStyle(el);
  return {frame: [pv.frame.bbox.width, pv.frame.bbox.height],
          status_fits: el.scrollHeight <= el.clientHeight + 1,
          status_scrolls: ["auto", "scroll"].includes(style.overflowY),
          loading: [...Bokeh.index.all_views()].filter(
            v => v.el && v.el.classList && v.el.classList.contains("pn-loading")).length};
}
"""


# How the projector output's comm (embproj_panel._notebook_comm.OrderedComm) was opened.
OPENED_BY = ("[c.opened_by for c in __import__('pyviz_comms').JupyterCommManager._comms.values()"
             " if hasattr(c, 'opened_by') and c.opened_by]")


def rejected_updates(page) -> list[str]:
    """The page's console errors for kernel messages it could not apply."""
    signs = ("isn't known", "Expected text fragment", "Expected binary fragment")
    return [line for line in page.console_log if any(sign in line for sign in signs)]


def test_layout_fits_a_cell_beside_the_file_browser(notebook):
    # 1600 x 1000 with JupyterLab's file browser open: the cell is about 1,000 px wide.
    page, kernel, _ = notebook
    layout = page.evaluate(LAYOUT_JS)
    assert layout["frame"][0] >= 400, layout  # the scatter was 235 px wide
    assert layout["frame"][1] >= 300, layout
    # The status line is never cut without a way to read it all: it fits, or it scrolls.
    assert layout["status_fits"] or layout["status_scrolls"], layout
    # The loading state in the page agrees with the kernel's (the figure kept Panel's
    # pn-loading classes in 5 of 26 first renders when early updates were lost).
    assert kernel.value("projector.scatter.pane.loading") is False
    try:
        page.wait_for_function(f"() => ({LAYOUT_JS})().loading === 0", timeout=20_000)
    except Exception as exc:
        raise AssertionError(f"the page kept the loading classes: {page.evaluate(LAYOUT_JS)}"
                             ) from exc
    # The output's updates waited for the page to report it had built the output (there is
    # no timeout that sends anyway), and none was rejected by the page.
    opened_by = kernel.value(OPENED_BY)
    assert opened_by == ["page"]
    assert not rejected_updates(page), rejected_updates(page)


def wait_for_plot_selection(page, rows: list[int], timeout: float = 20_000) -> None:
    """Wait until the page's scatter shows exactly ``rows`` selected."""
    page.wait_for_function(
        """(rows) => [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0]
          .model.renderers.some(r => r.data_source && r.data_source.data.x &&
            [...r.data_source.selected.indices].sort((a, b) => a - b).join() === rows)""",
        arg=",".join(map(str, sorted(rows))), timeout=timeout,
    )


def test_selection_from_python_shows_in_the_page(notebook):
    page, kernel, _ = notebook
    kernel.run("projector.selection = [0, 1, 2]")
    wait_for_plot_selection(page, [0, 1, 2])
    output(page).get_by_role("button", name="Clear selection (3)").wait_for(
        state="attached", timeout=20_000)
    assert kernel.value("projector.selected_dataframe.index.tolist()") == [0, 1, 2]
    assert kernel.value("projector.selected_dataframe.columns[:2].tolist()") == ["x", "y"]
    shot(page, "python-selection")
    kernel.run("projector.selection = []")


def test_hover_shows_the_rows_image(notebook):
    page, kernel, _ = notebook
    state = plot_state(page)
    page.evaluate(SCROLL_PLOT_JS)
    xs, ys = state["sources"][0]["x"], state["sources"][0]["y"]
    # The median point lies inside the cloud, where a hover is sure to hit a row.
    order = sorted(range(len(xs)), key=lambda i: (xs[i] - sorted(xs)[len(xs) // 2]) ** 2
                   + (ys[i] - sorted(ys)[len(ys) // 2]) ** 2)
    sx, sy = page.evaluate(TO_SCREEN_JS, [xs[order[0]], ys[order[0]]])
    tooltip = page.locator(".bk-Tooltip, .bk-tooltip").filter(has=page.locator("img"))
    for attempt, dx in enumerate((0, 1, -1, 2)):  # a few pointer moves, as a hand makes
        page.mouse.move(sx + dx, sy + dx)
        try:
            tooltip.first.wait_for(state="visible", timeout=5_000 if attempt < 3 else 20_000)
            break
        except Exception:
            if attempt == 3:
                raise
    assert tooltip.first.locator("img").first.get_attribute("src").startswith(
        "data:image/png;base64,")
    shot(page, "hover")
    page.mouse.move(5, 5)


def drag_box(page, fractions: tuple[float, float, float, float]) -> tuple[float, ...]:
    """Box-select over a part of the plot frame; returns the box in data coordinates."""
    page.evaluate(SCROLL_PLOT_JS)
    page.evaluate(NEXT_FRAME_JS)
    state = page.evaluate(PLOT_JS)
    left, top, width, height = state["frame"]
    x0, y0 = state["left"] + left + fractions[0] * width, state["top"] + top + fractions[1] * height
    x1, y1 = state["left"] + left + fractions[2] * width, state["top"] + top + fractions[3] * height
    # Activated through BokehJS: clicking the toolbar button again would switch it off.
    page.evaluate(ACTIVATE_BOX_SELECT_JS)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    (dx0, dy0), (dx1, dy1) = (page.evaluate(TO_DATA_JS, [x0, y0]),
                              page.evaluate(TO_DATA_JS, [x1, y1]))
    return min(dx0, dx1), min(dy0, dy1), max(dx0, dx1), max(dy0, dy1)


def points_inside(page, box: tuple[float, ...]) -> int:
    source = page.evaluate(PLOT_JS)["sources"][0]
    x0, y0, x1, y1 = box
    return sum(x0 <= x <= x1 and y0 <= y <= y1 for x, y in zip(source["x"], source["y"]))


def settled_selection(kernel, page, expected: int, reach: float = 20, hold: float = 3) -> int:
    """The kernel's selection size: once it is ``expected`` (within ``reach`` s), after it has
    stayed so for ``hold`` s (the table's page selection used to come back 1-1.5 s later and
    replace it), or the first other size seen during the hold."""
    deadline = time.monotonic() + reach
    size = kernel.value("len(projector.selection)")
    while size != expected and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        size = kernel.value("len(projector.selection)")
    if size != expected:
        return size
    until = time.monotonic() + hold
    while time.monotonic() < until:
        page.wait_for_timeout(200)
        size = kernel.value("len(projector.selection)")
        if size != expected:
            break
    return size


def test_box_selections_stick_with_every_point_inside_the_box(notebook):
    page, kernel, _ = notebook
    kernel.run("projector.selection = []")
    for fractions in [(0.1, 0.1, 0.8, 0.9), (0.2, 0.3, 0.6, 0.7)]:  # a drag, then another
        box = drag_box(page, fractions)
        inside = points_inside(page, box)
        assert inside > 10  # more than one table page
        assert settled_selection(kernel, page, inside) == inside
        output(page).get_by_role("button", name=f"Clear selection ({inside:,})").wait_for(
            state="attached", timeout=20_000)
    shot(page, "box-selected")
    # A drag after a selection made from Python, which reaches the page after hovers and
    # drags too (it once reached the page's plot in only 2 of 4 runs after a hover).
    kernel.run("projector.selection = [0, 1, 2]")
    wait_for_plot_selection(page, [0, 1, 2])
    output(page).get_by_role("button", name="Clear selection (3)").wait_for(
        state="attached", timeout=20_000)
    box = drag_box(page, (0.15, 0.15, 0.85, 0.85))
    inside = points_inside(page, box)
    assert settled_selection(kernel, page, inside) == inside
    kernel.run("projector.selection = []")


def test_umap_from_python_replaces_the_plot(notebook, numba_warm):
    page, kernel, _ = notebook
    before = plot_state(page)["sources"][0]["x"][:50]
    # The README's calls; 100 epochs instead of UMAP's 500 for so few rows (a fifth of the
    # time; the test is about the plot being replaced, not the layout's quality).
    kernel.run("projector.state.settings['umap'].n_epochs = 100; projector.method = 'umap'; "
               "projector.compute(); projector.state.wait(timeout=240)", timeout=300)
    assert kernel.value("projector.state.projection.method") == "umap"
    page.wait_for_function(
        """(before) => {
          const pv = [...Bokeh.index.all_views()].filter(v => v.frame && v.model.x_range)[0];
          const r = pv.model.renderers.find(r => r.data_source && r.data_source.data.x);
          return r && Array.from(r.data_source.data.x).slice(0, 50).some(
            (x, i) => Math.abs(x - before[i]) > 1e-6);
        }""",
        arg=before, timeout=60_000,
    )
    output(page).get_by_text(re.compile(r"rows · UMAP")).first.wait_for(state="attached",
                                                                     timeout=30_000)
    shot(page, "umap")



def test_nothing_was_asked_from_outside_during_the_whole_session(notebook):
    # After hovering, selecting and a new projection (panes updated, the plot replaced).
    page, _, outside = notebook
    assert not outside, f"requests outside the local server: {outside}"
    assert not page.js_errors, page.js_errors
    assert not rejected_updates(page), rejected_updates(page)
