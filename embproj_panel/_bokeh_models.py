"""A Bokeh document recomputes its set of models only when its model graph may have changed.

Bokeh keeps every document's set of models (``Document.models``, a ``DocumentModelManager``)
by walking every property of every model reachable from the roots (``recompute``). It does so
whenever a property that holds models changes (``Model.trigger`` -> ``invalidate``), and, when
such changes are batched inside ``models.freeze()``, once when the freeze ends, *whether or
not anything changed*. HoloViews wraps every plot update in that freeze
(``holoviews.plotting.bokeh.util.hold_render``), so each colour change, selection or redraw
of a projector page walked the whole page: about 560 models (the table's columns, formatters
and editors, the widgets' stylesheets), 40-190 ms each time on this machine, and half of the
server thread's time in a profile of colour changes, selections and page turns. With ten
sessions on one server thread that cost queued up in every other session's answer.

:func:`install` makes the end of a freeze recompute only if, while frozen, a change asked for
it (``invalidate``: a property holding models was set) or the document's roots changed (what
``add_root``, ``remove_root`` and ``clear`` do inside a freeze). Outside a freeze nothing
changes: ``invalidate`` recomputes at once, as before. A model graph change that calls
neither was never seen outside a freeze either, so the set of models is the same as Bokeh's.

Private Bokeh API this relies on (``bokeh/document/models.py``, Bokeh 3.8-3.9):
``DocumentModelManager._freeze_count``, ``_push_freeze``, ``_pop_freeze``, ``invalidate``,
``recompute`` and ``_document`` (a weak reference to the document). ``pyproject.toml`` pins
Bokeh below 3.10 for this; ``tests/test_bokeh_models.py`` checks the property it buys and
that the model set still follows every kind of change.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]


def _roots(manager: Any) -> tuple:
    document = manager._document()
    return tuple(document.roots) if document is not None else ()


def _invalidate(self: Any) -> None:
    if self._freeze_count == 0:
        self.recompute()
    else:
        self._embproj_dirty = True


def _push_freeze(self: Any) -> None:
    if self._freeze_count == 0:
        self._embproj_dirty = False
        self._embproj_roots = _roots(self)
    self._freeze_count += 1


def _pop_freeze(self: Any) -> None:
    self._freeze_count -= 1
    if self._freeze_count == 0:
        before = getattr(self, "_embproj_roots", None)
        self._embproj_roots = ()
        roots = _roots(self)
        changed = before is None or len(roots) != len(before) or any(
            new is not old for new, old in zip(roots, before))
        if changed or getattr(self, "_embproj_dirty", True):
            self.recompute()


def install() -> None:
    """Patch Bokeh's ``DocumentModelManager`` as the module docstring says (idempotent)."""
    from bokeh.document.models import DocumentModelManager

    DocumentModelManager.invalidate = _invalidate
    DocumentModelManager._push_freeze = _push_freeze
    DocumentModelManager._pop_freeze = _pop_freeze
