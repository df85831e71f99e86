"""The bounded upload box: an oversize upload is refused while it arrives, never held whole."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from embproj_panel.upload_widget import BoundedFileDropper
from embproj_panel.uploads import ChunkCollector, UploadError


def chunks(name: str, content: bytes, size: int):
    total = max(1, -(-len(content) // size))
    for i in range(total):
        data = {"name": name, "chunk": i + 1, "total_chunks": total, "type": "text/csv",
                "data": content[i * size:(i + 1) * size]}
        yield SimpleNamespace(event_name="upload_event", data=data)


def test_a_file_within_the_limit_arrives_whole_as_bytes():
    dropper = BoundedFileDropper(max_bytes=100)
    for event in chunks("a.csv", b"x,y\n1,2\n" * 10, 16):
        dropper._process_event(event)
    assert dropper.value == {"a.csv": b"x,y\n1,2\n" * 10} and dropper.error == ""


def test_an_oversize_upload_is_refused_while_arriving_and_never_held_whole():
    dropper = BoundedFileDropper(max_bytes=1000)
    held = []
    for event in chunks("big.csv", b"0" * 50_000, 100):  # a client that skips the browser check
        dropper._process_event(event)
        held.append(dropper._collector.held_bytes)
    assert max(held) <= 1000 and held[-1] == 0
    assert dropper.value == {}
    assert "over the upload limit of 1000 bytes" in dropper.error
    # the box still works afterwards
    for event in chunks("ok.csv", b"x\n1\n", 100):
        dropper._process_event(event)
    assert dropper.value == {"ok.csv": b"x\n1\n"} and dropper.error == ""


def test_the_browser_limit_follows_the_server_limit():
    assert BoundedFileDropper(max_bytes=5 * 2**20).max_file_size == "5120KB"


def test_collector_refuses_out_of_order_and_parallel_uploads():
    collector = ChunkCollector(100)
    assert collector.add("a", 1, 2, b"12") is None
    with pytest.raises(UploadError, match="Another upload is still arriving"):
        collector.add("b", 1, 1, b"x")
    with pytest.raises(UploadError, match="out of order"):
        collector.add("a", 3, 3, b"x")
    assert collector.held_bytes == 0
    assert collector.add("b", 1, 1, b"x") == b"x"


def test_the_box_renders_in_a_page():
    # its own parameters stay on the server: the browser's FileDropper has no such properties
    import panel as pn

    model = pn.Column(BoundedFileDropper(max_bytes=1000)).get_root()
    (dropper,) = [m for m in model.select({"type": object}) if type(m).__name__ == "FileDropper"]
    assert dropper.max_file_size == "1KB"


def test_chunks_after_a_size_refusal_or_a_second_oversize_upload_are_abuse():
    # Never a browser's (it checks the size first): the box closes such a connection.
    from embproj_panel.uploads import UploadAbuse

    collector = ChunkCollector(10)
    with pytest.raises(UploadError, match="over the upload limit") as refused:
        collector.add("big", 1, 3, b"x" * 11)
    assert not isinstance(refused.value, UploadAbuse)
    with pytest.raises(UploadAbuse, match="kept arriving"):
        collector.add("big", 2, 3, b"x" * 11)
    assert collector.held_bytes == 0
    assert collector.add("ok", 1, 1, b"small") == b"small"  # a good file still arrives
    with pytest.raises(UploadAbuse, match="second upload over the upload limit"):
        collector.add("again", 1, 1, b"y" * 11)


def test_the_box_closes_its_sessions_connections_on_abuse(monkeypatch):
    import embproj_panel.upload_widget as widget

    closed = []
    monkeypatch.setattr(widget, "close_connections",
                        lambda document, reason: closed.append(reason) or 1)
    dropper = BoundedFileDropper(max_bytes=10)
    monkeypatch.setattr(dropper, "_session_documents", lambda: ["the session's document"])
    events = list(chunks("big.csv", b"0" * 30, 11))
    dropper._process_event(events[0])
    assert "over the upload limit" in dropper.error and closed == []
    dropper._process_event(events[1])
    assert closed and "kept arriving" in closed[0]
    assert "over the upload limit" in dropper.error  # the page still says why


def test_close_connections_closes_every_websocket_of_a_served_session():
    from embproj_panel.upload_widget import close_connections

    sockets = [SimpleNamespace(closed=None) for _ in range(2)]
    for sock in sockets:
        sock.close = lambda code, reason, sock=sock: setattr(sock, "closed", (code, reason))
    session = SimpleNamespace(_subscribed_connections=[SimpleNamespace(_socket=s)
                                                       for s in sockets])
    document = SimpleNamespace(session_context=SimpleNamespace(_session=session))
    assert close_connections(document, "abuse") == 2
    assert [sock.closed for sock in sockets] == [(1008, "abuse")] * 2
    assert close_connections(SimpleNamespace(session_context=None), "abuse") == 0
