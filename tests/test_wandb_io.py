"""W&B tables in: live ``wandb.Table`` objects and the files the real ``wandb`` package writes.

The files come from ``wandb`` itself, run offline in a subprocess once per session
(``tests/_wandb_files.py``), never from hand-written JSON; only the hostile-path tests edit a
copy of what wandb wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import _wandb_files  # noqa: E402

import embproj_panel as ep  # noqa: E402
from embproj_panel import wandb_io  # noqa: E402
from embproj_panel.wandb_io import WandbDataWarning  # noqa: E402


@pytest.fixture(scope="session")
def wandb_files(tmp_path_factory) -> Path:
    pytest.importorskip("wandb")
    return _wandb_files.make(tmp_path_factory.getbasetemp() / "wandb-files")


@pytest.fixture(scope="session")
def expected(wandb_files):
    with np.load(wandb_files / "expected.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.fixture
def wandb():
    return pytest.importorskip("wandb")


# -- wandb stays optional ---------------------------------------------------------------------


def test_importing_and_using_the_package_never_imports_wandb(tmp_path):
    code = (
        "import sys, embproj_panel as ep\n"
        "from embproj_panel import wandb_io, store, views\n"
        "t = ep.Table(columns=['a'], data=[[1]])\n"
        "assert not wandb_io.is_wandb_table(t)\n"
        "assert views.as_table(t) is t\n"
        f"ep.init('p', dir={str(tmp_path)!r}); ep.log({{'t': t}}); ep.finish()\n"
        "assert ep.list_wandb(sys.argv[1]) == []\n"
        "assert 'wandb' not in sys.modules, 'wandb was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, cwd=Path(__file__).parents[1], timeout=120)
    assert result.returncode == 0, result.stderr


def test_an_object_that_only_looks_like_a_wandb_table_is_not_one():
    class Table:  # same name, same attributes, other module
        columns = ["a"]
        data = [[1]]

    assert not wandb_io.is_wandb_table(Table())
    with pytest.raises(TypeError, match="expected a wandb.Table"):
        ep.Table.from_wandb(Table())


# -- live objects ------------------------------------------------------------------------------


def live_table(wandb):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (4, 7, 3), dtype=np.uint8)
    vectors = rng.standard_normal((2, 4)).astype(np.float32)
    table = wandb.Table(columns=["id", "name", "score", "lst", "vec", "img", "maybe"])
    table.add_data(0, "a", 0.5, [1.0, 2.0], vectors[0], wandb.Image(gray, caption="gray"), None)
    table.add_data(1, "b", 1.5, [3.0, 4.0], vectors[1], wandb.Image(rgb), 7)
    return table, gray, rgb, vectors


def test_from_wandb_keeps_columns_values_vectors_and_pixels(wandb):
    source, gray, rgb, vectors = live_table(wandb)
    table = ep.Table.from_wandb(source)
    assert table.columns == ["id", "name", "score", "lst", "vec", "img", "maybe"]
    assert table.column_types == {"id": "int", "name": "str", "score": "float", "lst": "vector",
                                  "vec": "vector", "img": "image", "maybe": "int"}
    assert table.get_column("id") == [0, 1] and table.get_column("name") == ["a", "b"]
    assert table.get_column("maybe") == [None, 7]
    np.testing.assert_array_equal(table.get_column("lst", convert_to="numpy"), [[1, 2], [3, 4]])
    got = table.get_column("vec", convert_to="numpy")
    assert got.dtype == np.float32 and np.array_equal(got, vectors)
    first, second = table.get_column("img")
    assert first.caption == "gray" and second.caption is None
    np.testing.assert_array_equal(first.to_numpy(), gray)
    np.testing.assert_array_equal(second.to_numpy(), rgb)
    # ... and the same pixels as wandb itself holds
    np.testing.assert_array_equal(first.to_numpy(), np.asarray(source.data[0][5].image))


def test_from_wandb_of_a_dataframe_table_keeps_column_order(wandb):
    import pandas as pd

    frame = pd.DataFrame({"z": [1, 2], "a": ["x", "y"], "m": [0.1, 0.2]})
    table = ep.Table.from_wandb(wandb.Table(dataframe=frame))
    assert table.columns == ["z", "a", "m"]
    assert table == ep.Table(dataframe=frame)


def test_multi_dimensional_arrays_are_flattened_with_a_warning(wandb):
    cells = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    source = wandb.Table(columns=["m"], data=[[cells[0]], [cells[1]]])
    with pytest.warns(WandbDataWarning, match=r"'m'.*3x4 array was flattened to a 12-d vector"):
        table = ep.Table.from_wandb(source)
    np.testing.assert_array_equal(table.get_column("m", convert_to="numpy"), cells.reshape(2, 12))


def test_media_it_cannot_show_is_left_out_with_a_warning(wandb):
    source = wandb.Table(columns=["id", "page"], data=[[0, wandb.Html("<b>x</b>")],
                                                        [1, wandb.Html("<i>y</i>")]])
    with pytest.warns(WandbDataWarning, match=r"'page' holds wandb Html cells.*left out"):
        table = ep.Table.from_wandb(source)
    assert table.columns == ["id"]


def test_mixed_numbers_and_text_become_text_with_a_warning(wandb):
    source = wandb.Table(columns=["v"], data=[[1], ["two"]], allow_mixed_types=True)
    with pytest.warns(WandbDataWarning, match="mixes numbers and text"):
        table = ep.Table.from_wandb(source)
    assert table.get_column("v") == ["1", "two"]


def test_projector_takes_a_wandb_table(wandb):
    source, *_ = live_table(wandb)
    projector = ep.Projector(source, method="pca")
    assert projector.state.table == ep.Table.from_wandb(source)


def test_log_takes_a_wandb_table_and_it_round_trips(wandb):
    source, gray, rgb, vectors = live_table(wandb)
    with ep.init("p", name="r"):
        ep.log({"live": source})
    loaded = ep.load_table("p", "r", "live")
    assert loaded == ep.Table.from_wandb(source)
    np.testing.assert_array_equal(loaded.get_column("img")[1].to_numpy(), rgb)


# -- a run folder written by wandb -------------------------------------------------------------


def test_list_wandb_finds_each_run_file_once(wandb_files):
    files = ep.list_wandb(wandb_files / "wandb")
    assert [(f.key, f.step, f.kind) for f in files] == [
        ("big", 2, "run"), ("digits", 1, "run"), ("embeddings", 0, "run"), ("embeddings", 3, "run"),
    ]  # latest-run is a symlink to the same run: not followed, not listed twice
    run = files[0].folder
    assert run.name.startswith("offline-run-") and all(f.folder == run for f in files)
    assert files[0].name == f"{run.name}:big@2"
    assert ep.list_wandb(run) == [
        wandb_io.WandbTableFile(f.key, f.step, f.kind, f.path, f.folder,
                                f.name.replace(run.name, "."), f.size) for f in files]


def test_run_file_steps_are_wandbs_global_steps(wandb_files, expected):
    run = wandb_files / "wandb"
    last = wandb_io.read_wandb(run, "embeddings")
    assert len(last.table) == 2 and last.file.step == 3 and last.notes == []
    first = ep.load_wandb(run, "embeddings", step=0)
    assert first.columns == ["D1", "D2", "D3", "D4", "D5"]
    np.testing.assert_array_equal(np.column_stack([first.get_column(c) for c in first.columns]),
                                  expected["hello"])
    with pytest.raises(IndexError, match=r"logged at steps \[0, 3\]; no step 1"):
        ep.load_wandb(run, "embeddings", step=1)


def test_run_file_images_cannot_be_recovered_and_it_says_so(wandb_files, expected):
    with pytest.warns(WandbDataWarning, match=r"'image' \(Image\) could not be recovered"):
        table = ep.load_wandb(wandb_files / "wandb", "digits")
    assert table.columns[0] == "target" and len(table.columns) == 65  # image left out
    assert table.get_column("target") == list(expected["targets"])
    pixels = np.column_stack([table.get_column(c) for c in table.columns[1:]])
    np.testing.assert_array_equal(pixels, expected["data"])


def test_run_file_cut_at_10000_rows_is_reported_and_vectors_are_exact(wandb_files, expected):
    loaded = wandb_io.read_wandb(wandb_files / "wandb", "big")
    assert len(loaded.table) == wandb_io.RUN_FILE_MAX_ROWS  # 12,000 were logged
    assert len(loaded.notes) == 1 and "10,000 rows" in loaded.notes[0]
    assert "may have had more" in loaded.notes[0]
    assert loaded.table.columns == ["id", "label", "vec"]
    vec = loaded.table.get_column("vec", convert_to="numpy")
    assert vec.shape == (10_000, 256)
    np.testing.assert_array_equal(vec.astype(np.float32), expected["big"][:10_000])
    assert loaded.table.get_column("id")[-1] == 9_999


# -- an artifact folder written by wandb -------------------------------------------------------


def test_artifact_table_round_trips_pixels_captions_and_vectors(wandb_files, expected):
    folder = wandb_files / "artifact"
    files = ep.list_wandb(folder)
    assert [(f.key, f.step, f.kind, f.name) for f in files] == [("digits", None, "artifact", ".:digits")]
    loaded = wandb_io.read_wandb(folder)
    assert loaded.notes == []
    table = loaded.table
    n = _wandb_files.ARTIFACT_ROWS
    pixel_names = [f"pixel_{i}_{j}" for i in range(8) for j in range(8)]
    assert table.columns == ["image", "target", *pixel_names, "emb256", "emb8", "tags"]
    assert len(table) == n
    images = table.get_column("image")
    for i in (0, 1, n - 1):
        np.testing.assert_array_equal(images[i].to_numpy(), expected["pixels"][i])
        assert images[i].caption == f"digit {expected['targets'][i]}"
    # the npz column (256 > 150 dims) and the inline one are exact
    emb256 = table.get_column("emb256", convert_to="numpy")
    assert emb256.dtype == np.float32 and np.array_equal(emb256, expected["emb256"])
    np.testing.assert_array_equal(table.get_column("emb8", convert_to="numpy"), expected["emb8"])
    np.testing.assert_array_equal(table.get_column("tags", convert_to="numpy")[:2], [[0, 1], [1, 2]])


def test_artifact_json_is_what_the_issue_describes(wandb_files):
    """Guards the reader's assumptions against the installed wandb's writer."""
    document = json.loads((wandb_files / "artifact" / "digits.table.json").read_text())
    assert document["_type"] == "table" and document["nrows"] == _wandb_files.ARTIFACT_ROWS
    types = document["column_types"]["params"]["type_map"]
    assert types["image"]["wb_type"] == "union"
    ndarray = [t for t in types["emb256"]["params"]["allowed_types"] if t["wb_type"] == "ndarray"]
    assert ndarray[0]["params"]["serialization_path"]["path"].startswith("media/serialized_data/")
    assert document["data"][0][-3] is None  # the npz column's cells are nulls
    assert document["data"][0][0]["_type"] == "image-file"


def test_artifact_image_is_the_png_wandb_wrote(wandb_files):
    document = json.loads((wandb_files / "artifact" / "digits.table.json").read_text())
    cell = document["data"][5][0]
    with PILImage.open(wandb_files / "artifact" / cell["path"]) as png:
        written = np.asarray(png)
    table = ep.load_wandb(wandb_files / "artifact", "digits")
    np.testing.assert_array_equal(table.get_column("image")[5].to_numpy(), written)


# -- hostile files -----------------------------------------------------------------------------


@pytest.fixture
def hostile_artifact(wandb_files, tmp_path):
    """A copy of the artifact whose paths try to leave it, and a file outside to reach."""
    folder = tmp_path / "art"
    shutil.copytree(wandb_files / "artifact", folder)
    secret = tmp_path / "secret.png"
    PILImage.new("L", (3, 3), 200).save(secret)
    np.savez(tmp_path / "outside.npz", emb256=np.zeros((_wandb_files.ARTIFACT_ROWS, 256)))
    (folder / "media" / "images" / "link.png").symlink_to(secret)
    path = folder / "digits.table.json"
    document = json.loads(path.read_text())
    hostile = ["../secret.png", str(secret), "media/images/link.png", "media/../../secret.png",
               "C:\\secret.png", "media/images/\x00.png"]
    for row, relative in enumerate(hostile):
        document["data"][row][0]["path"] = relative
    types = document["column_types"]["params"]["type_map"]
    for t in types["emb256"]["params"]["allowed_types"]:
        if t["wb_type"] == "ndarray":
            t["params"]["serialization_path"]["path"] = "../outside.npz"
    path.write_text(json.dumps(document))
    return folder, len(hostile)


def test_paths_never_leave_the_artifact_folder(hostile_artifact):
    folder, n_hostile = hostile_artifact
    loaded = wandb_io.read_wandb(folder)
    images = loaded.table.get_column("image")
    assert images[:n_hostile] == [None] * n_hostile
    assert images[n_hostile] is not None  # the rest load
    assert "emb256" not in loaded.table.columns
    text = " ".join(loaded.notes)
    assert f"{n_hostile} image path(s) lead outside the folder" in text
    assert "'emb256' was left out: its array file '../outside.npz' is not a path inside" in text


def test_a_pickled_array_file_is_refused(wandb_files, tmp_path):
    folder = tmp_path / "art"
    shutil.copytree(wandb_files / "artifact", folder)
    (npz,) = (folder / "media" / "serialized_data").iterdir()
    objects = np.empty(_wandb_files.ARTIFACT_ROWS, dtype=object)
    objects[:] = [[1.0, 2.0]] * len(objects)
    np.savez(npz, emb256=objects)  # needs pickle to read back
    loaded = wandb_io.read_wandb(folder)
    assert "emb256" not in loaded.table.columns
    assert any("'emb256' was left out" in note and "pickle" in note for note in loaded.notes)


def test_a_missing_image_file_leaves_its_cell_empty_and_says_so(wandb_files, tmp_path):
    folder = tmp_path / "art"
    shutil.copytree(wandb_files / "artifact", folder)
    document = json.loads((folder / "digits.table.json").read_text())
    (folder / document["data"][2][0]["path"]).unlink()
    loaded = wandb_io.read_wandb(folder)
    assert loaded.table.get_column("image")[2] is None
    assert any("1 image file(s) could not be read" in note for note in loaded.notes)


# -- errors ------------------------------------------------------------------------------------


def test_errors_name_what_exists(wandb_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        ep.load_wandb(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No W&B tables"):
        ep.load_wandb(tmp_path)
    with pytest.raises(ValueError, match=r"holds 3 tables; pass a key, one of \['big', 'digits', 'embeddings'\]"):
        ep.load_wandb(wandb_files / "wandb")
    with pytest.raises(KeyError, match="the keys are"):
        ep.load_wandb(wandb_files / "wandb", "nope")
    with pytest.raises(ValueError, match="artifact table: it has no steps"):
        ep.load_wandb(wandb_files / "artifact", "digits", step=2)
    bad = tmp_path / "bad.table.json"
    bad.write_text('{"columns": ["a"], "data": [[1, 2]]}')
    with pytest.raises(ValueError, match="row 0 does not have 1 cells"):
        ep.load_wandb(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not a readable W&B table file"):
        ep.load_wandb(bad)


def test_the_same_key_in_two_folders_must_be_chosen(wandb_files, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(wandb_files / "artifact", tmp_path / name)
    with pytest.raises(ValueError, match="is in 2 folders"):
        ep.load_wandb(tmp_path, "digits")
    assert len(ep.load_wandb(tmp_path / "a", "digits")) == _wandb_files.ARTIFACT_ROWS


# -- what the app lists --------------------------------------------------------------------------


def test_source_options_name_tables_the_app_can_reopen(wandb_files, monkeypatch):
    options = wandb_io.source_options(wandb_files)
    assert len(options) == 5
    label = next(label for label in options if "artifact" in label)
    assert label == "W&B / artifact / digits (artifact)"
    kind, name = options[label]
    assert kind == "wandb" and name == "artifact:digits"
    assert len(wandb_io.load_source(name, wandb_files).table) == _wandb_files.ARTIFACT_ROWS
    with pytest.raises(KeyError):
        wandb_io.load_source("../artifact:digits", wandb_files)
    monkeypatch.setenv(wandb_io.WANDB_DIR_ENV, str(wandb_files))
    assert wandb_io.source_options() == options


def test_default_wandb_dir_is_the_env_then_dot_wandb(tmp_path, monkeypatch):
    monkeypatch.delenv(wandb_io.WANDB_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert wandb_io.default_wandb_dir() is None and wandb_io.source_options() == {}
    (tmp_path / "wandb").mkdir()
    assert wandb_io.default_wandb_dir() == Path("wandb")
    monkeypatch.setenv(wandb_io.WANDB_DIR_ENV, str(tmp_path / "elsewhere"))
    assert wandb_io.default_wandb_dir() == tmp_path / "elsewhere"


def test_a_search_that_meets_too_many_folders_stops_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(wandb_io, "_MAX_FOLDERS", 3)
    (tmp_path / "a" / "b" / "c" / "d").mkdir(parents=True)
    with pytest.warns(WandbDataWarning, match="Stopped looking for W&B tables .* after 3 folders"):
        assert ep.list_wandb(tmp_path) == []
