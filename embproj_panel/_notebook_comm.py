"""Panel's notebook comm, made to deliver every update in order, once the page can apply it.

In JupyterLab the projector's first result (the first PCA) is often applied while the cell's
output is still rendering. The page then sometimes kept the figure greyed out and deaf to the
mouse (Panel's ``pn-loading`` classes) while the kernel had ``loading=False`` (issue 13), and
the browser console said ``reference ... isn't known``. Four behaviours of Panel 1.9 with
JupyterLab 4.4+ and ipykernel 7 lose or reorder such updates; none is ours to change, so this
module works around them in one place.

1. Panel's ``push`` (``panel/io/notebook.py``) serialises an update when it is made. If the
   page has not opened the comm yet (``comm._comm`` is None) it re-schedules *that message*
   0.1 s later, and again, every message on its own timer. When the comm opens, the pending
   messages go out in the order of their timers, not in the order they were made: a patch
   can arrive before the patch that created the model it changes, and the page rejects it.
2. The page's ``CommManager`` (``panel/models/comm_manager.ts``) drops every comm fragment
   that arrives before the output's root view is in ``Bokeh.index``, i.e. before the page
   has built all of the output's views, which on a loaded machine is seconds after it opened
   the comm. A Bokeh message is several fragments (header, metadata, content, buffers).
3. JupyterLab 4.4+ sends comm messages on kernel *subshells* when the kernel has them
   (ipykernel 7; the lab setting ``commsOverSubshells``, default ``perCommTarget``,
   ``packages/services/src/kernel/comm.ts``), and ipykernel handles each subshell in its own
   thread. The page's messages (a drag, a hover, a table page) then run Panel's callbacks
   on that thread while the kernel's main thread runs cells and applies results to the
   same Bokeh document, which is not thread-safe: a change made on one thread while the
   other has the document un-held is never collected for ``push`` (measured: a page message
   handled on a subshell thread while the main thread pushed a change).
4. In the same setting a comm's ``comm_open`` goes to the main shell (JupyterLab sends it
   before the comm's subshell exists) and its first ``comm_msg`` to the subshell. When the
   main shell is busy (the next cell runs, or a second client's request) the subshell gets
   the message first, the kernel does not know the comm yet and drops it ("No such comm",
   ``comm.base_comm``), and the page's ``CommManager``, waiting for the reply to that
   message, holds every later page event for 5 s, then until its next event (measured: the
   page's report below waited 12 s, until the kernel itself sent something).

:class:`OrderedComm` is Panel's server comm (``pyviz_comms.JupyterComm``) with an outbox. Its
``_comm``, which Panel's ``push`` reads to decide between "send now" and "retry later", is
always an :class:`_Outbox`, so Panel always sends at once, in order (1). The outbox keeps the
fragments until the page has opened the comm, and, for an output holding a
:class:`PageReport` (every ``Projector`` does), until that element has reported that the page
has built the whole output (2); then it sends them in order and passes later ones straight
through. Nothing is sent before the report, however late it is, so nothing is sent to a page
that would drop it; there is no timeout that sends anyway. (Bokeh's own ``DocumentReady``
never comes for a Panel notebook output: the page's ``CommManager`` view never reports itself
finished.)

When the page opens the output's client comm (page -> kernel), :meth:`OrderedComm.init`
adopts it: its messages are handled on the kernel's main thread, in order, through the
kernel's event loop (3); the kernel replies "Ready" at once, which releases a page whose first
message was dropped (4); and :func:`keep_held` keeps the document held when a callback of a
page message raises (Panel 1.9 then left it un-held, and every later kernel change was
silently not sent).

The report is a comm of its own, opened by the page (``PyViz.comm_manager.get_client_comm``,
as the ``CommManager`` opens its own, so it works wherever the output's comm does): a
``comm_open``, which reaches the kernel's main shell in order after the output's own, and is
never queued behind the ``CommManager``'s pending messages.

:func:`install` makes it the server comm of Panel's notebook comm manager; ``ep.extension()``
calls it. It changes only the default comms (JupyterLab, Notebook 7, Colab): VS Code and
``comms="ipywidgets"`` render through jupyter_bokeh's widget, not this comm.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from panel.custom import JSComponent
from panel.io.state import state
from pyviz_comms import JupyterComm

__all__ = ["REPORT_TARGET", "OrderedComm", "PageReport", "install", "keep_held"]

#: The kernel comm target a page opens to report that it has built an output: this prefix
#: and the output's root model id.
REPORT_TARGET = "embproj_panel.page_report."

#: The "Ready" reply Panel's page-side CommManager waits for after each message it sends
#: (``pyviz_comms.Comm._handle_msg`` sends it after handling one).
_READY = {"msg_type": "Ready", "content": ""}


def _kernel_comm_manager() -> Any:
    """The running kernel's comm manager (as ``pyviz_comms.JupyterCommJS`` finds it), or None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    return getattr(kernel, "comm_manager", None)


