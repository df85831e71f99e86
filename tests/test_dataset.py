"""Tests for lazy Parquet datasets and their out-of-core projection (dataset.py, _dask_engine.py).

Small seeded datasets (a few thousand to 30,000 rows) written as the run store writes them:
a fixed-size-list vector column, a label, an image struct. The cluster test starts a real
``distributed.LocalCluster`` with two worker processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import embproj_panel as ep
from embproj_panel import _dask_engine
from embproj_panel.dataset import DatasetChanged, write_dataset
from embproj_panel.reducers import Cancelled

ROOT = Path(__file__).resolve().parents[1]


def project_with(dataset, method, progress=None, cancel=None, cache=True, **params):
    """ep.project's path (compute._run) with the progress and cancel callbacks a job passes."""
    from embproj_panel import compute

    return compute._run(dataset, method, None, cache, params, progress, cancel)


def blobs(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d)) * 6
    labels = rng.integers(0, 8, n)
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def arrow_table(X: np.ndarray, labels: np.ndarray, images: bool = False) -> pa.Table:
    columns = {
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1]),
        "label": pa.array([f"c{v}" for v in labels]),
    }
    if images:
        glyphs = [ep.Image(np.full((8, 8), v * 30, dtype=np.uint8)).png_bytes for v in range(8)]
        columns["image"] = pa.StructArray.from_arrays(
            [pa.array([glyphs[v] for v in labels], pa.binary()),
             pa.array([f"glyph {v}" for v in labels], pa.string())],
            names=["png", "caption"])
    return pa.table(columns)


def write_files(folder: Path, X: np.ndarray, labels: np.ndarray, files: int = 3,
                row_group: int = 1000, images: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    table = arrow_table(X, labels, images)
    bounds = np.linspace(0, len(X), files + 1).astype(int)
    paths = []
    for i in range(files):
        path = folder / f"part-{i}.parquet"
        pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), path,
                       row_group_size=row_group)
        paths.append(path)
    return paths


@pytest.fixture()
def data(tmp_path):
    X, labels = blobs(6000, 12)
    paths = write_files(tmp_path / "data", X, labels, files=3, row_group=700, images=True)
    return tmp_path / "data", paths, X, labels


# -- opening --------------------------------------------------------------------------------


def test_folder_glob_and_list_open_the_same_rows_lazily(data):
    folder, paths, X, labels = data
    by_folder = ep.Dataset(folder)
    by_glob = ep.Dataset(str(folder / "*.parquet"))
    by_list = ep.Dataset([str(p) for p in reversed(paths)])  # taken in sorted order
    assert len(by_folder) == len(by_glob) == len(by_list) == 6000
    assert by_folder.fingerprint == by_glob.fingerprint == by_list.fingerprint
    assert by_folder.column_types == {"emb": "vector", "label": "str", "image": "image"}
    assert by_folder.vector_dim("emb") == 12
    assert by_folder.schema.default_embedding == ["emb"]
    assert by_folder.schema.default_color == "label"
    assert by_folder.schema.default_hover_image == "image"


def test_folder_skips_hidden_and_underscore_files(data):
    folder, paths, X, labels = data
    (folder / "_SUCCESS").write_text("")
    shutil.copy(paths[0], folder / ".part-0.parquet.crc.parquet")
    (folder / "_tmp").mkdir()
    shutil.copy(paths[0], folder / "_tmp" / "half-written.parquet")
    assert len(ep.Dataset(folder).files) == 3


def test_fsspec_urls_are_read(data):
    import fsspec

    folder, paths, X, labels = data
    memory = fsspec.filesystem("memory")
    for path in paths:
        memory.pipe(f"/bucket/{path.name}", path.read_bytes())
    dataset = ep.Dataset("memory://bucket/*.parquet")
    assert len(dataset) == 6000
    rows = dataset.read_rows([5999, 0], columns=["label"])
    assert rows.column("label").to_pylist() == [f"c{labels[5999]}", f"c{labels[0]}"]
    assert dataset.files[0].path.endswith("part-0.parquet")


