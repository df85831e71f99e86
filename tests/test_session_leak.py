"""A closed session leaves nothing of its own in the server (issue 16: memory over open/close
cycles). Two references from process-wide registries kept every closed session's views,
state, table and projection alive: the finder's ``WeakKeyDictionary`` whose values held their
keys, and HoloViews' options store holding the scatter's hooks (bound to the view)."""

from __future__ import annotations

import gc
import time
import weakref

from _server import BokehClient, serve_in_process

from embproj_panel.app import ProjectorApp


def test_closed_sessions_are_collected():
    apps: list[weakref.ref] = []
    states: list[weakref.ref] = []

    def page():
        app = ProjectorApp()
        apps.append(weakref.ref(app))
        states.append(weakref.ref(app.state))
        return app.template()

    with serve_in_process({"app": page}, unused_session_lifetime_milliseconds=300,
                          check_unused_sessions_milliseconds=100) as base:
        for _ in range(2):
            with BokehClient(f"{base}/app") as client:
                client.quiet(0.5, 60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gc.collect()
            if not [ref for ref in states if ref() is not None]:
                break
            time.sleep(0.5)
        assert len(states) == 2
        assert [ref() for ref in states] == [None, None], "a closed session's state is alive"
        assert [ref() for ref in apps] == [None, None]
