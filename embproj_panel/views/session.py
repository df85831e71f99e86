"""The Panel session a view is built in, as the dispatch its :class:`ProjectorState` uses.

A state applies results through ``state.dispatch(callback)``; the view and app layer give it
one, because only they know the session. :func:`session_dispatch` is that knowledge in one
place: called while Panel builds a served session, it returns the session document's
``add_next_tick_callback`` (Bokeh's thread-safe entry point; Panel then holds the document's
lock and sets ``pn.state.curdoc`` while the callback runs).

Served sessions are built on the server's event loop thread, so a document is taken only when
this thread runs an event loop: ``pn.state.curdoc`` falls back to Bokeh's process-wide
patched documents, which on any other thread (a test, a script, a worker) can be another
session's document, or the document of a server that has stopped, where a callback would
never run. Elsewhere (scripts, notebooks) it returns None: the state then uses the notebook
kernel's loop or :meth:`ProjectorState.wait`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import panel as pn

__all__ = ["session_dispatch"]


def session_dispatch() -> Callable[[Callable[[], None]], Any] | None:
    """``doc.add_next_tick_callback`` of the served session being built here, or None."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None  # no event loop on this thread: not a served session's thread
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return None  # a notebook (comms) or a script inside a loop
    # Panel claims each served document for the thread that builds it (``_thread_id_``, a
    # private mapping of Panel 1.x read only here): a document claimed by another thread is
    # another server's. Without the mapping, the running loop above is the evidence.
    owners = getattr(pn.state, "_thread_id_", None)
    owner = owners.get(doc) if owners is not None else None
    if owner is not None and owner != threading.get_ident():
        return None
    return doc.add_next_tick_callback


def url_query() -> dict[str, Any]:
    """The session's URL query arguments (decoded), or {} outside a served session."""
    location = pn.state.location
    if location is None:
        return {}
    try:
        return dict(location.query_params)
    except Exception:  # noqa: BLE001 - a malformed query is no reason to fail the page
        return {}