class _Outbox:
    """What an :class:`OrderedComm` sends through: fragments wait here until the page is ready.

    ``send`` has the signature of ``ipykernel.comm.Comm.send``; ``on_msg`` and ``close`` pass
    through to the kernel's comm once it exists.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, Any, Any]] = []
        self.channel: Any = None  #: the kernel's comm, once the page has opened ours
        self.ready = False  #: whether the page reported that the output has rendered
        self.closed = False
        self.held = 0  #: fragments that waited for the page (all openings)

    def __bool__(self) -> bool:
        # Panel's push() sends when ``comm._comm`` is truthy: always, the order is kept here.
        return True

    @property
    def pending(self) -> int:
        """How many fragments wait for the page."""
        return len(self._pending)

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        with self._lock:
            if self.closed:
                return
            if self.channel is None or not self.ready:
                self._pending.append((data, metadata, buffers))
                self.held += 1
                return
            self._flush()
            self.channel.send(data, metadata=metadata, buffers=buffers)

    def open(self, channel: Any) -> None:
        """The page opened the comm: ``channel`` is the kernel's end of it."""
        with self._lock:
            self.channel = channel
            if self.ready:
                self._flush()

    def reset(self) -> None:
        """The output is rendered anew (a reloaded page): wait for its page again."""
        with self._lock:
            self.channel, self.ready = None, False

    def set_ready(self) -> None:
        """The page can apply messages now: send what waited, in order."""
        with self._lock:
            self.ready = True
            if self.channel is not None:
                self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for data, metadata, buffers in pending:
            self.channel.send(data, metadata=metadata, buffers=buffers)

    def on_msg(self, callback: Any) -> None:
        if self.channel is not None:
            self.channel.on_msg(callback)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._pending = []
            if self.channel is not None:
                self.channel.close()


