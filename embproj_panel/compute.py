"""Run projections: ``project`` (blocking), ``project_async`` (a cancellable background job),
a content-addressed cache, and the numba warm-up that hides UMAP's cold start.

The cache key is the SHA-256 of the *whole* feature matrix (its bytes, shape and dtype),
the method, every hyperparameter (defaults filled in) and the versions of the code that
computed it. Panel's ``pn.cache`` hashes only a sample of a large array, so two different
matrices of one shape could share an entry; here they cannot. Entries live in a bounded
in-memory LRU (shared by all sessions of the process: a layout depends only on the data
and the parameters, so every viewer gets the same one) and on disk under
``$EMBPROJ_CACHE_DIR`` or ``embproj_panel.store.default_root() / ".cache" / "projections"``,
written atomically, so reopening a logged table shows its layout at once. A request with
``random_state=None`` asks for a fresh layout and is never served from the cache.

Jobs run on a small thread pool (the heavy work, in numba, BLAS and openTSNE's C++ code,
releases the GIL; the server stays responsive). A job started with a ``key`` supersedes the
unfinished job with the same key in the same *scope*: by default the current Panel session
(so two users' views never cancel each other), else one process-wide scope. Both go through
one :class:`JobSlot` per view, the only code that supersedes jobs; a
:class:`~embproj_panel.state.ProjectorState` owns its slot.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import threading
import time
import weakref
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embproj_panel._runtime import release_free_memory
from embproj_panel.dataset import Dataset
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.features import Features, prepare_features
from embproj_panel.reducers import (
    Cancelled,
    configure_numba_cache,
    get_reducer,
)

__all__ = [
    "Cancelled",
    "JobSlot",
    "PROGRESS_INTERVAL",
    "Projection",
    "ProjectionCache",
    "ProjectionJob",
    "configure_numba_cache",
    "default_cache_dir",
    "lower_thread_priority",
    "project",
    "project_async",
    "projection_cache",
    "reset_jobs",
    "warm_up",
]

# Bump when a change in this package changes the coordinates computed for the same input.
_ENGINE_VERSION = 2


@dataclass(frozen=True)
class Projection:
    """The 2-D layout of a table's rows and how it was made.

    Attributes
    ----------
    coords
        ``(n, 2)`` float32: row ``i`` of ``coords`` is input row ``rows[i]``.
    rows
        int64 positions of the projected rows in the input (ascending).
    excluded
        ``(row_position, reason)`` for every input row left out.
    method
        The method that produced the layout (``"pca"`` when a tiny input fell back to it).
    params
        The effective parameters (defaults filled in, data-dependent values clamped, the
        seed drawn if ``random_state=None``): passing them back reproduces the layout.
    warnings
        Everything the user should know: rows left out, columns dropped, values coerced,
        parameters lowered, sampling, fallbacks.
    elapsed
        Seconds this call took (a cache hit is fast).
    explained_variance
        PCA only: explained-variance ratios of components 1..10 (those that exist).
    columns
        The feature names that were projected (vector columns expanded as ``name[i]``).
    cached
        True when the coordinates came from the cache.
    key
        The cache key (hex SHA-256) of this request.
    """

    coords: np.ndarray
    rows: np.ndarray
    excluded: list[tuple[int, str]]
    method: str
    params: dict[str, Any]
    warnings: list[str]
    elapsed: float
    explained_variance: tuple[float, ...] | None = None
    columns: list[str] = field(default_factory=list)
    cached: bool = False
    key: str = ""


# -- the cache --------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where projections persist: ``$EMBPROJ_CACHE_DIR``, else beside the run store.

    Returns
    -------
    pathlib.Path
        ``$EMBPROJ_CACHE_DIR`` if set, else ``default_root() / ".cache" / "projections"``.
    """
    configured = os.environ.get("EMBPROJ_CACHE_DIR")
    if configured:
        return Path(configured).expanduser().absolute()
    from embproj_panel.store import default_root

    return default_root() / ".cache" / "projections"


@dataclass
class _Entry:
    coords: np.ndarray
    meta: dict[str, Any]


