"""Faults around projections: a damaged cache file, a server killed mid-projection, a browser
that leaves during a compute (issue 16, item 2).

* a cache file cut short or with a flipped byte is recomputed, never trusted, and replaced;
* a process killed (SIGKILL) while it projects, or in the middle of writing the cache file,
  leaves no entry a restarted server would read, and the store's tables intact;
* a session whose browser disconnects while its UMAP runs has that job cancelled, and the
  threads working for it end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _server import BokehClient, serve_in_process, wait

import embproj_panel as ep
from embproj_panel.compute import project, projection_cache

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

ROOT = Path(__file__).resolve().parents[1]


def blobs(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5, size=(8, d))
    return (centres[rng.integers(0, 8, n)] + rng.normal(size=(n, d))).astype(np.float32)


def cache_files(root: Path) -> list[Path]:
    folder = root / ".cache" / "projections"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# -- a damaged cache file ------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["cut-in-half", "cut-last-bytes", "flipped-byte"])
def test_a_damaged_cache_file_is_recomputed_and_replaced(isolated_store, damage):
    X = blobs(300)
    first = project(X, "pca")
    (path,) = cache_files(isolated_store)
    content = bytearray(path.read_bytes())
    if damage == "cut-in-half":
        content = content[: len(content) // 2]
    elif damage == "cut-last-bytes":
        content = content[:-5]
    else:
        content[len(content) // 3] ^= 0xFF  # inside the coordinates: the zip CRC says so
    path.write_bytes(bytes(content))
    projection_cache().clear()  # a restarted server: only the disk copy
    again = project(X, "pca")
    assert not again.cached
    np.testing.assert_array_equal(again.coords, first.coords)
    projection_cache().clear()
    assert project(X, "pca").cached  # the damaged file was replaced by a good one


# -- a server killed during a projection ---------------------------------------------------------
_KILLED_WHILE_PROJECTING = """
import os, sys, time
import numpy as np
import pandas as pd
import embproj_panel as ep
from embproj_panel.compute import project_async

with ep.init(project="p", name="r") as run:
    run.log({"t": pd.DataFrame({"a": [1.0, 2.0, 3.0]})})
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 16)).astype(np.float32)
job = project_async(X, "umap", n_epochs=5000)
while job.progress <= 0.05 and not job.done:
    time.sleep(0.05)
print("projecting", job.status, flush=True)
time.sleep(60)
"""

_KILLED_WHILE_WRITING = """
import os, signal
import numpy as np
import embproj_panel as ep

real_savez = np.savez

def savez_then_die(handle, **arrays):
    handle.write(b"PK\\x03\\x04 half an entry")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # the power goes off in the middle of the write

np.savez = savez_then_die
rng = np.random.default_rng(0)
ep.project(rng.normal(size=(200, 8)).astype(np.float32), "pca")
"""


def _run_until_killed(script: str, store: Path, wait_for: str | None) -> None:
    env = dict(os.environ, EMBPROJ_DIR=str(store), PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if wait_for is not None:
            line = process.stdout.readline()
            assert wait_for in line, f"the child said {line!r}"
            process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=600) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_server_killed_during_a_long_projection_leaves_nothing_partial(isolated_store,
                                                                          numba_warm):
    _run_until_killed(_KILLED_WHILE_PROJECTING, isolated_store, wait_for="projecting running")
    assert [p for p in cache_files(isolated_store) if p.suffix == ".npz"
            and not p.name.startswith(".tmp-")] == []
    # after a restart the store's tables are intact and the projection runs afresh
    assert ep.store.load_table("p", "r", "t").get_column("a") == [1.0, 2.0, 3.0]
    X = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    assert not project(X, "pca").cached


def test_a_server_killed_while_writing_the_cache_leaves_no_entry(isolated_store):
    _run_until_killed(_KILLED_WHILE_WRITING, isolated_store, wait_for=None)
    files = cache_files(isolated_store)
    assert files and all(p.name.startswith(".tmp-") for p in files)  # only the torn temp file
    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    first = project(X, "pca")  # a restarted server never reads the torn file
    assert not first.cached and np.isfinite(first.coords).all()
    # the torn temporary file is removed once it is old enough to belong to no live writer
    (torn,) = [p for p in files if p.exists()]
    old = time.time() - 2 * 3600
    os.utime(torn, (old, old))
    project(blobs(50), "pca")
    assert not torn.exists()
    assert [p.name for p in cache_files(isolated_store) if p.name.startswith(".tmp-")] == []


# -- a browser that leaves during a compute -------------------------------------------------------
def test_a_session_that_disconnects_during_a_compute_cancels_its_job(isolated_store,
                                                                       numba_warm):
    from embproj_panel.app import ProjectorApp

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(3000, 16)), columns=[f"f{i}" for i in range(16)])
    with ep.init(project="p", name="r") as run:
        run.log({"t": frame})
    apps: list[ProjectorApp] = []

    def page():
        app = ProjectorApp()
        apps.append(app)
        return app.template()

    arguments = {"project": "p", "run": "r", "table": "t", "method": "umap", "auto": "true",
                 "n_epochs": "5000"}
    with serve_in_process({"app": page}, unused_session_lifetime_milliseconds=500,
                          check_unused_sessions_milliseconds=100) as base:
        # a real Bokeh client: the websocket a browser opens
        with BokehClient(f"{base}/app", **arguments):
            wait(lambda: apps and apps[0].state._slot.job is not None, 120,
                 "the UMAP to start")
            job = apps[0].state._slot.job
            wait(lambda: job.status == "running" and job.progress > 0, 300, "the UMAP to run")
        # the browser tab has closed mid-projection
        wait(lambda: job.done, 60, "the job to end")
        assert job.status == "cancelled" and "session closed" in job.error
        assert apps[0].state.closed
        # its progress forwarder ends, and the pool's worker is free again (a new job runs)
        wait(lambda: not [t for t in threading.enumerate() if t.name == "embproj-progress"],
             30, "the progress thread to end")
        assert project(blobs(60), "pca", cache=False).coords.shape == (60, 2)


# -- the server's thread comes first ---------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_projection_threads_run_below_the_server_thread(numba_warm):
    from embproj_panel.compute import PROJECTION_NICENESS, lower_thread_priority, project_async

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    server = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert niceness() == server  # the warm-up (numba_warm) ran, but lowered only its thread
    seen: list[int] = []
    project_async(blobs(50), "pca", cache=False).result(timeout=120)
    probe = threading.Event()

    def in_worker():  # the pool's threads run every projection
        seen.append(niceness())
        probe.set()

    from embproj_panel.compute import _pool

    _pool().submit(in_worker).result(timeout=60)
    assert probe.is_set() and seen == [server + PROJECTION_NICENESS]
    # a thread already lowered that lowers itself again does not sink further
    assert _pool().submit(lambda: (lower_thread_priority(), niceness())[1]).result(60) \
        == server + PROJECTION_NICENESS
    assert niceness() == server  # the caller's (the server's) thread is unchanged

    # threads a projection thread starts (numba's workers) inherit its priority
    def child_of_worker():
        inner: list[int] = []
        thread = threading.Thread(target=lambda: inner.append(niceness()))
        thread.start()
        thread.join()
        return inner[0]

    assert _pool().submit(child_of_worker).result(timeout=60) == server + PROJECTION_NICENESS
