"""The served app: HTTP answers, per-session state, URL round trips, session clean-up, uploads."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import panel as pn
import pytest
import requests

import embproj_panel as ep
from embproj_panel import datasets
from embproj_panel.app import SAMPLE, ProjectorApp, source_options
from embproj_panel.state import ProjectorState

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the server listens
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def serve(**server_options) -> tuple[str, list[ProjectorApp]]:
    """Serve ``ProjectorApp`` pages in-process; return the URL and the apps built so far.

    The conftest's ``reset_panel_state`` stops every server after each test.
    """
    apps: list[ProjectorApp] = []

    def page():
        app = ProjectorApp()
        apps.append(app)
        return app.template()

    port = free_port()
    pn.serve({"app": page}, port=port, threaded=True, show=False, **server_options)
    listening(port)
    return f"http://localhost:{port}/app", apps


@pytest.fixture
def served():
    return serve()


def test_page_answers_with_the_bokeh_document(served):
    url, apps = served
    response = requests.get(url, timeout=60)
    assert response.status_code == 200
    assert "<title>embproj-panel</title>" in response.text
    assert "Bokeh" in response.text and "docs_json" in response.text
    assert len(apps) == 1 and apps[0].state.table is not None


def test_two_sessions_never_share_a_selection(served):
    url, apps = served
    for _ in range(2):
        assert requests.get(url, timeout=60).status_code == 200
    first, second = (app.state for app in apps)
    assert first is not second and first.table is not second.table
    first.wait()
    first.select([1, 2, 3])
    assert second.selection == [] and first.selection == [1, 2, 3]


def test_url_arguments_choose_table_method_colour_and_parameters(served):
    run = ep.init(project="demo", name="r1")
    ep.log({"points": pd.DataFrame({"label": list("ab") * 20,
                                    "a": np.arange(40.0), "b": np.arange(40.0) ** 0.5})})
    run.finish()
    url, apps = served
    query = "?project=demo&run=r1&table=points&method=umap&n_neighbors=7&color=label"
    assert requests.get(url + query, timeout=60).status_code == 200
    state = apps[0].state
    assert len(state.table) == 40 and state.color_by == "label"
    assert state.method == "umap" and state.settings["umap"].n_neighbors == 7
    state.wait(timeout=120)
    assert state.projection.method == "umap" and state.projection.params["n_neighbors"] == 7


def test_bad_url_arguments_are_reported_not_fatal(served):
    url, apps = served
    query = "?project=nope&run=r&table=t&method=umap&n_neighbors=5000&color=missing"
    assert requests.get(url + query, timeout=60).status_code == 200
    app = apps[0]
    assert len(app.state.table) == 1797  # the sample instead
    message = app._message.object
    assert app._message.visible and "n_neighbors" in message and "nope" in message


def test_a_closed_session_releases_its_state():
    # Sessions nobody connects to are dropped after half a second (Bokeh's default is 15 s).
    url, apps = serve(unused_session_lifetime_milliseconds=500,
                      check_unused_sessions_milliseconds=100)
    assert requests.get(url, timeout=60).status_code == 200
    state = apps[0].state
    deadline = time.monotonic() + 10
    while not state.closed and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.closed


def projected_here(table) -> None:
    """A state and a Projector made on this thread get their results applied."""
    state = ProjectorState(table=table)
    state.wait(timeout=30)
    assert state.projection is not None and not state.busy

    async def in_a_loop():  # as in a notebook kernel, where a loop runs on this thread
        view = ep.Projector(table)
        view.state.wait(timeout=30)
        assert view.state.projection is not None and not view.state.busy

    asyncio.run(in_a_loop())


def test_results_are_applied_whatever_document_another_thread_holds():
    # The CI hang: a state created while a server thread held its session's document took
    # that document (Bokeh's process-wide patched curdoc) and scheduled its result on a loop
    # that was busy, or stopped, so wait() timed out.
    table = datasets.hello_world()
    entered, release = threading.Event(), threading.Event()

    def held_page():
        entered.set()
        release.wait(60)  # the server thread holds this session's document meanwhile
        return pn.pane.Markdown("held")

    port = free_port()
    pn.serve({"held": held_page}, port=port, threaded=True, show=False)
    listening(port)
    client = threading.Thread(
        target=lambda: requests.get(f"http://localhost:{port}/held", timeout=90), daemon=True
    )
    client.start()
    try:
        assert entered.wait(60)
        held = pn.state.curdoc
        assert held is not None and held.session_context is not None  # visible from here
        projected_here(table)
    finally:
        release.set()
        client.join(timeout=60)
    pn.state.kill_all_servers()  # and after the in-process server has stopped
    projected_here(table)


def test_panel_serve_in_a_subprocess(tmp_path):
    port = free_port()
    env = {**os.environ, "EMBPROJ_DIR": str(tmp_path / "store"), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", "apps/projector.py", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"http://localhost:{port}/projector", timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        assert response is not None and response.status_code == 200
        assert "<title>embproj-panel</title>" in response.text
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- the source picker and uploads (no server needed) ----------------------------------------


def test_source_options_list_every_logged_table():
    run = ep.init(project="p1", name="r1")
    ep.log({"t": pd.DataFrame({"a": [1.0, 2.0]}), "u": pd.DataFrame({"b": [1.0]})})
    run.finish()
    options = source_options()
    assert options[SAMPLE] is None
    assert options["p1 / r1 / t (2 rows)"] == ("p1", "r1", "t")
    assert options["p1 / r1 / u (1 rows)"] == ("p1", "r1", "u")


def upload(app: ProjectorApp, name: str, content: bytes) -> None:
    asyncio.run(app._on_upload(SimpleNamespace(new={name: content})))


def test_upload_replaces_the_table():
    app = ProjectorApp()
    buffer = io.StringIO()
    pd.DataFrame({"label": ["x", "y", "x"], "a": [1.0, 2.0, 3.0],
                  "b": [0.0, 1.0, 0.5]}).to_csv(buffer, index=False)
    upload(app, "mine.csv", buffer.getvalue().encode())
    state = app.state
    assert len(state.table) == 3 and state.color_by == "label"
    assert app._source.value == "Upload: mine.csv (3 rows)"
    assert not app._message.visible


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("junk.parquet", b"\x00\x01not parquet at all", "previous table"),
        ("ragged.csv", b"a,b\n1,2\n3\n", "previous table"),
        ("big.csv", b"a\n" + b"1\n" * 600, "over the upload limit"),
        ("objects.npy", None, "previous table"),
    ],
    ids=["binary-junk", "ragged-csv", "oversize", "pickled-npy"],
)
def test_bad_uploads_keep_the_previous_table(name, content, expected):
    if content is None:  # a pickled object array
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        content = buffer.getvalue()
    app = ProjectorApp(max_upload_bytes=1000)
    before = app.state.table
    upload(app, name, content)
    assert app.state.table is before
    assert app._message.visible and expected in app._message.object
    assert "Traceback" not in app._message.object


def test_upload_file_names_are_shown_as_text():
    app = ProjectorApp()
    upload(app, "<img src=x onerror=alert(1)>.csv", b"\x00\x00")
    assert "&lt;img src=x" in app._message.object and "<img" not in app._message.object