def test_read_rows_in_any_order_across_files(data):
    folder, paths, X, labels = data
    dataset = ep.Dataset(folder, partition_rows=1500)
    positions = [4321, 0, 1999, 2000, 5999, 4321]
    table = dataset.read_rows(positions)
    vectors = np.stack(table.column("emb").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors, X[positions])
    assert table.column("label").to_pylist() == [f"c{labels[p]}" for p in positions]
    image = table.column("image")[0].as_py()
    assert ep.Image.from_png_bytes(image["png"]).png_bytes == image["png"]
    with pytest.raises(IndexError, match="outside this dataset's 6,000 rows"):
        dataset.read_rows([6000])
    with pytest.raises(KeyError, match="No column"):
        dataset.read_rows([1], columns=["nope"])


def test_pieces_are_whole_row_groups_in_order(data):
    folder, paths, X, labels = data
    pieces = ep.Dataset(folder).pieces(partition_rows=1500)
    assert all(p.n_rows <= 1500 for p in pieces)
    starts = [p.start for p in pieces]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(p.n_rows for p in pieces) == 6000
    assert all(a.start + a.n_rows == b.start for a, b in zip(pieces, pieces[1:]))


def test_empty_glob_folder_and_missing_file_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No files match .*\*\.parquet"):
        ep.Dataset(str(tmp_path / "*.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No Parquet files .* in the folder"):
        ep.Dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        ep.Dataset(tmp_path / "nope.parquet")
    with pytest.raises(FileNotFoundError, match="the list is empty"):
        ep.Dataset([])
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="text.parquet is not a readable Parquet file"):
        ep.Dataset(tmp_path / "text.parquet")


def test_schemas_that_differ_are_refused_naming_the_files(tmp_path):
    X, labels = blobs(300, 4)
    write_files(tmp_path / "d", X, labels, files=1)
    other, _ = blobs(300, 5, seed=1)
    pq.write_table(arrow_table(other, labels), tmp_path / "d" / "part-7.parquet")
    pq.write_table(arrow_table(X, labels).drop(["label"]), tmp_path / "d" / "part-8.parquet")
    with pytest.raises(ValueError) as caught:
        ep.Dataset(tmp_path / "d")
    message = str(caught.value)
    assert "do not share one schema" in message
    assert "part-0.parquet" in message  # the reference
    assert "part-7.parquet: 'emb' is fixed_size_list<element: float>[5]" in message
    assert "part-8.parquet: lacks 'label'" in message


# -- projecting: columns and bad input ------------------------------------------------------


def test_missing_or_unprojectable_columns_are_named(data):
    folder, paths, X, labels = data
    dataset = ep.Dataset(folder)
    with pytest.raises(ValueError, match="No column 'vec' in this dataset; its columns are"):
        ep.project(dataset, "pca", columns="vec", cache=False)
    with pytest.raises(ValueError, match="'image' holds image values, not numbers"):
        ep.project(dataset, "pca", columns="image", cache=False)
    only_labels = tmp = folder.parent / "labels"
    tmp.mkdir()
    pq.write_table(pa.table({"label": pa.array(["a", "b"] * 10)}), tmp / "l.parquet")
    with pytest.raises(ValueError, match="no vector column and no numeric columns"):
        ep.project(ep.Dataset(only_labels), "pca", cache=False)


