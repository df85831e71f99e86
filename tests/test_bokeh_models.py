"""A Bokeh document walks its models only when its model graph may have changed
(:mod:`embproj_panel._bokeh_models`), and its set of models still follows every change."""

from __future__ import annotations

import pytest
from _loop import in_loop
from bokeh.document import Document
from bokeh.document.models import DocumentModelManager
from bokeh.models import Button, Column, Div

from embproj_panel import _bokeh_models


@pytest.fixture
def recomputes(monkeypatch):
    """Install the patch; count the document walks."""
    _bokeh_models.install()
    calls = []
    original = DocumentModelManager.recompute

    def counting(self):
        calls.append(self)
        original(self)

    monkeypatch.setattr(DocumentModelManager, "recompute", counting)
    return calls


def _document() -> tuple[Document, Column]:
    doc = Document()
    root = Column(children=[Div(text="a")])
    doc.add_root(root)
    return doc, root


def test_a_freeze_that_changed_no_model_reference_walks_nothing(recomputes):
    doc, root = _document()
    recomputes.clear()
    with doc.models.freeze():
        root.children[0].text = "b"  # a plain property
        root.width = 300
    assert recomputes == []


def test_models_added_and_removed_inside_a_freeze_are_attached_and_detached(recomputes):
    doc, root = _document()
    recomputes.clear()
    old = root.children[0]
    button = Button(label="x")
    with doc.models.freeze():
        root.children = [button]
        assert doc.get_model_by_id(button.id) is None  # deferred, as in Bokeh
    assert doc.get_model_by_id(button.id) is button
    assert doc.get_model_by_id(old.id) is None and old.document is None
    with doc.models.freeze(), doc.models.freeze():  # nested: once, at the outer end
        root.children.append(old)
    assert doc.get_model_by_id(old.id) is old and len(recomputes) == 2


def test_roots_added_and_removed_inside_a_freeze_update_the_models(recomputes):
    doc, root = _document()
    other = Div(text="other")
    with doc.models.freeze():
        doc.add_root(other)
    assert doc.get_model_by_id(other.id) is other
    with doc.models.freeze():
        doc.remove_root(root)
    assert doc.get_model_by_id(root.id) is None and other in doc.roots
    doc.clear()
    assert list(doc.models) == []


def test_outside_a_freeze_a_reference_change_walks_at_once(recomputes):
    doc, root = _document()
    recomputes.clear()
    button = Button()
    root.children = [button]
    assert len(recomputes) == 1 and doc.get_model_by_id(button.id) is button


@in_loop
def test_a_projector_restyle_and_selection_walk_no_document(recomputes):
    """What a HoloViews plot update costs a served page (the load benchmark's finding)."""
    import panel as pn

    import embproj_panel as ep

    projector = ep.Projector(ep.datasets.digits(), method="pca")
    projector.state.wait(timeout=120)
    doc = Document()
    root = pn.panel(projector).get_root(doc)
    doc.add_root(root)
    recomputes.clear()
    projector.state.point_size = projector.state.point_size + 1  # a HoloViews plot update
    projector.state.select(range(10))
    assert recomputes == []
