"""Benchmark the compare mode: selection latency over every panel at 1,000,000 rows.

A table of ``--rows`` rows (two 32-d float32 "checkpoints" in 20 Gaussian clusters, the
second an orthogonally turned, scaled, noisy copy of the first, a third unrelated, and a
``label`` column) is shown in ``ep.Compare`` with ``--panels`` PCA panels (checkpoint a, b,
c), each above the Datashader threshold, so every panel is one server-shaded raster. The
Compare is rendered into a ``bokeh.document.Document`` inside a running asyncio loop, as under
``panel serve``.

Measured, each ``--repeats`` times (median and min printed):

* **selection latency**: ``compare.selection = rows`` (one cluster, ~5 % of the rows: what
  a box select hands the server after mapping the box to rows) until *every* panel's raster
  model (its ``ImageRGBA`` data source) holds a new image; then clearing the selection, the
  same way. That is the server-side time from a selection to every panel's updated model.
* **the same for one Projector** over the same table (the single-view baseline: the compare
  mode should cost about ``panels`` times this, as each panel re-shades its own raster);
* **the plain library call**: ``datashader.Canvas(400, 400).points(frame, "x", "y",
  ds.count_cat("color"))`` of one panel's points, plus ``tf.shade``, times ``panels``;
* **the Procrustes alignment** of one 1,000,000-point layout to another
  (:func:`embproj_panel.align.align_layout`), which a recomputed first panel costs each of
  the others.

Run::

    NUMBA_CACHE_DIR=$HOME/.cache/embproj-panel/numba PYTHONPATH=. \\
        python benchmarks/bench_compare.py [--rows 1000000] [--panels 3] [--repeats 5]

Target (issue 11): the compare-mode selection latency is printed at 1,000,000 rows; the
house target for a change to its model is under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

TARGET_SECONDS = 2.0


def make_table(n: int, d: int = 32, seed: int = 0) -> Any:
    import embproj_panel as ep

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 20, n)
    centres = rng.normal(0, 6, (20, d)).astype(np.float32)
    a = centres[labels] + rng.normal(size=(n, d)).astype(np.float32)
    turn, _ = np.linalg.qr(rng.normal(size=(d, d)))
    b = (1.7 * a @ turn.astype(np.float32) + rng.normal(0, 0.3, (n, d))).astype(np.float32)
    c = rng.normal(size=(n, d)).astype(np.float32)
    frame = pd.DataFrame({"label": labels.astype(str), "ckpt_a": list(a), "ckpt_b": list(b),
                          "ckpt_c": list(c)})
    return ep.Table(dataframe=frame), labels


async def settle(states: list[Any], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while any(state.busy for state in states):
        if time.monotonic() > deadline:
            raise TimeoutError("a projection was not applied in time")
        await asyncio.sleep(0.005)
    for _ in range(5):
        await asyncio.sleep(0)


def raster_sources(root: Any) -> list[Any]:
    from bokeh.models import GlyphRenderer, ImageRGBA

    return [r.data_source for r in root.select({"type": GlyphRenderer})
            if isinstance(r.glyph, ImageRGBA)]


async def timed_selection(select: Any, roots: list[Any], timeout: float = 60.0) -> float:
    """Seconds from ``select()`` until every root's raster holds a new image."""
    sources = [raster_sources(root) for root in roots]
    if any(len(s) != 1 for s in sources):
        raise RuntimeError(f"expected one raster per panel, got {[len(s) for s in sources]}")
    before = [s[0].data["image"][0] for s in sources]
    start = time.perf_counter()
    select()
    deadline = start + timeout
    while True:
        now = [s[0].data["image"][0] for s in sources]
        if all(new is not old for new, old in zip(now, before)):
            elapsed = time.perf_counter() - start
            break
        if time.perf_counter() > deadline:
            raise TimeoutError("not every panel was re-shaded")
        await asyncio.sleep(0.001)
    for _ in range(5):
        await asyncio.sleep(0)
    return elapsed


