"""``DownloadsView``: CSV and Parquet downloads of the selected rows (or every row).

A download is made when the button is pressed, from the state's table, projection and
selection (:func:`embproj_panel.export.selection_frame`: the rows with their ``x`` and ``y``;
Parquet also carries vectors and images). A file too big for the websocket is refused with
a message that says what to do instead, never a closed session; a failure is a message too.
With an isolated projection (``state.isolated``), "All rows" are the isolated rows.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param

from embproj_panel import resources
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.state import ProjectorState
from embproj_panel.views.base import StateView
from embproj_panel.views.text import escaped

__all__ = ["MAX_DOWNLOAD_BYTES", "DownloadsView"]

# The largest download sent through the websocket (base64 adds a third): Bokeh's default
# message limit is 20 MB, and a bigger file would close the session.
MAX_DOWNLOAD_BYTES = 12 * 2**20


class DownloadsView(StateView):
    """"Download [Selected rows | All rows] [CSV] [Parquet]", with its own error message."""


    max_bytes = param.Integer(default=MAX_DOWNLOAD_BYTES, bounds=(1, None), doc="""
        The largest file sent to the browser (the websocket's message limit, less base64).""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        super().__init__(state, **params)
        #: Which rows: "selection" or "all".
        self.rows = pn.widgets.Select(
            options={"Selected rows": "selection", "All rows": "all"}, value="selection",
            width=130, margin=(5, 5),
        )
        #: The CSV download (no vectors, no images).
        self.csv = pn.widgets.FileDownload(
            callback=self._csv, filename="embproj-selection.csv", label="CSV",
            color="default", variant="outline", width=80, margin=(5, 5),
        )
        #: The Parquet download (with vectors and images).
        self.parquet = pn.widgets.FileDownload(
            callback=self._parquet, filename="embproj-selection.parquet", label="Parquet",
            color="default", variant="outline", width=90, margin=(5, 5),
        )
        #: Why the last download failed or was refused (hidden otherwise).
        self.alert = resources.Alert("", alert_type="danger", visible=False,
                                   sizing_mode="stretch_width", margin=(4, 10))
        self.rows.param.watch(self._on_rows, "value")

    def __panel__(self) -> pn.viewable.Viewable:
        row = pn.Row(pn.pane.HTML("Download", margin=(12, 5, 5, 10)), self.rows, self.csv,
                     self.parquet, sizing_mode="stretch_width")
        return pn.Column(self.alert, row, sizing_mode="stretch_width", margin=0)

    def _on_rows(self, event: Any) -> None:
        scope = "selection" if event.new == "selection" else "all"
        self.csv.filename = f"embproj-{scope}.csv"
        self.parquet.filename = f"embproj-{scope}.parquet"

    def frame(self, vectors: bool = False) -> pd.DataFrame | None:
        """The rows a download would hold (None without a table)."""
        from embproj_panel.export import selection_frame

        state = self.state
        if state.table is None:
            return None
        rows = None if self.rows.value == "all" else state.selection
        if rows is None and state.isolated:  # an isolated view: all of *its* rows
            rows = state.isolated
        return selection_frame(state.table, state.projection, rows, vectors=vectors,
                               images=vectors, extra=state.derived_values())

    def _download(self, make: Callable[[], bytes | None]) -> io.BytesIO | None:
        self.alert.visible = False
        try:
            data = make()
        except Exception as exc:  # noqa: BLE001 - shown to the user, not a traceback
            self._show_error(f"Export failed: {exc}")
            return None
        if data is None:
            return None
        if len(data) > self.max_bytes:
            self._show_error(
                f"The export is {len(data) / 2**20:.1f} MB, more than the "
                f"{self.max_bytes / 2**20:.0f} MB a browser download can carry here. "
                "Select fewer rows, or export from Python: projector.selected_dataframe."
            )
            return None
        return io.BytesIO(data)

    def _csv(self) -> io.BytesIO | None:
        from embproj_panel.export import to_csv_bytes

        def make() -> bytes | None:
            frame = self.frame(vectors=False)
            return None if frame is None else to_csv_bytes(frame)

        return self._download(self._streamed("csv") if self._lazy() else make)

    def _parquet(self) -> io.BytesIO | None:
        from embproj_panel.export import to_parquet_bytes

        def make() -> bytes | None:
            frame = self.frame(vectors=True)
            return None if frame is None else to_parquet_bytes(frame)

        return self._download(self._streamed("parquet") if self._lazy() else make)

    def _lazy(self) -> bool:
        return isinstance(self.state.table, DatasetTable)

    def _streamed(self, format: str) -> Callable[[], bytes | None]:
        """A lazy dataset's download: streamed a chunk of rows at a time, stopped at the cap."""
        from embproj_panel.export import write_export

        def make() -> bytes | None:
            state = self.state
            rows = None if self.rows.value == "all" else state.selection
            sink = _CappedBuffer(self.max_bytes)
            write_export(state.table, state.projection, sink, format, rows,
                         extra=state.derived_values())
            return sink.getvalue()

        return make

    def _show_error(self, message: str) -> None:
        self.alert.param.update(object=escaped(message), visible=True)


class _CappedBuffer(io.BytesIO):
    """A BytesIO that refuses to grow past ``cap`` bytes (a streamed export stops there)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: Any) -> int:
        if self.tell() + len(memoryview(data)) > self.cap:
            raise ValueError(
                f"the rows come to more than the {self.cap / 2**20:.0f} MB a browser download "
                "can carry here. Select fewer rows, or export from Python: "
                "embproj_panel.export.write_export(table, projection, path)."
            )
        return super().write(data)
