"""The README's ``panel serve apps/projector.py`` refuses a websocket from a foreign origin.

A page on another site could otherwise open a session on a projector running on the user's
machine and read its data. Bokeh checks the ``Origin`` header against the allow-list (by
default only the server's own ``localhost:<port>``); this starts the app exactly as the
README does and opens the websocket twice, with a foreign and with the server's own origin.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _server import free_port, stop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    """``panel serve apps/projector.py`` with only a port added (no origin options)."""
    port = free_port()
    env = dict(os.environ, EMBPROJ_DIR=str(tmp_path_factory.mktemp("store")),
               PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", "apps/projector.py", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("panel serve did not listen within 120 s")
    yield port
    stop(server, timeout=30)


async def _open_websocket(port: int, origin: str) -> int:
    """The HTTP status of a websocket upgrade to the app sent with ``origin``."""
    from bokeh.util.token import generate_jwt_token, generate_session_id
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    token = generate_jwt_token(generate_session_id())
    request = HTTPRequest(f"ws://localhost:{port}/projector/ws", headers={"Origin": origin},
                          connect_timeout=60, request_timeout=60)
    try:
        connection = await websocket_connect(request, subprotocols=["bokeh", token])
    except HTTPClientError as exc:
        return exc.code
    connection.close()
    return 101


def test_foreign_origin_is_refused(readme_server):
    port = readme_server
    assert asyncio.run(_open_websocket(port, "http://evil.example")) == 403
    assert asyncio.run(_open_websocket(port, f"http://127.0.0.2:{port}")) == 403


def test_own_origin_is_accepted(readme_server):
    """The same request with the server's own origin upgrades (so the 403 above is the origin)."""
    port = readme_server
    assert asyncio.run(_open_websocket(port, f"http://localhost:{port}")) == 101
