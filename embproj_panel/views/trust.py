"""``TrustView``: the faithfulness line under the status line, with its k.

It owns the :class:`~embproj_panel.trust_state.FaithfulnessState` of its projector state:
every new layout is assessed in the background and the line says so ("faithfulness (k=10):
computing… 40%"), then shows the summary ("faithfulness mean 0.71 · trustworthiness 0.93
(k=10, all 1,797 rows)"). The values become the state's ``faithfulness`` derived column, so
the colour choice, the table and the downloads offer them with nothing else to do here.

The line is one fixed-height row and progress is text in it, not a bar that appears and
goes: the plot below must not move (a resized raster is re-shaded and re-sent).
"""

from __future__ import annotations

from typing import Any

import panel as pn

from embproj_panel import resources
from embproj_panel.state import ProjectorState
from embproj_panel.trust_state import FaithfulnessState
from embproj_panel.views.base import StateView
from embproj_panel.views.text import escaped

__all__ = ["TrustView"]

_LINE_STYLE = {"font-size": "0.85em", "color": "#555", "white-space": "nowrap",
               "overflow": "hidden", "text-overflow": "ellipsis"}


class TrustView(StateView):
    """How faithful the map is: the k input and the summary line of ``faith``.

    Parameters
    ----------
    state
        The projector state whose layout is assessed.
    publish
        Offer the values as the state's ``faithfulness`` column (colour, table, export).
    show_k
        Show the k input beside the line (off where one k is set for several views).

    Attributes
    ----------
    faith
        The :class:`~embproj_panel.trust_state.FaithfulnessState` (values, summary, k).
    """

    def __init__(self, state: ProjectorState | None = None, publish: bool = True,
                 show_k: bool = True, **params: Any) -> None:
        super().__init__(state, **params)
        self.faith = FaithfulnessState(self.state, publish=publish)
        self._show_k = show_k
        #: k of the faithfulness and the trustworthiness (1-100).
        self.k_input = pn.widgets.IntInput.from_param(
            self.faith.param.k, name="", width=64, height=30, margin=(0, 4, 0, 10),
            description="Neighbourhood size k of the faithfulness (1-100)")
        #: The summary (escaped: an error can quote user text).
        self.line = resources.HTML("", sizing_mode="stretch_width", height=24,
                                   margin=(6, 10, 0, 2 if show_k else 10), styles=_LINE_STYLE)
        self.faith.param.watch(self._update, ["status", "error"])
        self._update()

    def __panel__(self) -> pn.viewable.Viewable:
        if not self._show_k:  # k is set elsewhere (one k for every panel of a comparison)
            return pn.Row(self.line, sizing_mode="stretch_width", height=24, margin=0)
        label = pn.pane.HTML("k", margin=(6, 0, 0, 10), width=12, height=24,
                             styles={"font-size": "0.85em", "color": "#555"})
        return pn.Row(label, self.k_input, self.line, sizing_mode="stretch_width", height=32,
                      margin=0)

    def _update(self, *events: Any) -> None:
        faith = self.faith
        text = faith.error or faith.status
        self.line.object = escaped(text)

    def close(self) -> None:
        """Stop a running assessment (the session ended)."""
        self.faith.close()