async def measure(table: Any, labels: np.ndarray, panels: int, repeats: int) -> dict[str, Any]:
    import panel as pn
    from bokeh.document import Document

    import embproj_panel as ep
    from embproj_panel.views import plots

    out: dict[str, Any] = {}
    # As ``panel serve`` does at start (app.create_app): compile Datashader's kernels first.
    out["warm_up_seconds"] = plots.warm_up()
    views = [{"method": "pca", "embedding_columns": [column]}
             for column in ("ckpt_a", "ckpt_b", "ckpt_c", "ckpt_a")[:panels]]
    if panels == 4:
        views[3]["x_component"] = 3
    start = time.perf_counter()
    compare = ep.Compare(table, views=views, color_by="label")
    states = [panel.state for panel in compare.panels]
    await settle(states)
    out["open_seconds"] = time.perf_counter() - start
    doc = Document()
    roots = [pn.panel(panel).get_root(doc) for panel in compare.panels]
    doc.add_root(pn.panel(compare.table).get_root(doc))
    out["alignment"] = [state.alignment_note for state in states[1:]]
    cluster = np.flatnonzero(labels == 7)
    out["selected_rows"] = len(cluster)
    # The first selection pays for one-time work (Datashader's numba kernels for the selection
    # layers, the row -> position lookups): timed once, reported apart.
    out["first_select"] = await timed_selection(
        lambda: setattr(compare, "selection", cluster), roots)
    await timed_selection(lambda: setattr(compare, "selection", []), roots)
    select, clear = [], []
    for _ in range(repeats):
        select.append(await timed_selection(lambda: setattr(compare, "selection", cluster),
                                            roots))
        assert all(state.selection[:3] == cluster[:3].tolist() for state in states)
        clear.append(await timed_selection(lambda: setattr(compare, "selection", []), roots))
    out["compare_select"], out["compare_clear"] = select, clear

    projector = ep.Projector(table, color_by="label", embedding_columns=["ckpt_a"])
    await settle([projector.state])
    root = pn.panel(projector).get_root(doc)
    single = []
    for _ in range(repeats):
        single.append(await timed_selection(
            lambda: setattr(projector, "selection", cluster), [root]))
        await timed_selection(lambda: setattr(projector, "selection", []), [root])
    out["single_select"] = single

    import datashader as ds
    import datashader.transfer_functions as tf

    frame = states[0].frame
    color_key = states[0].color.color_key
    plain = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        for _panel in range(panels):
            canvas = ds.Canvas(plot_width=400, plot_height=400)
            aggregate = canvas.points(frame, "x", "y", ds.count_cat("color"))
            tf.shade(aggregate, color_key=color_key)
        plain.append(time.perf_counter() - t0)
    out["plain_datashader"] = plain[1:]  # the first call compiles

    from embproj_panel.align import align_layout

    first, second = states[0].raw_projection, states[1].raw_projection
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        align_layout(second.coords, second.rows, first.coords, first.rows)
        timings.append(time.perf_counter() - t0)
    out["align"] = timings
    compare.close()
    projector.state.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--panels", type=int, default=3, choices=[2, 3, 4])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    table, labels = make_table(args.rows)
    print(f"table: {args.rows:,} rows, built in {time.perf_counter() - t0:.1f} s; "
          f"load average before: {os.getloadavg()}")
    out = asyncio.run(measure(table, labels, args.panels, args.repeats))

    def line(name: str, values: list[float]) -> str:
        return (f"{name:<44} median {statistics.median(values):7.3f} s   "
                f"min {min(values):7.3f} s")

    print(f"Datashader warm-up (as the served app does at start): "
          f"{out['warm_up_seconds']:.1f} s")
    print(f"{args.panels} PCA panels opened (3 projections + alignment) in "
          f"{out['open_seconds']:.1f} s")
    for note in out["alignment"]:
        print(f"  {note}")
    print(f"selection: one cluster, {out['selected_rows']:,} rows; {args.repeats} repeats "
          f"after a first one ({out['first_select']:.3f} s, one-time work included)")
    median = statistics.median(out["compare_select"])
    verdict = "OK" if median < TARGET_SECONDS else "OVER"
    print(line("compare: select -> every panel's model", out["compare_select"])
          + f"   target < {TARGET_SECONDS} s: {verdict}")
    print(line("compare: clear -> every panel's model", out["compare_clear"]))
    print(line("one Projector: select -> its model", out["single_select"]))
    print(line(f"plain datashader count_cat+shade x{args.panels}", out["plain_datashader"]))
    print(line("align_layout (Procrustes) of one layout", out["align"]))
    ratio = median / statistics.median(out["single_select"])
    plain = median / statistics.median(out["plain_datashader"])
    print(f"ratios: compare / one projector = {ratio:.2f} (panels = {args.panels}); "
          f"compare / plain datashader = {plain:.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
