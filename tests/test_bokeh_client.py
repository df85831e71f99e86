"""The tests' Bokeh client (:class:`_server.BokehClient`) opens a session as a browser does.

BokehJS tells the server when the page has rendered (Bokeh's ``DocumentReady`` event); Panel
only then runs the page's ``onload`` callbacks and dispatches the session's changes directly.
A Python Bokeh client never sends it on its own, so every websocket test and the load
benchmark measured a session no browser opens (a colour change cost the server four times the
CPU) until the client sent it.
"""

from __future__ import annotations

import threading

import panel as pn
from _server import BokehClient, serve_in_process


def test_a_client_session_is_loaded_as_a_browser_session_is():
    loaded = threading.Event()

    def page():
        pn.state.onload(loaded.set)
        return pn.pane.Markdown("page")

    with serve_in_process({"page": page}) as base, BokehClient(f"{base}/page"):
        assert loaded.wait(30), "the page's onload callbacks never ran"
        assert list(pn.state._connected.values()) == [True]


def test_the_client_times_the_servers_answer_to_a_change():
    def page():
        text = pn.widgets.TextInput(value="a")
        echo = pn.pane.Str("a")
        text.param.watch(lambda event: setattr(echo, "object", event.new * 2), "value")
        return pn.Column(text, echo)

    with serve_in_process({"page": page}) as base, BokehClient(f"{base}/page") as client:
        (box,) = client.models("TextInput")
        seconds = client.timed_change(setattr, box, "value", "b")
        assert seconds is not None and 0 < seconds < 30
        client.quiet()
        assert "bb" in client.texts()
