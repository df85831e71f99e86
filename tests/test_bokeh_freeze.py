"""A frozen block of a Bokeh document recomputes its models only when the graph changed
(:mod:`embproj_panel._bokeh_freeze`), and the set of models is then Bokeh's own."""

from __future__ import annotations

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.models import DocumentModelManager
from bokeh.models import ColumnDataSource, Scatter
from bokeh.plotting import figure

from embproj_panel import _bokeh_freeze


@pytest.fixture()
def recomputes(monkeypatch):
    _bokeh_freeze.install()
    calls = []
    original = DocumentModelManager.recompute

    def counted(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(DocumentModelManager, "recompute", counted)
    return calls


def every_model(doc: Document) -> set:
    found: set = set()
    for root in doc.roots:
        found |= root.references()
    return found


def test_a_frozen_data_update_walks_no_models_and_a_graph_change_does(recomputes):
    doc = Document()
    plot = figure()
    source = ColumnDataSource({"x": np.arange(3.0), "y": np.arange(3.0)})
    plot.scatter("x", "y", source=source)
    doc.add_root(plot)
    recomputes.clear()
    # What HoloViews' hold_render does on a zoom: new data and ranges, in a freeze.
    with doc.models.freeze():
        source.data = {"x": np.arange(5.0), "y": np.arange(5.0)}
        plot.x_range.start, plot.x_range.end = 0.0, 4.0
    assert recomputes == []  # Bokeh 3.9 alone walks the whole document here
    # A new model inside a freeze: recomputed once at the end, and the document knows it.
    new_source = ColumnDataSource({"x": [1.0], "y": [2.0]})
    with doc.models.freeze(), doc.models.freeze():
        renderer = plot.add_glyph(new_source, Scatter(x="x", y="y"))
    assert len(recomputes) == 1
    assert doc.models.get_by_id(new_source.id) is new_source
    assert doc.models.get_by_id(renderer.id) is renderer
    # Roots added or removed in a freeze are seen too.
    other = figure()
    with doc.models.freeze():
        doc.add_root(other)
    assert doc.models.get_by_id(other.id) is other
    with doc.models.freeze():
        doc.remove_root(other)
    assert doc.models.get_by_id(other.id) is None
    assert set(doc.models) == every_model(doc)
    # Outside a freeze Bokeh's rule stands: a model change recomputes at once.
    recomputes.clear()
    plot.renderers = plot.renderers[:1]
    assert len(recomputes) == 1 and doc.models.get_by_id(renderer.id) is None
    assert set(doc.models) == every_model(doc)
