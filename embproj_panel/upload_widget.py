"""The upload box: Panel's ``FileDropper``, but it never holds more than the upload limit.

Panel's ``FileDropper`` keeps every chunk of a file until the last one arrives. The browser
checks ``max_file_size`` first, but a client talking to the websocket directly does not: a
50 MB upload grew the server by about 150 MB before anything refused it (issue 16). This
subclass hands each chunk to :class:`embproj_panel.uploads.ChunkCollector`, which drops an
upload the moment it passes the limit and says so in :attr:`BoundedFileDropper.error`.

A client that goes on sending after the refusal (more chunks of the refused file, or a second
file over the limit: never a browser, which checks the size before sending) has its websocket
closed (:func:`close_connections`), so it cannot hold the server's memory with one chunk
after another.

It overrides ``FileDropper._process_event``, a private method of Panel (checked against Panel
1.9): if a Panel upgrade renames it, ``tests/test_upload_widget.py`` fails. Closing a session's
connections reads Bokeh's private ``ServerSession._subscribed_connections`` and
``ServerConnection._socket`` (Bokeh 3.8-3.9); ``tests/test_ws_limits.py`` fails if they change.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import panel as pn
import param

from embproj_panel.uploads import ChunkCollector, UploadAbuse, UploadError, max_upload_bytes

__all__ = ["BoundedFileDropper", "close_connections"]

_log = logging.getLogger(__name__)


def close_connections(document: Any, reason: str) -> int:
    """Close every websocket of ``document``'s served session (policy violation, 1008).

    Returns how many were closed (0 outside a served session: a notebook, a test).
    """
    context = getattr(document, "session_context", None)
    session = getattr(context, "_session", None)  # Bokeh's ServerSession (private)
    connections = list(getattr(session, "_subscribed_connections", ()))
    for connection in connections:
        connection._socket.close(1008, reason[:120])  # tornado's WebSocketHandler.close
    return len(connections)


class BoundedFileDropper(pn.widgets.FileDropper):
    """A ``FileDropper`` whose server side holds at most ``max_bytes`` of any upload.

    ``value`` gets the file's bytes (never decoded text) once it is complete and within the
    limit; an upload over the limit sets ``error`` instead and leaves ``value`` alone.
    """

    max_bytes = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="""
        Largest accepted file in bytes (None: embproj_panel.uploads.max_upload_bytes()).""")

    error = param.String(default="", doc="""
        Why the last upload was refused (plain text: escape it before rendering it), or ''.""")

    # Server-side only: the browser's model has no such properties (rendering failed).
    _rename: ClassVar[dict[str, str | None]] = {
        **pn.widgets.FileDropper._rename, "max_bytes": None, "error": None,
    }

    def __init__(self, **params: Any) -> None:
        if params.get("max_bytes") is None:
            params["max_bytes"] = max_upload_bytes()
        params.setdefault("max_file_size", f"{max(1, params['max_bytes'] // 2**10)}KB")
        super().__init__(**params)
        self._collector = ChunkCollector(self.max_bytes)

    @param.depends("max_bytes", watch=True)
    def _new_limit(self) -> None:
        self._collector = ChunkCollector(self.max_bytes)
        self.max_file_size = f"{max(1, self.max_bytes // 2**10)}KB"

    def _process_event(self, event: Any) -> None:
        data = event.data
        name = data["name"]
        if event.event_name == "delete_event":
            self._collector.discard(name)
            super()._process_event(event)
            return
        try:
            whole = self._collector.add(name, data["chunk"], data["total_chunks"], data["data"])
        except UploadAbuse as exc:
            closed = sum(close_connections(document, str(exc))
                         for document in self._session_documents())
            _log.warning("%s Closed %d connection(s) of the session.", exc, closed)
            return
        except UploadError as exc:
            self.error = str(exc)
            return
        if whole is None:
            return
        self.error = ""
        self.value[name] = whole
        self.mime_type[name] = data.get("type", "")
        self.param.trigger("mime_type", "value")

    def _session_documents(self) -> list[Any]:
        """The documents this box is shown in (one per session, or a notebook's)."""
        documents = {id(model.document): model.document
                     for model, _ in self._models.values() if model.document is not None}
        return list(documents.values())
