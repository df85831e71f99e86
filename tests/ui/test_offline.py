"""``panel serve apps/projector.py`` on a machine without internet: nothing from outside.

Every request the page makes outside the local server is refused and recorded; the page must
still render the projection, and the record must stay empty (no CDN script or stylesheet, no
Google font).
"""

from __future__ import annotations

from _browser_support import offline_gate


def test_the_served_page_loads_nothing_from_outside(served_app, page):
    gate, outside = offline_gate(served_app)
    page.context.route("**/*", gate)
    page.goto(served_app)
    page.wait_for_selector("text=/rows · PCA/", timeout=60_000)
    page.wait_for_function(
        "() => [...Bokeh.index.all_views()].some(v => v.frame && v.model.x_range"
        " && v.model.renderers.length)", timeout=60_000,
    )
    page.get_by_role("button", name="UMAP").click()  # panes update, widgets are swapped
    page.wait_for_timeout(1500)
    assert not outside, f"requests outside the local server: {outside}"
    assert not page.js_errors, page.js_errors
