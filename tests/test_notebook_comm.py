"""Notebook updates reach the page in order, once it can apply them: ``_notebook_comm``.

Driven through Panel's own ``push`` (what every Panel and HoloViews update in a notebook
goes through) with stand-ins for the kernel's comms and its comm manager (where the page's
report arrives) and, where Panel retries later, a virtual clock, so the timelines are exact,
not raced. The browser side is covered by ``tests/notebook`` (the page's loading classes
agree with the kernel's after the first result, the output's comm opened by the report).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
from typing import Any

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import Div
from panel.io.model import add_to_doc
from panel.io.notebook import push
from panel.models.comm_manager import CommManager
from pyviz_comms import Comm, JupyterComm

from embproj_panel import _notebook_comm
from embproj_panel._notebook_comm import REPORT_TARGET, OrderedComm, PageReport


class KernelComm:
    """Stands in for ``ipykernel.comm.Comm``: records what is sent to the page."""

    opened: list[KernelComm] = []

    def __init__(self, target_name: str = "", data: Any = None) -> None:
        self.sent: list[Any] = []
        self.metadata: list[Any] = []
        self.callback: Any = None
        self.target, self.closed = target_name, False
        KernelComm.opened.append(self)

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.sent.append(data)
        self.metadata.append(metadata)

    def on_msg(self, callback: Any) -> None:
        self.callback = callback

    def close(self) -> None:
        self.closed = True


class KernelCommManager:
    """Stands in for the kernel's comm manager: the targets the page's comms open."""

    def __init__(self) -> None:
        self.targets: dict[str, Any] = {}

    def register_target(self, name: str, handler: Any) -> None:
        self.targets[name] = handler

    def unregister_target(self, name: str, handler: Any) -> None:
        self.targets.pop(name)

    def page_opens(self, target: str) -> KernelComm:
        """What the kernel does when the page opens a comm to ``target``."""
        comm = KernelComm(target)
        self.targets[target](comm, {"content": {"target_name": target, "data": {}}})
        return comm


class ClientComm(Comm):
    """The output's client comm (page -> kernel) as ``pyviz_comms.JupyterCommJS`` is after
    the page opened it: ``_comm`` is the kernel's end; ``_handle_msg`` what it calls."""

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self._comm.send(data, metadata=metadata, buffers=buffers)


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
def comm_manager(monkeypatch):
    manager = KernelCommManager()
    monkeypatch.setattr(_notebook_comm, "_kernel_comm_manager", lambda: manager)
    return manager


@pytest.fixture
def virtual_loop(monkeypatch):
    from tornado import ioloop

    loop = VirtualLoop()
    monkeypatch.setattr(ioloop.IOLoop, "current", staticmethod(lambda *args: loop))
    return loop


@pytest.fixture
def output(monkeypatch, comm_manager):
    """A notebook output: a held document with a text and (optionally) a page report.

    Returns ``(doc, text, report, client)``: ``text`` is the Bokeh model the updates change,
    ``report()`` is the page opening its report comm (None without a report), ``client`` the
    output's client comm, whose kernel end the page has opened (as Panel builds the output:
    a CommManager root naming both comms).
    """
    from panel.io.state import state
    from pyviz_comms import CommManager as CommManagers

    def make(comm, with_report: bool = True) -> tuple[Document, Div, Any, ClientComm]:
        doc, text = Document(), Div(text="first render")
        parts = [pn.pane.Bokeh(text)] + ([PageReport()] if with_report else [])
        layout = pn.Column(*parts)
        root = layout.get_root(doc, comm)  # registers (layout, root, doc, comm) with Panel
        add_to_doc(root, doc, True)  # held, as Panel holds a notebook output's document
        ref = root.ref["id"]
        monkeypatch.setitem(state._views, ref, state._views[ref])
        client = ClientComm()
        client._comm = KernelComm("client")
        client._comm.on_msg(client._handle_msg)
        monkeypatch.setitem(CommManagers._comms, client.id, client)
        doc.add_root(CommManager(comm_id=comm.id, plot_id=ref, client_comm_id=client.id))
        report = (lambda: comm_manager.page_opens(REPORT_TARGET + ref)) if with_report else None
        return doc, text, report, client

    return make


def patches(sent: list[Any]) -> list[list[dict]]:
    """The events of each PATCH-DOC message among the sent fragments, in arrival order."""
    messages = []
    for fragment in sent:
        if isinstance(fragment, str) and '"events"' in fragment:
            messages.append(json.loads(fragment)["events"])
    return messages


def to_page(comm) -> KernelComm:
    """The kernel's end of the output's comm to the page (opened by ``comm.init()``)."""
    return next(c for c in KernelComm.opened if c.target == comm.id)


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
    doc, root, _report, _client = output(comm, with_report=False)
    root.text = "loading"  # t = 0: the first result replaces the plot...
    push(doc, comm)
    virtual_loop.run_until(0.15)
    root.text = "loaded"  # ...and t = 0.15 s: its loading flag goes off
    push(doc, comm)
    virtual_loop.run_until(0.22)
    comm.init()  # the page opens the comm
    virtual_loop.run_until(2.0)
    assert texts(to_page(comm).sent) == ["loading", "loaded"]


