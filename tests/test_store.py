"""Tests for the run store: round trips, atomic writes, steps, names, runs and the seed examples.

Every test runs against its own empty store: the autouse ``isolated_store`` fixture in
conftest.py points ``$EMBPROJ_DIR`` at a fresh temporary folder.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embproj_panel as ep
from embproj_panel import store
from embproj_panel.store import Run


@pytest.fixture(autouse=True)
def no_current_run():
    """The current run is process-global (as in wandb): never let one leak between tests."""
    yield
    ep.finish()


def every_type_table() -> ep.Table:
    """A table with every storage type, empty cells in each, and awkward values."""
    table = ep.Table(
        columns=["label", "count", "big", "flag", "score", "image", "empty", 7, "7"],
        data=[
            ["cat", 1, 2**62 + 1, True, 0.5, ep.Image(np.eye(3), caption="eye"), None, 1, "a"],
            [None, None, None, None, None, None, None, 2, None],
            ["dog", 3, -(2**63), False, float("nan"), ep.Image(np.zeros((2, 4, 3))), None, 3, ""],
        ],
    )
    # float32 vectors with the values most likely to be mangled on the way: -0.0, inf, NaN,
    # a subnormal and float32's largest finite value.
    vectors = np.array(
        [[-0.0, np.inf, np.nan], [1e-45, -np.inf, 1.0], [np.finfo(np.float32).max, 2.5, -1.0]],
        dtype=np.float32,
    )
    table.add_column("vector", vectors)
    return table


def log_and_load(table: ep.Table, key: str = "t") -> ep.Table:
    with ep.init(project="p") as run:
        run.log({key: table})
    return ep.load_table("p", run.name, key)


# -- round trip --------------------------------------------------------------------------------
def test_round_trip_keeps_columns_types_values_and_empty_cells():
    table = every_type_table()
    loaded = log_and_load(table)

    assert loaded.columns == table.columns
    assert loaded.column_types == table.column_types
    assert loaded.column_types["empty"] == "none" and loaded.column_types[7] == "int"
    for name in table.columns:
        expected = table.column_nulls(name)
        got = loaded.column_nulls(name)
        assert (got is None) == (expected is None) and (got is None or (got == expected).all())
    assert loaded == table
    # None and NaN stay different in a float column; ints past 2**53 stay exact.
    assert loaded.get_column("score")[1] is None and np.isnan(loaded.get_column("score")[2])
    assert loaded.get_column("big") == [2**62 + 1, None, -(2**63)]


def test_vectors_are_bit_exact_float32():
    table = every_type_table()
    loaded = log_and_load(table)
    before = table.get_column("vector", convert_to="numpy")
    after = loaded.get_column("vector", convert_to="numpy")
    assert after.dtype == np.float32 and after.shape == (3, 3)
    assert np.array_equal(after.view(np.uint32), before.view(np.uint32))


def test_images_are_pixel_exact_with_captions():
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    table = ep.Table(columns=["image"], data=[[ep.Image(pixels, caption="rgba")], [None]])
    image, empty = log_and_load(table).get_column("image")
    assert empty is None
    assert image.caption == "rgba" and (image.width, image.height) == (7, 5)
    assert np.array_equal(image.to_numpy(), pixels)


def test_empty_vector_rows_load_as_nan_and_none():
    table = ep.Table(columns=["v"], data=[[[1.0, 2.0]], [None]])
    loaded = log_and_load(table)
    assert loaded.get_column("v")[1] is None
    assert np.isnan(loaded.get_column("v", convert_to="numpy")[1]).all()


def test_typed_columns_without_rows_keep_their_types():
    frame = pd.DataFrame(
        {"i": np.array([], np.int64), "f": np.array([], np.float32), "s": pd.Series([], dtype=str)}
    )
    table = ep.Table(dataframe=frame)
    table.add_column("v", np.empty((0, 4), dtype=np.float32))
    loaded = log_and_load(table)
    assert len(loaded) == 0
    assert loaded.column_types == {"i": "int", "f": "float", "s": "str", "v": "vector"}
    assert loaded.get_column("f", convert_to="numpy").dtype == np.float32
    assert loaded.get_column("v", convert_to="numpy").shape == (0, 4)


def test_parquet_file_is_plain_arrow_that_pandas_reads():
    table = every_type_table()
    with ep.init(project="p") as run:
        run.log({"t": table})
    path = run.dir / "t.0.parquet"
    schema = pq.read_schema(path)
    assert schema.field("vector").type == pa.list_(pa.float32(), 3)
    assert schema.field("image").type == pa.struct([("png", pa.binary()), ("caption", pa.string())])
    assert schema.field("big").type == pa.int64() and schema.field("label").type == pa.string()
    # 7 and "7" are different Table columns; the file's field names stay unique.
    assert schema.names[-3:] == ["7", "7#8", "vector"]
    frame = pd.read_parquet(path)
    assert frame["label"].tolist()[0] == "cat" and frame["image"][0]["caption"] == "eye"


def test_manifest_records_steps_and_column_types():
    with ep.init(project="p", name="r") as run:
        run.log({"t": every_type_table()})
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["project"] == "p" and manifest["run"] == "r"
    assert manifest["status"] == "finished" and manifest["package_version"] == ep.__version__
    (entry,) = manifest["tables"]["t"]
    assert entry["step"] == 0 and entry["rows"] == 3 and entry["file"] == "t.0.parquet"
    columns = {c["name"]: c for c in entry["columns"]}
    assert [c["name"] for c in entry["columns"]] == every_type_table().columns
    assert columns["vector"] == {"name": "vector", "type": "vector", "dim": 3, "dtype": "float32"}
    assert columns[7]["type"] == "int" and columns["7"]["type"] == "str"


def test_log_accepts_a_dataframe():
    frame = pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]})
    loaded = log_and_load(frame)
    assert loaded == ep.Table(dataframe=frame)


def test_a_dataframe_that_is_no_table_names_key_column_and_row():
    frame = pd.DataFrame({"x": [1, "two"]})
    with ep.init(project="p") as run, pytest.raises(TypeError, match=r"Cannot log 'f': column 'x', row 1"):
        run.log({"f": frame})


# -- steps and atomic writes -------------------------------------------------------------------
def test_logging_a_key_again_adds_a_step():
    first = ep.Table(columns=["x"], data=[[1], [2]])
    second = ep.Table(columns=["x", "y"], data=[[3, "c"]])
    run = ep.init(project="p")
    ep.log({"t": first})
    ep.log({"t": second})
    ep.finish()

    (steps,) = ep.list_tables("p", run.name).values()
    assert [(s.step, s.rows) for s in steps] == [(0, 2), (1, 1)]
    assert steps[1].column_types == {"x": "int", "y": "str"}
    assert ep.load_table("p", run.name, "t", step=0) == first
    assert ep.load_table("p", run.name, "t", step=1) == second
    assert ep.load_table("p", run.name, "t") == second  # step=-1: the latest
    with pytest.raises(IndexError, match="has 2 step"):
        ep.load_table("p", run.name, "t", step=2)


def run_files(run: ep.Run) -> set[str]:
    return {str(p.relative_to(run.dir)) for p in run.dir.rglob("*") if p.is_file()}


def test_crash_while_writing_parquet_keeps_earlier_tables(monkeypatch):
    run = ep.init(project="p")
    earlier = ep.Table(columns=["x"], data=[[1.5], [2.5]])
    run.log({"t": earlier})
    manifest = (run.dir / "manifest.json").read_bytes()
    files = run_files(run)

    def crash_half_way(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="disk full"):
        patch.setattr(store.pq, "write_table", crash_half_way)
        run.log({"t": ep.Table(columns=["x"], data=[[9.0]]), "other": earlier})

    assert (run.dir / "manifest.json").read_bytes() == manifest
    assert run_files(run) == files  # no temporary file, no half-written step
    assert ep.load_table("p", run.name, "t") == earlier
    run.log({"t": earlier})  # the store carries on: the next step is 1
    assert [s.step for s in ep.list_tables("p", run.name)["t"]] == [0, 1]


def test_crash_while_writing_the_manifest_keeps_earlier_tables(monkeypatch):
    run = ep.init(project="p")
    earlier = ep.Table(columns=["x"], data=[[1], [2]])
    run.log({"t": earlier})
    manifest = (run.dir / "manifest.json").read_bytes()
    files = run_files(run)
    real_write_text = Path.write_text

    def crash_half_way(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("power cut")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="power cut"):
        patch.setattr(Path, "write_text", crash_half_way)
        run.log({"t": ep.Table(columns=["x"], data=[[3]])})

    assert (run.dir / "manifest.json").read_bytes() == manifest
    assert run_files(run) == files  # the new step's Parquet file was removed again
    assert ep.load_table("p", run.name, "t") == earlier


def test_a_bad_value_logs_nothing_from_the_same_call():
    run = ep.init(project="p")
    with pytest.raises(TypeError, match=r"'loss'.*float.*Table or a pandas DataFrame"):
        run.log({"good": ep.Table(columns=["x"], data=[[1]]), "loss": 0.25})
    with pytest.raises(TypeError, match="dict of tables"):
        run.log([ep.Table(columns=["x"], data=[[1]])])
    assert ep.list_tables("p", run.name) == {}


def test_two_writers_to_one_run_never_share_a_step():
    writers = [store.Run("p", name="shared") for _ in range(2)]
    tables = [ep.Table(columns=["writer"], data=[[i]]) for i in range(2)]

    def write(i: int) -> None:
        for _ in range(4):
            writers[i].log({"t": tables[i]})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    steps = ep.list_tables("p", "shared")["t"]
    assert [s.step for s in steps] == list(range(8))
    loaded = [ep.load_table("p", "shared", "t", step=s.step).get_column("writer")[0] for s in steps]
    assert sorted(loaded) == [0] * 4 + [1] * 4


# -- names -------------------------------------------------------------------------------------
HOSTILE = ["../x", "a/b", "a\\b", "\x00", "a\x00b", "..", "", ".hidden", "tab\there", "x" * 129,
           "C:evil", "NUL", "con.txt", "trailing.", "a..b", "bell\x07"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_names_are_refused_before_touching_disk(bad, isolated_store):
    good = ep.Table(columns=["x"], data=[[1]])
    with pytest.raises(ValueError, match=re.escape(f"Invalid project {bad!r}: ")):
        ep.init(project=bad)
    with pytest.raises(ValueError, match=re.escape(f"Invalid run {bad!r}: ")):
        ep.init(project="p", name=bad)
    assert not isolated_store.exists()
    with ep.init(project="p") as run:
        with pytest.raises(ValueError, match="Invalid table key"):
            run.log({bad: good})
    assert ep.list_tables("p", run.name) == {}
    with pytest.raises(ValueError, match="Invalid"):
        ep.load_table("p", run.name, bad)
    with pytest.raises(ValueError, match="Invalid"):
        ep.list_tables(bad, run.name)
    # Nothing escaped the store's folder.
    assert sorted(p.name for p in isolated_store.parent.iterdir()) == ["embproj-runs"]


def test_non_string_names_are_a_type_error():
    with pytest.raises(TypeError, match="project must be a str"):
        ep.init(project=3)
    with ep.init(project="p") as run, pytest.raises(TypeError, match="table key must be a str"):
        run.log({1: ep.Table(columns=["x"], data=[[1]])})


def test_ordinary_names_are_accepted():
    for name in ["embedding_tutorial", "run 1", "v1.2", "Ünïcode-名前", "x" * 128]:
        assert store.validate_name(name) == name


# -- runs and the store's location -------------------------------------------------------------
def test_store_location_dir_beats_env_beats_default(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBPROJ_DIR", str(tmp_path / "from-env"))
    assert ep.init(project="p").dir.parent.parent == tmp_path / "from-env"
    assert ep.init(project="p", dir=tmp_path / "from-arg").dir.parent.parent == tmp_path / "from-arg"
    assert ep.list_projects(tmp_path / "from-arg") == ["p"]
    monkeypatch.delenv("EMBPROJ_DIR")
    monkeypatch.chdir(tmp_path)
    assert store.default_root() == tmp_path / "embproj-runs"
    assert ep.init(project="p").dir.parent.parent == tmp_path / "embproj-runs"


def test_context_manager_finishes_and_records_failures():
    with ep.init(project="p") as run:
        run.log({"t": ep.Table(columns=["x"], data=[[1]])})
    with pytest.raises(RuntimeError, match="is finished"):
        run.log({"t": ep.Table(columns=["x"], data=[[1]])})
    with pytest.raises(ZeroDivisionError), ep.init(project="p") as failed:
        raise ZeroDivisionError
    statuses = {
        r: json.loads((run.dir.parent / r / "manifest.json").read_text())["status"]
        for r in ep.list_runs("p")
    }
    assert statuses == {run.name: "finished", failed.name: "failed"}


def test_module_level_log_needs_a_current_run():
    ep.finish()  # nothing to finish: a no-op, as wandb.finish
    with pytest.raises(RuntimeError, match="call embproj_panel.init"):
        ep.log({"t": ep.Table(columns=["x"], data=[[1]])})
    first = ep.init(project="p")
    second = ep.init(project="p")  # finishes the first, as wandb.init does
    with pytest.raises(RuntimeError, match="is finished"):
        first.log({"t": ep.Table(columns=["x"], data=[[1]])})
    ep.log({"t": ep.Table(columns=["x"], data=[[1]])})
    assert list(ep.list_tables("p", second.name)) == ["t"]


def test_default_run_names_are_unique_and_runs_list_oldest_first():
    names = [ep.init(project="p").name for _ in range(3)]
    assert len(set(names)) == 3
    assert all(store.validate_name(name) for name in names)
    assert ep.list_runs("p") == names


def test_a_named_run_continues_instead_of_replacing():
    table = ep.Table(columns=["x"], data=[[1]])
    for _ in range(2):
        with ep.init(project="p", name="baseline") as run:
            run.log({"t": table})
    assert ep.list_runs("p") == ["baseline"]
    assert [s.step for s in ep.list_tables("p", "baseline")["t"]] == [0, 1]


def test_listing_skips_the_stores_own_folders_and_reports_unknown_names(isolated_store):
    with ep.init(project="p", name="r") as run:
        run.log({"t": ep.Table(columns=["x"], data=[[1]])})
    (isolated_store / ".cache").mkdir()
    assert ep.list_projects() == ["p"]
    with pytest.raises(FileNotFoundError, match=r"No project 'q'.*\['p'\]"):
        ep.list_runs("q")
    with pytest.raises(FileNotFoundError, match=r"No run 'x'.*\['r'\]"):
        ep.list_tables("p", "x")
    with pytest.raises(KeyError, match=r"no table 'u'; it has \['t'\]"):
        ep.load_table("p", "r", "u")


# -- property test -----------------------------------------------------------------------------
def _cells(storage: str, draw) -> st.SearchStrategy:
    if storage == "int":
        return st.integers(-(2**63), 2**63 - 1)
    if storage == "float":
        return st.floats(width=64)
    if storage == "bool":
        return st.booleans()
    if storage == "str":
        return st.text(max_size=6)
    if storage == "vector":
        dim = draw(st.integers(1, 3))
        return st.lists(st.floats(width=32), min_size=dim, max_size=dim).map(
            lambda v: np.array(v, dtype=np.float32)
        )
    # image: a tiny grayscale or RGB uint8 array and an optional caption
    shapes = st.tuples(st.integers(1, 3), st.integers(1, 3)) | st.tuples(
        st.integers(1, 3), st.integers(1, 3), st.just(3)
    )
    return st.builds(
        lambda shape, seed, caption: ep.Image(
            np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), caption=caption
        ),
        shapes,
        st.integers(0, 2**16),
        st.none() | st.text(max_size=4),
    )


@st.composite
def tables(draw) -> ep.Table:
    n = draw(st.integers(0, 5))
    names = draw(
        st.lists(st.text(max_size=3) | st.integers(-3, 3), min_size=1, max_size=4, unique=True)
    )
    storages = ["int", "float", "bool", "str", "vector", "image"]
    columns = []
    for _ in names:
        cells = _cells(draw(st.sampled_from(storages)), draw)
        columns.append(draw(st.lists(st.none() | cells, min_size=n, max_size=n)))
    return ep.Table(columns=names, data=[list(row) for row in zip(*columns)] if n else [])


# The autouse store fixture is per test, not per example; each example logs into its own run,
# so examples never see each other's files.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables())
def test_property_any_table_round_trips(table):
    loaded = log_and_load(table)
    assert loaded.columns == table.columns
    assert loaded.column_types == table.column_types
    assert loaded == table


# -- the on-disk format stays readable ---------------------------------------------------------
# tests/data/store-format-1 was written by store.py as it was before the Arrow layout moved to
# embproj_panel/arrow.py (commit b26d53c), from the tables below: a store logged by an older
# version must keep loading, and the writer must keep writing the same Arrow layout.
FORMAT_1 = Path(__file__).parent / "data" / "store-format-1"


def format_1_tables() -> dict[str, ep.Table]:
    return {
        "every": every_type_table(),
        "small": ep.Table(columns=["v", "s", "f32"], data=[[[1.0, 2.0], None, None], [None] * 3]),
        "frame": ep.Table(
            dataframe=pd.DataFrame({"f32": np.array([1.5, np.nan], np.float32), "i": [1, 2]})
        ),
    }


def test_a_store_written_by_format_1_code_still_loads(tmp_path):
    import shutil

    root = shutil.copytree(FORMAT_1, tmp_path / "store")
    assert list(ep.list_tables("old", "format1", dir=root)) == ["every", "small", "frame"]
    for key, expected in format_1_tables().items():
        loaded = ep.load_table("old", "format1", key, dir=root)
        assert loaded.column_types == expected.column_types, key
        assert loaded == expected, key
    vectors = ep.load_table("old", "format1", "every", dir=root).get_column("vector", "numpy")
    assert vectors.dtype == np.float32


def test_the_writer_keeps_the_format_1_layout(tmp_path):
    with ep.init(project="old", name="format1", dir=tmp_path) as run:
        run.log(format_1_tables())
    old_manifest = json.loads((FORMAT_1 / "old" / "format1" / "manifest.json").read_text())
    new_manifest = json.loads((run.dir / "manifest.json").read_text())
    for key in format_1_tables():
        old = pq.read_table(FORMAT_1 / "old" / "format1" / f"{key}.0.parquet")
        new = pq.read_table(run.dir / f"{key}.0.parquet")
        assert new.schema.equals(old.schema, check_metadata=True), key
        # repr: NaN equals NaN, and -0.0 stays apart from 0.0 (Arrow's equals does neither).
        assert repr(new.to_pylist()) == repr(old.to_pylist()), key
        assert new_manifest["tables"][key][0]["columns"] == old_manifest["tables"][key][0]["columns"]


# -- the seed's examples, with embproj_panel in place of wandb ---------------------------------
def test_seed_hello_world():
    ep.init(project="embedding_tutorial")
    embeddings = [
        # D1   D2   D3   D4   D5
        [0.2, 0.4, 0.1, 0.7, 0.5],  # embedding 1
        [0.3, 0.1, 0.9, 0.2, 0.7],  # embedding 2
        [0.4, 0.5, 0.2, 0.2, 0.1],  # embedding 3
    ]
    ep.log({"embeddings": ep.Table(columns=["D1", "D2", "D3", "D4", "D5"], data=embeddings)})
    ep.finish()

    (run,) = ep.list_runs("embedding_tutorial")
    loaded = ep.load_table("embedding_tutorial", run, "embeddings")
    assert loaded == ep.datasets.hello_world()
    assert loaded.schema.default_embedding == ["D1", "D2", "D3", "D4", "D5"]


def test_seed_digits():
    from sklearn.datasets import load_digits

    ep.init(project="embedding_tutorial")

    # The seed's code, verbatim but for ep in place of wandb.
    ds = load_digits(as_frame=True)
    df = ds.data
    df["target"] = ds.target.astype(str)
    cols = df.columns.tolist()
    df = df[cols[-1:] + cols[:-1]]
    df["image"] = df.apply(lambda row: ep.Image(row[1:].values.reshape(8, 8) / 16.0), axis=1)
    cols = df.columns.tolist()
    df = df[cols[-1:] + cols[:-1]]

    ep.log({"digits": df})
    ep.finish()

    (run,) = ep.list_runs("embedding_tutorial")
    loaded = ep.load_table("embedding_tutorial", run, "digits")
    assert loaded == ep.Table(dataframe=df) == ep.datasets.digits()
    assert len(loaded) == 1797 and loaded.columns[:3] == ["image", "target", "pixel_0_0"]
    assert loaded.schema.default_color == "target"
    assert loaded.schema.default_hover_image == "image"
    assert len(loaded.schema.default_embedding) == 64


def test_digits_dataset_round_trips_through_the_store():
    digits = ep.datasets.digits()
    loaded = log_and_load(digits, key="digits")
    assert loaded == digits
    assert np.array_equal(loaded.get_column("image")[5].to_numpy(), digits.get_column("image")[5].to_numpy())


def test_a_finished_run_leaves_no_temporary_files():
    with ep.init(project="p") as run:
        run.log({"t": ep.Table(columns=["x"], data=[[1]])})
    assert run_files(run) == {".lock", "manifest.json", "t.0.parquet"}


def test_load_shares_repeated_images_and_strings():
    glyphs = [ep.Image(np.full((2, 2), i * 50, dtype=np.uint8)) for i in range(3)]
    images = np.empty(300, dtype=object)
    images[:] = [glyphs[i % 3] for i in range(300)]
    images[7] = None
    frame = pd.DataFrame({"image": images, "label": [str(i % 3) for i in range(300)]})
    with ep.init(project="p", name="r") as run:
        run.log({"t": frame})
    loaded = ep.load_table("p", "r", "t")
    assert loaded == ep.Table(dataframe=frame)
    cells = loaded.get_column("image", convert_to="numpy")
    assert cells[7] is None and loaded.column_nulls("image")[7]
    assert len({id(cell) for cell in cells if cell is not None}) == 3
    assert len({id(label) for label in loaded.get_column("label", convert_to="numpy")}) == 3


# -- faults: a read-only store, a full disk, damaged files -------------------------------------
def deny_writes_under(monkeypatch, folder: Path, code: int = errno.EROFS) -> None:
    """Make ``folder`` behave as on a read-only file system, at the calls the store writes with.

    The suite runs as root here, and root writes through any chmod; so the refusal is made at
    the operating-system calls (open for writing, mkdir, rename, unlink), with the errno the
    kernel would give. ``test_read_only_folder_for_real`` does the same through chmod where
    the tests run as an ordinary user.
    """
    folder = folder.resolve()

    def inside(path) -> bool:
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_io_open = os.open, io.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def os_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & writing and inside(path):
            refuse(path)
        return real_open(path, flags, mode, *args, **kwargs)

    def io_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and inside(file):
            refuse(file)
        return real_io_open(file, mode, *args, **kwargs)

    def refuse_if_inside(real):
        def call(path, *args, **kwargs):
            if inside(path):
                refuse(path)
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr("builtins.open", io_open)
    for name in ("mkdir", "replace", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, refuse_if_inside(getattr(os, name)))


def store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_logging_to_a_read_only_store_fails_clearly_and_writes_nothing(
    monkeypatch, isolated_store, code
):
    earlier = ep.Table(columns=["x"], data=[[1.5], [2.5]])
    run = ep.init(project="p", name="r")
    run.log({"t": earlier})
    before = store_files(isolated_store)
    with monkeypatch.context() as patch:
        deny_writes_under(patch, isolated_store, code)
        with pytest.raises(store.StoreWriteError) as caught:
            run.log({"t": earlier, "u": earlier})
        with pytest.raises(store.StoreWriteError, match="Cannot start run p/other"):
            Run(project="p", name="other")
        with pytest.raises(store.StoreWriteError, match=r"Cannot start run q/\(new\)"):
            Run(project="q")
        with pytest.raises(store.StoreWriteError, match="Cannot mark run p/r finished"):
            run.finish()
    message = str(caught.value)
    assert message.startswith("Cannot log 't', 'u' to run p/r: the store folder ")
    assert "Nothing was written" in message and str(isolated_store) not in message
    assert caught.value.errno == code and isinstance(caught.value, OSError)
    assert store_files(isolated_store) == before  # no temporary file, no new folder
    assert ep.load_table("p", "r", "t") == earlier
    run.log({"u": earlier})  # writable again: the store carries on
    assert list(ep.list_tables("p", "r")) == ["t", "u"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores chmod")
def test_read_only_folder_for_real(isolated_store):
    run = ep.init(project="p", name="r")
    run.log({"t": ep.Table(columns=["x"], data=[[1]])})
    before = store_files(isolated_store)
    run.dir.chmod(0o555)
    try:
        with pytest.raises(store.StoreWriteError, match="not writable"):
            run.log({"t": ep.Table(columns=["x"], data=[[2]])})
    finally:
        run.dir.chmod(0o755)
    assert store_files(isolated_store) == before


@pytest.mark.parametrize("stage", ["parquet", "manifest"])
def test_disk_full_keeps_earlier_tables_and_leaves_no_partial_file(monkeypatch, stage):
    run = ep.init(project="p")
    earlier = ep.Table(columns=["x", "v"], data=[[1.0, [0.5, 1.5]], [2.0, [2.5, 3.5]]])
    run.log({"t": earlier})
    files = run_files(run)
    manifest = (run.dir / "manifest.json").read_bytes()
    real_write_table, real_write_text = store.pq.write_table, Path.write_text

    def full_disk(path: Path, data: bytes) -> None:
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 3])  # what fitted before the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def write_table(table, where, **kwargs):
        buffer = pa.BufferOutputStream()
        real_write_table(table, buffer, **kwargs)
        full_disk(Path(where), buffer.getvalue().to_pybytes())

    def write_text(self, text, *args, **kwargs):
        if self.name.startswith(".manifest.json."):
            full_disk(self, text.encode())
        return real_write_text(self, text, *args, **kwargs)

    with monkeypatch.context() as patch:
        if stage == "parquet":
            patch.setattr(store.pq, "write_table", write_table)
        else:
            patch.setattr(Path, "write_text", write_text)
        with pytest.raises(store.StoreWriteError, match=r"to run p/.*: the disk is full\. Nothing"):
            run.log({"t": ep.Table(columns=["x"], data=[[9.0]]), "big": earlier})
    assert run_files(run) == files and (run.dir / "manifest.json").read_bytes() == manifest
    assert ep.load_table("p", run.name, "t") == earlier
    assert [entry.readable for entry in store.list_entries()] == [True]


def test_store_files_follow_the_umask_not_private(isolated_store):
    """A server that reads the store may run as another user: files are not 0600."""
    old = os.umask(0o022)
    try:
        with ep.init(project="p", name="r") as run:
            run.log({"t": ep.Table(columns=["x"], data=[[1]])})
    finally:
        os.umask(old)
    for name in ("manifest.json", "t.0.parquet"):
        assert (run.dir / name).stat().st_mode & 0o777 == 0o644, name


def damaged_store(root: Path) -> Run:
    """A store with one good table, a cut-short, a missing and a mismatched one, a bad run."""
    table = ep.Table(columns=["x"], data=[[1.0], [2.0]])
    with ep.init(project="p", name="good") as good:
        good.log({"a": table, "cut": table, "gone": table, "hand": table})
    for name, text in (("badjson", None), ("empty", ""), ("other", '{"tables": []}')):
        with ep.init(project="p", name=name) as run:
            run.log({"a": table})
        manifest = run.dir / "manifest.json"
        manifest.write_text(manifest.read_text()[:40] if text is None else text)
    cut = good.dir / "cut.0.parquet"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (good.dir / "gone.0.parquet").unlink()
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0]}), good.dir / "hand.0.parquet")
    return good


def test_listing_marks_damaged_tables_and_runs_and_keeps_the_rest(isolated_store):
    damaged_store(isolated_store)
    labels = [entry.label for entry in store.list_entries()]
    assert labels[0] == "p / good / a (2 rows)"
    by_label = dict(zip(labels, store.list_entries()))
    assert set(labels) == {
        "p / good / a (2 rows)",
        "p / good / cut: unreadable (its file cut.0.parquet is cut short or is not a Parquet file)",
        "p / good / gone: unreadable (its file gone.0.parquet is missing)",
        "p / good / hand: unreadable (its file hand.0.parquet holds 1 columns x 3 rows but the "
        "manifest.json says 1 x 2 (the run folder was changed by hand))",
        "p / badjson: unreadable (its manifest.json is not valid JSON (cut short or edited by "
        "hand: Unterminated string starting at, line 3, column 3))",
        "p / empty: unreadable (its manifest.json is empty)",
        "p / other: unreadable (its manifest.json is not an embproj-panel manifest)",
    }
    assert by_label["p / good / a (2 rows)"].source == ("p", "good", "a")
    assert all(entry.source is None for entry in store.list_entries() if not entry.readable)
    # the lower-level listings say the same
    assert sorted(ep.list_runs("p")) == ["badjson", "empty", "good", "other"]
    steps = {key: s[-1] for key, s in ep.list_tables("p", "good").items()}
    assert [key for key, s in steps.items() if s.readable] == ["a"]
    assert steps["gone"].reason == "its file gone.0.parquet is missing"


def test_opening_a_damaged_table_says_why_without_the_servers_path(isolated_store):
    damaged_store(isolated_store)
    for run, key, words in (
        ("good", "cut", "cut short"),
        ("good", "gone", "missing"),
        ("good", "hand", "changed by hand"),
        ("badjson", "a", "not valid JSON"),
        ("empty", "a", "is empty"),
    ):
        with pytest.raises(store.UnreadableError, match=words) as caught:
            ep.load_table("p", run, key)
        message = str(caught.value)
        assert f"p/{run} cannot be read" in message
        assert str(isolated_store) not in message and "/tmp" not in message, message
    for call in (lambda: ep.load_table("p", "nope", "a"), lambda: ep.list_runs("nope")):
        with pytest.raises(FileNotFoundError) as caught:
            call()
        assert str(isolated_store) not in str(caught.value)


def test_a_file_damaged_past_its_footer_is_reported_on_load(isolated_store):
    """The footer check passes, but the data pages are garbage: load still says so plainly."""
    with ep.init(project="p", name="r") as run:
        run.log({"t": ep.Table(columns=["s"], data=[["x" * 100], ["y" * 100]])})
    path = run.dir / "t.0.parquet"
    data = bytearray(path.read_bytes())
    data[4:60] = b"\xff" * 56  # the first data page, after the PAR1 magic
    path.write_bytes(bytes(data))
    with pytest.raises(store.UnreadableError, match=r"its file t.0.parquet is damaged") as caught:
        ep.load_table("p", "r", "t")
    assert str(isolated_store) not in str(caught.value)
