"""project / project_async: the Projection, the content cache, background jobs, warm-up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import embproj_panel as ep
from embproj_panel import compute
from embproj_panel.compute import (
    Cancelled,
    Projection,
    ProjectionCache,
    configure_numba_cache,
    default_cache_dir,
    project,
    project_async,
    projection_cache,
)
from embproj_panel.reducers import REDUCERS

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def empty_memory_cache():
    """The process-wide LRU outlives a test; start each test without its entries."""
    projection_cache().clear()
    yield
    projection_cache().clear()


def blobs(n: int = 200, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(3, d))[np.arange(n) % 3] * 6 + rng.normal(size=(n, d))).astype(
        np.float32
    )


# -- project ----------------------------------------------------------------------------------


def test_projection_of_a_frame_with_bad_rows():
    frame = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0, 5.0], "b": [2.0, 1.0, 0.0, 3.0, 9.0]})
    result = project(frame, "pca", cache=False)
    assert isinstance(result, Projection)
    assert result.coords.shape == (4, 2) and result.coords.dtype == np.float32
    np.testing.assert_array_equal(result.rows, [0, 1, 3, 4])
    assert result.excluded == [(2, "'a': NaN")]
    assert any("1 of 5 rows left out" in w for w in result.warnings)
    assert result.method == "pca" and result.params["x_component"] == 1
    assert result.columns == ["a", "b"] and result.elapsed > 0
    assert result.explained_variance is not None and not result.cached


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_seed_examples_with_every_method(method, numba_warm):
    digits = project(ep.datasets.digits(), method)
    assert digits.coords.shape == (1797, 2) and np.isfinite(digits.coords).all()
    assert digits.method == method and digits.params["random_state"] == 0
    hello = project(ep.datasets.hello_world(), method)  # 3 rows
    assert hello.coords.shape == (3, 2)
    if method != "pca":
        assert hello.method == "pca" and any("PCA was used instead" in w for w in hello.warnings)


def _non_default(spec):
    if spec.type == "bool":
        return not spec.default
    if spec.type == "choice":
        return spec.choices[-1]
    if spec.type == "seed":
        return 7
    if spec.name == "sample_size":
        return 1_000  # below the table's rows: exercises the sample fit
    if spec.name == "pca_dims":
        return 20
    low, high = spec.bounds
    if isinstance(spec.default, str):  # "auto"
        return type(low)(low * 2)
    value = spec.default + (spec.step or 1)
    return value if value <= high else spec.default - (spec.step or 1)


@pytest.mark.parametrize(
    ("method", "name"),
    [(m, n) for m, cls in REDUCERS.items() for n in cls.param_specs()],
)
def test_every_exposed_parameter_on_digits(method, name, numba_warm):
    spec = REDUCERS[method].param_specs()[name]
    value = _non_default(spec)
    table = ep.datasets.digits()
    speed = {"umap": {"n_epochs": 30}, "tsne": {"n_iter": 250}}.get(method, {})
    speed.pop(name, None)
    if name == "n_iter":
        value = 300
    if name == "n_epochs":
        value = 40
    if method == "umap" and name == "min_dist":
        value = 0.5
    result = project(table, method, cache=False, **{name: value}, **speed)
    assert result.coords.shape == (1797, 2) and np.isfinite(result.coords).all()
    if name not in ("pca_dims", "full_fit"):
        assert result.params[name] == value


def test_unknown_method_and_parameter_fail_before_any_work():
    with pytest.raises(ValueError, match="Unknown projection method"):
        project(np.ones((3, 2)), "mds")
    with pytest.raises(ValueError, match="has no parameter 'perplexity'"):
        project(np.ones((3, 2)), "umap", perplexity=3)
    with pytest.raises(ValueError, match="perplexity must be between 2 and 100"):
        project(blobs(20), "tsne", perplexity=500)


# -- cache ------------------------------------------------------------------------------------


def test_cache_hit_then_misses_for_a_parameter_and_a_cell(isolated_store, numba_warm):
    X = blobs(300)
    first = project(X, "umap", n_epochs=30)
    again = project(X, "umap", n_epochs=30)
    assert not first.cached and again.cached and again.key == first.key
    np.testing.assert_array_equal(first.coords, again.coords)
    assert again.params == first.params and again.warnings == first.warnings
    other_param = project(X, "umap", n_epochs=31)
    assert not other_param.cached and other_param.key != first.key
    changed = X.copy()
    changed[123, 4] += 1e-3  # one cell of 1,800: a full digest sees it
    other_cell = project(changed, "umap", n_epochs=30)
    assert not other_cell.cached and other_cell.key != first.key
    files = list((isolated_store / ".cache" / "projections").glob("*.npz"))
    assert len(files) == 3 and default_cache_dir() == isolated_store / ".cache" / "projections"


def test_cache_key_records_the_code_that_runs(monkeypatch):
    from importlib.metadata import version

    from embproj_panel import compute
    from embproj_panel.features import prepare_features

    umap_versions = compute._versions("umap")
    for name in ("umap-learn", "openTSNE", "numba", "scikit-learn", "numpy", "embproj-panel"):
        assert umap_versions[name] == version(name)
    assert "pynndescent" not in umap_versions  # never called: Annoy or an exact search
    assert {"openTSNE", "numpy"} <= set(compute._versions("tsne"))
    # An edit to an engine module is a new key, without anyone remembering to bump a number.
    features = prepare_features(blobs(50))
    before = compute._cache_key(features, "umap", {"n_epochs": 30})
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: real(self) + (
        b"# edited" if self.name == "_umap_engine.py" else b""))
    compute._versions.cache_clear()
    try:
        assert compute._cache_key(features, "umap", {"n_epochs": 30}) != before
    finally:
        monkeypatch.undo()
        compute._versions.cache_clear()


def test_disk_copy_serves_a_new_process_memory(isolated_store):
    X = blobs(100)
    first = project(X, "pca")
    projection_cache().clear()  # as if the app restarted
    reopened = project(X, "pca")
    assert reopened.cached
    np.testing.assert_array_equal(reopened.coords, first.coords)
    assert reopened.explained_variance == first.explained_variance


def test_cache_dir_override_and_no_temp_files(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBPROJ_CACHE_DIR", str(tmp_path / "elsewhere"))
    project(blobs(50), "pca")
    names = [p.name for p in (tmp_path / "elsewhere").iterdir()]
    assert len(names) == 1 and names[0].endswith(".npz") and not names[0].startswith(".tmp")


def test_corrupt_or_mismatched_disk_entries_are_recomputed(isolated_store):
    X = blobs(80)
    first = project(X, "pca")
    path = isolated_store / ".cache" / "projections" / f"{first.key}.npz"
    path.write_bytes(b"not an npz file")
    projection_cache().clear()
    again = project(X, "pca")
    assert not again.cached
    np.testing.assert_array_equal(again.coords, first.coords)
    np.savez(path, coords=np.zeros((5, 2), np.float32), meta=np.array("{}"))  # wrong shape
    projection_cache().clear()
    assert not project(X, "pca").cached


def test_pickled_cache_files_are_never_loaded(isolated_store):
    X = blobs(40)
    first = project(X, "pca")
    path = isolated_store / ".cache" / "projections" / f"{first.key}.npz"
    np.savez(path, coords=np.zeros((40, 2), np.float32), meta=np.array([{"evil": 1}], object))
    projection_cache().clear()
    again = project(X, "pca")  # allow_pickle=False refuses the object array: a miss
    assert not again.cached
    np.testing.assert_array_equal(again.coords, first.coords)


def test_unseeded_requests_are_not_cached():
    X = blobs(40)
    first = project(X, "pca", random_state=None)
    assert not project(X, "pca", random_state=None).cached
    assert isinstance(first.params["random_state"], int)


def test_memory_lru_is_bounded(tmp_path):
    store = ProjectionCache(max_entries=2, directory=tmp_path)
    for seed in range(3):
        project(blobs(30, seed=seed), "pca", cache=store)
    assert len(store._memory) == 2
    keys = list(store._memory)
    store.max_bytes = 0  # nothing fits in memory now; the disk still answers
    assert project(blobs(30, seed=0), "pca", cache=store).cached
    assert list(store._memory) == keys


def test_cache_false_computes_and_stores_nothing(isolated_store):
    result = project(blobs(30), "pca", cache=False)
    assert result.key == "" and not (isolated_store / ".cache").exists()


# -- background jobs --------------------------------------------------------------------------


def test_job_result_progress_and_callback(numba_warm):
    X = blobs(300)
    called = threading.Event()
    job = project_async(X, "umap", n_epochs=40)
    job.add_done_callback(lambda j: called.set())
    result = job.result(timeout=60)
    assert called.wait(5)
    assert job.done and job.status == "done" and job.progress == 1.0 and job.error is None
    np.testing.assert_array_equal(result.coords, project(X, "umap", n_epochs=40).coords)
    late = threading.Event()
    job.add_done_callback(lambda j: late.set())  # already done: called at once
    assert late.is_set()


def test_forward_progress_hands_changes_to_the_view_until_superseded():
    slot = compute.JobSlot("view")
    steps = [threading.Event() for _ in range(2)]

    def work(progress, cancel):
        for fraction, step in zip((0.3, 0.6), steps):
            step.wait(30)
            progress(fraction)
        while not cancel():
            time.sleep(0.01)
        raise Cancelled("superseded")

    queued, applied = [], []
    job = slot.submit_work(work, "work")
    poller = slot.forward_progress(job, queued.append, applied.append, name="test-progress",
                                   interval=0.01)

    def run_queued():
        while queued:
            queued.pop(0)()

    for fraction, step in zip((0.3, 0.6), steps):
        step.set()
        deadline = time.monotonic() + 30
        while (not applied or applied[-1] != fraction) and time.monotonic() < deadline:
            time.sleep(0.01)
            run_queued()
    assert applied == [0.0, 0.3, 0.6]  # each change once, in order
    time.sleep(0.05)
    run_queued()
    assert applied == [0.0, 0.3, 0.6]  # no repeats of an unchanged value
    job._set_progress(0.9)
    while not queued and poller.is_alive():
        time.sleep(0.01)
    slot.submit_work(lambda progress, cancel: 1, "newer")
    run_queued()  # a value queued before the newer job is dropped on the session's side
    assert applied == [0.0, 0.3, 0.6]
    poller.join(10)
    assert not poller.is_alive()
    with pytest.raises(Cancelled):
        job.result(10)
    finished = slot.submit_work(lambda progress, cancel: 1, "done")
    finished.result(10)
    assert slot.forward_progress(finished, queued.append, applied.append) is None


def test_job_reports_a_readable_error():
    job = project_async(pd.DataFrame({"a": ["x", "y"]}), "pca", columns="a")
    with pytest.raises(ValueError, match="no numeric values"):
        job.result(timeout=30)
    assert job.status == "failed" and "no numeric values" in job.error


def test_unknown_method_fails_synchronously():
    with pytest.raises(ValueError, match="Unknown projection method"):
        project_async(blobs(10), "lle")


def test_newer_request_for_the_same_view_supersedes(numba_warm):
    X = blobs(2000, 10)
    scope = object.__new__(type("Session", (), {}))
    old = project_async(X, "tsne", key="main", scope=scope, n_iter=5000, cache=False)
    other_view = project_async(X, "pca", key="other", scope=scope)
    other_session = project_async(X, "pca", key="main", scope=type(scope)())
    while old.progress < 0.25 and not old.done:
        time.sleep(0.05)
    new = project_async(X, "pca", key="main", scope=scope)
    with pytest.raises(Cancelled, match="Superseded"):
        old.result(timeout=10)
    assert old.status == "cancelled" and old.cancelled
    assert new.result(timeout=30).coords.shape == (2000, 2)
    assert other_view.result(timeout=30) and other_session.result(timeout=30)


def test_cancel_stops_a_long_tsne_within_seconds(numba_warm):
    # No wall-clock bound (the machine may be busy; bench_reducers times it): the job stops
    # where it was, far from the end of its 5,000 iterations.
    job = project_async(blobs(3000, 10), "tsne", n_iter=5000, cache=False)
    while job.progress < 0.25 and not job.done:
        time.sleep(0.05)
    assert job.cancel()
    at_cancel = job.progress
    with pytest.raises(Cancelled):
        job.result(timeout=120)
    assert job.progress < at_cancel + 0.1
    assert job.status == "cancelled" and not job.cancel()


# -- cold start -------------------------------------------------------------------------------


def test_warm_up_runs_once_and_reports_seconds(numba_warm):
    future = ep.warm_up(background=False)
    assert future.done() and future.result() > 0
    assert ep.warm_up() is future


def test_configure_numba_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "given"))
    assert configure_numba_cache() == tmp_path / "given"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = configure_numba_cache()
    assert path == tmp_path / "xdg" / "embproj-panel" / "numba" and path.is_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(path)


def test_signature_compiles_of_the_package_are_cached_during_its_import(tmp_path, monkeypatch):
    # umap-learn's tau_rand and tau_rand_int name their signature, so numba compiles them
    # while umap is imported, without a disk cache: in every new process (issue 15).
    import numba

    from embproj_panel._umap_engine import cached_signature_compiles

    package = tmp_path / "sigpkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import numba\n"
        "@numba.njit('i8(i8)')\n"
        "def twice(x):\n    return 2 * x\n"
        "@numba.njit('i8(i8)', cache=False)\n"
        "def chosen(x):\n    return x\n"
        "@numba.njit\n"
        "def lazy(x):\n    return x\n"
        "def closure():\n"
        "    @numba.njit('i8(i8)')\n"
        "    def inner(x):\n        return x\n"
        "    return inner\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    original = numba.njit
    with cached_signature_compiles("sigpkg"):
        import sigpkg

        inner = sigpkg.closure()
        other = numba.njit("i8(i8)")(lambda x: x)  # not the package's
    assert numba.njit is original
    assert type(sigpkg.twice._cache).__name__ == "FunctionCache" and sigpkg.twice(4) == 8
    assert list(Path(sigpkg.twice._cache._cache_path).glob("*twice*.nbi"))  # on disk
    for untouched in (sigpkg.chosen, sigpkg.lazy, inner, other):
        assert type(untouched._cache).__name__ == "NullCache"
    monkeypatch.delitem(sys.modules, "sigpkg")


def test_umap_learn_compiles_nothing_without_a_disk_cache(numba_warm):
    # In a fresh process: every numba function umap-learn compiled while it was imported
    # (and those UMAP calls) has a disk cache, so the next process loads it.
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "from embproj_panel._umap_engine import cache_umap_functions; cache_umap_functions(); "
        "import gc; from numba.core.registry import CPUDispatcher; "
        "print(sorted(d.py_func.__qualname__ for d in gc.get_objects() "
        "if isinstance(d, CPUDispatcher) and d.overloads "
        "and type(d._cache).__name__ == 'NullCache' "
        "and d.py_func.__module__.split('.')[0] in ('umap', 'pynndescent')))"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_import_compiles_nothing():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "import embproj_panel, embproj_panel.compute, embproj_panel.reducers; "
        "print(sorted(m for m in ('numba', 'umap', 'openTSNE', 'pynndescent', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_every_job_hands_its_freed_memory_back(monkeypatch):
    # A finished job (done or failed) trims the C heap on the worker thread: at a million
    # rows the freed temporaries otherwise stayed in the server's RSS (issue 15).
    from embproj_panel import _runtime, compute

    trimmed = threading.Semaphore(0)
    monkeypatch.setattr(compute, "release_free_memory", trimmed.release)
    project_async(blobs(50), "pca", cache=False).result(timeout=30)
    assert trimmed.acquire(timeout=10)
    job = project_async(pd.DataFrame({"a": ["x", "y"]}), "pca", columns="a")
    with pytest.raises(ValueError):
        job.result(timeout=30)
    assert trimmed.acquire(timeout=10)
    monkeypatch.undo()
    _runtime.release_free_memory()
    import platform

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert _runtime._MALLOC_TRIM[0] is not None  # found glibc's malloc_trim
