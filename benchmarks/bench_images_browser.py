"""Images on the map at 1,000,000 rows in Chromium: a wheel zoom -> new thumbnails drawn.

Logs (once, kept in ``--store``) a ``--rows``-row table to a run store, as a user's script
does: an 8-d float32 vector in 40 Gaussian blobs, a label and an 8x8 PNG image per row (one
image per blob); at 1,000,000 rows the store writes it as a lazy dataset, so the app reads
images from their row groups on demand. Then ``panel serve apps/projector.py`` over that store
runs in its own process (as a user runs it; a server in this process would share the GIL with
Playwright's driver), and Debian's Chromium opens the table at 1400x900, coloured by the label.

Two passes of ``--zooms`` mouse-wheel zooms over the plot (in, in, out, in, out, ...; the
pointer at a seeded place in the middle of the frame): first with images off (the Datashader
raster alone: the plain library's redraw of the points, and its bytes), then with "Show images
on the map" on. The page times itself: ``performance.now()`` at the wheel event, and at the
first animation frame at which the thumbnails' glyph has new data and every one of its images
has loaded (BokehJS draws them in that frame), and likewise at the first frame with a new
raster. Bytes per view change: every websocket byte the page received from the wheel event
until the page was quiet for ``--quiet`` s (the images, the raster, the labels: all of it).

Targets (issue 10.3): the thumbnails drawn within 1 s of a zoom (median and p95 printed);
bytes per view change with images shown within ``payload_bound()`` (200 thumbnails of 48 px,
the bound the thumbnails alone keep) plus the raster update (at most ``MAX_RASTER_PIXELS`` RGBA
pixels), against the raster-only pass of the same run. The view is reset between the passes,
so both zoom the same sequence from the same view. Every wait is bounded (``--timeout`` per
zoom, ``--deadline`` for the whole run): a zoom that is not redrawn in time is counted as a
miss and the run goes on.

Run::

    PYTHONPATH=. python benchmarks/bench_images_browser.py [--rows 1000000] [--zooms 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _browser import RESULTS, Frames, chromium, load, serve_store

TARGET_S = 1.0
PROJECT, RUN, TABLE = "bench", "images", "big"

# Arms the in-page timer: t0 at the next wheel event, then at each animation frame whether
# the thumbnails' ImageURL glyph has new data (its view's data iteration) with every image
# resolved, and whether the raster's ImageRGBA data changed.
TIMER_JS = """
() => {
  const find = () => {  // the map: the plot with the raster (the gallery has images too)
    const out = {images: null, raster: null};
    for (const pv of Bokeh.index.all_views()) {
      if (!pv.frame || !Array.isArray(pv.model.renderers) || !pv.views) continue;
      const rs = pv.model.renderers.filter(r => r.glyph && r.data_source);
      const raster = rs.find(r => r.glyph.type === 'ImageRGBA');
      if (!raster) continue;
      out.raster = raster.data_source;
      const images = rs.find(r => r.glyph.type === 'ImageURL' && r.data_source.data.row);
      const view = images ? pv.views.find_one(images) : null;
      if (view) out.images = view.glyph;
    }
    return out;
  };
  const z = window.__zoom = window.__zoom || {installed: false};
  z.find = find;
  z.arm = () => {
    const {images, raster} = find();
    z.t0 = null; z.t_images = null; z.t_raster = null; z.t_set = null; z.armed = true;
    z.sends = []; z.recvs = [];
    z.iteration = images ? images._set_data_iteration : -1;
    z.raster_data = raster ? raster.data.image : null;
    z.n = null;
  };
  if (!z.installed) {
    z.installed = true;
    // Every websocket frame the page sends and receives while armed, with its in-page time:
    // the RangesUpdate event leaving and the server's answer arriving split a zoom into the
    // browser's wait before it tells the server, the server's part, and the drawing.
    z.sends = []; z.recvs = [];
    const send = WebSocket.prototype.send;
    const watched = new WeakSet();
    WebSocket.prototype.send = function (data) {
      if (z.armed && z.t0 !== null) {
        const ranges = typeof data === 'string' && data.includes('rangesupdate');
        z.sends.push([performance.now(), data.byteLength ?? data.length ?? 0, ranges]);
      }
      if (!watched.has(this)) {
        watched.add(this);
        this.addEventListener('message', (event) => {
          if (z.armed && z.t0 !== null) {
            const d = event.data;
            z.recvs.push([performance.now(), d.byteLength ?? d.size ?? d.length ?? 0]);
          }
        });
      }
      return send.call(this, data);
    };
    document.addEventListener('wheel', () => {
      if (z.armed && z.t0 === null) z.t0 = performance.now();
    }, true);
    const poll = () => {
      if (z.armed && z.t0 !== null) {
        const {images, raster} = find();
        const now = performance.now();
        if (z.t_set === null && images && images._set_data_iteration > z.iteration) {
          z.t_set = now;  // the new thumbnails' data arrived (their images still loading)
        }
        if (z.t_images === null && images && images._set_data_iteration > z.iteration
            && images.resolved && images.resolved.count === images.resolved.size) {
          z.t_images = now; z.n = images.resolved.size;
        }
        if (z.t_raster === null && raster && raster.data.image !== z.raster_data) {
          z.t_raster = now;
        }
      }
      requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
  }
  return true;
}
"""

# The plot frame's box on the page (the plot with the raster).
FRAME_JS = """
() => {
  const pv = [...Bokeh.index.all_views()].find(v => v.frame && Array.isArray(v.model.renderers)
      && v.model.renderers.some(r => r.glyph && r.glyph.type === 'ImageRGBA'));
  if (!pv) return null;
  const rect = pv.el.getBoundingClientRect();
  const b = pv.frame.bbox;
  return [rect.left + b.left, rect.top + b.top, b.width, b.height];
}
"""


def generate(store: Path, rows: int) -> float:
    """Log the table to ``store`` (skipped when it is there); seconds spent."""
    import pandas as pd
    from PIL import Image as PILImage

    import embproj_panel as ep

    marker = store / f".bench-images-{rows}"
    if marker.exists():
        return 0.0
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    blobs = 40
    labels = rng.integers(0, blobs, rows)
    centres = rng.normal(scale=8, size=(blobs, 8)).astype(np.float32)
    vectors = centres[labels] + rng.normal(size=(rows, 8)).astype(np.float32)
    glyphs = []
    for k in range(blobs):  # 8x8 RGB: a row and a column lit per blob
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        pixels[k % 8, :, 0] = 255
        pixels[:, k // 8, 1] = 255
        pixels[..., 2] = 40 + 5 * k
        buffer = io.BytesIO()
        PILImage.fromarray(pixels).save(buffer, format="PNG")
        glyphs.append(ep.Image.from_png_bytes(buffer.getvalue()))
    images = np.empty(rows, dtype=object)
    images[:] = [glyphs[k] for k in labels]
    frame = pd.DataFrame({"vector": list(vectors), "label": [f"blob {k}" for k in labels],
                          "image": images})
    with ep.init(project=PROJECT, name=RUN, dir=store) as run:
        run.log({TABLE: frame})
    marker.write_text("done")
    return time.perf_counter() - start


def quiet(frames: Frames, mark: tuple[int, int], seconds: float, limit: float) -> None:
    """Wait until no frame has arrived for ``seconds`` (at most ``limit`` s)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        received = frames.received[mark[0]:]
        last = received[-1][0] if received else 0.0
        if received and time.monotonic() - last >= seconds:
            return
        time.sleep(0.05)


def zooms(page: Any, frames: Frames, n: int, images: bool, args: Any,
          deadline: float) -> list[dict]:
    """``n`` wheel zooms; per zoom the in-page times (s) and the bytes received."""
    left, top, width, height = page.evaluate(FRAME_JS)
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        if time.monotonic() > deadline:
            print(f"  deadline reached after {i} zooms", flush=True)
            break
        zoom_in = i < 2 or i % 2 == 0
        fx, fy = rng.uniform(0.35, 0.65, 2)
        page.mouse.move(left + fx * width, top + fy * height)
        page.wait_for_timeout(300)
        page.evaluate("() => window.__zoom.arm()")
        mark = frames.mark()
        page.mouse.wheel(0, -args.wheel if zoom_in else args.wheel)
        done = "window.__zoom.t_images !== null" if images else "window.__zoom.t_raster !== null"
        try:
            page.wait_for_function(f"() => window.__zoom.t0 !== null && {done}",
                                   timeout=args.timeout * 1000)
            missed = False
        except Exception:  # noqa: BLE001 - Playwright's timeout: counted as a miss
            missed = True
        quiet(frames, mark, args.quiet, args.timeout)
        z = page.evaluate("() => { const z = window.__zoom; return {t0: z.t0,"
                          " images: z.t_images, raster: z.t_raster, set: z.t_set, n: z.n,"
                          " sends: z.sends, recvs: z.recvs}; }")
        page.evaluate("() => { window.__zoom.armed = false; }")
        nbytes, nframes, _ = frames.since(mark)

        row = {"images": _since(z, "images"), "raster": _since(z, "raster"), "bytes": nbytes,
               "frames": nframes, "n": z["n"], "missed": missed, "in": zoom_in,
               **phases(z, "images" if images else "raster")}
        out.append(row)
        print(f"  zoom {i} ({'in' if zoom_in else 'out'}): "
              + (f"thumbnails {row['images']:.2f} s ({row['n']} images), " if images else "")
              + f"raster {row['raster']:.2f} s, {nbytes / 1e3:,.0f} KB in {nframes} frames"
              + ("  MISSED" if missed else "") + f"; {load()}", flush=True)
        print("    " + "  ".join(f"{name} {row[name]:.3f}" for name in PHASES), flush=True)
    return out


@contextlib.contextmanager
def spy(path: Path | None) -> Iterator[None]:
    """py-spy recording the page's server (this process's ``panel serve`` child) into ``path``."""
    if path is None:
        yield
        return
    import psutil

    server = [p for p in psutil.Process().children(recursive=True)
              if "panel" in " ".join(p.cmdline())]
    recorder = subprocess.Popen(["py-spy", "record", "--pid", str(server[0].pid), "--format",
                                 "raw", "--rate", "50", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        recorder.wait(timeout=60)
        print(f"py-spy profile of the server: {path}", flush=True)


def _since(z: dict, key: str) -> float:
    """Seconds from the wheel event to the in-page time ``z[key]`` (NaN if none)."""
    return math.nan if z[key] is None or z["t0"] is None else (z[key] - z["t0"]) / 1e3


#: The parts of one zoom, in seconds, from the in-page times (see :func:`phases`).
PHASES = ("browser_wait", "server", "apply", "images_load")


def phases(z: dict, drawn: str) -> dict[str, float]:
    """Where one zoom's time went, from the page's own clock.

    ``browser_wait``: the wheel event -> the page sends BokehJS's RangesUpdate event (when
    its wheel-zoom "level of detail" interaction ends; the last one before the redraw);
    ``server``: that send -> the last websocket frame before the new data is drawn (the
    server's choice of points, shading, thumbnails, HoloViews and Bokeh, and the transfer);
    ``apply``: that frame -> the first animation frame with the new data (negative when the
    thumbnails came before the raster's last frame); ``images_load``: -> every thumbnail
    decoded and drawn (0 for the raster alone).
    """
    nan = dict.fromkeys(PHASES, math.nan)
    t0, end = z["t0"], z[drawn]
    if t0 is None or end is None:
        return nan
    sent = [t for t, _, ranges in z["sends"] if ranges and t <= end]  # RangesUpdate events
    if not sent:
        return nan
    sent = sent[-1]
    data = z["set"] if drawn == "images" and z["set"] is not None else end
    answer = [t for t, _ in z["recvs"] if sent <= t <= data]
    if not answer:
        return nan
    return {"browser_wait": (sent - t0) / 1e3, "server": (answer[-1] - sent) / 1e3,
            "apply": (data - answer[-1]) / 1e3, "images_load": (end - data) / 1e3}


def summary(values: list[float]) -> tuple[float, float]:
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return math.nan, math.nan
    p95 = finite[min(len(finite) - 1, math.ceil(0.95 * len(finite)) - 1)]
    return statistics.median(finite), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--zooms", type=int, default=8)
    parser.add_argument("--store", type=Path, default=None,
                        help="run store to log the table into (default: /tmp/embproj-bench-"
                             "images-<rows>; kept between runs)")
    parser.add_argument("--wheel", type=float, default=300.0, help="wheel deltaY per zoom")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per zoom")
    parser.add_argument("--quiet", type=float, default=1.0,
                        help="a view change is over after this many seconds without a frame")
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds for the run")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="FILE",
                        help="record the server with py-spy (raw, collapsed stacks) into FILE "
                             "during the images-on pass")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline

    from embproj_panel.image_cells import payload_bound
    from embproj_panel.views.plots import MAX_RASTER_PIXELS
    from tests.ui.test_structure_ui import CHECK_JS

    store = args.store or Path(f"/tmp/embproj-bench-images-{args.rows}") / "embproj-runs"
    store.mkdir(parents=True, exist_ok=True)
    spent = generate(store, args.rows)
    print(f"{args.rows:,}-row table with 8x8 images in {store} "
          f"({f'logged in {spent:.1f} s' if spent else 'logged earlier'}); {load()}", flush=True)
    query = f"?project={PROJECT}&run={RUN}&table={TABLE}&color=label"
    with serve_store(store) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(args.timeout * 1000)
        frames = Frames(page)
        start = time.monotonic()
        page.goto(url + query, timeout=300_000)
        page.wait_for_selector(f"text=/{args.rows:,} of {args.rows:,} rows · PCA/",
                               timeout=300_000)
        page.wait_for_function("() => (" + FRAME_JS + ")() !== null", timeout=120_000)
        print(f"page with the raster in {time.monotonic() - start:.1f} s; {load()}", flush=True)
        page.wait_for_timeout(2000)  # the first size and range reports settle
        page.evaluate(TIMER_JS)
        print("images off (the Datashader raster alone):", flush=True)
        plain = zooms(page, frames, args.zooms, False, args, deadline)
        page.mouse.move(5, 5)
        assert page.evaluate(CHECK_JS, "Show images on the map") is True
        page.wait_for_function("() => { const g = window.__zoom.find().images;"
                               " return g && g.resolved && g.resolved.size > 0"
                               " && g.resolved.count === g.resolved.size; }", timeout=120_000)
        # Both passes zoom the same sequence from the same view (the first pass moved it).
        page.locator(".bk-tool-icon-reset").first.click()
        quiet(frames, frames.mark(), args.quiet, args.timeout)
        page.wait_for_timeout(1000)
        print("images on:", flush=True)
        with spy(args.py_spy):
            shown = zooms(page, frames, args.zooms, True, args, deadline)
        RESULTS.mkdir(exist_ok=True)
        page.screenshot(path=str(RESULTS / f"images_{args.rows}.png"))
        page.close()

    med, p95 = summary([r["images"] for r in shown])
    missed = sum(r["missed"] for r in shown)
    verdict = "PASS" if shown and p95 < TARGET_S and not missed else "FAIL"
    raster_on, raster_off = summary([r["raster"] for r in shown]), summary(
        [r["raster"] for r in plain])
    bytes_on = [r["bytes"] for r in shown]
    bytes_off = [r["bytes"] for r in plain]
    bound = payload_bound() + MAX_RASTER_PIXELS * 4
    print()
    print(f"{args.rows:,} rows, {len(shown)} wheel zooms each pass, Chromium 1400x900; {load()}")
    print(f"  zoom -> thumbnails drawn      median {med:5.2f} s  p95 {p95:5.2f} s  "
          f"(misses {missed})   target < {TARGET_S:.0f} s   {verdict}")
    print(f"  zoom -> raster redrawn        median {raster_on[0]:5.2f} s  p95 {raster_on[1]:5.2f} s"
          f"   images off (plain Datashader raster): median {raster_off[0]:.2f} s  p95 "
          f"{raster_off[1]:.2f} s")
    for label, rows in (("images on ", shown), ("images off", plain)):
        print(f"  parts, {label} (median s): " + "  ".join(
            f"{name} {summary([r[name] for r in rows])[0]:.3f}" for name in PHASES))
    if bytes_on:
        print(f"  bytes per view change         median {statistics.median(bytes_on) / 1e3:,.0f} KB"
              f"  max {max(bytes_on) / 1e3:,.0f} KB   bound {bound / 1e6:.2f} MB "
              f"(thumbnails {payload_bound() / 1e6:.2f} MB + raster "
              f"{MAX_RASTER_PIXELS * 4 / 1e6:.1f} MB)   "
              f"{'PASS' if max(bytes_on) <= bound else 'FAIL'}")
    if bytes_off:
        print(f"  images off, same zooms        median {statistics.median(bytes_off) / 1e3:,.0f} KB"
              f"  max {max(bytes_off) / 1e3:,.0f} KB (the raster alone)")


if __name__ == "__main__":
    main()
