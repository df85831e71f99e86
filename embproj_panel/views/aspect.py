"""Equal scales on both axes of a responsive figure, held in the browser.

PCA, UMAP and t-SNE layouts are isotropic: a distance means the same along x and y, so one
data unit must take as many pixels on x as on y, or clusters look stretched. The map fills
its pane at any window size, so the frame's aspect is known only in the browser, after
layout; HoloViews' ``data_aspect`` either fixes the figure's shape (``aspect_ratio``, which
leaves half a wide pane empty) or waits for a size it never gets before the first draw, and
Bokeh's own ``match_aspect`` adjusts only ``DataRange1d`` (HoloViews uses ``Range1d``).

:func:`equal_scales` (a HoloViews hook) gives the figure a small browser callback instead:

* the *target* is the data window the user asked to see: the first ranges, then whatever the
  user's pan, zoom or reset sets (kept on the range objects, so axes linked across Compare's
  panels share one);
* whenever the frame's size or the target changes, the ranges become the target widened along
  one axis (about its centre) until x and y have the same units per pixel; the whole target
  stays in view and no part of the frame is left empty;
* the callback's own range changes are not targets, so resizing back and forth never drifts;
* figures that share their ranges (Compare's linked panels) leave the fitting to one of them,
  the first shown: frames of different shapes fitting the same ranges in turn would widen
  them without end (seen as axes of ±1e307 after a brush changed one panel's header).

The ranges are synced to the server as any pan is, so a Datashader raster is shaded for the
widened window (its ``RangeXY`` stream) and the zoom is kept on a rebuild. Wheel zoom scales
both axes together (``zoom_on_axis`` off), which keeps the scales equal.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EQUAL_SCALES_TAG", "equal_scales"]

#: The tag of the browser callbacks :func:`equal_scales` adds (to find them again).
EQUAL_SCALES_TAG = "embproj-equal-scales"

# cb_obj is the figure (its inner size changed) or one of its ranges (start or end changed).
# Each range keeps its target ([start, end] the user asked for) and the last figure laid out
# over it, whose frame size a range change is fitted to.
_FIT_JS = """
const g = globalThis;
if (g.__embproj_fitting) return;  // our own change of the ranges below

// Figures sharing their ranges (Compare's linked panels) cannot each fit them: two frames of
// different shapes would widen the shared ranges in turn, without end. The first figure on
// the page to fit a pair of ranges owns them until its view is gone or hidden; the others
// follow (their frames are about the same shape).
function shown(fig) {
  if (!(fig.inner_width > 0 && fig.inner_height > 0)) return false;
  const views = g.Bokeh?.index?.all_views?.() ?? [];
  for (const view of views) {
    if (view.model === fig) {
      const r = view.el?.getBoundingClientRect?.();
      return view.el?.isConnected === true && r != null && r.width > 0 && r.height > 0;
    }
  }
  return false;
}
const owner = figure.x_range.__embproj_owner;
if (owner !== figure) {
  if (owner != null && shown(owner)) return;
  if (!shown(figure)) return;
  figure.x_range.__embproj_owner = figure;
}

function window_of(fig) {
  return [[fig.x_range.start, fig.x_range.end], [fig.y_range.start, fig.y_range.end]];
}

// The ranges become ``target`` widened along one axis to equal px per unit.
function fit(fig, target) {
  const xr = fig.x_range, yr = fig.y_range;
  const w = fig.inner_width, h = fig.inner_height;
  if (!(w > 0 && h > 0) || xr == null || yr == null) return;
  const [[x0, x1], [y0, y1]] = target;
  const units = Math.max(Math.abs(x1 - x0) / w, Math.abs(y1 - y0) / h);
  if (!(units > 0 && Number.isFinite(units))) return;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const hx = Math.sign(x1 - x0 || 1) * units * w / 2;
  const hy = Math.sign(y1 - y0 || 1) * units * h / 2;
  const close = (a, b, span) => Math.abs(a - b) <= 1e-9 * Math.abs(span);
  if (close(xr.start, cx - hx, hx) && close(xr.end, cx + hx, hx)
      && close(yr.start, cy - hy, hy) && close(yr.end, cy + hy, hy)) return;
  g.__embproj_fitting = true;
  try {
    xr.setv({start: cx - hx, end: cx + hx});
    yr.setv({start: cy - hy, end: cy + hy});
    fig.__embproj_fitted = [xr.start, xr.end, yr.start, yr.end];
    // Tell the server as a pan would: HoloViews' RangeXY streams (the raster's window, the
    // zoom kept on a rebuild) listen to RangesUpdate events, not to the range properties.
    const views = g.Bokeh?.index?.all_views?.() ?? [];
    for (const view of views) {
      if (view.model === fig && view.trigger_ranges_update_event) {
        view.trigger_ranges_update_event();
        break;
      }
    }
  } finally {
    g.__embproj_fitting = false;
  }
}

