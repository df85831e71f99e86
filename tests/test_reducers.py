"""Reducers: parameters and bounds, clamping, degenerate inputs, determinism, progress,
cancellation, the sample-fit path, and layouts that keep neighbours together."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from embproj_panel.reducers import (
    MIN_ROWS_NONLINEAR,
    PCA,
    REDUCERS,
    TSNE,
    UMAP,
    Cancelled,
    get_reducer,
)

# umap-learn warns on import when TensorFlow is absent (ParametricUMAP); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

ROOT = Path(__file__).resolve().parents[1]


def blobs(n: int = 300, d: int = 10, centres: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % centres
    return (rng.normal(size=(centres, d))[labels] * 8 + rng.normal(size=(n, d))).astype(np.float32)


def trust(X: np.ndarray, Y: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return trustworthiness(X, Y, n_neighbors=10)


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", REDUCERS.values())
def test_specs_match_init(cls):
    signature = inspect.signature(cls.__init__)
    specs = cls.param_specs()
    assert list(specs) == [p for p in signature.parameters if p != "self"]
    for name, spec in specs.items():
        assert signature.parameters[name].default == spec.default
        assert spec.doc
        spec.validate(spec.default, cls.label)  # every default is valid


@pytest.mark.parametrize("cls", REDUCERS.values())
def test_bounds_are_inclusive_and_enforced(cls):
    for spec in cls.param_specs().values():
        if spec.bounds is None:
            continue
        low, high = spec.bounds
        assert spec.validate(low, cls.label) == low
        assert spec.validate(high, cls.label) == high
        below = low - (1 if spec.type == "int" else 0.01)
        with pytest.raises(ValueError, match=f"{spec.name} must be between"):
            spec.validate(below, cls.label)
        with pytest.raises(ValueError, match=f"{spec.name} must be between"):
            spec.validate(high + 1, cls.label)


@pytest.mark.parametrize(
    ("reducer", "message"),
    [
        (UMAP(n_neighbors=1), "n_neighbors must be between 2 and 200"),
        (UMAP(n_neighbors=15.5), "n_neighbors must be an integer"),
        (UMAP(min_dist=0.5, spread=0.2), "must not exceed spread"),
        (UMAP(metric="chebyshev"), "metric must be one of"),
        (UMAP(n_epochs="many"), r"n_epochs must be an integer \(or .auto.\)"),
        (TSNE(perplexity=101), "perplexity must be between 2 and 100"),
        (TSNE(learning_rate=5), "learning_rate must be between 10 and 1000"),
        (TSNE(n_iter=100), "n_iter must be between 250 and 5000"),
        (TSNE(random_state=-1), "random_state must be an integer >= 0"),
        (PCA(x_component=11), "x_component must be between 1 and 10"),
        (PCA(standardize="yes"), "standardize must be True or False"),
    ],
)
def test_invalid_parameters_fail_at_fit_time_with_the_bounds(reducer, message):
    # scikit-learn's rule: __init__ stores, fit validates.
    with pytest.raises(ValueError, match=message):
        reducer.fit_transform(blobs(20, 3))


def test_registry_and_unknown_names():
    assert set(REDUCERS) == {"pca", "umap", "tsne"}
    assert isinstance(get_reducer("umap", n_neighbors=5), UMAP)
    with pytest.raises(ValueError, match="Unknown projection method 'lda'"):
        get_reducer("lda")
    with pytest.raises(ValueError, match="has no parameter 'perplexity'"):
        get_reducer("umap", perplexity=5)


def test_random_state_is_stored_as_given_and_the_drawn_seed_reported():
    reducer = PCA(random_state=None)
    reducer.fit_transform(blobs(20, 3))
    assert reducer.random_state is None
    assert isinstance(reducer.effective_params_["random_state"], int)
    assert "random_state=None" in repr(reducer)


# -- data-dependent clamping and degenerate inputs --------------------------------------------


def test_perplexity_is_lowered_for_few_rows():
    reducer = TSNE()
    coords = reducer.fit_transform(blobs(10, 3))
    assert coords.shape == (10, 2) and np.isfinite(coords).all()
    assert reducer.effective_params_["perplexity"] == 3
    assert "perplexity 30 lowered to 3 for 10 rows." in reducer.warnings_


def test_n_neighbors_is_lowered_for_few_rows(numba_warm):
    reducer = UMAP(n_epochs=20)
    coords = reducer.fit_transform(blobs(8, 3))
    assert coords.shape == (8, 2) and np.isfinite(coords).all()
    assert reducer.effective_params_["n_neighbors"] == 7
    assert "n_neighbors 15 lowered to 7 for 8 rows." in reducer.warnings_


@pytest.mark.parametrize("cls", REDUCERS.values())
def test_zero_rows_is_an_error(cls):
    with pytest.raises(ValueError, match="at least one row"):
        cls().fit_transform(np.empty((0, 3), dtype=np.float32))


@pytest.mark.parametrize("cls", REDUCERS.values())
def test_one_row_is_the_origin(cls):
    np.testing.assert_array_equal(cls().fit_transform(np.ones((1, 4))), [[0.0, 0.0]])


@pytest.mark.parametrize("n", [2, 3, MIN_ROWS_NONLINEAR - 1])
@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_few_rows_fall_back_to_pca_and_say_so(cls, n):
    X = blobs(n, 4)
    reducer = cls()
    coords = reducer.fit_transform(X)
    assert reducer.method_ == "pca"
    assert any("PCA was used instead" in w for w in reducer.warnings_)
    np.testing.assert_allclose(coords, PCA().fit_transform(X), atol=1e-5)


def test_pca_on_two_rows_has_y_zero():
    reducer = PCA()
    coords = reducer.fit_transform(np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]))
    assert np.all(coords[:, 1] == 0) and coords[0, 0] == -coords[1, 0] != 0
    assert any("Component 2 does not exist" in w for w in reducer.warnings_)


@pytest.mark.parametrize("cls", REDUCERS.values())
def test_one_column_gives_y_zero(cls):
    X = np.arange(12, dtype=np.float32).reshape(-1, 1)
    coords = cls().fit_transform(X)
    assert np.all(coords[:, 1] == 0)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(X[:, 0] - X.mean()), atol=1e-5)


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_identical_rows_and_no_columns_are_the_origin(cls):
    reducer = cls()
    np.testing.assert_array_equal(reducer.fit_transform(np.ones((6, 3))), np.zeros((6, 2)))
    assert any("identical" in w for w in reducer.warnings_)
    reducer = cls()
    np.testing.assert_array_equal(reducer.fit_transform(np.empty((6, 0))), np.zeros((6, 2)))
    assert any("same features" in w for w in reducer.warnings_)


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_exact_duplicates_share_a_position(cls, numba_warm):
    X = blobs(60, 5)
    X = np.vstack([X, X[:10]])  # rows 60..69 repeat rows 0..9
    reducer = cls(n_epochs=50) if cls is UMAP else cls(n_iter=250)
    coords = reducer.fit_transform(X)
    np.testing.assert_array_equal(coords[60:], coords[:10])
    assert any("10 of 70 rows duplicate" in w for w in reducer.warnings_)


def test_non_finite_input_is_refused():
    with pytest.raises(ValueError, match="NaN or inf"):
        PCA().fit_transform(np.array([[1.0, np.nan], [2.0, 3.0]]))


# -- PCA --------------------------------------------------------------------------------------


def test_pca_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.preprocessing import StandardScaler

    X = blobs(200, 12) * np.linspace(1, 5, 12, dtype=np.float32)
    reference = SkPCA(4).fit(X)
    reducer = PCA(x_component=3, y_component=1)
    coords = reducer.fit_transform(X)
    expected = reference.transform(X)[:, [2, 0]]
    np.testing.assert_allclose(np.abs(coords), np.abs(expected), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(reducer.explained_variance_[:4],
                               reference.explained_variance_ratio_, rtol=1e-4)
    scaled = PCA(standardize=True).fit_transform(X)
    expected = SkPCA(2).fit_transform(StandardScaler().fit_transform(X))
    np.testing.assert_allclose(np.abs(scaled), np.abs(expected), rtol=1e-3, atol=1e-3)


def test_pca_of_wide_input_uses_svd():
    X = blobs(60, 1200)
    reducer = PCA()
    coords = reducer.fit_transform(X)
    from sklearn.decomposition import PCA as SkPCA

    np.testing.assert_allclose(np.abs(coords), np.abs(SkPCA(2).fit_transform(X)),
                               rtol=1e-3, atol=1e-2)
    assert reducer.effective_params_["solver"] == "full"


def test_pca_is_unaffected_by_a_large_mean():
    X = blobs(100, 5)
    np.testing.assert_allclose(PCA().fit_transform(X + np.float32(1e4)), PCA().fit_transform(X),
                               atol=0.02)


# -- UMAP and t-SNE ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reducer",
    [
        UMAP(n_epochs=100),
        UMAP(n_epochs=100, metric="cosine"),
        UMAP(n_epochs=100, metric="correlation"),
        UMAP(n_epochs=100, metric="manhattan"),
        TSNE(n_iter=300),
        TSNE(n_iter=300, metric="cosine"),
    ],
    ids=lambda r: repr(r),
)
def test_layouts_keep_neighbours_together(reducer, numba_warm):
    X = blobs(300, 10) + 40  # offset: cosine/correlation must see different directions
    coords = reducer.fit_transform(X)
    assert coords.shape == (300, 2) and coords.dtype == np.float32
    assert trust(X, coords) > 0.9


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_same_seed_same_layout_other_seed_other_layout(cls, numba_warm):
    X = blobs(200, 6)
    fast = {"n_epochs": 60} if cls is UMAP else {"n_iter": 250}
    first = cls(**fast).fit_transform(X)
    np.testing.assert_array_equal(first, cls(**fast).fit_transform(X))
    assert not np.array_equal(first, cls(random_state=1, **fast).fit_transform(X))


def test_umap_above_exact_threshold_uses_annoy_and_is_reproducible(numba_warm):
    X = blobs(4200, 8, centres=4)
    first = UMAP(n_epochs=15).fit_transform(X)
    np.testing.assert_array_equal(first, UMAP(n_epochs=15).fit_transform(X))


def test_parallel_sgd_gives_the_same_layout_on_one_and_two_threads(numba_warm, monkeypatch):
    """The property that justifies owning the kernel: parallel *and* reproducible."""
    import numba
    import scipy.sparse
    from umap.umap_ import make_epochs_per_sample

    from embproj_panel import _umap_engine

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread on this machine")
    rng = np.random.default_rng(0)
    n, per_row = 12_000, 10
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.integers(0, n, n * per_row)
    graph = scipy.sparse.coo_matrix((rng.uniform(0.05, 1, len(rows)), (rows, cols)),
                                    shape=(n, n)).tocsr()
    graph = (graph + graph.T).tocsr()  # both directions, as a fuzzy graph stores its edges
    graph.sum_duplicates()
    assert graph.nnz >= _umap_engine.PARALLEL_MIN_EDGES  # the parallel path, not the serial
    epochs_per_sample = make_epochs_per_sample(graph.data, 20)
    start = rng.uniform(0, 10, (n, 2)).astype(np.float32)
    used: list[int] = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda k: (used.append(k), real(k)))

    def run(threads: int) -> np.ndarray:
        head = start.copy()
        previous = numba.get_num_threads()
        real(threads)
        try:
            _umap_engine.optimize(head, None, graph.indptr, graph.indices, epochs_per_sample,
                                  1.58, 0.9,
                                  np.array([1, 2, 3], dtype=np.int64), 20, 1.0, 2.0,
                                  lambda fraction: None)
        finally:
            real(previous)
        return head

    one, two = run(1), run(2)
    assert used[0] == 1 and 2 in used  # the kernel really ran on two threads the second time
    assert not np.array_equal(one, start)
    np.testing.assert_array_equal(one, two)


def test_epoch_kernel_computes_in_float32(numba_warm):
    # The kernel's scalars reach it as float32 (the kernel's float32 literals do the rest):
    # with float64 ones every step, and the negative samples' power, ran in double
    # precision, ~15% of a fit's time (a 25,000-row fit: 9.1 CPU-s against 7.0-7.8).
    import numba

    from embproj_panel import _umap_engine

    head = blobs(300, 2)[:, :2].copy()
    graph_indptr = np.arange(0, 300 * 3 + 1, 3)
    graph_indices = np.random.default_rng(0).integers(0, 300, 900)
    _umap_engine.optimize(head, None, graph_indptr, graph_indices, np.ones(900), 1.58, 0.9,
                          np.array([1, 2, 3], dtype=np.int64), 3, 1.0, 2.0,
                          lambda fraction: None)
    kernel = _umap_engine.sgd_kernel()
    (signature,) = [s for s in kernel.signatures if s[0] == numba.float32[:, ::1]]
    names = ("a", "b", "gamma", "attract_scale")
    positions = [kernel.py_func.__code__.co_varnames.index(name) for name in names]
    assert all(signature[i] == numba.float32 for i in positions), signature


def test_determinism_across_processes(numba_warm):
    code = (
        "import sys, json, hashlib, warnings; "
        "warnings.filterwarnings('ignore', category=ImportWarning); "
        f"sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r}); "
        "from test_reducers import blobs; from embproj_panel.reducers import UMAP, TSNE; "
        "X = blobs(200, 6); "
        "out = [hashlib.sha256(r.fit_transform(X).tobytes()).hexdigest() "
        "for r in (UMAP(n_epochs=60), TSNE(n_iter=250))]; print(json.dumps(out))"
    )
    X = blobs(200, 6)
    here = [UMAP(n_epochs=60).fit_transform(X), TSNE(n_iter=250).fit_transform(X)]
    import hashlib

    expected = [hashlib.sha256(c.tobytes()).hexdigest() for c in here]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=240)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_pre_reduction_to_pca_dims_is_stated(numba_warm):
    X = blobs(120, 80)
    reducer = UMAP(n_epochs=30)
    reducer.fit_transform(X)
    assert reducer.effective_params_["pca_dims"] == 50
    reducer = UMAP(n_epochs=30, pca_dims=None)
    reducer.fit_transform(X)
    assert reducer.effective_params_["pca_dims"] is None
    reducer = UMAP(n_epochs=30, metric="manhattan")
    reducer.fit_transform(X)
    assert reducer.effective_params_["pca_dims"] is None
    assert any("does not preserve manhattan" in w for w in reducer.warnings_)
    reducer = TSNE(n_iter=250, pca_dims=20)
    reducer.fit_transform(X)
    assert reducer.effective_params_["pca_dims"] == 20


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_sample_fit_places_every_row_and_says_so(cls, numba_warm):
    X = blobs(1600, 8, centres=4)
    fast = {"n_epochs": 60} if cls is UMAP else {"n_iter": 250}
    reducer = cls(sample_size=1000, **fast)
    coords = reducer.fit_transform(X)
    assert coords.shape == (1600, 2) and np.isfinite(coords).all()
    (note,) = [w for w in reducer.warnings_ if "sample" in w]
    assert "random sample of 1,000 of 1,600 rows" in note
    assert "approximate nearest neighbours in the sample" in note  # the approximation, stated
    assert ("epochs" in note) if cls is UMAP else ("not optimised" in note)
    assert "full_fit=True" in note
    # Placed rows sit with their cluster: their nearest point in the layout shares its label.
    from sklearn.neighbors import NearestNeighbors

    labels = np.arange(1600) % 4
    _, nearest = NearestNeighbors(n_neighbors=2).fit(coords).kneighbors(coords)
    assert np.mean(labels[nearest[:, 1]] == labels) > 0.97
    # The same seed places every row identically; another seed does not.
    np.testing.assert_array_equal(coords, cls(sample_size=1000, **fast).fit_transform(X))
    assert not np.array_equal(coords, cls(sample_size=1000, random_state=1,
                                          **fast).fit_transform(X))
    full = cls(sample_size=1000, full_fit=True, **fast)
    full.fit_transform(X[:1200])
    assert not any("sample" in w for w in full.warnings_)


def test_placement_does_not_depend_on_grouping_or_threads(numba_warm, monkeypatch):
    import numba

    from embproj_panel import _sample_index

    X = blobs(2600, 8, centres=4)
    first = UMAP(sample_size=1000, n_epochs=30).fit_transform(X)
    monkeypatch.setattr(_sample_index, "PLACE_CHUNK_ROWS", 100)  # many small groups
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        again = UMAP(sample_size=1000, n_epochs=30).fit_transform(X)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_sample_fit_holds_no_reduced_copy_of_every_row(cls, numba_warm):
    # A sample fit of a wide input reduces the sample and, while placing, a block of rows
    # at a time: no (n, pca_dims) matrix stays alive (at a million rows it was 0.8x the
    # input, most of the projection's peak memory).
    import tracemalloc

    X = np.random.default_rng(0).normal(size=(30_000, 512)).astype(np.float32)
    reduced_bytes = X.shape[0] * 256 * 4  # 31 MB
    held = []
    fast = {"n_epochs": 30} if cls is UMAP else {"n_iter": 250}
    reducer = cls(sample_size=1000, pca_dims=256, **fast)

    def progress(fraction: float) -> None:
        if fraction > 0.92:  # placing the other rows
            held.append(tracemalloc.get_traced_memory()[0] - before)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reducer.fit_transform(X, progress=progress)
    finally:
        tracemalloc.stop()
    assert reducer.effective_params_["pca_dims"] == 256 and held
    assert max(held) < reduced_bytes / 2, max(held)


def test_sample_index_finds_near_neighbours_and_is_exact_when_it_probes_everything():
    from sklearn.neighbors import NearestNeighbors

    from embproj_panel._sample_index import SampleIndex

    X = blobs(3000, 12, centres=5)
    fitted, others = X[:2000], X[2000:]
    exact_d, exact = NearestNeighbors(n_neighbors=10).fit(fitted).kneighbors(others)
    index = SampleIndex(fitted, "euclidean", seed=0)
    rows = np.arange(len(others))
    found = np.empty((len(others), 10), dtype=np.int64)
    for _, positions, indices, weights in index.search(others, rows, 10):
        found[positions] = indices
        assert weights.shape == indices.shape and (weights > 0).all() and (weights <= 1).all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)])
    assert recall > 0.5
    everything = SampleIndex(fitted, "euclidean", seed=0, probes=10_000)
    for _, positions, indices, _ in everything.search(others, rows, 10):
        # The same neighbours up to float32 rounding of near ties: compare distances.
        dists = np.linalg.norm(others[positions][:, None, :] - fitted[indices], axis=2)
        np.testing.assert_allclose(dists, exact_d[positions], rtol=1e-4)


# -- progress and cancel ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", REDUCERS.values())
def test_progress_rises_to_one(cls, numba_warm):
    seen: list[float] = []
    fast = {"n_epochs": 30} if cls is UMAP else {"n_iter": 250} if cls is TSNE else {}
    cls(**fast).fit_transform(blobs(150, 6), progress=seen.append)
    assert seen and seen[-1] == 1.0
    assert all(0.0 <= a <= b <= 1.0 for a, b in zip(seen, seen[1:]))


@pytest.mark.parametrize("cls", [UMAP, TSNE])
def test_cancel_stops_a_long_run_quickly(cls, numba_warm):
    # No wall clock (the machine may be busy): cancel is polled before every progress report,
    # so once it answers True not one more report arrives and the run raises Cancelled.
    X = blobs(3000, 10)
    stop = threading.Event()
    after_stop: list[float] = []

    def progress(fraction: float) -> None:
        if stop.is_set():
            after_stop.append(fraction)
        elif fraction > 0.21:  # past the (uninterruptible) neighbours
            stop.set()

    long_run = {"n_epochs": 5000} if cls is UMAP else {"n_iter": 5000}
    with pytest.raises(Cancelled):  # how fast: benchmarks/bench_cancel.py
        cls(**long_run).fit_transform(X, progress=progress, cancel=stop.is_set)
    assert stop.is_set() and after_stop == []


def test_tsne_never_asks_openTSNE_for_the_kl_divergence(monkeypatch):
    # Progress and cancel must not make openTSNE evaluate its objective's error (an
    # iteration with a callback does): that was CPU an openTSNE.TSNE call does not spend.
    import openTSNE.tsne

    asked: list[bool] = []
    real = openTSNE.tsne.kl_divergence_bh

    def spy(*args, **kwargs):
        asked.append(kwargs["should_eval_error"])
        return real(*args, **kwargs)

    monkeypatch.setattr(openTSNE.tsne, "kl_divergence_bh", spy)
    seen: list[float] = []
    TSNE(n_iter=250).fit_transform(blobs(150, 6), progress=seen.append)
    assert len(asked) == 250 + 2 and not any(asked)  # every iteration, and each phase's end
    assert len(seen) > 10  # progress still arrives during the descent
