"""``StatusView``: one status line, a progress bar while a projection runs, the error alert.

Status and error messages can carry user text (column names, file names), so they are
escaped before they reach the HTML and Alert panes. The line is two lines tall whatever its
text: a status that wraps differently would resize the plot, and a raster resize is a
re-aggregation and a new image. A longer message scrolls inside those two lines (in a
narrow notebook cell it used to be cut mid-sentence with no way to read the rest).
"""

from __future__ import annotations

from typing import Any

import panel as pn

from embproj_panel import resources
from embproj_panel.state import ProjectorState
from embproj_panel.views.base import StateView
from embproj_panel.views.text import escaped

__all__ = ["StatusView"]


class StatusView(StateView):
    """``state.status``, ``state.progress`` (while ``state.busy``) and ``state.error``."""


    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        #: The status line (escaped ``state.status``).
        self.line = resources.HTML("", sizing_mode="stretch_width", margin=(2, 10), height=36,
                                 styles={"font-size": "0.85em", "color": "#555",
                                         "overflow-y": "auto"})
        #: Progress of the running projection (hidden when idle).
        self.progress = pn.indicators.Progress(
            value=0, max=100, visible=False, sizing_mode="stretch_width", height=12,
            bar_color="primary", margin=(0, 10),
        )
        #: The last projection's error (escaped ``state.error``; hidden when there is none).
        self.alert = resources.Alert("", alert_type="danger", visible=False,
                                   sizing_mode="stretch_width", margin=(4, 10))
        self.state.param.watch(self._update, ["busy", "progress", "status", "error"])
        self._update()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.line, self.progress, self.alert, sizing_mode="stretch_width",
                         margin=0)

    def _update(self, *events: Any) -> None:
        state = self.state
        with pn.io.hold():
            self.progress.param.update(value=int(round(state.progress * 100)),
                                       visible=state.busy)
            self.line.object = escaped(state.status)
            self.alert.param.update(object=escaped(state.error), visible=bool(state.error))