function target_of(fig) {
  const xr = fig.x_range, yr = fig.y_range;
  if (xr.__embproj_target == null || yr.__embproj_target == null) {
    [xr.__embproj_target, yr.__embproj_target] = window_of(fig);
  }
  return [xr.__embproj_target, yr.__embproj_target];
}

function equal(fig) {
  const [[x0, x1], [y0, y1]] = window_of(fig);
  const px = fig.inner_width / (x1 - x0), py = fig.inner_height / (y1 - y0);
  return Math.abs(px / py - 1) < 1e-3;
}

if (cb_obj === figure) {  // the frame's size changed: fit the target again
  fit(figure, target_of(figure));
} else if (cb_obj != null && cb_obj.event_name === "rangesupdate") {
  // A pan, zoom or reset ended (Bokeh's tools emit it on every plot sharing the ranges):
  // that window is what the user asked to see; unless it is the event fit() sent.
  const event = [cb_obj.x0, cb_obj.x1, cb_obj.y0, cb_obj.y1];
  const fitted = figure.__embproj_fitted;
  const span = i => (i < 2 ? fitted[1] - fitted[0] : fitted[3] - fitted[2]);
  if (fitted != null
      && event.every((v, i) => Math.abs(v - fitted[i]) <= 1e-9 * Math.abs(span(i)))) return;
  [figure.x_range.__embproj_target, figure.y_range.__embproj_target] = window_of(figure);
  fit(figure, target_of(figure));
} else {
  // A range moved by something else (a tool mid-gesture, the server, a linked panel): once
  // both axes have settled, widen it if the scales differ, and keep the target as it is.
  if (figure.__embproj_pending) return;
  figure.__embproj_pending = true;
  queueMicrotask(() => {
    figure.__embproj_pending = false;
    target_of(figure);
    if (figure.inner_width > 0 && figure.inner_height > 0 && !equal(figure)) {
      fit(figure, window_of(figure));
    }
  });
}
"""


def equal_scales(plot: Any, element: Any) -> None:
    """HoloViews hook: keep one data unit the same number of pixels on x and on y.

    Idempotent (HoloViews runs hooks on every update): the callbacks are added once per
    figure and range, found again by :data:`EQUAL_SCALES_TAG`.
    """
    from bokeh.models import CustomJS, WheelZoomTool

    figure = plot.state
    for tool in figure.select({"type": WheelZoomTool}):
        tool.zoom_on_axis = False  # zooming one axis alone would break the scales
    callback = None

    def ours(callbacks: list) -> bool:
        return any(EQUAL_SCALES_TAG in cb.tags and cb.args.get("figure") is figure
                   for cb in callbacks)

    targets = [(figure, ("inner_width", "inner_height")),
               (figure.x_range, ("start", "end")), (figure.y_range, ("start", "end"))]
    for model, names in targets:
        for name in names:
            if ours(model.js_property_callbacks.get(f"change:{name}", [])):
                continue
            callback = callback or CustomJS(args={"figure": figure}, code=_FIT_JS,
                                            tags=[EQUAL_SCALES_TAG])
            model.js_on_change(name, callback)
    if not ours(figure.js_event_callbacks.get("rangesupdate", [])):
        callback = callback or CustomJS(args={"figure": figure}, code=_FIT_JS,
                                        tags=[EQUAL_SCALES_TAG])
        figure.js_on_event("rangesupdate", callback)
