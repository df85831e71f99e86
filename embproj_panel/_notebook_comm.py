"""Panel's notebook comm, made to deliver every update in order and only once the page can apply it.

In JupyterLab the projector's first result (the first PCA) is often applied while the cell's
output is still rendering. The page then sometimes kept the figure greyed out and deaf to the
mouse (Panel's ``pn-loading`` classes) while the kernel had ``loading=False`` (issue 13), and
the browser console said ``reference ... isn't known``. Two behaviours of Panel 1.9 lose such
early updates; neither is ours to change, so this module works around both in one place:

1. Panel's ``push`` (``panel/io/notebook.py``) serialises an update when it is made. If the
   page has not opened the comm yet (``comm._comm`` is None) it re-schedules *that message*
   0.1 s later, and again, every message on its own timer. When the comm opens, the pending
   messages go out in the order of their timers, not in the order they were made: a patch
   can arrive before the patch that created the model it changes, and the page rejects it
   whole. The figure that replaced the empty plot then arrives with the loading classes it
   was created with, and the later change that removed them is lost.
2. The page's ``CommManager`` (``panel/models/comm_manager.ts``) drops every comm fragment
   that arrives before the output's root view is in ``Bokeh.index``, i.e. before the page
   has built all of the output's views, which on a loaded machine is seconds after it opened
   the comm. A Bokeh message is several fragments (header, metadata, content, buffers);
   losing some of them also desynchronises the page's receiver for the messages after.

:class:`OrderedComm` is Panel's server comm (``pyviz_comms.JupyterComm``) with an outbox. Its
``_comm``, which Panel's ``push`` reads to decide between "send now" and "retry later", is
always an :class:`_Outbox`, so Panel always sends at once, in order. The outbox keeps the
fragments until the page has opened the comm, and, for an output holding a
:class:`PageReport` (every ``Projector`` does), until that element has reported that the page
has built the whole output; then it sends them in order and passes later ones straight
through. (Bokeh's own ``DocumentReady`` never comes for a Panel notebook output: the page's
``CommManager`` view never reports itself finished.) Should the report never come (a script
error in the page), the outbox opens :data:`READY_TIMEOUT` seconds after the comm did:
Panel's behaviour, still in order.

A third loss, seen after hovers and drags: when a callback of a page message raises, Panel
leaves the output's document un-held and every later kernel change is silently not sent;
:func:`keep_held` wraps the output's client comm so the document is held again.

:func:`install` makes it the server comm of Panel's notebook comm manager; ``ep.extension()``
calls it. It changes only the default comms (JupyterLab, Notebook 7, Colab): VS Code and
``comms="ipywidgets"`` render through jupyter_bokeh's widget, not this comm.
"""

from __future__ import annotations

import threading
from typing import Any

from panel.custom import JSComponent
from panel.io.state import state
from pyviz_comms import JupyterComm

__all__ = ["READY_TIMEOUT", "OrderedComm", "PageReport", "install", "keep_held"]

#: Seconds after the page opened the comm at which the outbox opens without the page's
#: report that it has rendered.
READY_TIMEOUT = 10.0


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

    See the module docstring for the two ways Panel 1.9 loses early messages otherwise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._outbox = _Outbox()
        self._timer: threading.Timer | None = None
        #: What opened the outbox last: "page" (its rendered report), "timeout" or "open"
        #: (an output without a :class:`PageReport`: at once when the page opened the comm).
        self.opened_by: str | None = None
        self._waits_for_page = False
        self.openings = 0  #: how many times the page opened the comm
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

    def init(self) -> None:
        """The page opened its client comm: open ours, and wait for its rendered report.

        Called by Panel when the page opens the output's client comm (again if the page is
        reloaded: the new page gets a new kernel comm and is waited for in turn).
        """
        if self._timer is not None:
            self._timer.cancel()
        self.openings += 1
        self._outbox.reset()
        self._watch_ready()
        self._guard_client_comm()
        super().init()  # sets ``_comm`` to the kernel's comm: the outbox's channel

    def _guard_client_comm(self) -> None:
        # The output's client comm (page -> kernel) is named by its CommManager model.
        from panel.models.comm_manager import CommManager
        from pyviz_comms import CommManager as CommManagers  # every comm, by id

        for _view, _root, doc, comm in list(state._views.values()):
            if comm is not self:
                continue
            for model in doc.roots:
                if isinstance(model, CommManager) and model.comm_id == self.id:
                    client = CommManagers._comms.get(model.client_comm_id)
                    if client is not None and not getattr(client, "_keeps_hold", False):
                        client._on_msg = keep_held(doc, client._on_msg)
                        client._keeps_hold = True

    def wait_for_page(self) -> None:
        """Hold messages until a :class:`PageReport` in the output reports its page built."""
        self._waits_for_page = True

    def page_ready(self) -> None:
        """The page has built the whole output (a :class:`PageReport`'s message)."""
        self._on_ready("page")

    def _watch_ready(self) -> None:
        if not self._waits_for_page:
            self.opened_by = "open"
            self._outbox.set_ready()
            return
        timer = threading.Timer(READY_TIMEOUT, self._on_ready)
        timer.daemon = True
        timer.start()
        self._timer = timer

    def _on_ready(self, reason: str = "timeout") -> None:
        """The page reported that the output has rendered (or the wait timed out)."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._outbox.ready:
            self.opened_by = reason
        self._outbox.set_ready()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
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


class PageReport(JSComponent):
    """An empty element that tells the kernel once its page has built the whole output.

    Put in an output (the :class:`~embproj_panel.views.projector.Projector` has one), it makes
    the output's :class:`OrderedComm` hold every message until then. Its script waits for the
    output's root view in ``Bokeh.index``, the very check the page's ``CommManager`` makes
    before it applies a message, and then sends the root's id back.
    """

    _esm = """
    export function render({ model, view }) {
      const root = view.root.model.id
      const until = Date.now() + 600000
      const report = () => {
        if (window.Bokeh != null && root in window.Bokeh.index) {
          model.send_msg(root)
        } else if (Date.now() < until) {
          setTimeout(report, 50)
        }
      }
      setTimeout(report, 0)
      return document.createElement("span")
    }
    """

    def __init__(self, **params: Any) -> None:
        params.setdefault("width", 0)
        params.setdefault("height", 0)
        params.setdefault("margin", 0)
        super().__init__(**params)

    def _get_model(self, doc: Any, root: Any = None, parent: Any = None,
                   comm: Any = None) -> Any:
        model = super()._get_model(doc, root, parent, comm)
        if isinstance(comm, OrderedComm):
            comm.wait_for_page()
        return model

    def _handle_msg(self, data: Any) -> None:
        view = state._views.get(str(data))  # (viewable, root, doc, comm) of that output
        if view is not None and isinstance(view[3], OrderedComm):
            view[3].page_ready()


def install() -> None:
    """Make :class:`OrderedComm` the server comm of Panel's notebook outputs (idempotent).

    Panel renders a notebook output with ``JupyterCommManagerBinary.get_server_comm()``
    (``panel/viewable.py`` ``_repr_mimebundle_``, Panel 1.9), which builds its
    ``server_comm`` class: a class attribute of Panel's, set here.
    """
    from panel.io.notebook import JupyterCommManagerBinary

    JupyterCommManagerBinary.server_comm = OrderedComm
