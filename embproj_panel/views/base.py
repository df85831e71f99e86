"""``StateView``: the base of every view, a ``pn.viewable.Viewer`` over one state.

A view is ``SomeView(state, **params)``: it reads and writes ``state`` (Panel's DataStore ->
View pattern), builds its components once in ``__init__`` and returns them from
``__panel__``. A new view subclasses this in its own module of :mod:`embproj_panel.views`
and is listed once in :data:`embproj_panel.views.projector.PARTS`.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param

from embproj_panel.state import ProjectorState

__all__ = ["StateView"]


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