class ProjectionCache:
    """Projections by key: a bounded in-memory LRU in front of an on-disk store.

    Parameters
    ----------
    max_bytes
        Memory budget for coordinates (default 256 MB: 16 million points).
    max_entries
        At most this many entries in memory.
    max_disk_bytes
        Oldest files are removed when the directory grows beyond this (default 2 GB).
    directory
        Fixed directory; None resolves :func:`default_cache_dir` at every access (it follows
        ``EMBPROJ_DIR`` / ``EMBPROJ_CACHE_DIR``).

    Thread-safe. Disk writes go to a temporary file that is then renamed, so a reader never
    sees half a file; files are read with ``allow_pickle=False`` and checked before use.
    """

    def __init__(self, max_bytes: int = 256 * 2**20, max_entries: int = 128,
                 max_disk_bytes: int = 2 * 2**30, directory: str | os.PathLike | None = None
                 ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_disk_bytes = max_disk_bytes
        self._directory = Path(directory) if directory is not None else None
        self._memory: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        """The on-disk directory in use now."""
        return self._directory if self._directory is not None else default_cache_dir()

    def get(self, key: str, n_rows: int) -> _Entry | None:
        """The entry for ``key`` if it holds ``n_rows`` coordinates, else None."""
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                return entry
        entry = self._load(key, n_rows)
        if entry is not None:
            self._remember(key, entry)
        return entry

    def put(self, key: str, coords: np.ndarray, meta: dict[str, Any]) -> None:
        """Store an entry in memory and on disk (a failed disk write only loses the copy)."""
        coords = np.ascontiguousarray(coords, dtype=np.float32)
        coords.flags.writeable = False
        entry = _Entry(coords, meta)
        self._remember(key, entry)
        try:
            self._save(key, entry)
        except OSError:
            pass  # read-only or full disk: the memory copy still serves this process

    def clear(self, disk: bool = False) -> None:
        """Forget every entry in memory (and on disk when ``disk=True``)."""
        with self._lock:
            self._memory.clear()
            self._bytes = 0
        if disk and self.directory.is_dir():
            for path in self.directory.glob("*.npz"):
                path.unlink(missing_ok=True)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._memory:
                return True
        return (self.directory / f"{key}.npz").is_file()

    # -- internals ----------------------------------------------------------------------------
    def _remember(self, key: str, entry: _Entry) -> None:
        size = entry.coords.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._bytes -= old.coords.nbytes
            self._memory[key] = entry
            self._bytes += size
            while self._memory and (self._bytes > self.max_bytes
                                    or len(self._memory) > self.max_entries):
                _, dropped = self._memory.popitem(last=False)
                self._bytes -= dropped.coords.nbytes

    def _load(self, key: str, n_rows: int) -> _Entry | None:
        path = self.directory / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as archive:
                coords = archive["coords"]
                meta = json.loads(str(archive["meta"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # corrupt or foreign: recompute rather than trust it
            return None
        if (coords.dtype != np.float32 or coords.shape != (n_rows, 2)
                or not np.isfinite(coords).all() or not isinstance(meta, dict)):
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used: last to be pruned
        except OSError:
            pass
        coords.flags.writeable = False
        return _Entry(coords, meta)

    def _save(self, key: str, entry: _Entry) -> None:
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-", suffix=".npz",
                                             delete=False)
        try:
            with handle:
                np.savez(handle, coords=entry.coords, meta=np.array(json.dumps(entry.meta)))
            os.replace(handle.name, directory / f"{key}.npz")
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        self._prune(directory)

    def _prune(self, directory: Path) -> None:
        files = []
        torn_before = time.time() - _TORN_AGE
        for item in os.scandir(directory):
            if item.name.startswith(".tmp-"):
                # A temporary file this old belongs to no live writer: a process killed in
                # the middle of a write left it (never read, but it would fill the disk).
                with contextlib.suppress(OSError):
                    if item.stat().st_mtime < torn_before:
                        os.unlink(item.path)
                continue
            if item.name.endswith(".npz"):
                stat = item.stat()
                files.append((stat.st_mtime, stat.st_size, item.path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_disk_bytes:
                break
            Path(path).unlink(missing_ok=True)
            total -= size


# Seconds after which a cache temporary file is taken as torn (its writer died mid-write).
_TORN_AGE = 3600

_CACHE_LOCK = threading.Lock()
_CACHE: ProjectionCache | None = None


def projection_cache() -> ProjectionCache:
    """The process-wide cache used by :func:`project` (created on first use)."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = ProjectionCache()
        return _CACHE


# The third-party code each method runs (pynndescent is never called: neighbours come from
# scikit-learn's exact search or openTSNE's vendored Annoy; see _umap_engine.knn).
_METHOD_PACKAGES = {
    "pca": ("numpy", "scikit-learn"),  # covariance + eigh in numpy; sklearn's SVD when wide
    "umap": ("umap-learn", "openTSNE", "numba", "scikit-learn", "scipy", "numpy"),
    "tsne": ("openTSNE", "scikit-learn", "scipy", "numpy"),
}
# Our modules whose source decides the coordinates: any edit to them is a new key, so a
# changed engine never serves a layout computed by the old one.
_ENGINE_MODULES = ("reducers.py", "_umap_engine.py", "_tsne_engine.py", "_sample_index.py")


@functools.cache
def _versions(method: str) -> dict[str, str]:
    """Versions of everything that computes ``method``'s coordinates (cached per process)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("embproj-panel", *_METHOD_PACKAGES[method]):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    source = hashlib.sha256()
    for module in _ENGINE_MODULES:
        source.update((Path(__file__).parent / module).read_bytes())
    found["engine source"] = source.hexdigest()[:16]
    return found


def _cache_key(features: Features, method: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    header = {
        "engine": _ENGINE_VERSION,
        "method": method,
        "params": params,
        "shape": features.matrix.shape,
        "dtype": str(features.matrix.dtype),
        "versions": _versions(method),
    }
    if method == "tsne":
        # openTSNE's multithreaded gradients give (reproducibly) different results for
        # different thread counts.
        from embproj_panel._runtime import n_threads

        header["threads"] = n_threads()
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    # The whole matrix, not a sample; hashlib releases the GIL on large buffers.
    digest.update(memoryview(np.ascontiguousarray(features.matrix)).cast("B"))
    return digest.hexdigest()


# -- project ----------------------------------------------------------------------------------


def project(
    data: Any,
    method: str = "pca",
    columns: str | int | list[str | int] | None = None,
    cache: bool | ProjectionCache = True,
    *,
    rows: Any = None,
    **params: Any,
) -> Projection:
    """Project every row of ``data`` to two dimensions.

    Parameters
    ----------
    data
        A :class:`~embproj_panel.table.Table`, a pandas DataFrame or a 2-D array.
    method
        ``"pca"``, ``"umap"`` or ``"tsne"``.
    columns
        Column(s) to project; None uses the table's smart default (see
        :func:`~embproj_panel.features.prepare_features`).
    cache
        True uses the process-wide :func:`projection_cache`; False computes afresh; or a
        :class:`ProjectionCache` of your own.
    rows
        Project only these row positions of ``data`` (an isolated selection); the result's
        ``rows`` and ``excluded`` are positions in the whole of ``data``. The cache key is
        the digest of the subset's own matrix, so a subset has its own entry.
    **params
        The method's hyperparameters (see ``REDUCERS[method].param_specs()``).

    Returns
    -------
    Projection

    Raises
    ------
    ValueError
        Unknown method or parameter, a parameter out of bounds, nothing to project.
    """
    return _run(data, method, columns, cache, params, None, None, rows)


def _run(data, method, columns, cache, params, progress, cancel, rows=None) -> Projection:
    if isinstance(data, DatasetTable):  # the app's view of a Dataset: project the Dataset
        data = data.dataset
    if isinstance(data, Dataset):  # a lazy Parquet dataset: out of core, with Dask
        if rows is not None:
            raise ValueError("Projecting a subset of rows of an out-of-core dataset is not "
                             "supported; project a table of those rows instead.")
        from embproj_panel._dask_engine import project as project_dataset

        return Projection(**project_dataset(data, method, columns, _resolve_cache(cache), params,
                                            progress, cancel, _versions(method)))
    start = time.perf_counter()
    reducer = get_reducer(method, **params)  # unknown method/parameter: fail before work
    requested = reducer.validated_params()  # out of bounds: fail before reading the data
    report = progress or (lambda fraction: None)
    features = prepare_features(data, columns, rows=rows)
    if cancel is not None and cancel():
        raise Cancelled("Cancelled.")
    store = _resolve_cache(cache)
    key = ""
    if store is not None and requested.get("random_state", 0) is not None:
        key = _cache_key(features, method, requested)
        entry = store.get(key, len(features.rows))
        if entry is not None:
            report(1.0)
            return _projection(features, entry.coords, entry.meta, start, cached=True, key=key)

    coords = reducer.fit_transform(features.matrix, progress=report, cancel=cancel)
    meta = {
        "method": reducer.method_,
        "params": reducer.effective_params_,
        "warnings": reducer.warnings_,
        "explained_variance": reducer.explained_variance_,
        "fit_seconds": time.perf_counter() - start,
    }
    meta = json.loads(json.dumps(meta, default=_jsonable))  # what the disk copy will hold
    if key:
        store.put(key, coords, meta)
    coords.flags.writeable = False
    return _projection(features, coords, meta, start, cached=False, key=key)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    return str(value)


def _resolve_cache(cache: bool | ProjectionCache) -> ProjectionCache | None:
    if isinstance(cache, ProjectionCache):
        return cache
    if cache is True:
        return projection_cache()
    if cache is False or cache is None:
        return None
    raise TypeError(f"cache must be True, False or a ProjectionCache; got {cache!r}")


def _projection(features: Features, coords: np.ndarray, meta: dict[str, Any], start: float,
                cached: bool, key: str) -> Projection:
    ratios = meta.get("explained_variance")
    return Projection(
        coords=coords,
        rows=features.rows,
        excluded=list(features.excluded),
        method=meta["method"],
        params=dict(meta["params"]),
        warnings=[*features.warnings, *meta["warnings"]],
        elapsed=time.perf_counter() - start,
        explained_variance=tuple(ratios) if ratios is not None else None,
        columns=list(features.columns),
        cached=cached,
        key=key,
    )


# -- background jobs --------------------------------------------------------------------------


class ProjectionJob:
    """A projection (or a view's other work, see :meth:`JobSlot.submit_work`) running in the
    background.

    Attributes are safe to read from any thread: ``progress`` (0..1), ``status``
    (``"queued"``, ``"running"``, ``"done"``, ``"cancelled"``, ``"failed"``), ``done``,
    ``error`` (a readable message or None). ``result()`` waits and returns the
    :class:`Projection` or raises the job's error (:class:`Cancelled` when cancelled).
    Done-callbacks run in the worker thread; in a Panel app, hand the result to the session
    with ``pn.state.execute`` or a document callback.
    """

    def __init__(self, method: str, key: Hashable | None = None) -> None:
        self.method = method
        self.key = key
        self._progress = 0.0
        self._status = "queued"
        self._result: Projection | None = None
        self._exception: BaseException | None = None
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[ProjectionJob], None]] = []
        self._future: Future | None = None
        self._cancel_reason = "Cancelled."

    def __repr__(self) -> str:
        return f"<ProjectionJob {self.method} {self._status} {self._progress:.0%}>"

    @property
    def progress(self) -> float:
        """Fraction done, 0..1 (1 when finished successfully)."""
        return self._progress

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``done``, ``cancelled`` or ``failed``."""
        return self._status

    @property
    def done(self) -> bool:
        """True once the job has finished, whatever the outcome."""
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        """True when the job ended because it was cancelled (or superseded)."""
        return self._status == "cancelled"

    @property
    def error(self) -> str | None:
        """A readable message when the job failed or was cancelled, else None."""
        return None if self._exception is None else str(self._exception)

    def exception(self) -> BaseException | None:
        """The exception the job ended with, or None."""
        return self._exception

    def cancel(self, reason: str = "Cancelled.") -> bool:
        """Ask the job to stop; it ends within moments (see the reducers' granularity).

        Returns
        -------
        bool
            False if the job had already finished.
        """
        if self.done:
            return False
        self._cancel_reason = reason
        self._cancel.set()
        if self._future is not None and self._future.cancel():
            # Never started: finish it here, as the worker will not.
            self._finish(None, Cancelled(reason))
        return True

    def result(self, timeout: float | None = None) -> Projection:
        """Wait for the job and return its :class:`Projection` (or raise its error).

        Raises
        ------
        TimeoutError
            When ``timeout`` seconds pass first.
        Cancelled
            When the job was cancelled or superseded.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"The {self.method} projection is still running.")
        if self._exception is not None:
            raise self._exception
        return self._result

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished, whatever the outcome; False if ``timeout``
        seconds passed first."""
        return self._finished.wait(timeout)

    def add_done_callback(self, fn: Callable[[ProjectionJob], None]) -> None:
        """Call ``fn(job)`` when the job finishes (at once if it already has)."""
        with self._lock:
            if not self.done:
                self._callbacks.append(fn)
                return
        fn(self)

    # -- worker side --------------------------------------------------------------------------
    def _set_progress(self, fraction: float) -> None:
        self._progress = max(self._progress, min(1.0, float(fraction)))

    def _is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _run(self, data, columns, cache, params, rows=None) -> None:
        self._run_work(lambda progress, cancel: _run(data, self.method, columns, cache, params,
                                                     progress, cancel, rows))

    def _run_work(self, work: Callable[[Callable[[float], None], Callable[[], bool]], Any]
                  ) -> None:
        if self._cancel.is_set():
            self._finish(None, Cancelled(self._cancel_reason))
            return
        self._status = "running"
        try:
            result = work(self._set_progress, self._is_cancelled)
        except Cancelled:
            self._finish(None, Cancelled(self._cancel_reason))
        except Exception as err:  # the job's outcome, re-raised by result()
            self._finish(None, err)
        else:
            self._finish(result, None)
        finally:
            # The job's temporaries are freed by now: give their pages back (see
            # release_free_memory), off the server's thread.
            release_free_memory()

    def _finish(self, result: Projection | None, error: BaseException | None) -> None:
        with self._lock:
            if self.done:
                return
            self._result, self._exception = result, error
            if error is None:
                self._progress = 1.0
                self._status = "done"
            else:
                self._status = "cancelled" if isinstance(error, Cancelled) else "failed"
            self._finished.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # a broken callback must not take the worker down
                import logging

                logging.getLogger(__name__).exception("ProjectionJob done-callback failed")


_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


#: How often (seconds) a running job's progress is handed to its view at most.
PROGRESS_INTERVAL = 0.25

#: How much lower (``nice`` steps) projection threads run than the server's own thread.
PROJECTION_NICENESS = 10


def lower_thread_priority(steps: int = PROJECTION_NICENESS) -> bool:
    """Run the calling thread (and the threads it starts later) ``steps`` nice levels lower.

    A UMAP keeps both cores busy for a minute; at the same priority the server's one event
    loop thread, which answers every session's clicks, waits its turn behind numba's and
    BLAS's workers, and a colour change took seconds (issue 16). Linux schedules threads
    separately, so the projection threads alone are lowered: the server gets a core the
    moment it has work, the projection runs at full speed the rest of the time. Threads
    inherit the niceness of the thread that starts them, so numba's parallel workers, started
    by the first projection (or the warm-up), run lower too. Elsewhere it does nothing (a
    thread id is not a process id there).

    Returns
    -------
    bool
        Whether the priority was lowered.
    """
    import sys

    if not sys.platform.startswith("linux") or steps <= 0:
        return False
    try:
        # Relative to the process (its main thread), not to this thread: a thread started by
        # an already lowered one inherits its niceness, and must not sink further.
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + steps)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), target)
    except OSError:
        return False
    return True


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # Two workers: a quick PCA need not wait behind a long t-SNE; more would only
            # make heavy jobs (each already multi-threaded) compete for the same cores.
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="embproj-project",
                                       initializer=lower_thread_priority)
        return _POOL


class JobSlot:
    """The one place stale projections are superseded: the latest job of one view.

    :meth:`submit` cancels the slot's unfinished job and starts the new one; :meth:`is_current`
    tells a finished job's owner whether its result is still wanted (a job can finish in the
    instant after a newer one was asked for, too late to be cancelled). A
    :class:`~embproj_panel.state.ProjectorState` owns one slot;
    :func:`project_async` keeps one per ``(scope, key)``. Thread-safe.
    """

    def __init__(self, key: Hashable | None = None) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._job: ProjectionJob | None = None

    @property
    def job(self) -> ProjectionJob | None:
        """The latest job started here (None before the first or after :meth:`cancel`)."""
        return self._job

    def submit(self, data: Any, method: str = "pca", columns: Any = None, *,
               cache: bool | ProjectionCache = True, rows: Any = None, **params: Any
               ) -> ProjectionJob:
        """Cancel the unfinished job, then start ``project(data, method, columns, ...)``.

        The previous job is cancelled even when the new request is refused (an unknown
        method or parameter raises here): its result would show settings the user left.
        """
        self.cancel("Superseded by a newer request for the same view.")
        job = project_async(data, method, columns, cache=cache, rows=rows, **params)
        if self.key is not None:
            job.key = self.key
        with self._lock:
            previous, self._job = self._job, job
        if previous is not None:  # another thread submitted meanwhile: the last one wins
            previous.cancel("Superseded by a newer request for the same view.")
        return job

    def submit_work(self, work: Callable[[Callable[[float], None], Callable[[], bool]], Any],
                    label: str) -> ProjectionJob:
        """Cancel the unfinished job, then run ``work(progress, cancel)`` on the job pool.

        For a view's other background work that a newer request makes stale (faithfulness
        of a layout: a new layout supersedes it). ``work`` reports ``progress(fraction)``,
        polls ``cancel()`` and raises :class:`Cancelled` when it returns True; its return
        value is the job's ``result()``. ``label`` names the job (its ``method``).
        """
        self.cancel("Superseded by a newer request for the same view.")
        job = ProjectionJob(label, self.key)
        job._future = _pool().submit(job._run_work, work)
        with self._lock:
            previous, self._job = self._job, job
        if previous is not None:  # another thread submitted meanwhile: the last one wins
            previous.cancel("Superseded by a newer request for the same view.")
        return job

    def is_current(self, job: ProjectionJob) -> bool:
        """Whether ``job`` is the latest one started here (its result is wanted)."""
        return job is self._job

    def forward_progress(self, job: ProjectionJob,
                         dispatch: Callable[[Callable[[], None]], None],
                         apply: Callable[[float], None], *, name: str = "embproj-progress",
                         interval: float = PROGRESS_INTERVAL) -> threading.Thread | None:
        """Hand ``job``'s progress to ``apply(fraction)`` through ``dispatch`` while it runs.

        A small poller thread rather than a callback from the work: it caps the update rate
        at one per ``interval`` seconds whatever the work's granularity, sends a value only
        when it changed, and stops when the job ends or stops being this slot's current job
        (superseded, cancelled, the session closed). ``apply`` runs wherever ``dispatch``
        runs it (the session's thread), and only while ``job`` is still current there.

        Returns
        -------
        threading.Thread or None
            The poller, or None when the job had already finished.
        """
        if job.done:
            return None

        def apply_if_current(value: float) -> None:
            if self.is_current(job):
                apply(value)

        def poll() -> None:
            last = -1.0
            while not job.done and self.is_current(job):
                value = min(max(float(job.progress or 0.0), 0.0), 1.0)
                if value != last:
                    last = value
                    dispatch(functools.partial(apply_if_current, value))
                time.sleep(interval)

        thread = threading.Thread(target=poll, name=name, daemon=True)
        thread.start()
        return thread

    def cancel(self, reason: str = "Cancelled.") -> None:
        """Cancel the unfinished job (if any); nothing is current afterwards."""
        with self._lock:
            job, self._job = self._job, None
        if job is not None and not job.done:
            job.cancel(reason)


# scope -> {key: its slot}; weak on the scope so a closed session's jobs are forgotten.
_SLOTS: weakref.WeakKeyDictionary[Any, dict[Hashable, JobSlot]] = weakref.WeakKeyDictionary()


class _ProcessScope:
    """The supersession scope used outside a Panel session."""


_PROCESS_SCOPE = _ProcessScope()


def _current_scope() -> Any:
    import sys

    panel = sys.modules.get("panel")
    if panel is not None:
        document = panel.state.curdoc
        if document is not None:
            return document
    return _PROCESS_SCOPE


def reset_jobs() -> None:
    """Cancel every keyed job and forget the slots (tests; a server shutting down)."""
    with _POOL_LOCK:
        slots = [slot for keys in _SLOTS.values() for slot in keys.values()]
        _SLOTS.clear()
    for slot in slots:
        slot.cancel()


def project_async(
    data: Any,
    method: str = "pca",
    columns: str | int | list[str | int] | None = None,
    *,
    key: Hashable | None = None,
    scope: Any = None,
    cache: bool | ProjectionCache = True,
    rows: Any = None,
    **params: Any,
) -> ProjectionJob:
    """Start :func:`project` in the background and return its :class:`ProjectionJob`.

    Parameters
    ----------
    data, method, columns, cache, rows, **params
        As for :func:`project`. Unknown methods and parameter names fail here, at once;
        everything else (bounds, empty data) is reported by the job.
    key
        Names the view this projection is for (e.g. ``"main"``). A new job with the same
        key in the same scope cancels the previous one if it is still running (through the
        scope's :class:`JobSlot` for that key).
    scope
        Where keys are unique: by default the Panel document of the calling code, or one
        process-wide scope outside a session. Pass any weak-referenceable object to choose
        (code that owns its views, such as :class:`~embproj_panel.state.ProjectorState`,
        holds a :class:`JobSlot` instead).

    Returns
    -------
    ProjectionJob
    """
    if key is None:
        get_reducer(method, **params)  # unknown method or parameter: a synchronous error
        job = ProjectionJob(method)
        job._future = _pool().submit(job._run, data, columns, cache, params, rows)
        return job
    owner = scope if scope is not None else _current_scope()
    with _POOL_LOCK:
        slot = _SLOTS.setdefault(owner, {}).setdefault(key, JobSlot(key))
    return slot.submit(data, method, columns, cache=cache, rows=rows, **params)


# -- numba cold start -------------------------------------------------------------------------

_WARM_LOCK = threading.Lock()
_WARM: Future | None = None


def warm_up(background: bool = True) -> Future:
    """Compile (or load from numba's disk cache) the UMAP code paths on a tiny input.

    A server calls this at start-up so the first UMAP a user asks for does not wait for
    numba. Only the first call does the work; later calls return the same future.

    Parameters
    ----------
    background
        Run in a daemon thread (default) or before returning.

    Returns
    -------
    concurrent.futures.Future
        Resolves to the seconds the warm-up took (or its exception).
    """
    global _WARM
    with _WARM_LOCK:
        if _WARM is not None:
            future = _WARM
            start = False
        else:
            future = _WARM = Future()
            start = True
    if start:
        # Always in a thread of its own, even when waited for: it lowers its own priority
        # (numba's workers, started there, inherit it), which must never be the caller's.
        threading.Thread(target=_warm, args=(future,), name="embproj-warm-up",
                         daemon=True).start()
    if not background:
        future.result()
    return future


def _warm(future: Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    began = time.perf_counter()
    lower_thread_priority()  # numba's workers start here: they inherit the lower priority
    try:
        from embproj_panel._sample_index import SampleIndex
        from embproj_panel._umap_engine import knn
        from embproj_panel.reducers import TSNE, UMAP

        configure_numba_cache()
        tiny = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        # Imports umap-learn, loads (or compiles) the fuzzy-set functions and the SGD
        # kernel, runs the exact-neighbour path, the graph and the spectral start.
        UMAP(n_neighbors=5, n_epochs=10).fit_transform(tiny)
        knn(tiny, 5, "euclidean", 0, exact=False)  # the Annoy path (larger inputs)
        index = SampleIndex(tiny, "euclidean", 0)  # placement beside a sample fit
        list(index.search(tiny, np.arange(len(tiny)), 5))
        TSNE(n_iter=250).fit_transform(tiny)  # imports openTSNE
    except BaseException as err:  # reported through the future
        future.set_exception(err)
    else:
        future.set_result(time.perf_counter() - began)
