"""Equal scales on both axes of a responsive figure, held in the browser.

PCA, UMAP and t-SNE layouts are isotropic: a distance means the same along x and y, so one
data unit must take as many pixels on x as on y, or clusters look stretched. The map fills
its pane at any window size, so the frame's aspect is known only in the browser, after
layout; HoloViews' ``data_aspect`` either fixes the figure's shape (``aspect_ratio``, which
leaves half a wide pane empty) or waits for a size it never gets before the first draw, and
Bokeh's own ``match_aspect`` adjusts only ``DataRange1d`` (HoloViews uses ``Range1d``).

:func:`equal_scales` (a HoloViews hook) gives the figure a small browser callback instead:

* the *target* is the data window the user asked to see: the first ranges, then whatever the
  user's pan, zoom or reset sets, at every step of the gesture (kept on the range objects,
  so axes linked across Compare's panels share one);
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
# Each x range keeps the target ([x, y] windows the user asked for), the window fit() last
# set and the figure that owns the fitting.
#
# Bokeh runs a CustomJS asynchronously (``CustomJS.execute`` awaits its compiled function,
# Bokeh 3.4 on), after the change that fired it has returned: a flag set around fit()'s own
# range change is already cleared when the callbacks it fires run. Our own changes are told
# apart by value instead (the window is the one fit() set), and each run reads the ranges as
# they are then, not as the change that fired it left them.
_FIT_JS = """
const g = globalThis;

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
const xr = figure.x_range, yr = figure.y_range;
if (xr == null || yr == null) return;
if (cb_obj === xr || cb_obj === yr) {
  // Every other plot showing these ranges is drawn again. A plot view connects its ranges'
  // changes to a repaint only for the ranges it was built with (PlotView.connect_signals,
  // Bokeh 3.9); Compare links the panels' ranges after the page has loaded (link_axes), so
  // a zoom in panel 1 moved the shared ranges while panels 2 and 3 kept their old picture,
  // unless new tick labels happened to change their layout.
  for (const view of g.Bokeh?.index?.all_views?.() ?? []) {
    if (view.model !== figure && view.request_paint != null
        && (view.model.x_range === cb_obj || view.model.y_range === cb_obj)) {
      view.request_paint();
    }
  }
}
const owner = xr.__embproj_owner;
if (owner !== figure) {
  if (owner != null && shown(owner)) return;
  if (!shown(figure)) return;
  xr.__embproj_owner = figure;
}

const window_now = () => [xr.start, xr.end, yr.start, yr.end];
const same = (a, b) => a != null && b != null && a.every((v, i) => {
  const span = i < 2 ? a[1] - a[0] : a[3] - a[2];
  return Math.abs(v - b[i]) <= 1e-9 * Math.abs(span);
});

// The ranges become ``target`` widened along one axis to equal px per unit.
function fit(target) {
  const w = figure.inner_width, h = figure.inner_height;
  if (!(w > 0 && h > 0)) return;
  const [x0, x1, y0, y1] = target;
  const units = Math.max(Math.abs(x1 - x0) / w, Math.abs(y1 - y0) / h);
  if (!(units > 0 && Number.isFinite(units))) return;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const hx = Math.sign(x1 - x0 || 1) * units * w / 2;
  const hy = Math.sign(y1 - y0 || 1) * units * h / 2;
  const fitted = [cx - hx, cx + hx, cy - hy, cy + hy];
  xr.__embproj_fitted = fitted;
  if (same(window_now(), fitted)) return;
  xr.setv({start: fitted[0], end: fitted[1]});
  yr.setv({start: fitted[2], end: fitted[3]});
  // Tell the server as a pan would: HoloViews' RangeXY streams (the raster's window, the
  // zoom kept on a rebuild) listen to RangesUpdate events, not to the range properties.
  const views = g.Bokeh?.index?.all_views?.() ?? [];
  for (const view of views) {
    if (view.model === figure && view.trigger_ranges_update_event) {
      view.trigger_ranges_update_event();
      break;
    }
  }
}

if (xr.__embproj_target == null) xr.__embproj_target = window_now();
if (cb_obj === figure) {
  // The frame's size changed: fit the target to it.
  fit(xr.__embproj_target);
} else if (!same(window_now(), xr.__embproj_fitted)) {
  // A range moved, and not to the window fit() set: a tool (every step of a pan or a wheel
  // zoom), a reset, the server, a linked panel. That window is what the user asked to see,
  // now, not when Bokeh's RangesUpdate event marks the gesture's end (a few hundred ms
  // later): a wheel zoom's new tick labels resize the frame before that, and a fit of the
  // window before the zoom undid it.
  xr.__embproj_target = window_now();
  fit(xr.__embproj_target);
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