def test_nothing_is_sent_before_the_page_reports_the_output_built(kernel_comm, output):
    comm = OrderedComm()
    doc, root, report, _client = output(comm)
    root.text = "a"
    push(doc, comm)
    comm.init()  # the page's comm manager is up; its views are not built yet
    root.text = "b"
    push(doc, comm)
    channel = to_page(comm)
    assert channel.sent == []  # the page would drop these fragments
    report_comm = report()
    assert texts(channel.sent) == ["a", "b"]
    assert comm.opened_by == "page"
    assert report_comm.closed  # the report's comm carries nothing more
    root.text = "c"
    push(doc, comm)  # afterwards, straight through
    assert texts(channel.sent) == ["a", "b", "c"]
    assert comm._outbox.pending == 0


def test_the_page_report_is_the_comm_target_its_script_opens(kernel_comm, comm_manager, output):
    comm = OrderedComm()
    doc, _root, _report, _client = output(comm)
    root_id = next(iter(m for m in doc.roots if not isinstance(m, CommManager))).ref["id"]
    assert list(comm_manager.targets) == [REPORT_TARGET + root_id]
    # The script opens that target for the root it finds in Bokeh.index.
    assert (f"get_client_comm(root, {json.dumps(REPORT_TARGET)} + root, null)"
            in PageReport._esm)


def test_an_output_without_a_page_report_is_sent_to_once_the_page_opens_the_comm(
        kernel_comm, output):
    comm = OrderedComm()
    doc, root, _report, _client = output(comm, with_report=False)
    root.text = "a"
    push(doc, comm)
    comm.init()
    assert texts(to_page(comm).sent) == ["a"]
    assert comm.opened_by == "open"


def test_a_reloaded_page_gets_a_new_kernel_comm_and_is_waited_for(kernel_comm, output):
    comm = OrderedComm()
    doc, root, report, _client = output(comm)
    comm.init()
    report()
    first = to_page(comm)
    comm.init()  # the page was reloaded: its new comm manager opened the comm again
    root.text = "after reload"
    push(doc, comm)
    second = [c for c in KernelComm.opened if c.target == comm.id][-1]
    assert second is not first
    assert texts(first.sent) == [] and texts(second.sent) == []
    report()
    assert texts(second.sent) == ["after reload"]


def test_closing_drops_what_waits_sends_nothing_more_and_forgets_the_report_target(
        kernel_comm, comm_manager, output):
    comm = OrderedComm()
    doc, root, report, _client = output(comm)
    root.text = "a"
    push(doc, comm)
    comm.close()
    assert comm_manager.targets == {}
    comm.init()
    comm.page_ready()
    assert to_page(comm).sent == []


def test_the_kernel_replies_ready_when_the_page_opens_the_comm(kernel_comm, output):
    # JupyterLab 4.4+ sends the client comm's first message on a kernel subshell and its
    # comm_open on the main shell: with the main shell busy, the kernel dropped the message
    # and the page's CommManager waited for its reply, holding every later page event.
    comm = OrderedComm()
    _doc, _root, _report, client = output(comm)
    comm.init()  # the kernel handles the page's comm_open
    assert {"msg_type": "Ready", "content": ""} in client._comm.metadata


def test_page_messages_from_another_thread_are_handled_on_the_outputs_thread_in_order(
        kernel_comm, output):
    # A kernel subshell handles JupyterLab's comm messages on a thread of its own; Panel's
    # callbacks must run on the thread whose loop runs the cells and applies the results.
    handled: list[tuple[int, int]] = []

    async def body():
        comm = OrderedComm()  # displayed from a cell: this thread, this loop
        _doc, _root, _report, client = output(comm)
        client._on_msg = lambda msg: handled.append((msg["n"], threading.get_ident()))
        comm.init()
        deliver = client._comm.callback  # what the kernel calls with each page message
        subshell = threading.Thread(target=lambda: [deliver({"n": n}) for n in range(20)])
        subshell.start()
        subshell.join()
        for _ in range(100):
            if len(handled) == 20:
                break
            await asyncio.sleep(0.01)

    asyncio.run(body())
    assert [n for n, _ in handled] == list(range(20))
    assert {thread for _, thread in handled} == {threading.get_ident()}


def test_a_failing_page_message_leaves_the_document_held(kernel_comm, output):
    # As Panel's Viewable._on_msg: hold, apply the page's changes, unhold (which runs their
    # callbacks: one raises), re-hold only afterwards.
    comm = OrderedComm()
    doc, root, report, _client = output(comm, with_report=False)

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
    assert texts(to_page(comm).sent) == ["after the error"]
    with pytest.raises(RuntimeError):
        panels_on_msg({})  # unguarded, the next change would be lost
    root.text = "lost"
    push(doc, comm)
    assert texts(to_page(comm).sent) == ["after the error"]
