"""How soon the server hears of a zoom: the scatter's range stream and its figure's LOD timeout.

A wheel zoom reached the server about 0.65 s after the wheel event, before any work was done,
in two fixed waits (measured in Chromium by ``benchmarks/bench_images_browser.py``):

* **BokehJS** sends a wheel zoom's ``RangesUpdate`` event only when its "level of detail"
  interaction ends: the figure's ``lod_timeout`` (500 ms by default) after the last wheel
  event. :data:`LOD_TIMEOUT_MS` shortens it; it still ends the interaction only once the
  wheel has been still that long, so one turn of several notches is still one event.
* **HoloViews** waits again on the server (``RangeXYCallback.debounce``, 100 ms, polled
  every 50 ms) for more range events. BokehJS has already waited for the wheel to stop, and
  a pan or box zoom sends one event at its end, so ``ViewRangeXY`` (:func:`range_stream`)
  is a ``RangeXY`` whose callback does not wait (HoloViews' callback still merges the
  events that queue while a redraw runs: one redraw for them, of the last view).

Every range stream of one plot must be of the same type: HoloViews merges the streams of
one kind on one plot into one callback (one redraw per zoom), keyed by the callback's class.
``ScatterView`` makes all of its own, and those it hands to overlays
(``ScatterView.view_streams``), with :func:`range_stream`.

HoloViews API this relies on: ``Stream._callbacks["bokeh"]`` (the stream type -> callback
class registry that HoloViews' own streams use), ``RangeXYCallback`` and its ``debounce``
class attribute (``holoviews/plotting/bokeh/callbacks.py``, HoloViews 1.2x);
``tests/test_view_range.py`` checks both properties on a built plot.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["LOD_TIMEOUT_MS", "figure_opts", "range_stream", "range_stream_type"]

#: How long the wheel must be still before BokehJS ends a zoom and reports its ranges (ms).
LOD_TIMEOUT_MS = 60


@functools.cache
def range_stream_type() -> type:
    """``ViewRangeXY``, registered with HoloViews' Bokeh callbacks on first use (made
    lazily: HoloViews' Bokeh plotting is a heavy import)."""
    import holoviews as hv
    from holoviews.plotting.bokeh.callbacks import RangeXYCallback

    class ViewRangeXY(hv.streams.RangeXY):
        """A ``RangeXY`` whose Bokeh callback does not debounce (see the module docstring)."""

    class ViewRangeXYCallback(RangeXYCallback):
        # None: HoloViews' callback sleeps 10 ms instead of polling until the last event
        # is 100 ms old.
        debounce = None

    hv.streams.Stream._callbacks["bokeh"][ViewRangeXY] = ViewRangeXYCallback
    return ViewRangeXY


def range_stream(**params: Any) -> Any:
    """A ``ViewRangeXY`` stream (``source=`` and the rest as ``hv.streams.RangeXY``)."""
    return range_stream_type()(**params)


def figure_opts() -> dict[str, Any]:
    """Plot options of the scatter's figure: BokehJS reports a wheel zoom sooner."""
    return {"lod": {"timeout": LOD_TIMEOUT_MS}}
