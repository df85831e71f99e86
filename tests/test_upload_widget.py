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