def test_mixed_vector_lengths_name_the_file_and_row(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    pq.write_table(pa.table({"emb": pa.array([[1.0, 2.0, 3.0]] * 50)}), folder / "a.parquet")
    rows = [[1.0, 2.0, 3.0]] * 20 + [[1.0, 2.0]] + [[4.0, 5.0, 6.0]] * 29
    pq.write_table(pa.table({"emb": pa.array(rows)}), folder / "b.parquet")
    dataset = ep.Dataset(folder)
    assert dataset.column_types["emb"] == "vector" and dataset.vector_dim("emb") == 3
    with pytest.raises(ValueError, match=r"row 70 \(in .*b\.parquet\) has 2 values, but this "
                                         r"dataset's vectors have 3"):
        ep.project(dataset, "pca", cache=False)


def test_empty_and_nan_rows_are_left_out_and_reported(tmp_path):
    X, labels = blobs(2000, 6)
    X[[5, 1500]] = np.nan
    folder = tmp_path / "holes"
    write_files(folder, X, labels, files=2, row_group=300)
    table = pq.read_table(folder / "part-1.parquet")
    emb = table.column("emb").combine_chunks()
    mask = np.zeros(len(emb), dtype=bool)
    mask[7] = True  # row 1007 of the dataset: an empty cell
    hollow = pa.FixedSizeListArray.from_arrays(emb.values, 6, mask=pa.array(mask))
    pq.write_table(table.set_column(0, "emb", hollow), folder / "part-1.parquet")
    projection = ep.project(ep.Dataset(folder), "pca", cache=False)
    assert projection.excluded == [(5, "'emb': NaN or inf"), (1007, "'emb': empty"),
                                   (1500, "'emb': NaN or inf")]
    assert len(projection.rows) == 1997 and 5 not in projection.rows
    assert any("3 of 2,000 rows were left out" in w for w in projection.warnings)


# -- PCA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("standardize", [False, True])
def test_pca_from_partition_sums_matches_the_in_memory_pca(data, standardize):
    folder, paths, X, labels = data
    X = X + np.float32(1000.0)  # far from the origin: one-pass sums must not cancel
    shutil.rmtree(folder)
    write_files(folder, X, labels, files=3, row_group=700)
    lazy = ep.project(ep.Dataset(folder, partition_rows=1400), "pca", cache=False,
                      standardize=standardize, y_component=3)
    memory = ep.project(X, "pca", cache=False, standardize=standardize, y_component=3)
    np.testing.assert_allclose(lazy.coords, memory.coords, atol=2e-3 * np.abs(memory.coords).max())
    np.testing.assert_allclose(lazy.explained_variance, memory.explained_variance, rtol=1e-5)
    np.testing.assert_array_equal(lazy.rows, np.arange(6000))
    assert lazy.columns == [f"emb[{i}]" for i in range(12)]


def test_pca_of_the_stored_dataset_has_the_in_memory_pca_sums(tmp_path):
    # One function sums both: the store's row groups are the in-memory PCA's chunks, so a
    # table and the dataset logged from it get the same float64 sums, to the bit.
    from embproj_panel.reducers import _PCA_CHUNK_ROWS

    X, labels = blobs(_PCA_CHUNK_ROWS + 3000, 4, seed=5)
    X += np.float32(50.0)
    folder = write_dataset(arrow_table(X, labels), tmp_path / "t",
                           row_group_rows=_PCA_CHUNK_ROWS)
    lazy = ep.project(ep.Dataset(folder), "pca", cache=False, y_component=3)
    memory = ep.project(X, "pca", cache=False, y_component=3)
    assert lazy.explained_variance == memory.explained_variance
    np.testing.assert_allclose(lazy.coords, memory.coords, rtol=0, atol=1e-4)


def test_the_store_writes_vectors_uncompressed_and_the_rest_compressed(tmp_path):
    X, labels = blobs(100, 3)
    folder = write_dataset(arrow_table(X, labels, images=True), tmp_path / "t")
    meta = pq.ParquetFile(next(folder.iterdir())).metadata.row_group(0)
    codecs = {meta.column(i).path_in_schema: meta.column(i).compression
              for i in range(meta.num_columns)}
    assert codecs == {"emb.list.element": "UNCOMPRESSED", "label": "SNAPPY",
                      "image.png": "SNAPPY", "image.caption": "SNAPPY"}


def test_overlapping_local_jobs_share_one_blas_limit_and_restore_it():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    first, second = _dask_engine._one_blas_thread(), _dask_engine._one_blas_thread()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first job ends while the second still runs
    assert set(blas_threads()) == {1}
    second.__exit__(None, None, None)
    assert blas_threads() == before


def test_pca_does_not_depend_on_the_partitioning(data):
    folder, paths, X, labels = data
    one = ep.project(ep.Dataset(folder, partition_rows=700), "pca", cache=False)
    other = ep.project(ep.Dataset(folder, partition_rows=100_000), "pca", cache=False)
    np.testing.assert_allclose(one.coords, other.coords, rtol=1e-5, atol=1e-5)


# -- UMAP and t-SNE -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """7,000 rows x 64: sampled (sample_size 2,000) and pre-reduced by PCA to 50 dimensions."""
    X, labels = blobs(7000, 64, seed=3)
    folder = tmp_path_factory.mktemp("wide") / "data"
    write_files(folder, X, labels, files=2, row_group=500)
    return folder, X


def test_umap_placement_does_not_depend_on_the_partitioning(wide, numba_warm):
    folder, X = wide
    params = dict(sample_size=2000, n_epochs=60, cache=False)
    small = ep.project(ep.Dataset(folder, partition_rows=500), "umap", **params)
    large = ep.project(ep.Dataset(folder, partition_rows=3500), "umap", **params)
    np.testing.assert_array_equal(small.coords, large.coords)
    assert small.params["pca_dims"] == 50 and small.params["n_epochs"] == 60
    assert any("random sample of 2,000 of 7,000 rows" in w for w in small.warnings)
    # The layout is a UMAP of the data: the 8 blobs stay apart.
    centres = np.stack([small.coords[blobs(7000, 64, seed=3)[1] == k].mean(axis=0)
                        for k in range(8)])
    spread = np.median([small.coords[blobs(7000, 64, seed=3)[1] == k].std() for k in range(8)])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(8, 1)]
    assert gaps.min() > spread


