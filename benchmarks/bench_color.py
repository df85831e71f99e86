"""A colour change in one session, in-process: server time and bytes of the answer.

Builds ``Projector`` on the digits (1,797 rows, glyphs) and on a 200,000-row table (a
Datashader raster) inside a Bokeh ``Document``, as ``panel serve`` does for one session, and
cycles the colour column through categories, numbers and none. For each change it times
``state.color_by = ...`` until the document holds the new figure state (HoloViews updates run
synchronously here), and the size of the ``PATCH-DOC`` message the browser would receive
(serialised with Bokeh's own protocol, buffers included). It also says whether the Bokeh
figure is still the same model (its id). The plain library call beside it: setting a new
colour column on a bare Bokeh ``ColumnDataSource`` of the same points, serialised the same
way. Target: a colour change answered well under the 0.6-1.0 s issue 16 measured for one
session on an idle server (it rebuilt and resent the figure).

Run from a checkout (``PYTHONPATH`` picks the code measured, e.g. another worktree)::

    PYTHONPATH=. python benchmarks/bench_color.py [--repeats 3] [--large-rows 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def large_table(n: int) -> Any:
    import pandas as pd

    import embproj_panel as ep

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 40, n)
    centres = rng.uniform(-100, 100, size=(40, 2))
    xy = centres[labels] + rng.normal(scale=4, size=(n, 2))
    return ep.Table(dataframe=pd.DataFrame({"a": xy[:, 0], "b": xy[:, 1],
                                            "label": labels.astype(str),
                                            "value": rng.normal(size=n)}))


class Recorder:
    """The document's change events since the last ``take()``, as one PATCH-DOC's bytes."""

    def __init__(self, doc: Any) -> None:
        self.doc, self.events = doc, []
        doc.on_change(self.events.append)

    def take(self) -> int:
        from bokeh.protocol import Protocol

        events, self.events[:] = list(self.events), []
        if not events:
            return 0
        message = Protocol().create("PATCH-DOC", events)
        return len(message.header_json) + len(message.content_json) + sum(
            len(buffer.to_bytes()) for buffer in message.buffers)


def figure_id(root: Any) -> str:
    from bokeh.models import Plot

    plots = [p for p in root.select({"type": Plot}) if len(p.renderers) > 2]
    return plots[0].id if plots else "?"


async def session(table: Any, columns: list, repeats: int, name: str, **settings: Any) -> dict:
    import panel as pn
    from bokeh.document import Document

    import embproj_panel as ep

    projector = ep.Projector(table, method="pca", **settings)
    projector.state.wait(timeout=300)
    doc = Document()
    root = pn.panel(projector).get_root(doc)
    doc.add_root(root)
    recorder = Recorder(doc)
    first_id = figure_id(root)
    times, sizes, same = [], [], True
    for _ in range(repeats):
        for column in columns:
            recorder.take()
            began = time.perf_counter()
            projector.state.color_by = column
            size = recorder.take()
            times.append(time.perf_counter() - began)
            sizes.append(size)
            same = same and figure_id(root) == first_id
    return {"name": name, "median": statistics.median(times), "max": max(times),
            "bytes": statistics.median(sizes), "same_figure": same, "n": len(times)}


def plain_bokeh(n: int) -> float:
    """Seconds to set and serialise a new colour column on a bare ColumnDataSource."""
    from bokeh.document import Document
    from bokeh.models import ColumnDataSource

    rng = np.random.default_rng(0)
    source = ColumnDataSource({"x": rng.normal(size=n), "y": rng.normal(size=n),
                               "fill": np.full(n, "#1f77b4", dtype=object)})
    doc = Document()
    doc.add_root(source)
    recorder = Recorder(doc)
    began = time.perf_counter()
    source.data = {**source.data, "fill": np.full(n, "#ff7f0e", dtype=object)}
    recorder.take()
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-rows", type=int, default=200_000)
    args = parser.parse_args()

    import embproj_panel as ep

    print(f"code measured: {Path(ep.__file__).resolve().parents[1]}; {load()}", flush=True)
    digits = ep.datasets.digits()
    results = [
        await session(digits, ["pixel_3_3", None, "target", "pixel_4_4"], args.repeats,
                      "digits, glyphs"),
        await session(large_table(args.large_rows), ["value", None, "label"], args.repeats,
                      f"{args.large_rows:,} rows, raster", embedding_columns=["a", "b"],
                      color_by="label"),
    ]
    for r in results:
        print(f"{r['name']:<26} colour change median {r['median'] * 1e3:7.1f} ms "
              f"(max {r['max'] * 1e3:.0f}, {r['n']} changes), answer {r['bytes'] / 1e3:8.1f} KB, "
              f"same figure: {r['same_figure']}   target well under 600 ms   "
              f"{'PASS' if r['median'] < 0.3 else 'FAIL'}   {load()}")
    print(f"{'plain Bokeh: a new colour column on 1,797 points':<50} "
          f"{plain_bokeh(1797) * 1e3:.1f} ms   {load()}")


if __name__ == "__main__":
    asyncio.run(main())