class OrderedComm(JupyterComm):
    """``pyviz_comms.JupyterComm`` whose messages reach the page in order, once it can apply them.

    See the module docstring for the ways Panel 1.9 loses early messages otherwise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._outbox = _Outbox()
        #: What opened the outbox last: "page" (its report) or "open" (an output without a
        #: :class:`PageReport`: at once when the page opened the comm).
        self.opened_by: str | None = None
        self.openings = 0  #: how many times the page opened the comm
        self.reports = 0  #: how many page reports arrived
        self._report_targets: set[str] = set()
        # The thread and loop that display the output (a cell: the kernel's main thread),
        # where the page's messages are handled too.
        self._thread = threading.get_ident()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        super().__init__(*args, **kwargs)

    # pyviz_comms and Panel read and write ``_comm``: the kernel's comm, or None before the
    # page opened it. Here it is always the outbox, which holds the kernel's comm.
    @property
    def _comm(self) -> _Outbox:  # type: ignore[override]
        return self._outbox

    @_comm.setter
    def _comm(self, channel: Any) -> None:
        if channel is not None and channel is not self._outbox:
            self._outbox.open(channel)

    @property
    def waits_for_page(self) -> bool:
        """Whether the output holds a :class:`PageReport` (its updates wait for its report)."""
        return bool(self._report_targets)

    def init(self) -> None:
        """The page opened its client comm: open ours, and wait for its report.

        Called by Panel when the page opens the output's client comm (again if the page is
        reloaded: the new page gets a new kernel comm and is waited for in turn).
        """
        self.openings += 1
        self._outbox.reset()
        if not self.waits_for_page:
            self.opened_by = "open"
            self._outbox.set_ready()
        self._adopt_client_comm()
        super().init()  # sets ``_comm`` to the kernel's comm: the outbox's channel

    def _adopt_client_comm(self) -> None:
        # The output's client comm (page -> kernel) is named by its CommManager model.
        from panel.models.comm_manager import CommManager
        from pyviz_comms import CommManager as CommManagers  # every comm, by id

        for _view, _root, doc, comm in list(state._views.values()):
            if comm is not self:
                continue
            for model in doc.roots:
                if not (isinstance(model, CommManager) and model.comm_id == self.id):
                    continue
                client = CommManagers._comms.get(model.client_comm_id)
                kernel_comm = getattr(client, "_comm", None)
                if kernel_comm is None:
                    continue
                if not getattr(client, "_keeps_hold", False):
                    client._on_msg = keep_held(doc, client._on_msg)
                    client._keeps_hold = True
                # Every page message on this thread, in arrival order (see 3 above).
                kernel_comm.on_msg(self.on_own_thread(client._handle_msg))
                # Releases a page whose first message was dropped (see 4 above); otherwise
                # one more "Ready" than messages, which the page takes as "nothing pending".
                client.send(metadata=dict(_READY))

    def on_own_thread(self, callback: Callable[..., Any]) -> Callable[..., None]:
        """``callback``, run on the thread that displayed the output, in call order.

        Called there, it runs at once; called from another thread (a kernel subshell), it
        is handed to that thread's event loop. Without a loop (plain Python) it runs where
        it is called.
        """
        loop, thread = self._loop, self._thread

        def on_thread(*args: Any) -> None:
            if loop is None or loop.is_closed() or threading.get_ident() == thread:
                callback(*args)
            else:
                loop.call_soon_threadsafe(callback, *args)

        return on_thread

    def wait_for_page(self, root_id: str) -> None:
        """Hold messages until the page reports that it has built the output ``root_id``.

        Registers the kernel comm target the output's :class:`PageReport` opens
        (:data:`REPORT_TARGET` + ``root_id``). Without a kernel (plain Python, tests) the
        report is :meth:`page_ready`.
        """
        target = REPORT_TARGET + root_id
        if target in self._report_targets:
            return
        self._report_targets.add(target)
        manager = _kernel_comm_manager()
        if manager is not None:
            manager.register_target(target, self._on_report)

    def _on_report(self, comm: Any, msg: Any) -> None:
        """The page opened the report comm: it has built the output (a kernel comm target)."""
        comm.close()  # it carries nothing more
        self.on_own_thread(self.page_ready)()

    def page_ready(self) -> None:
        """The page has built the whole output: send what waited, and then everything at once."""
        self.reports += 1
        if not self._outbox.ready:
            self.opened_by = "page"
        self._outbox.set_ready()

    def close(self) -> None:
        manager = _kernel_comm_manager()
        for target in self._report_targets:
            if manager is not None and target in getattr(manager, "targets", {}):
                manager.unregister_target(target, self._on_report)
        super().close()


def keep_held(doc: Any, on_msg: Any) -> Any:
    """``on_msg`` that leaves ``doc`` held as it found it, even when it raises.

    Panel's ``Viewable._on_msg`` (Panel 1.9) applies a page message inside ``doc.hold()``
    and re-holds the document in a ``finally`` *after* ``doc.unhold()``, which runs the
    callbacks of the page's changes: when one of them raises, the notebook output's
    document stays un-held, its changes are no longer collected for ``push``, and nothing
    the kernel changes reaches the page any more. The error is still raised (pyviz_comms
    reports it in the page's console).
    """

    def guarded(msg: Any) -> None:
        held = doc.callbacks.hold_value
        try:
            on_msg(msg)
        finally:
            if held is not None and doc.callbacks.hold_value is None:
                doc.hold(held)

    return guarded


_REPORT_ESM = """
export function render({ model, view }) {
  // The output's root id: what Panel's CommManager looks up in Bokeh.index before it
  // applies a message, and what the kernel knows the output by.
  const root = view.root.model.id
  const until = Date.now() + 600000
  const report = () => {
    const pyviz = window.PyViz
    if (window.Bokeh != null && root in window.Bokeh.index && pyviz != null
        && pyviz.comm_manager != null) {
      pyviz.comm_manager.get_client_comm(root, __TARGET__ + root, null)
    } else if (Date.now() < until) {
      setTimeout(report, 50)
    }
  }
  setTimeout(report, 0)
  return document.createElement("span")
}
"""


class PageReport(JSComponent):
    """An empty element that tells the kernel once its page has built the whole output.

    Put in an output (the :class:`~embproj_panel.views.projector.Projector` has one), it makes
    the output's :class:`OrderedComm` hold every message until then. Its script waits for the
    output's root view in ``Bokeh.index``, the very check the page's ``CommManager`` makes
    before it applies a message, and then opens the kernel comm target
    :data:`REPORT_TARGET` + the root's id.
    """

    _esm = _REPORT_ESM.replace("__TARGET__", json.dumps(REPORT_TARGET))

    def __init__(self, **params: Any) -> None:
        params.setdefault("width", 0)
        params.setdefault("height", 0)
        params.setdefault("margin", 0)
        super().__init__(**params)

    def _get_model(self, doc: Any, root: Any = None, parent: Any = None,
                   comm: Any = None) -> Any:
        model = super()._get_model(doc, root, parent, comm)
        if isinstance(comm, OrderedComm):
            comm.wait_for_page((root or model).ref["id"])
        return model


def install() -> None:
    """Make :class:`OrderedComm` the server comm of Panel's notebook outputs (idempotent).

    Panel renders a notebook output with ``JupyterCommManagerBinary.get_server_comm()``
    (``panel/viewable.py`` ``_repr_mimebundle_``, Panel 1.9), which builds its
    ``server_comm`` class: a class attribute of Panel's, set here.
    """
    from panel.io.notebook import JupyterCommManagerBinary

    JupyterCommManagerBinary.server_comm = OrderedComm
