"""The app under damaged stores, oversize uploads, hostile files and hostile URLs (issue 16).

Every case goes through the page's own paths (the source picker, the upload box's chunk
events, the URL the session opens with) and asserts the message the user reads, that the
previous table is still shown, and that the page still works afterwards (a good table opens).
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embproj_panel as ep
from embproj_panel import app as app_module
from embproj_panel.app import (
    SAMPLE,
    UPLOAD_CHUNK_BYTES,
    ProjectorApp,
    server_options,
    source_options,
    unreadable_sources,
)

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")


def log(project: str, run: str, **tables: pd.DataFrame) -> Path:
    logged = ep.init(project=project, name=run)
    ep.log(tables)
    logged.finish()
    return ep.store.default_root() / project / run


def good_frame(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"label": list("ab") * (n // 2), "a": rng.normal(size=n),
                         "b": rng.normal(size=n)})


@pytest.fixture
def damaged_store(isolated_store):
    """One good table, one run with a manifest that is not JSON, one truncated Parquet table."""
    log("p", "good", t=good_frame())
    bad_manifest = log("p", "badjson", t=good_frame())
    (bad_manifest / "manifest.json").write_text("{not json")
    cut = log("p", "cut", t=good_frame(), u=good_frame(4))
    parquet = next(cut.rglob("t*.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:40])
    return isolated_store


# -- 1. the source picker ------------------------------------------------------------------------
def test_damaged_tables_are_listed_as_unreadable_never_missing(damaged_store):
    options = source_options()
    assert options["p / good / t (6 rows)"] == ("p", "good", "t")
    assert options["p / cut / u (4 rows)"] == ("p", "cut", "u")  # its sibling stays good
    unreadable = unreadable_sources()
    assert any(label.startswith("p / badjson: unreadable") for label in unreadable)
    assert any(label.startswith("p / cut / t: unreadable") for label in unreadable)
    assert not any(label.startswith("p / cut / t") for label in options)  # not listed as good
    for reason in unreadable.values():
        assert str(damaged_store) not in reason

    app = ProjectorApp()
    picker = app._source
    assert set(unreadable) <= set(picker.options)
    assert set(picker.disabled_options) == set(unreadable)
    before = app.state.table
    label = next(label for label in unreadable if label.startswith("p / cut / t"))
    assert "cut short" in label and str(damaged_store) not in label  # the label says why
    with pytest.raises(ValueError, match="disabled option"):
        picker.value = label  # refused, from the browser or from Python
    assert app.state.table is before
    picker.value = "p / good / t (6 rows)"  # the page still works
    assert len(app.state.table) == 6 and not app._message.visible


def test_a_table_damaged_after_listing_says_so_without_the_store_path(isolated_store):
    folder = log("p", "r", t=good_frame())
    app = ProjectorApp()
    parquet = next(folder.rglob("t*.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:-30])  # cut short while the page is open
    before = app.state.table
    app._source.value = "p / r / t (6 rows)"
    assert app.state.table is before
    assert app._message.visible and "previous table" in app._message.object
    assert str(isolated_store) not in app._message.object
    app._on_refresh(None)  # the list now says what is wrong with it
    assert any(label.startswith("p / r / t: unreadable") for label in app._source.disabled_options)


# -- 2. an oversize upload sent as the widget's own chunk messages -----------------------------
def chunk_events(name: str, content: bytes, size: int):
    total = max(1, -(-len(content) // size))
    for i in range(total):
        yield SimpleNamespace(event_name="upload_event", data={
            "name": name, "chunk": i + 1, "total_chunks": total, "type": "text/csv",
            "data": content[i * size:(i + 1) * size]})


def send(app: ProjectorApp, name: str, content: bytes, size: int) -> list[int]:
    """Feed the upload box chunk by chunk (as the websocket does); bytes it held after each."""
    held = []
    for event in chunk_events(name, content, size):
        app._upload._process_event(event)
        held.append(app._upload._collector.held_bytes)
    return held


def wait_for_upload(app: ProjectorApp, timeout: float = 60) -> None:
    # _on_upload is async (parsing runs off the loop): outside a server Panel runs it in a
    # loop of its own; wait until the table or the message changed.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app._message.visible or app._source.value.startswith("Upload:"):
            return
        time.sleep(0.05)


def test_the_app_uses_the_bounded_upload_box():
    from embproj_panel.upload_widget import BoundedFileDropper

    app = ProjectorApp(max_upload_bytes=5 * 2**20)
    assert isinstance(app._upload, BoundedFileDropper)
    assert app._upload.max_bytes == 5 * 2**20 and app._upload.chunk_size == UPLOAD_CHUNK_BYTES
    assert not app._upload.multiple


def test_an_oversize_upload_is_refused_while_arriving_and_the_page_goes_on():
    limit, chunk = 10_000, 1_000
    app = ProjectorApp(max_upload_bytes=limit)
    before = app.state.table
    held = send(app, "big.csv", b"a\n" + b"1\n" * 250_000, chunk)  # 500 kB, 50x the limit
    assert max(held) <= limit + chunk and held[-1] == 0
    assert app._upload.value == {}
    assert app.state.table is before
    message = app._message.object
    assert app._message.visible and "over the upload limit" in message
    assert "previous table is still shown" in message
    # the page keeps working: the next (good) upload opens
    buffer = io.StringIO()
    good_frame().to_csv(buffer, index=False)
    send(app, "ok.csv", buffer.getvalue().encode(), chunk)
    wait_for_upload(app)
    assert app._source.value == "Upload: ok.csv (6 rows)" and len(app.state.table) == 6


def test_server_options_bound_a_websocket_message_to_one_upload_chunk():
    limit = server_options()["websocket_max_message_size"]
    assert UPLOAD_CHUNK_BYTES < limit <= UPLOAD_CHUNK_BYTES + 2**20 < 20 * 2**20  # Bokeh: 20 MB


# -- 3. bad files through the app's upload -----------------------------------------------------
def upload(app: ProjectorApp, name: str, content: bytes) -> None:
    asyncio.run(app._on_upload(SimpleNamespace(new={name: content})))


def _cells(text: str) -> bytes:
    return text.encode("utf-8")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ragged.csv", b"a,b\n1,2\n3\n", "line 3 has 1 but the header has 2"),
        ("empty.csv", b"a,b\n", "no rows of data"),
        ("zero.csv", b"", "The file is empty"),
        ("renamed.csv", bytes(range(256)) * 10, "not a text file"),
        ("renamed.parquet", b"PK\x03\x04" + bytes(200), "not a Parquet file"),
        ("renamed.npy", b"a,b\n1,2\n", "npy"),
    ],
    ids=["ragged", "empty-table", "zero-byte", "binary-as-csv", "zip-as-parquet", "csv-as-npy"],
)
def test_a_bad_file_gets_its_message_and_keeps_the_previous_table(name, content, message):
    app = ProjectorApp()
    before, label = app.state.table, app._source.value
    upload(app, name, content)
    shown = app._message.object
    assert app.state.table is before and app._source.value == label
    assert app._message.visible and message.lower() in shown.lower()
    assert "previous table is still shown" in shown and "Traceback" not in shown
    upload(app, "ok.csv", good_frame().to_csv(index=False).encode())  # still usable
    assert len(app.state.table) == 6 and not app._message.visible


def test_nan_and_inf_rows_are_excluded_and_said_so():
    app = ProjectorApp()
    upload(app, "nan.csv", b"a,b\n1,nan\ninf,2\n3,4\n5,6\n7,9\n")
    state = app.state
    assert len(state.table) == 5
    state.wait()
    assert "2 row(s) excluded" in state.status and len(state.projection.rows) == 3


HOSTILE = "<img src=x onerror=window.__xss=1>"


def test_long_hostile_and_unicode_labels_and_names_stay_text():
    app = ProjectorApp()
    name = "名前 🦄 \u202eevil\u0007\u0000" + HOSTILE + ".csv"
    labels = ["x" * 10_000, HOSTILE, "שלום \u202e", "🦄\u0007"]
    frame = pd.DataFrame({HOSTILE: labels * 2, "שם 🦄": np.arange(8.0),
                          "b": np.linspace(0, 1, 8)})
    upload(app, name, frame.to_csv(index=False).encode())
    state = app.state
    assert len(state.table) == 8 and state.color_by == HOSTILE
    shown = app._source.value
    assert shown.startswith("Upload: ") and "\u0000" not in shown and "\u0007" not in shown
    assert len(shown) < 200  # the file name is shortened for the picker
    state.wait()
    assert set(state.frame["color"].astype(str)) >= {HOSTILE}
    # an error naming the file renders the name as text
    upload(app, name, b"")
    assert "&lt;img src=x" in app._message.object and "<img" not in app._message.object
    assert len(state.table) == 8


# -- 3. bad URLs ---------------------------------------------------------------------------------
def opened(monkeypatch, query: dict[str, str]) -> ProjectorApp:
    monkeypatch.setattr(app_module, "_query", lambda: dict(query))
    return ProjectorApp()


@pytest.mark.parametrize(
    "query",
    [
        {"project": "..", "run": "..", "table": "t"},
        {"project": "../../etc", "run": "r", "table": "passwd"},
        {"project": "p", "run": "r/../../x", "table": "t"},
        {"project": "/etc", "run": "r", "table": "t"},
        {"project": "p", "run": "good", "table": "missing"},
        {"project": "p", "run": "nope", "table": "t"},
        {"project": "p", "run": "cut", "table": "t"},
        {"project": "p", "run": "badjson", "table": "t"},
    ],
    ids=["dotdot", "dotdot-deep", "dotdot-in-run", "absolute", "missing-table", "missing-run",
         "truncated-table", "invalid-manifest"],
)
def test_a_url_naming_bad_paths_or_missing_tables_opens_the_sample(monkeypatch, damaged_store,
                                                                   query):
    app = opened(monkeypatch, query)
    assert len(app.state.table) == 1797 and app._source.value == SAMPLE
    message = app._message.object
    assert app._message.visible and "ignored" in message and "Traceback" not in message
    assert str(damaged_store) not in message
    assert (app.project, app.run, app.table) == ("", "", "")
    app._source.value = "p / good / t (6 rows)"  # still usable
    assert len(app.state.table) == 6


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["..", "../..", "/", "\\", "%2e%2e", "\u202e", "🦄", "x" * 10_000, HOSTILE, "", "null",
     "nan", "-1", "1e309", "umap", "pca", "tsne", "label", "t", "p", "good", "0", "1", "7",
     " 25 ", "+3", "100", "101", "10.0", "1" * 5000, "\u0663"])
_KEYS = st.sampled_from(["project", "run", "table", "method", "color", "image", "size",
                         "alpha", "colormap", "auto", "n_neighbors", "min_dist", "n_components",
                         "random_state", "metric", "perplexity", "k", "unknown"])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(query=st.dictionaries(_KEYS, _TEXT, max_size=6))
def test_fuzzed_url_arguments_never_break_the_page(monkeypatch, query):
    root = ep.store.default_root()
    app = opened(monkeypatch, query)
    state = app.state
    assert state.table is not None
    assert app._source.value in app._source.options
    assert str(root) not in app._message.object
    if app._message.visible:
        assert app._message.object.startswith("Some settings in the URL were ignored")
        assert "<" not in app._message.object  # escaped
    faith = app.parts["trust"].faith
    if "k" in query:  # taken when a whole number of 1-100 in ASCII digits, else refused
        text = query["k"].strip()
        if re.fullmatch(r"\+?0*([1-9][0-9]?|100)", text):
            assert faith.k == int(text)
        else:
            shown = html.unescape(app._message.object)
            assert faith.k == 10 and f"k={text[:39]!r}"[:-1] in shown
    if state.method == "pca":
        state.wait(timeout=120)
        assert state.projection is not None and not state.error
    app.close()


def test_the_url_sets_the_faithfulness_k_and_follows_it(location):
    url = location("?k=25")
    app = ProjectorApp()
    faith = app.parts["trust"].faith
    assert faith.k == 25 and not app._message.visible
    app.state.wait(timeout=60)
    faith.wait(timeout=120)
    assert faith.assessment.k == 25
    faith.k = 12  # changed in the page: the URL follows
    assert "k=12" in url.search
    app.close()


@pytest.mark.parametrize("value", ["0", "101", "abc", "7.5", "-3", "<b>x</b>"])
def test_a_bad_faithfulness_k_in_the_url_is_refused_with_a_note(location, value):
    url = location("?" + urlencode({"k": value}))
    app = ProjectorApp()
    faith = app.parts["trust"].faith
    assert faith.k == 10
    message = app._message.object
    assert app._message.visible and "k=" in message and "from 1 to 100" in message
    assert "<b>" not in message and "Traceback" not in message
    assert "k=10" in url.search  # the URL says the k in use, not the refused one
    app.close()


def test_manifest_tampering_is_not_trusted(isolated_store):
    # A manifest that points a table at a file outside its run is refused, not followed.
    folder = log("p", "r", t=good_frame())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tables"]["../../x"] = manifest["tables"]["t"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert "p / r / t (6 rows)" in source_options()
    assert not any("x" in label and "../" in label for label in source_options())
