"""The browser's resources come from the installed packages: ``embproj_panel.resources``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import panel as pn
import pytest
from _loop import in_loop
from bokeh.document import Document
from bokeh.models import ImportedStyleSheet, InlineStyleSheet, UIElement
from panel.io.notebook import patch_inline_stylesheets
from panel.io.resources import CDN_DIST, set_resource_mode
from pyviz_comms import Comm

from embproj_panel import resources

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter per case: pn.extension detects the comms once per process, from the
# environment and sys.modules. ``ip`` is an IPython shell without a kernel, so pn.extension
# configures everything and publishes nothing; ``display`` is what IPython puts in builtins.
_EXTENSION_SCRIPT = textwrap.dedent("""
    import builtins, json, os, sys, types
    builtins.display = lambda *args, **kwargs: None
    if os.environ.get("FAKE_COLAB"):
        sys.modules["google.colab"] = types.ModuleType("google.colab")
    import panel as pn
    import embproj_panel as ep

    class Shell:
        pass

    ep.extension(ip=Shell(), **json.loads(sys.argv[1]))
    from panel.io.notebook import JupyterCommManagerBinary
    server_comm = type(JupyterCommManagerBinary.get_server_comm()).__name__
    from embproj_panel import compute
    print(json.dumps({"comms": pn.config.comms, "inline": pn.config.inline,
                      "server_comm": server_comm, "warming": compute._WARM is not None}))
""")


def _extension_in_fresh_process(env: dict[str, str], **params) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("VSCODE_", "PANEL_")) and k != "FAKE_COLAB"}
    clean.update(env, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", _EXTENSION_SCRIPT, json.dumps(params)],
        env=clean, capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("env", "comms"), [
    ({}, "default"),
    ({"VSCODE_PID": "4242"}, "vscode"),
    ({"FAKE_COLAB": "1"}, "colab"),
    ({"PANEL_COMMS": "ipywidgets"}, "ipywidgets"),
    ({"VSCODE_PID": "4242", "PANEL_COMMS": "default"}, "default"),  # the variable wins
])
def test_extension_keeps_panels_comms_detection(env, comms):
    assert _extension_in_fresh_process(env) == {
        "comms": comms, "inline": True, "server_comm": "OrderedComm", "warming": True}


def test_extension_passes_an_explicit_comms_setting():
    assert _extension_in_fresh_process({"VSCODE_PID": "1"}, comms="colab")["comms"] == "colab"


def _rendered_in_a_notebook(pane):
    """``pane`` rendered as a notebook output (comm, inline resources) -> its Bokeh model."""
    doc, comm = Document(), Comm()
    with set_resource_mode("inline"):
        root = pn.Column(pane).get_root(doc, comm)
    for model in root.select({"type": UIElement}):  # what Panel's first render does
        patch_inline_stylesheets(model)
    return pane._models[root.ref["id"]][0]


def _cdn_links(model) -> list[str]:
    return [sheet.url for sheet in model.stylesheets
            if isinstance(sheet, ImportedStyleSheet) and str(sheet.url).startswith(CDN_DIST)]


@pytest.mark.parametrize("make", [
    lambda: resources.HTML("first", sizing_mode="stretch_width"),
    lambda: resources.Alert("first", alert_type="danger"),
], ids=["HTML", "Alert"])
def test_panes_updated_in_a_notebook_load_no_stylesheet_from_a_cdn(make):
    pn.config.inline = True
    try:
        pane = make()
        model = _rendered_in_a_notebook(pane)
        assert not _cdn_links(model)
        pane.object = "second"  # Panel's own pane re-sends loading.css and the theme as CDN links
        assert model.text.endswith("second") or "second" in model.text
        assert not _cdn_links(model)
        assert any(isinstance(sheet, InlineStyleSheet) and ".pn-loading" in sheet.css
                   for sheet in model.stylesheets)  # the spinner's style is there
    finally:
        pn.config.inline = False


def test_served_panes_are_left_to_panels_server():
    # Without a comm (a served session) the override does nothing: Panel's server rewrites
    # the CDN links to its own /static files, which the browser loads once for the page.
    def stylesheets_after_update(pane):
        root = pn.Column(pane).get_root(Document())
        pane.object = "second"
        return [getattr(sheet, "url", None) or getattr(sheet, "css", sheet)
                for sheet in pane._models[root.ref["id"]][0].stylesheets]

    assert stylesheets_after_update(resources.HTML("first")) == stylesheets_after_update(
        pn.pane.HTML("first"))


def test_fast_design_asks_for_no_google_font_and_keeps_its_files():
    ours = pn.template.FastListTemplate(design=resources.Fast).resolve_resources()
    panels = pn.template.FastListTemplate().resolve_resources()
    assert any("fonts.googleapis" in url for url in panels["css"].values())  # Panel's default
    assert not any("fonts.googleapis" in url for url in ours["css"].values())
    # Everything else (the design's bundled JS and CSS) is found under the same paths.
    assert ours["js_modules"] == panels["js_modules"]
    assert ours["js"] == panels["js"]
    assert {k: v for k, v in ours["css"].items() if "fonts" not in v} == {
        k: v for k, v in panels["css"].items() if "fonts" not in v}


def test_app_template_uses_the_local_design():
    from embproj_panel.app import ProjectorApp

    app = ProjectorApp()
    try:
        assert app.template().design is resources.Fast
    finally:
        app.close()


@in_loop  # as a notebook kernel runs it: HoloViews streams need a running loop
def test_a_projector_updated_in_a_notebook_links_no_stylesheet_from_a_cdn():
    # Every text that changes during a session (status, search, neighbours, clusters) is
    # re-sent by its pane: each must come without CDN links, or an offline page asks for
    # them again (and the loading spinner loses its style).
    import numpy as np
    import pandas as pd

    import embproj_panel as ep

    rng = np.random.default_rng(0)
    table = ep.Table(dataframe=pd.DataFrame({
        "embedding": list(rng.normal(size=(150, 6)).astype(np.float32)),
        "label": rng.choice(["apple", "pear", "plum"], 150),
    }))
    pn.config.inline = True
    try:
        projector = ep.Projector(table).wait()
        doc, comm = Document(), Comm()
        with set_resource_mode("inline"):
            root = pn.panel(projector).get_root(doc, comm)
        for model in root.select({"type": UIElement}):  # what Panel's first render does
            patch_inline_stylesheets(model)
        assert not [url for model in root.select({"type": UIElement})
                    for url in _cdn_links(model)]
        projector.selection = [3]  # the neighbours panel lists row 3's neighbours
        projector.search("apple")
        projector.find_clusters(min_cluster_size=10)
        projector.color_by = "label"
        linked = {type(model).__name__: _cdn_links(model)
                  for model in root.select({"type": UIElement}) if _cdn_links(model)}
        assert not linked
    finally:
        pn.config.inline = False
