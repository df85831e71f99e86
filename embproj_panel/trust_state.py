"""The faithfulness of a projector state's layout, computed in the background; no Panel.

:class:`FaithfulnessState` sits beside a :class:`~embproj_panel.state.ProjectorState`. Every
time a layout lands (and when ``k`` or ``metric`` change) it runs
:func:`embproj_panel.trust.assess` on it in its own :class:`~embproj_panel.compute.JobSlot`,
the one supersession mechanism: a newer layout cancels the running job, and a result that is
not the slot's latest job is dropped, so the values shown always belong to the layout shown.
A new projection request (the state turning ``busy``) cancels it at once, not when the new
layout lands: the new projection gets the cores, and the assessment starts again when it
lands, or on the same layout when it fails.
Results are applied on the session's thread through the state's ``dispatch`` (as the
projection is), never on the worker.

The result is three things: ``values`` (one per table row, NaN for rows not projected), the
``faithfulness`` derived column of the state (:meth:`ProjectorState.set_derived
<embproj_panel.state.ProjectorState.set_derived>`: a colour on a fixed 0..1 scale where low
values stand out, a table column and an export column, never written into the user's
table) and ``status``, the summary line ("faithfulness mean 0.71 · trustworthiness 0.93
(k=10, 3,000-row sample)"). While a new layout is assessed the column holds NaN: the old
values described the old layout.

A compare panel's shown layout is its computed one moved by a similarity transform
(:mod:`embproj_panel.align`), which keeps every neighbour: the computed layout
(``raw_projection``) is assessed, once, however often the panel is re-aligned.
"""

from __future__ import annotations

import re
import threading
import time
from functools import partial
from typing import Any

import numpy as np
import param

from embproj_panel import compute
from embproj_panel.colors import LOW_STANDS_OUT
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.neighbors import DEFAULT_K, K_MAX, METRICS
from embproj_panel.state import ProjectorState, _Dispatcher
from embproj_panel.trust import Assessment, assess

__all__ = ["FAITHFULNESS_COLUMN", "FaithfulnessState", "k_from_url", "summary_line"]

#: The name of the derived column (underscores appended if the table has such a column).
FAITHFULNESS_COLUMN = "faithfulness"


def summary_line(assessment: Assessment) -> str:
    """"faithfulness mean 0.71 · trustworthiness 0.93 (k=10, 3,000-row sample)"."""
    n = len(assessment.values)
    text = f"faithfulness mean {assessment.mean:.2f}"
    if assessment.trustworthiness is None:
        text += f" · trustworthiness not computed (k={assessment.k} needs k < n/2)"
    else:
        where = (f"all {n:,} rows" if assessment.sample >= n
                 else f"{assessment.sample:,}-row sample, ± {assessment.trust_stderr:.2f}")
        text += (f" · trustworthiness {assessment.trustworthiness:.2f} "
                 f"(k={assessment.k}, {where})")
    if assessment.metric != "euclidean":
        text += f" · {assessment.metric} distance"
    if not assessment.exact:
        text += " · original-space neighbours from the approximate index"
    clamped = [note for note in assessment.notes if note.startswith("k=")]
    return text + (" — " + " ".join(clamped) if clamped else "")


def k_from_url(faith: FaithfulnessState, value: Any) -> str | None:
    """Set ``faith.k`` from a URL's ``k`` value, or say why it was refused (k unchanged).

    The value must be a whole number in ASCII digits within the parameter's bounds (1-100);
    anything else (``abc``, ``7.5``, ``0``, markup) leaves ``k`` as it is and returns one
    plain-text sentence for the page's "ignored" note. The single view (``?k=25``) and the
    compare mode (one k for every panel) both read it here.
    """
    text = str(value).strip()
    bounds = faith.param.k.bounds
    number = int(text) if re.fullmatch(r"[+-]?[0-9]{1,9}", text) else None
    if number is None or not bounds[0] <= number <= bounds[1]:
        shown = text if len(text) <= 40 else text[:39] + "…"
        return (f"k={shown!r} (the faithfulness k is a whole number from {bounds[0]} to "
                f"{bounds[1]}; k={faith.k} is used)")
    faith.k = number
    return None


