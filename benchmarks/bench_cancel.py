"""Benchmark how fast a cancelled projection stops (moved here from the test suite's
wall-clock asserts, which a busy machine made flaky and which cannot fail for the right
reason on a fast one).

Figures, each the median of ``--repeat`` runs on 3,000 x 10 clustered rows, against the 2 s
target, with the 1-minute load average beside them (the machine may be shared):

* ``UMAP.fit_transform(cancel=...)`` and ``TSNE.fit_transform(cancel=...)``: seconds from the
  cancel flag being set (past the neighbour search, which is not interruptible) to the
  ``Cancelled`` exception;
* ``ep.project_async(...).cancel()`` of a t-SNE job: seconds from ``cancel()`` to
  ``job.result()`` raising.

The plain libraries offer no cancel at all: their baseline is the whole run, printed for a
shortened run of the same settings (``n_epochs``/``n_iter`` 500) as what cancelling saves.

Run::

    NUMBA_CACHE_DIR=$HOME/.cache/embproj-panel/numba PYTHONPATH=. python benchmarks/bench_cancel.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=ImportWarning)  # umap-learn without TensorFlow

TARGET_S = 2.0


def blobs(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d)) * 5
    return (centres[rng.integers(0, 5, n)] + rng.normal(size=(n, d))).astype(np.float32)


def reducer_stop(cls: type, X: np.ndarray, long_run: dict) -> float:
    from embproj_panel.reducers import Cancelled

    stop = threading.Event()
    stopped_at: list[float] = []

    def progress(fraction: float) -> None:
        if fraction > 0.21 and not stop.is_set():  # past the (uninterruptible) neighbours
            stop.set()
            stopped_at.append(time.perf_counter())

    try:
        cls(**long_run).fit_transform(X, progress=progress, cancel=stop.is_set)
    except Cancelled:
        return time.perf_counter() - stopped_at[0]
    raise RuntimeError(f"{cls.__name__} finished instead of stopping")


def job_stop(X: np.ndarray) -> float:
    from embproj_panel.compute import Cancelled, project_async

    job = project_async(X, "tsne", n_iter=5000, cache=False)
    while job.progress < 0.25 and not job.done:
        time.sleep(0.05)
    start = time.perf_counter()
    job.cancel()
    try:
        job.result(timeout=60)
    except Cancelled:
        return time.perf_counter() - start
    raise RuntimeError("the t-SNE job finished instead of stopping")


def whole_run(cls: type, X: np.ndarray, short_run: dict) -> float:
    start = time.perf_counter()
    cls(**short_run).fit_transform(X)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import embproj_panel as ep
    from embproj_panel.reducers import TSNE, UMAP

    ep.warm_up(background=False)
    X = blobs(3000, 10)
    print(f"{'what':<44}{'median s':>10}{'target s':>10}{'load':>7}")
    rows = [
        ("UMAP fit_transform: cancel -> Cancelled",
         lambda: reducer_stop(UMAP, X, {"n_epochs": 5000})),
        ("t-SNE fit_transform: cancel -> Cancelled",
         lambda: reducer_stop(TSNE, X, {"n_iter": 5000})),
        ("project_async t-SNE: job.cancel() -> raise", lambda: job_stop(X)),
    ]
    for label, run in rows:
        median = statistics.median(run() for _ in range(args.repeat))
        verdict = "ok" if median < TARGET_S else "SLOW"
        print(f"{label:<44}{median:>10.3f}{TARGET_S:>10.1f}{os.getloadavg()[0]:>7.2f}  {verdict}")
    for label, cls, short in (("UMAP, no cancel: whole 500-epoch run", UMAP, {"n_epochs": 500}),
                              ("t-SNE, no cancel: whole 500-iteration run", TSNE,
                               {"n_iter": 500})):
        print(f"{label:<44}{whole_run(cls, X, short):>10.3f}{'-':>10}"
              f"{os.getloadavg()[0]:>7.2f}")


if __name__ == "__main__":
    main()
