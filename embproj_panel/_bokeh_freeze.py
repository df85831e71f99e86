"""Bokeh's ``doc.models.freeze()``, made to recompute the model graph only when it changed.

A Bokeh document keeps the set of every model reachable from its roots. Outside a freeze,
Bokeh recomputes that set exactly when the graph may have changed: ``Model.trigger`` calls
``doc.models.invalidate()`` when the old or new value of a changed property holds a model
(``bokeh/model/model.py``, Bokeh 3.9), and ``add_root`` / ``remove_root`` change the roots.
A freeze defers those recomputations to its end, but Bokeh 3.9's ``_pop_freeze``
(``bokeh/document/models.py``) then recomputes *unconditionally*, even when nothing in the
frozen block touched the graph.

HoloViews wraps every plot update in a freeze (``hold_render``,
``holoviews/plotting/bokeh/util.py``), so each pan or zoom of the projector walks every model
of the page, several times (one per updated plot of the overlay): a ``references()`` walk of
the whole template, widgets, table and legend. In the 1,000,000-row images benchmark
(``benchmarks/bench_images_browser.py``, py-spy of the server) that walk was a quarter of the
server's time per zoom, more than the Datashader raster; the updates themselves only set
data and ranges, which hold no models.

:func:`install` overrides three *private* methods of Bokeh's ``DocumentModelManager``
(``_push_freeze``, ``_pop_freeze``, ``invalidate``; ``bokeh<3.10`` is pinned in
``pyproject.toml`` for them): an ``invalidate()`` inside a freeze marks the manager dirty, and
the end of the outermost freeze recomputes only if it is dirty or the roots changed. That is
exactly Bokeh's own rule outside a freeze, so the set of models is the same as Bokeh's
whenever it is read (``tests/test_bokeh_freeze.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["install"]


def _roots(manager: Any) -> tuple[int, ...]:
    document = manager._document()
    return () if document is None else tuple(id(root) for root in document.roots)


def _push_freeze(self: Any) -> None:
    if self._freeze_count == 0:
        self._embproj_dirty = False
        self._embproj_roots = _roots(self)
    self._freeze_count += 1


def _pop_freeze(self: Any) -> None:
    self._freeze_count -= 1
    if self._freeze_count == 0:
        # A manager frozen before install() has no marks: recompute, as Bokeh does.
        if getattr(self, "_embproj_dirty", True) \
                or getattr(self, "_embproj_roots", None) != _roots(self):
            self.recompute()


def _invalidate(self: Any) -> None:
    if self._freeze_count == 0:  # Bokeh's own rule: recompute now, when not frozen
        self.recompute()
    else:
        self._embproj_dirty = True


def install() -> None:
    """Make frozen blocks of every Bokeh document recompute its models only if needed
    (idempotent; process-wide, like Bokeh's class it changes: no per-session state)."""
    from bokeh.document.models import DocumentModelManager

    if getattr(DocumentModelManager, "_embproj_lazy_freeze", False):
        return
    DocumentModelManager._push_freeze = _push_freeze
    DocumentModelManager._pop_freeze = _pop_freeze
    DocumentModelManager.invalidate = _invalidate
    DocumentModelManager._embproj_lazy_freeze = True