class FaithfulnessState(param.Parameterized):
    """Per-row faithfulness of ``state``'s layout and its summary, kept up to date.

    Parameters
    ----------
    state
        The projector state whose layout is assessed.
    publish
        Show the values as the state's ``faithfulness`` derived column (colour, table,
        export); False computes the values and the summary only (compare panels).
    **params
        ``k``, ``metric``.
    """

    state = param.ClassSelector(class_=ProjectorState, constant=True, doc="""
        The projector state whose layout is assessed.""")

    k = param.Integer(default=DEFAULT_K, bounds=(1, K_MAX), doc="""
        Neighbourhood size: the share of each row's k nearest rows in the original space
        that are among its k nearest on the map.""")

    metric = param.Selector(default="euclidean", objects=list(METRICS), doc="""
        Distance in the original space (the map's is always euclidean).""")

    publish = param.Boolean(default=True, constant=True, doc="""
        Offer the values as the state's derived column (colour, table, exports).""")

    # -- outputs ------------------------------------------------------------------------------
    assessment = param.ClassSelector(class_=Assessment, default=None, allow_None=True,
                                     constant=True, doc="""
        The latest :class:`~embproj_panel.trust.Assessment` of the shown layout, or None.""")

    values = param.Array(default=None, allow_None=True, constant=True, doc="""
        float64 faithfulness of every table row (NaN: not projected), or None before the
        first result (and while a new layout is being assessed).""")

    column = param.String(default="", constant=True, doc="""
        The derived column's name in the state ("" before the first result).""")

    busy = param.Boolean(default=False, constant=True, doc="""Whether a job is running.""")

    progress = param.Number(default=0.0, bounds=(0.0, 1.0), constant=True, doc="""
        Progress of the running job, 0 to 1.""")

    status = param.String(default="", constant=True, doc="""
        One line: the mean and the trustworthiness with its k and sample, or progress.""")

    error = param.String(default="", constant=True, doc="""
        Why the last assessment failed (plain text), else empty.""")

    def __init__(self, state: ProjectorState | None = None, **params: Any) -> None:
        if state is not None:
            params["state"] = state
        super().__init__(**params)
        self._slot = compute.JobSlot("faithfulness")
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._applied: Any = None  # the job last taken up for application
        self._completed: Any = None  # the job last fully applied (or failed)
        self._layout: Any = None  # the layout last asked about
        self._held = False  # an assessment of _layout was stopped for a new projection
        self._closed = False
        self.state.param.watch(self._on_layout, ["projection", "table", "busy"])
        self._on_layout()

    # -- requests -------------------------------------------------------------------------------
    def _current_layout(self) -> Any:
        state = self.state
        raw = getattr(state, "raw_projection", None)  # a compare panel's computed layout
        return raw if raw is not None else state.projection

    def _on_layout(self, *events: Any) -> None:
        if any(event.name == "table" for event in events):
            self._slot.cancel("A new table.")
            self._layout = None
            with param.edit_constant(self):
                self.param.update(assessment=None, values=None, column="", busy=False,
                                  progress=0.0, status="", error="")
        if self.state.busy:
            self._hold()  # a new projection is on its way: the layout shown is leaving
            return
        layout = self._current_layout()
        if layout is not self._layout or self._held:
            self._layout = layout  # the same one when the new projection failed
            self._request()

    def _hold(self, settings_changed: bool = False) -> None:
        """Stop assessing while the state computes a new projection.

        The layout being assessed is about to be replaced: its job would burn the cores the
        new projection needs, for values nobody will see. The assessment restarts when the
        projection lands (or fails, leaving this layout shown). A finished assessment stays:
        it describes the layout still shown, unless ``k`` or ``metric`` changed meanwhile.
        """
        job = self._slot.job
        running = job is not None and not job.done
        if not (running or settings_changed) or self._layout is None:
            return
        self._slot.cancel("A new projection was requested.")
        self._held = True
        with param.edit_constant(self):
            self.param.update(busy=False, progress=0.0,
                              status=f"faithfulness (k={self.k}): waits for the new layout")
        if settings_changed:
            self._clear_values()  # they were for another k or metric

    @param.depends("k", "metric", watch=True)
    def _on_settings(self) -> None:
        self._request()

    def _request(self) -> None:
        """Assess the current layout in the background; it supersedes any running job."""
        state, layout = self.state, self._layout
        if self._closed:
            return
        if layout is None or state.table is None:
            self._slot.cancel()
            with param.edit_constant(self):
                self.param.update(busy=False, progress=0.0)
            return
        if state.busy:
            self._hold(settings_changed=True)
            return
        self._held = False
        table, k, metric = state.table, self.k, self.metric
        if isinstance(table, DatasetTable):
            # No job to fail: the kNN graph of every row needs every vector in memory.
            self._slot.cancel()
            with param.edit_constant(self):
                self.param.update(busy=False, progress=0.0, error="",
                                  status=f"faithfulness: not computed for a lazy dataset "
                                         f"({len(table):,} rows kept on disk)")
            return

        def work(progress: Any, cancel: Any) -> Assessment:
            return assess(table, layout, k, metric, None, None, 0, progress, cancel)

        dispatch = _Dispatcher(state.dispatch)
        job = self._slot.submit_work(work, "faithfulness")
        with param.edit_constant(self):
            self.param.update(busy=True, progress=0.0, error="",
                              status=f"faithfulness (k={k}): computing…")
        self._clear_values()  # the old values described the old layout or settings
        job.add_done_callback(lambda job: dispatch(partial(self._finish, job)))
        self._slot.forward_progress(job, dispatch, self._set_progress,
                                    name="embproj-faithfulness-progress")

    def _set_progress(self, value: float) -> None:
        if self.busy:
            with param.edit_constant(self):
                self.param.update(progress=value,
                                  status=f"faithfulness (k={self.k}): computing… "
                                         f"{value:.0%}")

    def _clear_values(self) -> None:
        """No values (NaN in the column) until the new ones land."""
        with param.edit_constant(self):
            self.values = None
        if self.column and self.publish:
            self.state.set_derived(self.column, np.full(len(self.state.table), np.nan),
                                   (0.0, 1.0), LOW_STANDS_OUT)

    # -- results --------------------------------------------------------------------------------
    def _finish(self, job: Any) -> None:
        """Apply a finished job unless a newer one superseded it (or it was applied)."""
        with self._lock:
            if not self._slot.is_current(job) or job is self._applied or self._closed:
                return
            self._applied = job
        try:
            if job.cancelled:
                return
            error = job.exception()
            if error is not None:
                with param.edit_constant(self):
                    self.param.update(busy=False, progress=0.0, status="",
                                      error=f"Faithfulness failed: {error}")
            else:
                self._apply(job.result())
        finally:
            with self._done:
                self._completed = job
                self._done.notify_all()

    def _apply(self, assessment: Assessment) -> None:
        state = self.state
        values = np.full(len(state.table), np.nan)
        values[assessment.rows] = assessment.values
        values.flags.writeable = False
        name = self.column or state.free_name(FAITHFULNESS_COLUMN)
        with param.edit_constant(self):
            self.param.update(assessment=assessment, values=values,
                              column=name if self.publish else "", busy=False,
                              progress=1.0, error="", status=summary_line(assessment))
        if self.publish:
            state.set_derived(name, values, (0.0, 1.0), LOW_STANDS_OUT)

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the current assessment is done and applied (scripts, tests, notebooks).

        Never call it from a served session's own callbacks: their loop applies the result.

        Raises
        ------
        TimeoutError
            If it takes longer than ``timeout`` seconds.
        """
        job = self._slot.job
        if job is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if not job.wait(timeout):
            raise TimeoutError(f"Faithfulness did not finish within {timeout} s")
        if self.state.dispatch is None:
            self._finish(job)  # nobody else applies it here; _finish applies a job once
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with self._done:
            finished = self._done.wait_for(
                lambda: self._completed is job or not self._slot.is_current(job)
                or self._closed, timeout=left)
        if not finished:
            raise TimeoutError(f"Faithfulness was not applied within {timeout} s")

    def close(self) -> None:
        """Cancel the running job (the session ended)."""
        with self._done:
            self._closed = True
            self._done.notify_all()
        self._slot.cancel("The session closed.")
