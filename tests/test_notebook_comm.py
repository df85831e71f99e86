"""Notebook updates reach the page in order, once it can apply them: ``_notebook_comm``.

Driven through Panel's own ``push`` (what every Panel and HoloViews update in a notebook
goes through) with a stand-in for the kernel's comm and, where Panel retries later, a
virtual clock, so the timelines are exact, not raced. The browser side is covered by
``tests/notebook`` (the page's loading classes agree with the kernel's after the first
result).
"""

from __future__ import annotations

import heapq
import itertools
import json
from typing import Any

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import Div
from panel.io.model import add_to_doc
from panel.io.notebook import push
from pyviz_comms import JupyterComm

from embproj_panel import _notebook_comm
from embproj_panel._notebook_comm import OrderedComm, PageReport


class KernelComm:
    """Stands in for ``ipykernel.comm.Comm``: records what is sent to the page."""

    opened: list[KernelComm] = []

    def __init__(self, target_name: str = "", data: Any = None) -> None:
        self.sent: list[Any] = []
        KernelComm.opened.append(self)

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.sent.append(data)

    def on_msg(self, callback: Any) -> None:
        pass

    def close(self) -> None:
        pass


class VirtualLoop:
    """``IOLoop.current()`` for Panel's push retries, on a clock the test advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Any]] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Any) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._order), callback))

    def run_until(self, time: float) -> None:
        while self._queue and self._queue[0][0] <= time:
            self.now, _, callback = heapq.heappop(self._queue)
            callback()
        self.now = time


@pytest.fixture
def kernel_comm(monkeypatch):
    import ipykernel.comm

    KernelComm.opened = []
    monkeypatch.setattr(ipykernel.comm, "Comm", KernelComm)
    return KernelComm


@pytest.fixture
def virtual_loop(monkeypatch):
    from tornado import ioloop

    loop = VirtualLoop()
    monkeypatch.setattr(ioloop.IOLoop, "current", staticmethod(lambda *args: loop))
    return loop


@pytest.fixture
def output(monkeypatch):
    """A notebook output: a held document with a text and (optionally) a page report.

    Returns ``(doc, text, report)``: ``text`` is the Bokeh model the updates change,
    ``report()`` is the page's message that it has built the output (None without one).
    """
    from panel.io.state import state

    def make(comm, with_report: bool = True) -> tuple[Document, Div, Any]:
        doc, text = Document(), Div(text="first render")
        parts = [pn.pane.Bokeh(text)] + ([PageReport()] if with_report else [])
        layout = pn.Column(*parts)
        root = layout.get_root(doc, comm)  # registers (layout, root, doc, comm) with Panel
        add_to_doc(root, doc, True)  # held, as Panel holds a notebook output's document
        monkeypatch.setitem(state._views, root.ref["id"], state._views[root.ref["id"]])
        report = parts[-1] if with_report else None
        return doc, text, (lambda: report._handle_msg(root.ref["id"])) if report else None

    return make


def patches(sent: list[Any]) -> list[list[dict]]:
    """The events of each PATCH-DOC message among the sent fragments, in arrival order."""
    messages = []
    for fragment in sent:
        if isinstance(fragment, str) and '"events"' in fragment:
            messages.append(json.loads(fragment)["events"])
    return messages


def texts(sent: list[Any]) -> list[str]:
    return [event["new"] for message in patches(sent) for event in message
            if event.get("attr") == "text"]


@pytest.mark.parametrize("comm_class", [
    pytest.param(JupyterComm, marks=pytest.mark.xfail(
        reason="Panel 1.9's push retries each message on its own 0.1 s timer until the page "
               "opens the comm: they go out in the order of their timers", strict=True)),
    OrderedComm,
])
def test_updates_made_before_the_page_opened_the_comm_arrive_in_order(
        comm_class, kernel_comm, virtual_loop, output):
    comm = comm_class()
    doc, root, _report = output(comm, with_report=False)
    root.text = "loading"  # t = 0: the first result replaces the plot...
    push(doc, comm)
    virtual_loop.run_until(0.15)
    root.text = "loaded"  # ...and t = 0.15 s: its loading flag goes off
    push(doc, comm)
    virtual_loop.run_until(0.22)
    comm.init()  # the page opens the comm
    virtual_loop.run_until(2.0)
    sent = kernel_comm.opened[0].sent
    assert texts(sent) == ["loading", "loaded"]


def test_nothing_is_sent_before_the_page_reports_the_output_built(kernel_comm, output):
    comm = OrderedComm()
    doc, root, report = output(comm)
    root.text = "a"
    push(doc, comm)
    comm.init()  # the page's comm manager is up; its views are not built yet
    root.text = "b"
    push(doc, comm)
    channel = kernel_comm.opened[0]
    assert channel.sent == []  # the page would drop these fragments, and lose its place
    report()
    assert texts(channel.sent) == ["a", "b"]
    assert comm.opened_by == "page"
    root.text = "c"
    push(doc, comm)  # afterwards, straight through
    assert texts(channel.sent) == ["a", "b", "c"]
    assert comm._outbox.pending == 0


def test_the_outbox_opens_after_a_timeout_if_the_page_never_reports(
        kernel_comm, output, monkeypatch):
    import time

    monkeypatch.setattr(_notebook_comm, "READY_TIMEOUT", 0.05)
    comm = OrderedComm()
    doc, root, _report = output(comm)
    root.text = "a"
    push(doc, comm)
    comm.init()
    channel = kernel_comm.opened[0]
    assert channel.sent == []
    deadline = time.monotonic() + 10
    while not channel.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert texts(channel.sent) == ["a"]
    assert comm.opened_by == "timeout"


def test_an_output_without_a_page_report_is_sent_to_once_the_page_opens_the_comm(
        kernel_comm, output):
    comm = OrderedComm()
    doc, root, _report = output(comm, with_report=False)
    root.text = "a"
    push(doc, comm)
    comm.init()
    assert texts(kernel_comm.opened[0].sent) == ["a"]
    assert comm.opened_by == "open"


def test_a_reloaded_page_gets_a_new_kernel_comm_and_is_waited_for(kernel_comm, output):
    comm = OrderedComm()
    doc, root, report = output(comm)
    comm.init()
    report()
    comm.init()  # the page was reloaded: its new comm manager opened the comm again
    root.text = "after reload"
    push(doc, comm)
    first, second = kernel_comm.opened
    assert texts(first.sent) == [] and texts(second.sent) == []
    report()
    assert texts(second.sent) == ["after reload"]


def test_closing_drops_what_waits_and_sends_nothing_more(kernel_comm, output):
    comm = OrderedComm()
    doc, root, report = output(comm)
    root.text = "a"
    push(doc, comm)
    comm.close()
    comm.init()
    report()
    assert kernel_comm.opened[0].sent == []


def test_a_failing_page_message_leaves_the_document_held(kernel_comm, output):
    # As Panel's Viewable._on_msg: hold, apply the page's changes, unhold (which runs their
    # callbacks: one raises), re-hold only afterwards.
    comm = OrderedComm()
    doc, root, report = output(comm, with_report=False)

    def panels_on_msg(msg):
        held = doc.callbacks.hold_value
        doc.hold()
        try:
            pass  # the page's patch
        finally:
            doc.unhold()
            raise RuntimeError("a callback of the page's change failed")
            doc.hold(held)  # never reached

    guarded = _notebook_comm.keep_held(doc, panels_on_msg)
    with pytest.raises(RuntimeError):
        guarded({})
    assert doc.callbacks.hold_value is not None  # still collecting for push
    comm.init()
    root.text = "after the error"
    push(doc, comm)
    assert texts(kernel_comm.opened[0].sent) == ["after the error"]
    with pytest.raises(RuntimeError):
        panels_on_msg({})  # unguarded, the next change would be lost
    root.text = "lost"
    push(doc, comm)
    assert texts(kernel_comm.opened[0].sent) == ["after the error"]
