"""``StateView``: the base of every view, a ``pn.viewable.Viewer`` over one state.

A view is ``SomeView(state, **params)``: it reads and writes ``state`` (Panel's DataStore ->
View pattern), builds its components once in ``__init__`` and returns them from
``__panel__``. A new view subclasses this in its own module of :mod:`embproj_panel.views`
and is listed once in :data:`embproj_panel.views.projector.PARTS`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from embproj_panel.state import ProjectorState

__all__ = ["StateView", "weak_hook"]


class StateView(pn.viewable.Viewer):
    """A view over one :class:`ProjectorState`, given first: ``View(state, **params)``."""

    state = param.ClassSelector(class_=ProjectorState, constant=True, doc="""
        The state this view shows and edits.""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        if state is not None:
            params["state"] = state
        super().__init__(**params)
        if self.state is None:
            raise TypeError(f"{type(self).__name__} needs a ProjectorState")


def weak_hook(method: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """A HoloViews plot hook that calls the bound ``method`` without keeping its view alive.

    HoloViews keeps an element's options, hooks included, in its process-wide
    ``Store._custom_options`` until every element carrying them is collected. A view that
    holds such an element (a cached base frame, its DynamicMap) and is named by a hook in it
    is then reachable from that registry for ever: each closed session's views, state, table
    and projection stayed in the server. A weak reference to the view breaks that cycle;
    once the view is gone the hook does nothing.
    """
    reference = weakref.WeakMethod(method)

    def hook(plot: Any, element: Any) -> None:
        bound = reference()
        if bound is not None:
            bound(plot, element)

    hook.__name__ = hook.__qualname__ = method.__name__
    return hook
