"""Project a lazy :class:`~embproj_panel.dataset.Dataset` out of core, with Dask.

Every step is a Dask task over one *piece* (whole row groups of one file); tasks read their
rows themselves, so the data never pass through the client and only one piece per worker
thread is in memory at a time.

PCA is exact (no sketch, no iteration): one pass sums, per row group, the row count, the mean
and the centred Gram matrix in float64 (``reducers.scatter_sums``, the in-memory PCA's own
sums: float64 BLAS products, whose sums do not depend on the thread count); the row groups
are combined in file order with Chan's parallel formula (``reducers.combine_sums``: no
cancellation however far the data sit from the origin, and the same sums whatever the
partitioning), the covariance is diagonalised as in memory, and a second pass places every
row. Local tasks run BLAS on one thread each (Dask's threads are the parallelism: two tasks
each asking OpenBLAS for every core made a 65,536-row product 20x slower on a busy machine). UMAP and
t-SNE are fitted in this process on a seeded random sample of ``sample_size`` rows (the same
parameter and the same draw as in memory; the pre-reduction to ``pca_dims`` is the exact PCA
of every row, from the same one-pass sums) and the other rows are placed piece
by piece on the workers with the fitted model's out-of-sample method. A dataset of at most
``sample_size`` rows (or ``full_fit=True``) is read whole and projected by the in-memory
reducer, so it gets exactly the coordinates ``ep.project`` gives the same table.

**A row's placement does not depend on the partitioning.** The other rows are placed as the
in-memory engine places them after a sample fit (``_umap_engine.place`` and
``_tsne_engine.place``): each row goes to the weighted mean of its approximate nearest fitted
rows, and for UMAP then moves a few epochs against the fixed fit. Rows never see each other
and each row's generator is seeded from its own start, so its layout depends only on the
row, the fit and the seed, whichever piece it is placed in.

The coordinates are written as Parquet (``row``, ``x``, ``y``) beside a JSON manifest, both
named by a key that digests the dataset's fingerprint (paths, sizes, mtimes, row groups),
the columns, the method, every parameter and the library versions: reopening is a read of
that file, and a changed file gives another key (the warning says which file changed). Every
task checks the file it reads against the fingerprint and the files are checked again
before anything is written, so a file that changes or vanishes mid-run fails the job and
nothing is cached.

What this module borrows from the in-memory engine (private names): ``_umap_engine.place``,
``UMAPModel`` and ``PLACE_EPOCHS``, ``_tsne_engine.place``, ``_sample_index.SampleIndex``,
``reducers._unique_rows``, ``_pick_components``, ``_unit_rows`` and ``Reducer._fit_sample``.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embproj_panel.dataset import (
    Dataset,
    Piece,
    feature_columns,
    feature_names,
    piece_matrix,
)

__all__ = ["SCHEDULER_ENV", "project", "resolve_scheduler"]

#: Environment variable naming the ``dask.distributed`` scheduler to use by default.
SCHEDULER_ENV = "EMBPROJ_DASK_SCHEDULER"

# Bump when a change here changes the coordinates computed for the same dataset.
_ENGINE_VERSION = 2

_LOCAL_SCHEDULERS = ("threads", "synchronous", "sync", "processes")


# -- schedulers -------------------------------------------------------------------------------

_CLIENTS: dict[str, Any] = {}  # connections by scheduler address (shared, like a pool)
_CLIENTS_LOCK = threading.Lock()


def resolve_scheduler(scheduler: Any = None) -> Any:
    """What Dask should run on: a local scheduler's name or a ``distributed.Client``.

    Parameters
    ----------
    scheduler
        None (``$EMBPROJ_DASK_SCHEDULER`` if set, else ``"threads"``: Dask's local threaded
        scheduler), ``"threads"``, ``"synchronous"``, ``"processes"``, a scheduler address
        such as ``"tcp://127.0.0.1:8786"`` (one client per address is kept open), or a
        ``distributed.Client``.

    Raises
    ------
    ValueError
        An unknown scheduler name.
    OSError
        No scheduler answers at the address.
    """
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or "threads"
    if isinstance(scheduler, str):
        if "://" in scheduler:
            return _client(scheduler)
        if scheduler in _LOCAL_SCHEDULERS:
            return "synchronous" if scheduler == "sync" else scheduler
        raise ValueError(
            f"Unknown Dask scheduler {scheduler!r}: use 'threads', 'synchronous', "
            f"'processes', a scheduler address such as 'tcp://host:8786', or a "
            f"distributed.Client."
        )
    if _is_client(scheduler):
        return scheduler
    raise TypeError(f"scheduler must be None, a name, an address or a distributed.Client; "
                    f"got {type(scheduler).__name__}.")


def _is_client(value: Any) -> bool:
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return False
    return isinstance(value, Client)


def _client(address: str) -> Any:
    from distributed import Client

    with _CLIENTS_LOCK:
        client = _CLIENTS.get(address)
        if client is not None and client.status == "running":
            return client
        try:
            client = Client(address, set_as_default=False, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise OSError(f"No Dask scheduler answered at {address}: {exc}") from exc
        _CLIENTS[address] = client
        return client


def _share(value: Any, scheduler: Any) -> Any:
    """One copy of a large input for every task (scattered once to a cluster)."""
    import dask

    if _is_client(scheduler):
        return scheduler.scatter(value, broadcast=True, hash=False)
    return dask.delayed(value, pure=False)


def _compute(tasks: list[Any], scheduler: Any, report: Callable[[float], None],
             cancel: Callable[[], bool] | None) -> list[Any]:
    """Run ``tasks``, reporting the fraction done and honouring ``cancel`` between tasks."""
    from embproj_panel.reducers import Cancelled

    if not tasks:
        return []
    if _is_client(scheduler):
        from distributed import as_completed

        futures = scheduler.compute(tasks)
        position = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        finished = 0
        try:
            for future in as_completed(futures, loop=scheduler.loop):
                if future.status == "error":
                    raise future.exception()
                results[position[future.key]] = future.result()
                finished += 1
                report(finished / len(futures))
                if cancel is not None and cancel():
                    raise Cancelled("Cancelled.")
        finally:
            if finished < len(futures):
                scheduler.cancel(futures)
        return results

    import dask
    from dask.callbacks import Callback

    keys = {task.key for task in tasks}
    done = [0]

    class _Watch(Callback):
        def _pretask(self, key, dsk, state):
            if cancel is not None and cancel():
                raise Cancelled("Cancelled.")

        def _posttask(self, key, result, dsk, state, worker_id):
            if key in keys:
                done[0] += 1
                report(done[0] / len(keys))

    with _Watch(), _one_blas_thread():
        return list(dask.compute(*tasks, scheduler=scheduler))


_BLAS_LOCK = threading.Lock()
_BLAS_HOLDERS: list[Any] = []  # [count, threadpoolctl limiter] while any local job runs


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread in this process while a local job runs (Dask threads in parallel).

    threadpoolctl's limit is process-wide: jobs that overlap share one limit, set by the
    first and restored by the last (nested limits restored out of order would leave the
    process on one thread). Other BLAS calls in the process meanwhile run on one thread,
    with the same results.
    """
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        if not _BLAS_HOLDERS:
            _BLAS_HOLDERS.extend([0, threadpool_limits(limits=1, user_api="blas")])
        _BLAS_HOLDERS[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_HOLDERS[0] -= 1
            if _BLAS_HOLDERS[0] == 0:
                _BLAS_HOLDERS.pop().restore_original_limits()
                _BLAS_HOLDERS.clear()


# -- what every task does ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How a task turns a piece into the matrix it works on (shipped to every task)."""

    columns: tuple[str, ...]
    dims: dict[str, int | None]
    unit: str | None = None  # "unit" or "centred": rows scaled to unit length (cosine)
    weights: np.ndarray | None = None  # (d, k) float32: project on principal components
    offset: np.ndarray | None = None  # (k,) float64, subtracted after the projection

    def matrix(self, piece: Piece) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        X, rows, excluded = piece_matrix(piece, list(self.columns), self.dims)
        if self.unit is not None:
            from embproj_panel.reducers import _unit_rows

            X = _unit_rows(X, center=self.unit == "centred")
        if self.weights is not None:
            X = _project_rows(X, self.weights, self.offset)
        return X, rows, excluded


def _project_rows(X: np.ndarray, weights: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``X @ weights - offset`` row by row, each row's result the same in any batch.

    A BLAS product rounds a row differently depending on the batch's shape and the row's
    place in it (differences of 1e-5 at 64 columns), which would move rows when the
    partitioning changes; this kernel accumulates each row in float64 in one fixed order.
    """
    out = np.empty((X.shape[0], weights.shape[1]), dtype=np.float32)
    if len(X):
        _row_kernel()(np.ascontiguousarray(X, dtype=np.float32),
                      np.ascontiguousarray(weights, dtype=np.float64),
                      np.ascontiguousarray(offset, dtype=np.float64), out)
    return out


@functools.cache
def _row_kernel():
    from embproj_panel.reducers import configure_numba_cache

    configure_numba_cache()
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def project(X, weights, offset, out):
        k = weights.shape[1]
        for i in numba.prange(X.shape[0]):
            acc = np.zeros(k)
            for t in range(X.shape[1]):
                value = np.float64(X[i, t])
                for j in range(k):
                    acc[j] += value * weights[t, j]
            for j in range(k):
                out[i, j] = acc[j] - offset[j]

    return project


@dataclass
class _Stats:
    """One piece's share of the one-pass sums (per row group), and its sample rows."""

    groups: list[tuple[int, np.ndarray, np.ndarray]]  # (n, mean, centred scatter) per group
    n: int
    sample_rows: np.ndarray
    sample: np.ndarray
    excluded: list[tuple[int, str]]


def _stats_task(piece: Piece, plan: _Plan, sample_rows: np.ndarray, sums: bool) -> _Stats:
    from embproj_panel.reducers import scatter_sums

    X, rows, excluded = plan.matrix(piece)
    picked = np.isin(rows, sample_rows, assume_unique=True)
    groups = []
    if sums:
        # Sums per row group, not per piece: row groups are fixed by the files, so the
        # combined sums (and the components) do not depend on how pieces group them.
        bounds = piece.start + np.cumsum([0, *(piece.file.row_groups[g] for g in piece.row_groups)])
        cuts = np.searchsorted(rows, bounds)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            block = X[lo:hi]
            if not len(block):
                continue
            groups.append(scatter_sums(block))
    return _Stats(groups, len(X), rows[picked], np.ascontiguousarray(X[picked]), excluded)


def _place_task(piece: Piece, plan: _Plan, placer: Any, sample: tuple[np.ndarray, np.ndarray] | None
                ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    X, rows, excluded = plan.matrix(piece)
    if placer is None:  # PCA: the plan's weights already are the two chosen components
        return rows, X, excluded
    coords = np.empty((len(rows), 2), dtype=np.float32)
    fitted = np.zeros(len(rows), dtype=bool)
    if sample is not None:
        sample_rows, sample_coords = sample
        lo, hi = np.searchsorted(sample_rows, [piece.start, piece.start + piece.n_rows])
        where = np.searchsorted(rows, sample_rows[lo:hi])
        coords[where] = sample_coords[lo:hi]
        fitted[where] = True
    # One placement per row group: the batch a row is placed in is then fixed by the files,
    # not by how row groups were gathered into pieces (the approximate search's BLAS products
    # round a row slightly differently in another batch, and the SGD's per-row generator is
    # seeded from the row's start, so any change would move it).
    sizes = [piece.file.row_groups[g] for g in piece.row_groups]
    group_ends = piece.start + np.cumsum(sizes)
    group = np.searchsorted(group_ends, rows, side="right")
    for g in np.unique(group[~fitted]):
        todo = ~fitted & (group == g)
        coords[todo] = placer.place(X[todo])
    return rows, coords, excluded


class _Placer:
    """Places rows against a sample fit with the in-memory engine's own placement.

    Each row goes to the weighted mean of its approximate nearest fitted rows
    (:class:`~embproj_panel._sample_index.SampleIndex`), and for UMAP then moves for
    ``PLACE_EPOCHS`` epochs against the fixed fit (:func:`embproj_panel._umap_engine.place`,
    :func:`embproj_panel._tsne_engine.place`). Rows never see each other and each row's
    generator is seeded from its own start, so a row's place does not depend on the
    partitioning. Pickled to each worker once; the index over the fitted rows is rebuilt
    there (seeded, so it is the same everywhere) on first use.
    """

    def __init__(self, method: str, fit_X: np.ndarray, embedding: np.ndarray, seed: int,
                 metric: str, a: float = 0.0, b: float = 0.0, k: int = 0) -> None:
        self.method, self.fit_X, self.embedding = method, fit_X, embedding
        self.seed, self.metric, self.a, self.b, self.k = seed, metric, a, b, k
        self._index = None
        self._lock, self._placing = threading.Lock(), threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_index", "_lock", "_placing")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _index=None, _lock=threading.Lock(),
                             _placing=threading.Lock())

    def _sample_index(self):
        from embproj_panel._sample_index import SampleIndex

        with self._lock:
            if self._index is None:
                self._index = SampleIndex(self.fit_X, self.metric, self.seed)
            return self._index

    def place(self, X: np.ndarray) -> np.ndarray:
        from embproj_panel import _tsne_engine, _umap_engine

        index, rows = self._sample_index(), np.arange(len(X))
        # One placement at a time per process: the search limits BLAS to one thread
        # process-wide while it runs (threadpoolctl), and a concurrent task leaving that
        # limit would let another's products run multi-threaded, rounded differently. The
        # placement itself uses every core through its own thread pool.
        with self._placing:
            if self.method == "umap":
                model = _umap_engine.UMAPModel(self.embedding, self.a, self.b, self.k)
                return _umap_engine.place(model, index, X, rows, _umap_engine.PLACE_EPOCHS,
                                          self.seed, lambda fraction: None)
            return _tsne_engine.place(self.embedding, index, X, rows, lambda fraction: None)


# -- the fits ---------------------------------------------------------------------------------


def _combine(stats: list[_Stats]) -> tuple[int, np.ndarray, np.ndarray]:
    """The row groups' sums combined in row-group order (the same whatever the partitioning)."""
    from embproj_panel.reducers import combine_sums

    return combine_sums(g for s in stats for g in s.groups)


def _components(n: int, mean: np.ndarray, scatter: np.ndarray, components: Sequence[int],
                standardize: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Weights ``(d, len(components))`` float32, offset, and explained-variance ratios 1..10."""
    from embproj_panel.reducers import _pick_components, covariance_eigen

    axes = covariance_eigen(n, mean, scatter, standardize)
    return _pick_components(*axes, tuple(components), 10)


# -- project ----------------------------------------------------------------------------------


def project(dataset: Dataset, method: str, columns: str | Sequence[str] | None, cache: Any,
            params: dict[str, Any], progress: Callable[[float], None] | None = None,
            cancel: Callable[[], bool] | None = None,
            versions: dict[str, str] | None = None) -> dict[str, Any]:
    """Project every row of ``dataset`` (what ``ep.project(dataset, ...)`` calls).

    Parameters
    ----------
    dataset
        The lazy dataset.
    method, columns
        As :func:`embproj_panel.project`.
    cache
        The resolved :class:`~embproj_panel.compute.ProjectionCache` (the coordinates, as
        Parquet, and a manifest go in its ``directory / "datasets"``), or None to compute
        afresh and write nothing.
    params
        The method's hyperparameters, and optionally ``scheduler`` (overrides the
        dataset's).
    progress, cancel
        As for the in-memory engine: fractions rising to 1; polled between tasks.
    versions
        The libraries' versions, part of the cache key.

    Returns
    -------
    dict
        The fields of an :class:`embproj_panel.compute.Projection`: coordinates of every
        usable row (``rows``: their positions in the dataset).

    Raises
    ------
    ValueError
        Unknown method, parameter or column; bad vectors (the message names the file).
    DatasetChanged
        A file changed or vanished during the job (nothing was cached).
    Cancelled
        ``cancel()`` returned True.
    """
    from embproj_panel.reducers import Cancelled, get_reducer

    start = time.perf_counter()
    params = dict(params)
    override = params.pop("scheduler", None)
    scheduler = resolve_scheduler(dataset.scheduler if override is None else override)
    reducer = get_reducer(method, **params)
    requested = reducer.validated_params()
    chosen = feature_columns(dataset, columns)
    names = feature_names(dataset, chosen)
    report = progress or (lambda fraction: None)
    if cancel is not None and cancel():
        raise Cancelled("Cancelled.")
    directory = None if cache is None else cache.directory / "datasets"
    key = ""
    notes: list[str] = []
    if directory is not None and requested.get("random_state", 0) is not None:
        request = _request(chosen, method, requested, versions or {})
        key = _cache_key(dataset, request)
        hit = _read_cached(directory, key)
        if hit is not None:
            report(1.0)
            rows, coords, excluded, meta = hit
            return _result(rows, coords, excluded, meta, names, start, True, key)
        notes.extend(_stale(directory, dataset, request))

    dims = {name: (dataset.vector_dim(name) if dataset.column_types[name] == "vector" else None)
            for name in chosen}
    plan = _Plan(tuple(chosen), dims)
    if requested.get("random_state", 0) is None:
        requested["random_state"] = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    if method == "pca":
        rows, coords, excluded, meta = _project_pca(dataset, plan, requested, scheduler,
                                                    report, cancel)
    else:
        rows, coords, excluded, meta = _project_nonlinear(dataset, plan, reducer, requested,
                                                          scheduler, report, cancel)
    meta["warnings"] = [*notes, *_excluded_note(excluded, dataset.n_rows), *meta["warnings"]]
    meta["fit_seconds"] = time.perf_counter() - start
    meta = json.loads(json.dumps(meta, default=_plain))
    dataset.check()  # a file that changed after its task read it: fail, cache nothing
    if key:
        try:
            _write_cached(directory, key, dataset, chosen, method, request, rows, coords,
                          excluded, meta)
        except OSError:
            pass  # read-only or full disk: the result is still returned
    report(1.0)
    return _result(rows, coords, excluded, meta, names, start, False, key)


def _project_pca(dataset, plan, params, scheduler, report, cancel):
    import dask

    pieces = dataset.pieces()
    none = np.empty(0, dtype=np.int64)
    tasks = [dask.delayed(_stats_task)(piece, plan, none, True) for piece in pieces]
    stats = _compute(tasks, scheduler, lambda f: report(0.5 * f), cancel)
    n, mean, scatter = _nonempty(stats, dataset)
    wanted = (params["x_component"], params["y_component"])
    weights, offset, ratios = _components(n, mean, scatter, wanted, params["standardize"])
    warnings = []
    rank = min(n - 1, len(mean))
    for axis, component in zip("xy", wanted):
        if component > rank:
            warnings.append(f"Component {component} does not exist for {n} rows x "
                            f"{len(mean)} columns (at most {rank}): {axis} = 0.")
    placing = _Plan(plan.columns, plan.dims, None, weights, offset)
    tasks = [dask.delayed(_place_task)(piece, placing, None, None) for piece in pieces]
    parts = _compute(tasks, scheduler, lambda f: report(0.5 + 0.5 * f), cancel)
    rows, coords, excluded = _gather(parts)
    effective = dict(params, solver="covariance (out of core, float64 sums)")
    meta = {"method": "pca", "params": effective, "warnings": warnings,
            "explained_variance": ratios}
    return rows, coords, excluded, meta


def _project_nonlinear(dataset, plan, reducer, params, scheduler, report, cancel):
    import dask

    from embproj_panel.reducers import _unique_rows, get_reducer

    method, label = reducer.name, reducer.label
    pieces = dataset.pieces()
    n_total = dataset.n_rows
    reducer.warnings_ = []
    sample = reducer._fit_sample(
        n_total, params,
        "their approximate neighbours in the sample (as in memory), piece by piece on the Dask "
        "workers",
    )
    if sample is None:
        # Small enough to fit whole: read every row and run the in-memory reducer, which
        # gives exactly what ep.project gives the same table.
        everything = np.arange(n_total, dtype=np.int64)
        tasks = [dask.delayed(_stats_task)(p, plan, everything[p.start:p.start + p.n_rows], False)
                 for p in pieces]
        stats = _compute(tasks, scheduler, lambda f: report(0.3 * f), cancel)
        _nonempty(stats, dataset)
        X = np.concatenate([s.sample for s in stats])
        rows = np.concatenate([s.sample_rows for s in stats])
        excluded = [item for s in stats for item in s.excluded]
        fitter = get_reducer(method, **params)
        coords = fitter.fit_transform(X, progress=lambda f: report(0.3 + 0.7 * f), cancel=cancel)
        meta = {"method": fitter.method_, "params": fitter.effective_params_,
                "warnings": fitter.warnings_, "explained_variance": fitter.explained_variance_}
        return rows, coords, excluded, meta

    metric = params["metric"]
    d = sum(plan.dims[c] or 1 for c in plan.columns)
    unit = None
    if metric in ("cosine", "correlation") and (method == "umap" or (
            params["pca_dims"] is not None and d > params["pca_dims"])):
        # As in memory: unit rows (centred for correlation), then Euclidean distances.
        unit, metric = ("centred" if metric == "correlation" else "unit"), "euclidean"
    reduce = (params["pca_dims"] is not None and d > params["pca_dims"]
              and metric != "manhattan")
    prepared = _Plan(plan.columns, plan.dims, unit)
    tasks = [dask.delayed(_stats_task)(p, prepared, sample[np.searchsorted(sample, p.start):
                                                        np.searchsorted(sample, p.start + p.n_rows)],
                                       reduce)
             for p in pieces]
    stats = _compute(tasks, scheduler, lambda f: report(0.3 * f), cancel)
    n, mean, scatter = _nonempty(stats, dataset)
    sample_rows = np.concatenate([s.sample_rows for s in stats])
    sample_X = np.concatenate([s.sample for s in stats])
    warnings = list(reducer.warnings_)
    if len(sample_rows) < len(sample):
        warnings.append(f"{len(sample) - len(sample_rows):,} of the {len(sample):,} sampled rows "
                        "were left out (see the excluded rows); the fit used the others.")
    k = None
    placing = prepared
    if reduce:
        k = min(params["pca_dims"], n - 1, d)
        weights, offset, _ = _components(n, mean, scatter, tuple(range(1, k + 1)), False)
        placing = _Plan(plan.columns, plan.dims, unit, weights, offset)
        sample_X = np.ascontiguousarray(sample_X @ weights - offset, dtype=np.float32)
    first, inverse = _unique_rows(sample_X)
    fit_X = np.ascontiguousarray(sample_X[first])
    fit_params = dict(params, metric=metric, pca_dims=None, full_fit=True)
    fitter = get_reducer(method, **fit_params)
    fit_coords = fitter.fit_transform(fit_X, progress=lambda f: report(0.3 + 0.2 * f),
                                      cancel=cancel)
    effective = dict(fitter.effective_params_, metric=params["metric"], pca_dims=k,
                     full_fit=False, sample_size=params["sample_size"])
    if fitter.method_ != method:  # too few distinct rows: there is no model to place with
        raise ValueError(f"{label} cannot be fitted on the sample: it has only {len(fit_X)} "
                         "distinct rows. Use PCA, or a larger sample_size.")
    if method == "umap":
        from umap.umap_ import find_ab_params

        a, b = find_ab_params(params["spread"], params["min_dist"])
        placer = _Placer(method, fit_X, np.ascontiguousarray(fit_coords, dtype=np.float32),
                         params["random_state"], metric, float(a), float(b),
                         fitter.effective_params_["n_neighbors"])
    else:
        placer = _Placer(method, fit_X, np.ascontiguousarray(fit_coords, dtype=np.float32),
                         params["random_state"], metric)
    sample_coords = np.ascontiguousarray(fit_coords[inverse], dtype=np.float32)
    shared_placer = _share(placer, scheduler)
    shared_sample = _share((sample_rows, sample_coords), scheduler)
    tasks = [dask.delayed(_place_task)(p, placing, shared_placer, shared_sample) for p in pieces]
    parts = _compute(tasks, scheduler, lambda f: report(0.5 + 0.5 * f), cancel)
    rows, coords, excluded = _gather(parts)
    meta = {"method": method, "params": effective,
            "warnings": [*warnings, *fitter.warnings_],
            "explained_variance": None}
    return rows, coords, excluded, meta


def _nonempty(stats: list[_Stats], dataset: Dataset):
    n = sum(s.n for s in stats)
    if n == 0:
        raise ValueError(f"Nothing to project: none of the {dataset.n_rows:,} rows has usable "
                         "values (every row is empty, NaN or inf).")
    if not any(s.groups for s in stats):
        return n, None, None
    return _combine(stats)


def _gather(parts):
    rows = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=np.int64)
    coords = (np.concatenate([p[1] for p in parts]) if parts
              else np.empty((0, 2), dtype=np.float32))
    excluded = [item for p in parts for item in p[2]]
    return rows, np.ascontiguousarray(coords, dtype=np.float32), excluded


def _excluded_note(excluded: list[tuple[int, str]], n: int) -> list[str]:
    if not excluded:
        return []
    examples = ", ".join(f"row {row} ({why})" for row, why in excluded[:3])
    return [f"{len(excluded):,} of {n:,} rows were left out because their values are empty, "
            f"NaN or inf: {examples}{' ...' if len(excluded) > 3 else ''}."]


def _result(rows, coords, excluded, meta, names, start, cached, key) -> dict[str, Any]:
    coords.flags.writeable = False
    ratios = meta.get("explained_variance")
    return dict(
        coords=coords, rows=rows, excluded=list(excluded), method=meta["method"],
        params=dict(meta["params"]), warnings=list(meta["warnings"]),
        elapsed=time.perf_counter() - start,
        explained_variance=tuple(ratios) if ratios is not None else None,
        columns=list(names), cached=cached, key=key,
    )


# -- the on-disk cache ------------------------------------------------------------------------


def _request(columns: list[str], method: str, params: dict[str, Any],
             versions: dict[str, str]) -> dict[str, Any]:
    request = {"engine": _ENGINE_VERSION, "columns": columns, "method": method,
               "params": params, "versions": versions}
    if method == "tsne":  # openTSNE's fit differs (reproducibly) with the thread count
        from embproj_panel._runtime import n_threads

        request["threads"] = n_threads()
    return request


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays (``tolist``); anything else as text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _digest(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_key(dataset, request) -> str:
    return _digest({"dataset": dataset.fingerprint, "request": request})


def _source_key(dataset, request) -> str:
    """The same request on the same file names, whatever their contents."""
    return _digest({"files": [dataset._display(f.path) for f in dataset.files],
                    "request": request})


def _files_document(dataset: Dataset) -> list[dict[str, Any]]:
    return [{"path": dataset._display(f.path), "size": f.size, "mtime": f.mtime,
             "row_groups": list(f.row_groups)} for f in dataset.files]


def _read_cached(directory: Path, key: str):
    manifest_path = directory / f"{key}.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        table = pq.read_table(directory / f"{key}.parquet")
        excluded = []
        if manifest.get("n_excluded"):
            dropped = pq.read_table(directory / f"{key}.excluded.parquet")
            excluded = list(zip(dropped.column("row").to_pylist(),
                                dropped.column("reason").to_pylist()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None  # unreadable: computed again (and rewritten)
    if table.num_rows != manifest.get("n_kept") or len(excluded) != manifest.get("n_excluded"):
        return None
    rows = table.column("row").to_numpy().astype(np.int64)
    coords = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()])
    return rows, np.ascontiguousarray(coords, dtype=np.float32), excluded, manifest["meta"]


def _stale(directory: Path, dataset, request) -> list[str]:
    """Say which file changed when the same request on the same files was cached before."""
    source = _source_key(dataset, request)
    now = {item["path"]: item for item in _files_document(dataset)}
    if not directory.is_dir():
        return []
    for path in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.get("source_key") != source:
            continue
        changed = [item["path"] for item in manifest.get("files", [])
                   if now.get(item["path"]) != item]
        if changed:
            return [f"The cached projection of this dataset is out of date: "
                    f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} changed "
                    "since it was computed, so it was computed again."]
    return []


def _write_cached(directory, key, dataset, columns, method, request, rows, coords, excluded,
                  meta) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table({"row": pa.array(rows, pa.int64()), "x": pa.array(coords[:, 0]),
                      "y": pa.array(coords[:, 1])})
    _atomic(directory / f"{key}.parquet",
            lambda path: pq.write_table(table, path, row_group_size=1_048_576))
    if excluded:
        dropped = pa.table({"row": pa.array([r for r, _ in excluded], pa.int64()),
                            "reason": pa.array([w for _, w in excluded], pa.string())})
        _atomic(directory / f"{key}.excluded.parquet", lambda path: pq.write_table(dropped, path))
    manifest = {
        "format": "embproj-panel dataset projection", "key": key,
        "source_key": _source_key(dataset, request),
        "fingerprint": dataset.fingerprint, "files": _files_document(dataset),
        "columns": columns, "method": method, "request": request,
        "n_kept": int(len(rows)), "n_excluded": len(excluded), "meta": meta,
    }
    text = json.dumps(manifest, indent=1, default=_plain)
    _atomic(directory / f"{key}.json", lambda path: path.write_text(text, encoding="utf-8"))


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", suffix=path.suffix,
                                         delete=False)
    handle.close()
    temporary = Path(handle.name)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
