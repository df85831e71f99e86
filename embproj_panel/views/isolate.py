"""``IsolateView``: "Project selection" and the breadcrumb back to the whole table.

The button calls :meth:`ProjectorState.isolate <embproj_panel.state.ProjectorState.isolate>`:
a new projection of only the selected rows (same method and settings, its own cache entry),
which then *is* ``state.projection``, so the colours, search, neighbours and exports work on
it unchanged. The breadcrumb ("All 1,797 rows › Selection of 124 rows") is a row of buttons,
their labels plain text: the first goes back to the whole table, a later one back to that
isolation (isolating inside an isolation adds a crumb), the last one selects its rows again.
An empty selection leaves a note ("Nothing is selected ...") instead of an error.

The URL carries the isolation as ``?isolate=``: row positions as ascending runs,
``0-99_150_200-210`` (:func:`encode_rows` / :func:`decode_rows`; ``_`` is unreserved in a
URL, and unlike ``.`` never makes a value Panel reads back as a number), at most
:data:`MAX_URL_CHARS` characters; a longer encoding is not written (a note says so) and a
bad one is refused with a readable reason.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import panel as pn

from embproj_panel import resources
from embproj_panel.state import ProjectorState
from embproj_panel.views.base import StateView
from embproj_panel.views.text import escaped

__all__ = ["MAX_URL_CHARS", "IsolateView", "decode_rows", "encode_rows"]

#: The longest ``?isolate=`` value read or written (browsers and proxies keep URLs of a few
#: thousand characters; a scattered selection of many rows does not fit and is not written).
MAX_URL_CHARS = 4000

_RUN = re.compile(r"^(\d{1,12})(?:-(\d{1,12}))?$")


def encode_rows(rows: Any) -> str:
    """Sorted row positions as runs: ``[0, 1, 2, 5, 7, 8]`` -> ``"0-2_5_7-8"``."""
    array = np.unique(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows,
                                 dtype=np.int64))
    if array.size == 0:
        return ""
    breaks = np.flatnonzero(np.diff(array) != 1)
    starts = array[np.concatenate([[0], breaks + 1])]
    stops = array[np.concatenate([breaks, [len(array) - 1]])]
    return "_".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(starts.tolist(),
                                                                     stops.tolist()))


def decode_rows(text: str, n_rows: int) -> list[int]:
    """The row positions of an :func:`encode_rows` string, checked against ``n_rows``.

    Raises
    ------
    ValueError
        With a readable reason: too long, not runs of numbers, a run backwards, a position
        outside the table, or no rows at all.
    """
    if not isinstance(text, str):
        raise ValueError("isolate= must be text such as 0-99_150")
    if len(text) > MAX_URL_CHARS:
        raise ValueError(f"it is {len(text):,} characters long; the limit is "
                         f"{MAX_URL_CHARS:,}")
    pieces = [piece for piece in re.split(r"[_,]", text.strip()) if piece]
    if not pieces:
        raise ValueError("it names no rows")
    parts = []
    for piece in pieces:
        match = _RUN.match(piece)
        if match is None:
            raise ValueError(f"{_shown(piece)} is not a row number or a run such as 10-20")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise ValueError(f"the run {_shown(piece)} goes backwards")
        if stop >= n_rows:
            raise ValueError(f"row {stop:,} is outside the table of {n_rows:,} rows")
        parts.append(np.arange(start, stop + 1, dtype=np.int64))
    return np.unique(np.concatenate(parts)).tolist()


def _shown(text: str) -> str:
    return repr(text if len(text) <= 30 else text[:29] + "…")


class IsolateView(StateView):
    """"Project selection", the breadcrumb back, and the note of an isolation that did nothing.

    Attributes
    ----------
    path
        The isolations shown, outermost first (each a list of table rows); empty when the
        whole table is shown.
    """

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        self.path: list[list[int]] = []
        self.button = pn.widgets.Button(label="Project selection", width=140, margin=(5, 5),
                                        description="A new projection of only the selected "
                                                    "rows (same method and settings)")
        self.button.on_click(lambda event: self.state.isolate())
        #: The breadcrumb: one button per level (labels are plain text).
        self.crumbs = pn.Row(margin=0, sizing_mode="stretch_width")
        #: Why the last isolation did nothing (escaped ``state.isolation_note``).
        self.note = resources.HTML("", visible=False, margin=(8, 10),
                                   sizing_mode="stretch_width",
                                   styles={"font-size": "0.85em", "color": "#a15c00"})
        self.state.param.watch(self._on_isolated, ["isolated", "table"])
        self.state.param.watch(self._on_note, ["isolation_note"])
        self._on_isolated()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(self.button, self.crumbs, self.note, sizing_mode="stretch_width",
                      margin=0)

    # -- the path of isolations ------------------------------------------------------------
    def _on_isolated(self, *events: Any) -> None:
        rows = list(self.state.isolated)
        if not rows:
            self.path = []
        elif rows in self.path:
            self.path = self.path[: self.path.index(rows) + 1]
        elif self.path and set(rows) <= set(self.path[-1]):
            self.path = [*self.path, rows]  # an isolation inside the isolation
        else:
            self.path = [rows]
        self._draw()

    def _draw(self) -> None:
        table = self.state.table
        buttons = []
        if table is not None and self.path:
            buttons.append(self._crumb(f"All {len(table):,} rows", None))
            for level in self.path:
                buttons.append(pn.pane.HTML("›", margin=(10, 0)))
                buttons.append(self._crumb(f"Selection of {len(level):,} rows", level))
        self.crumbs.objects = buttons

    def _crumb(self, label: str, rows: list[int] | None) -> pn.widgets.Button:
        # A Button's label is a text node in Bokeh: no user text here anyway, only counts.
        button = pn.widgets.Button(label=label, color="light", margin=(5, 2))
        button.on_click(lambda event: self.go(rows))
        return button

    def go(self, rows: list[int] | None) -> None:
        """What a crumb does: back to the whole table (None) or to the isolation ``rows``;
        the current isolation's crumb selects its rows again."""
        if rows is None:
            self.state.isolate(None)
        elif rows == list(self.state.isolated):
            self.state.select(rows)
        else:
            self.state.isolate(rows)

    def _on_note(self, *events: Any) -> None:
        note = self.state.isolation_note
        self.note.param.update(object=escaped(note), visible=bool(note))