def test_up_to_sample_size_rows_give_exactly_the_in_memory_projection(tmp_path, numba_warm):
    X, labels = blobs(1500, 10)
    write_files(tmp_path / "d", X, labels, files=2, row_group=200)
    lazy = ep.project(ep.Dataset(tmp_path / "d"), "umap", cache=False, n_epochs=50)
    memory = ep.project(X, "umap", cache=False, n_epochs=50)
    np.testing.assert_array_equal(lazy.coords, memory.coords)
    assert lazy.params == memory.params


def test_tsne_placement_does_not_depend_on_the_partitioning(tmp_path):
    X, labels = blobs(2600, 8, seed=5)
    write_files(tmp_path / "d", X, labels, files=2, row_group=200)
    params = dict(sample_size=1000, n_iter=250, cache=False)
    small = ep.project(ep.Dataset(tmp_path / "d", partition_rows=200), "tsne", **params)
    large = ep.project(ep.Dataset(tmp_path / "d", partition_rows=2000), "tsne", **params)
    np.testing.assert_array_equal(small.coords, large.coords)
    assert np.isfinite(small.coords).all() and small.coords.std() > 0


# -- the cache, and files that change -------------------------------------------------------


def test_reopening_reads_the_cached_parquet_and_a_changed_file_is_noticed(data, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("EMBPROJ_CACHE_DIR", str(tmp_path / "cache"))
    folder, paths, X, labels = data
    first = ep.project(ep.Dataset(folder), "pca")
    assert not first.cached
    stored = sorted(p.name for p in (tmp_path / "cache" / "datasets").iterdir())
    assert stored == [f"{first.key}.json", f"{first.key}.parquet"]
    again = ep.project(ep.Dataset(folder), "pca")
    assert again.cached and again.key == first.key
    np.testing.assert_array_equal(again.coords, first.coords)
    np.testing.assert_array_equal(again.rows, first.rows)
    assert again.explained_variance == first.explained_variance

    changed = X.copy()
    changed[:2000] *= 2
    pq.write_table(arrow_table(changed[:2000], labels[:2000]).append_column(
        "image", pq.read_table(paths[0]).column("image")), paths[0], row_group_size=700)
    os.utime(paths[0], (1, 1))  # a different mtime even on coarse clocks
    fresh = ep.project(ep.Dataset(folder), "pca")
    assert not fresh.cached and fresh.key != first.key
    assert any("out of date" in w and "part-0.parquet" in w for w in fresh.warnings)
    assert not np.allclose(fresh.coords, first.coords)
    assert ep.project(ep.Dataset(folder), "pca", cache=False).key == ""


def test_a_file_that_vanishes_mid_run_fails_the_job_and_caches_nothing(data, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("EMBPROJ_CACHE_DIR", str(tmp_path / "cache"))
    folder, paths, X, labels = data
    dataset = ep.Dataset(folder, partition_rows=700)

    def vanish(fraction):
        if fraction >= 0.5 and paths[2].exists():  # after the sums, before the placement
            paths[2].unlink()

    with pytest.raises(DatasetChanged, match=r"part-2\.parquet changed .*no longer exists.*"
                                             r"nothing was cached"):
        project_with(dataset, "pca", progress=vanish)
    assert not list((tmp_path / "cache").rglob("*.parquet"))


def test_a_file_changed_after_it_was_read_fails_the_job_and_caches_nothing(data, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("EMBPROJ_CACHE_DIR", str(tmp_path / "cache"))
    folder, paths, X, labels = data
    dataset = ep.Dataset(folder)
    touched = []

    def touch(fraction):
        if fraction >= 1.0 and not touched:  # every task has read its rows
            os.utime(paths[1], (2, 2))
            touched.append(True)

    with pytest.raises(DatasetChanged, match="part-1.parquet changed while the dataset was in use"):
        project_with(dataset, "pca", progress=touch)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_cancel_stops_between_tasks(data):
    folder, paths, X, labels = data
    with pytest.raises(Cancelled):
        project_with(ep.Dataset(folder, partition_rows=700), "pca", cache=False,
                     cancel=lambda: True)


# -- schedulers -----------------------------------------------------------------------------


def test_scheduler_names_and_the_environment_variable(monkeypatch):
    monkeypatch.delenv(_dask_engine.SCHEDULER_ENV, raising=False)
    assert _dask_engine.resolve_scheduler(None) == "threads"
    assert _dask_engine.resolve_scheduler("sync") == "synchronous"
    with pytest.raises(ValueError, match="Unknown Dask scheduler 'gpu'"):
        _dask_engine.resolve_scheduler("gpu")
    monkeypatch.setenv(_dask_engine.SCHEDULER_ENV, "synchronous")
    assert _dask_engine.resolve_scheduler(None) == "synchronous"
    monkeypatch.setenv(_dask_engine.SCHEDULER_ENV, "tcp://127.0.0.1:9")  # nothing listens
    with pytest.raises(OSError, match="No Dask scheduler answered at tcp://127.0.0.1:9"):
        _dask_engine.resolve_scheduler(None)


@pytest.mark.slow
def test_a_two_process_local_cluster_gives_the_local_result(wide, numba_warm, monkeypatch):
    from distributed import LocalCluster

    folder, X = wide
    # Worker processes import this checkout (not the shared editable install).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    params = dict(sample_size=2000, n_epochs=60, cache=False)
    local = ep.project(ep.Dataset(folder, partition_rows=1000), "umap", **params)
    local_pca = ep.project(ep.Dataset(folder, partition_rows=1000), "pca", cache=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, protocol="tcp") as cluster:
        monkeypatch.setenv(_dask_engine.SCHEDULER_ENV, cluster.scheduler_address)
        dataset = ep.Dataset(folder, partition_rows=1000)
        remote = ep.project(dataset, "umap", **params)
        remote_pca = ep.project(dataset, "pca", cache=False)
        client = _dask_engine.resolve_scheduler(None)
        assert len(client.scheduler_info()["workers"]) == 2
        assert all(address.startswith("tcp://127.0.0.1:")
                   for address in client.scheduler_info()["workers"])
        client.close()
    np.testing.assert_array_equal(remote.coords, local.coords)
    np.testing.assert_array_equal(remote_pca.coords, local_pca.coords)


# -- the store writes what the lazy path reads -----------------------------------------------


def test_a_large_logged_table_is_a_partitioned_dataset_and_loads_lazily(monkeypatch,
                                                                       isolated_store):
    monkeypatch.setenv("EMBPROJ_DATASET_MIN_ROWS", "3000")
    monkeypatch.setattr("embproj_panel.dataset.FILE_ROWS", 2048)
    monkeypatch.setattr("embproj_panel.dataset.ROW_GROUP_ROWS", 512)
    X, labels = blobs(5000, 6)
    table = ep.Table(columns=["emb", "label"], data=[[x, f"c{v}"] for x, v in zip(X, labels)])
    small = ep.Table(columns=["emb"], data=[[x] for x in X[:10]])
    with ep.init(project="big", name="r") as run:
        run.log({"points": table, "few": small})
    folder = isolated_store / "big" / "r" / "points.0.parquet"
    assert folder.is_dir()
    parts = sorted(folder.iterdir())
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet",
                                       "part-00002.parquet"]
    groups = [pq.ParquetFile(p).metadata.row_group(i).num_rows for p in parts
              for i in range(pq.ParquetFile(p).metadata.num_row_groups)]
    assert max(groups) == 512 and sum(groups) == 5000
    lazy = ep.load_table("big", "r", "points")
    assert isinstance(lazy, ep.Dataset) and len(lazy) == 5000
    assert lazy.column_types == {"emb": "vector", "label": "str"}
    back = np.stack(lazy.read_rows(range(5000), ["emb"]).column("emb").to_numpy(
        zero_copy_only=False))
    np.testing.assert_array_equal(back, X)
    assert isinstance(ep.load_table("big", "r", "few"), ep.Table)  # below the threshold
    assert lazy.to_table() == table
    from embproj_panel.dataset_table import DatasetTable
    from embproj_panel.sources import as_table

    shown = as_table(lazy)  # ep.Projector(dataset): kept on disk, rows read on demand
    assert isinstance(shown, DatasetTable) and shown.dataset is lazy
    assert shown.take(range(5000)) == table
    logged = as_table(("big", "r", "points"))  # the app's logged-table source
    assert isinstance(logged, DatasetTable) and logged.take(range(5000)) == table
    projection = ep.project(lazy, "pca", cache=False)
    assert projection.coords.shape == (5000, 2)


def test_write_dataset_never_overwrites_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    X, labels = blobs(100, 3)
    target = write_dataset(arrow_table(X, labels), tmp_path / "t", file_rows=40, row_group_rows=16)
    assert len(list(target.iterdir())) == 3
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_dataset(arrow_table(X, labels), target)
    calls = []
    real = pq.write_table

    def full_disk(table, path, **options):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(table, path, **options)

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_dataset(arrow_table(X, labels), tmp_path / "u", file_rows=40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no half dataset, no temp


def test_dataset_min_rows_setting(monkeypatch):
    from embproj_panel.dataset import DATASET_MIN_ROWS, dataset_min_rows

    monkeypatch.delenv("EMBPROJ_DATASET_MIN_ROWS", raising=False)
    assert dataset_min_rows() == DATASET_MIN_ROWS == 1_000_000
    monkeypatch.setenv("EMBPROJ_DATASET_MIN_ROWS", "many")
    with pytest.raises(ValueError, match="whole number of rows; got 'many'"):
        dataset_min_rows()


def test_project_async_and_the_scheduler_argument(data):
    folder, paths, X, labels = data
    threaded = ep.project(ep.Dataset(folder, partition_rows=700), "pca", cache=False,
                          scheduler="threads")
    dataset = ep.Dataset(folder, partition_rows=700, scheduler="synchronous")
    job = ep.project_async(dataset, "pca", cache=False)
    background = job.result(timeout=120)
    assert job.status == "done" and job.progress == 1.0
    np.testing.assert_array_equal(background.coords, threaded.coords)


def test_the_benchmark_runs_the_same_path_on_a_small_dataset(tmp_path, capsys, numba_warm):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_dataset",
                                                  ROOT / "benchmarks" / "bench_dataset.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--rows", "3000", "--dim", "8", "--sample-size", "1000",
                       "--folder", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    for figure in ("PCA end to end", "UMAP end to end", "reopen PCA with the cache",
                   "reopen UMAP with the cache", "peak RSS", "plain: read_table + sklearn PCA",
                   "floor: read_table + float64 X.T @ X (before)", "lazy PCA / floor",
                   "in memory: read_table + ep.project umap", "load average"):
        assert figure in out
