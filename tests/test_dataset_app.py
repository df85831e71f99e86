"""The projector over a lazy Parquet dataset: it holds what it draws and reads rows on demand.

A dataset of three Parquet files (6,000 rows, row groups of 700) with a vector, a label and
an image column. Every read from the files goes through ``Piece.read`` (the Dask engine's
partitions and ``Dataset.read_rows`` alike); the tests record those reads and assert that,
once the projection is made, the table pages, colours, tooltips, images and exports read only
the rows they show, never the vector column nor the whole dataset, and that
``Dataset.to_table`` (the whole dataset in memory) is never called.
"""

from __future__ import annotations

import io
import socket
import time

import numpy as np
import pandas as pd
import panel as pn
import pyarrow.parquet as pq
import pytest
import requests

import embproj_panel as ep
from embproj_panel import cli
from embproj_panel.colors import COLOR, ROW, color_mapping
from embproj_panel.dataset import Dataset, Piece
from embproj_panel.dataset_table import DatasetTable, LazyColumnError
from embproj_panel.export import selection_frame, write_export
from tests.test_dataset import blobs, write_files

pytestmark = pytest.mark.filterwarnings("ignore:Tensorflow not installed:ImportWarning")

N, ROW_GROUP = 6000, 700


@pytest.fixture()
def folder(tmp_path):
    X, labels = blobs(N, 12)
    write_files(tmp_path / "data", X, labels, files=3, row_group=ROW_GROUP, images=True)
    return tmp_path / "data"


class Reads:
    """Every ``Piece.read``: its columns and rows (wrapping the one function that reads)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[tuple[str, ...], int]] = []
        original = Piece.read
        reads = self

        def read(piece, columns=None):
            table = original(piece, columns)
            reads.calls.append((tuple(table.column_names), table.num_rows))
            return table

        monkeypatch.setattr(Piece, "read", read)

        def whole(self):
            raise AssertionError("Dataset.to_table() read the whole dataset into memory")

        monkeypatch.setattr(Dataset, "to_table", whole)

    def reset(self) -> None:
        self.calls.clear()

    def rows(self, column: str | None = None) -> int:
        return sum(n for columns, n in self.calls if column is None or column in columns)


@pytest.fixture()
def reads(monkeypatch):
    return Reads(monkeypatch)


def projected(folder, **settings) -> ep.Projector:
    projector = ep.Projector(Dataset(folder), **settings)
    projector.wait(timeout=300)
    assert projector.state.error == "", projector.state.error
    return projector


def page_rows(tabulator) -> list[int]:
    return [int(r) for r in tabulator._data["row"]]


# -- the adapter -------------------------------------------------------------------------------


def test_a_dataset_table_answers_the_views_questions_without_rows(folder, reads):
    dataset = Dataset(folder)
    table = DatasetTable(dataset)
    whole = pq.read_table(folder).to_pandas()
    assert len(table) == N and table.columns == ["emb", "label", "image"]
    assert table.column_types == {"emb": "vector", "label": "str", "image": "image"}
    assert table.schema.default_embedding == ["emb"]
    reads.reset()
    cells = table.cells("label", [5999, 3, 700])
    assert cells.tolist() == whole["label"].iloc[[5999, 3, 700]].tolist()
    assert reads.rows() == 700 + 700 + 600 and reads.rows("emb") == 0  # 3 row groups, 1 column
    vectors = table.cells("emb", [10, 11])
    assert vectors.shape == (2, 12)
    np.testing.assert_array_equal(vectors[1], whole["emb"].iloc[11])
    with pytest.raises(LazyColumnError, match="stay on disk"):
        table.get_column("emb", convert_to="numpy")
    with pytest.raises(LazyColumnError):
        table.get_dataframe()
    with pytest.raises(TypeError, match="read-only"):
        table.add_column("more", list(range(N)))


def test_colour_codes_of_a_label_equal_the_in_memory_mapping(folder, reads):
    table = DatasetTable(Dataset(folder))
    assert table.schema.columns["label"].kind == "categorical"  # from the first row group
    reads.reset()
    values = table.color_values("label")
    assert isinstance(values, pd.Categorical) and values.codes.dtype.itemsize <= 4
    assert reads.rows("emb") == 0 and reads.rows("image") == 0 and reads.rows("label") == N
    labels = pq.read_table(folder).column("label").to_pylist()
    lazy, plain = color_mapping(values, "label"), color_mapping(labels, "label")
    assert lazy.color_key == plain.color_key
    assert list(lazy.values) == list(plain.values)
    assert table.color_values("label") is values  # kept: a second colouring reads nothing


def test_color_mapping_of_a_categorical_with_gaps_marks_them_missing():
    values = pd.Categorical.from_codes([0, -1, 1, 0], categories=["b", "a"])
    mapping = color_mapping(values, "c")
    assert list(mapping.values) == ["b", "(missing)", "a", "b"]
    assert list(mapping.color_key) == ["a", "b", "(missing)"]


def test_search_reads_only_the_searched_column_a_piece_at_a_time(folder, reads, monkeypatch):
    from embproj_panel.search import TableSearch

    def whole(self, name, convert_to=None):
        raise AssertionError(f"search read the whole column {name!r}")

    monkeypatch.setattr(DatasetTable, "get_column", whole)
    dataset = Dataset(folder, partition_rows=1400)
    table = DatasetTable(dataset)
    frame = pq.read_table(folder).to_pandas()
    memory = TableSearch(frame[["label"]])
    reads.reset()
    lazy = TableSearch(table)
    for query, regex in (("C3", False), ("", False), ("^c[25]$", True), (r"\w7", True)):
        np.testing.assert_array_equal(lazy.search(query, "label", regex),
                                      memory.search(query, "label", regex))
    np.testing.assert_array_equal(lazy.search("c1"), memory.search("c1"))
    assert {columns for columns, _ in reads.calls} == {("label",)}  # never the vectors, images
    assert max(n for _, n in reads.calls) <= 1400  # one piece at a time, never the column


# -- the projector -----------------------------------------------------------------------------


def test_projector_over_a_dataset_reads_table_pages_on_demand(folder, reads):
    projector = projected(folder, color_by="label", page_size=10)
    state, tabulator = projector.state, projector.table.tabulator
    assert isinstance(state.table, DatasetTable) and len(state.projection.rows) == N
    # What the app holds: float32 coordinates, the row, the colour codes.
    assert state.frame[["x", "y"]].dtypes.tolist() == [np.float32, np.float32]
    assert isinstance(state.frame[COLOR].dtype, pd.CategoricalDtype)
    # The table's frame is an index: no cell of any column.
    assert tabulator.value.shape == (N, 0) and len(tabulator.current_view) == N
    labels = pq.read_table(folder).column("label").to_pylist()
    assert page_rows(tabulator) == list(range(10))
    assert list(tabulator._data["c1"]) == labels[:10]
    assert all(uri.startswith("data:image/png") for uri in tabulator._data["thumb"])

    reads.reset()
    tabulator.page = 300  # rows 2990-2999: in the second file's fifth row group
    assert page_rows(tabulator) == list(range(2990, 3000))
    assert list(tabulator._data["c1"]) == labels[2990:3000]
    assert 0 < reads.rows() <= 2 * ROW_GROUP and reads.rows("emb") == 0

    reads.reset()
    projector.selection = [5, 4000, 5999]  # "Show selection" lists the selected rows
    tabulator.page = 1
    assert page_rows(tabulator) == [5, 4000, 5999]
    assert list(tabulator._data["c1"]) == [labels[5], labels[4000], labels[5999]]
    assert tabulator.selection == [5, 4000, 5999]  # positions in the index: the rows
    assert reads.rows("emb") == 0 and reads.rows() <= 6 * ROW_GROUP


def test_the_lazy_table_sorts_on_numbers_and_labels_reading_only_that_column(tmp_path,
                                                                             reads):
    import pyarrow as pa

    X, labels = blobs(N, 12)
    rng = np.random.default_rng(1)
    score = rng.normal(size=N).round(1)  # ties: kept in row order, as Panel sorts a frame
    score[::7] = np.nan
    name = [f"item {i}" for i in range(N)]
    table = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 12),
                      "label": pa.array([f"C{v}" if v % 2 else f"c{v}" for v in labels]),
                      "score": pa.array(score), "name": pa.array(name)})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part.parquet", row_group_size=ROW_GROUP)
    frame = table.drop(["emb"]).to_pandas()
    projector = projected(tmp_path / "data", page_size=10)
    tabulator = projector.table.tabulator
    field = {title: key for key, title in tabulator.titles.items()}
    assert tabulator.sortable == {field["label"]: True, field["score"]: True,
                                  field["name"]: False}
    assert "Not sortable" in tabulator.header_tooltips[field["name"]]

    reads.reset()
    tabulator.sorters = [{"field": field["score"], "dir": "desc"}]
    expected = frame.sort_values("score", ascending=False, kind="mergesort").index
    assert page_rows(tabulator) == expected[:10].tolist()
    key_reads = [n for columns, n in reads.calls if columns == ("score",)]
    assert sum(key_reads) == N and reads.rows("emb") == 0  # the key, then one page
    assert reads.rows() - N <= 10 * ROW_GROUP  # the page's rows' row groups, at most 10
    tabulator.page = 600  # the last page: the empty scores, in row order
    assert page_rows(tabulator) == expected[-10:].tolist() == list(range(0, N, 7))[-10:]

    tabulator.page = 1
    tabulator.sorters = [{"field": field["label"], "dir": "asc"},
                         {"field": field["score"], "dir": "asc"}]
    expected = frame.sort_values(["label", "score"], kind="mergesort",
                                 key=lambda c: c.str.lower() if c.name == "label" else c).index
    assert page_rows(tabulator) == expected[:10].tolist()

    projector.selection = [50, 3, 4000, 7]  # "Show selection": the selected rows, sorted
    assert page_rows(tabulator) == [int(r) for r in expected if r in (50, 3, 4000, 7)]


def test_the_lazy_table_renders_its_columns_as_a_bokeh_model(folder):
    projector = projected(folder, color_by="label")
    model = projector.table.tabulator.get_root()
    assert [column.field for column in model.columns] == ["row", "thumb", "c1"]
    assert list(model.source.data["row"]) == list(range(10))
    assert model.max_page == N // 10


def test_table_clicks_select_rows_of_the_page(folder):
    projector = projected(folder, page_size=10)
    tabulator = projector.table.tabulator
    tabulator.page = 3
    tabulator.selection = [2]  # the third row of the whole index: position = row
    assert projector.selection == [2]


def test_colour_tooltip_and_hover_image_of_a_dataset(folder, reads):
    projector = projected(folder, color_by="label")
    state = projector.state
    labels = pq.read_table(folder).column("label").to_pylist()
    rows = state.frame[ROW].to_numpy()
    assert [str(v) for v in state.frame[COLOR].iloc[:50]] == [labels[r] for r in rows[:50]]
    reads.reset()
    state.tooltip_columns = ["label"]
    state.hover_image = "image"
    fields, _ = projector.scatter._tooltip_fields()
    record = projector.scatter._record(123, fields)
    row = int(rows[123])
    assert record[ROW] == row and record["t0"] == labels[row]
    assert record["thumb"].startswith("data:image/png")
    assert reads.rows("emb") == 0 and reads.rows() <= 2 * ROW_GROUP  # that row's groups only


def test_export_of_a_dataset_writes_every_row_a_chunk_at_a_time(folder, reads, tmp_path):
    projector = projected(folder)
    state = projector.state
    reads.reset()
    path = tmp_path / "all.parquet"
    assert write_export(state.table, state.projection, path, "parquet", chunk_rows=1000) == N
    # Six chunks of 1,000 rows, each reading only its rows' row groups (at most 3 of them,
    # in one or two files): never more than a chunk's groups at a time.
    assert len(reads.calls) >= 6 and max(n for _, n in reads.calls) <= 3 * ROW_GROUP
    assert reads.rows() <= 6 * 3 * ROW_GROUP
    written = pq.read_table(path)
    assert written.num_rows == N and written.column_names == ["row", "x", "y", "emb", "label",
                                                               "image"]
    expected = selection_frame(_in_memory(folder), state.projection)
    np.testing.assert_array_equal(written.column("row").to_numpy(), np.arange(N))
    np.testing.assert_allclose(written.column("x").to_numpy(), expected["x"].to_numpy())
    assert written.column("label").to_pylist() == expected["label"].tolist()
    csv = io.BytesIO()
    write_export(state.table, state.projection, csv, "csv", rows=[4, 2, 5000], chunk_rows=2)
    lines = csv.getvalue().decode().splitlines()
    assert lines[0] == "row,x,y,label" and [line.split(",")[0] for line in lines[1:]] == \
        ["2", "4", "5000"]


def _in_memory(folder):
    from embproj_panel.arrow import table_from_arrow

    arrow = pq.read_table(folder)
    return table_from_arrow(arrow, [{"name": "emb", "type": "vector"},
                                    {"name": "label", "type": "str"},
                                    {"name": "image", "type": "image"}])


def test_downloads_of_a_dataset_stream_and_stop_at_the_browser_cap(folder):
    projector = projected(folder)
    downloads = projector.downloads
    downloads.rows.value = "all"
    data = downloads._csv()
    assert data is not None and len(data.getvalue().decode().splitlines()) == N + 1
    downloads.max_bytes = 50_000  # the Parquet of every vector and image is bigger
    assert downloads._parquet() is None
    assert downloads.alert.visible and "50,000" not in downloads.alert.object
    assert "MB a browser download can carry" in downloads.alert.object


def test_neighbour_lists_read_only_their_rows(folder, reads):
    from embproj_panel.neighbors import Neighbors, neighbors_frame

    table = DatasetTable(Dataset(folder))
    reads.reset()
    found = Neighbors(0, np.array([4000, 3]), np.array([0.1, 0.2]), "cosine", True)
    frame = neighbors_frame(table, found)
    labels = pq.read_table(folder).column("label").to_pylist()
    assert frame["row"].tolist() == [4000, 3] and frame["label"].tolist() == [labels[4000],
                                                                               labels[3]]
    assert reads.rows() <= 3 * 2 * ROW_GROUP


# -- serving -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _served(page) -> str:
    port = _free_port()
    pn.serve({"app": page}, port=port, threaded=True, show=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return f"http://localhost:{port}/app"


def test_embproj_serve_a_dataset_folder_serves_it_lazily(folder, reads, monkeypatch):
    from embproj_panel.app import ProjectorApp

    shown = []
    original = ProjectorApp.show_table

    def show_table(self, table, label, notes=()):
        shown.append((self, table, label))
        return original(self, table, label, notes)

    monkeypatch.setattr(ProjectorApp, "show_table", show_table)
    source = cli.read_source(str(folder))
    assert isinstance(source.table, DatasetTable) and "3 file(s)" in source.label
    glob = cli.read_source(str(folder / "part-*.parquet"))
    assert isinstance(glob.table, DatasetTable) and len(glob.table) == N
    url = _served(cli._page_factory(source))
    response = requests.get(url, timeout=120)
    assert response.status_code == 200 and "bokeh" in response.text.lower()
    app, table, label = shown[0]
    assert table is source.table and app.state.table is source.table
    app.state.wait(timeout=300)
    assert len(app.state.projection.rows) == N and app.state.error == ""


def test_embproj_serve_an_empty_glob_is_one_line(tmp_path):
    with pytest.raises(cli.CommandError, match="No files match"):
        cli.read_source(str(tmp_path / "nothing-*.parquet"))


def test_the_url_opens_a_logged_dataset_lazily(monkeypatch, reads):
    from embproj_panel.app import ProjectorApp

    monkeypatch.setenv("EMBPROJ_DATASET_MIN_ROWS", "500")
    X, labels = blobs(1200, 6)
    run = ep.init(project="big", name="r1")
    ep.log({"points": pd.DataFrame({"emb": list(X), "label": [f"c{v}" for v in labels]})})
    run.finish()
    apps = []

    def page():
        app = ProjectorApp()
        apps.append(app)
        return app.template()

    url = _served(page)
    assert requests.get(url + "?project=big&run=r1&table=points&color=label",
                        timeout=120).status_code == 200
    state = apps[0].state
    assert isinstance(state.table, DatasetTable) and len(state.table) == 1200
    assert state.color_by == "label"
    state.wait(timeout=300)
    assert len(state.projection.rows) == 1200 and state.color.kind == "categorical"


def test_neighbours_of_a_dataset_come_from_a_scan_piece_by_piece(folder, reads):
    from embproj_panel.neighbors import NeighborIndex

    projector = projected(folder)
    X, _ = blobs(N, 12)
    expected = NeighborIndex(X, "cosine").query(3, 10)
    reads.reset()
    frame = projector.neighbors(3)  # Python waits for the scan and gets the list
    assert frame["row"].tolist() == expected.rows.tolist()
    np.testing.assert_allclose(frame["distance"], expected.distances, rtol=1e-12)
    assert frame["label"].tolist() == [f"c{v}" for v in blobs(N, 12)[1][expected.rows]]
    # one read of the vectors, a piece at a time (never the whole dataset: to_table raises),
    # plus the listed rows' own row groups for the frame's columns
    assert N <= reads.rows("emb") <= N + 10 * ROW_GROUP
    assert max(n for c, n in reads.calls if "emb" in c) < N
    # a tap: the scan runs in the background; the panel shows its progress, then the list
    projector.selection = [8]
    find = projector.neighbors_panel.find
    assert find.query_row == 8 and find.neighbor_rows == []
    assert "Reading the 6,000 rows on disk" in projector.neighbors_panel.message.object
    projector.wait()
    assert find.neighbor_rows == NeighborIndex(X, "cosine").query(8, 10).rows.tolist()
    assert "10 nearest rows to row 8" in projector.neighbors_panel.message.object
    assert len(projector.neighbors_panel.list.value) == 10


def test_a_newer_tap_supersedes_a_running_scan(folder):
    projector = projected(folder)
    find = projector.neighbors_panel.find
    find.request_neighbors(8)
    first = find._slot.job
    find.request_neighbors(9)
    projector.wait()
    assert first.done and find.query_row == 9 and len(find.neighbor_rows) == 10
    # a row it cannot search: the reason is shown, nothing listed, nothing raised
    find.request_neighbors(N + 5)
    projector.wait()
    assert find.neighbor_rows == [] and "not among the 6,000 rows" in find.neighbor_message


def test_thumbnails_on_the_map_are_read_in_one_pass(folder, reads):
    projector = projected(folder, hover_image="image")
    frame = projector.state.frame
    x, y = frame["x"], frame["y"]
    reads.reset()
    element = projector.images.thumbnails((float(x.min()), float(x.max())),
                                          (float(y.min()), float(y.max())), 800, 600,
                                          show_images=True, max_images=60)
    shown = projector.images.shown_rows
    assert 10 <= len(shown) <= 60 and len(element) == len(shown)
    # One read per file for the whole batch (three files), not one per thumbnail, and only
    # a few row groups: the pick prefers rows of the first groups (ImageCells' blocks); a
    # plain priority read 6 of the 9 groups (3,900 rows) for these 60 thumbnails; this reads 4.
    assert len(reads.calls) <= 3 and reads.rows("emb") == 0
    assert reads.rows("image") <= N // 2, reads.calls
    # The groups are numbered across the files (3 files of 700 + 700 + 600 rows).
    groups = projector.state.table.read_blocks([0, 699, 700, 1999, 2000, 4000, 5999])
    assert groups.tolist() == [0, 0, 1, 2, 3, 6, 8]


def test_image_cells_of_row_groups_read_once_are_kept_within_a_bound(folder, reads,
                                                                       monkeypatch):
    """A pan or zoom of images on the map reads its thumbnails mostly from the row groups the
    last view read (ImageCells' blocks): a table keeps those groups' image cells, bounded."""
    from embproj_panel import dataset_table
    from embproj_panel.arrow import images_from_arrow

    table = DatasetTable(Dataset(folder))
    pngs = [None if image is None else image.png_bytes
            for image in images_from_arrow(pq.read_table(folder).column("image"))[0]]
    reads.reset()
    rows = [5999, 3, 700, 3, 1401, 699]  # groups 8, 0, 1, 0, 2, 0 (in files of 2,000 rows)
    assert [im.png_bytes for im in table.cells("image", rows)] == [pngs[r] for r in rows]
    assert len(reads.calls) == 2 and reads.rows("image") == 2000 + 600  # one read per file
    kept = table.image_cache_bytes
    assert 0 < kept <= dataset_table.IMAGE_GROUP_CACHE_BYTES
    reads.reset()
    again = [10, 1000, 5500, 710]  # the same groups: nothing read
    assert [im.png_bytes for im in table.cells("image", again)] == [pngs[r] for r in again]
    assert reads.calls == [] and table.image_cache_bytes == kept
    # The bound: room for about two groups' images; the least recently used go first.
    small = DatasetTable(Dataset(folder))
    small.cells("image", [0])
    bound = int(2.5 * small.image_cache_bytes)
    monkeypatch.setattr(dataset_table, "IMAGE_GROUP_CACHE_BYTES", bound)
    for rows in ([700], [1400], [700]):  # groups 1, 2, then 1 again
        small.cells("image", rows)
        assert small.image_cache_bytes <= bound
    reads.reset()
    small.cells("image", [1])  # group 0 went out first
    assert reads.rows("image") == ROW_GROUP
    reads.reset()
    small.cells("image", [701])  # group 1 was used last
    assert reads.calls == []
    # A group larger than the whole bound is never kept (it would push out everything).
    monkeypatch.setattr(dataset_table, "IMAGE_GROUP_CACHE_BYTES", 1000)
    tiny = DatasetTable(Dataset(folder))
    assert tiny.cells("image", [0])[0].png_bytes == pngs[0] and tiny.image_cache_bytes == 0


def test_a_gallery_page_of_a_dataset_is_read_in_one_pass(folder, reads):
    projector = projected(folder, hover_image="image", color_by="label")
    projector.selection = list(range(0, N, 150))  # rows in every file
    gallery = projector.gallery
    reads.reset()
    tiles = gallery.tiles()
    captions = gallery._captions(np.asarray(gallery.page_rows))
    labels = pq.read_table(folder).column("label").to_pylist()
    assert len(tiles) == len(gallery.page_rows) > 1
    assert captions == [labels[row] for row in gallery.page_rows]
    assert len(reads.calls) <= 2 * 3 and reads.rows("emb") == 0  # images, then labels


def test_a_csv_export_of_a_dataset_never_reads_its_vectors_or_images(folder, reads):
    projector = projected(folder)
    reads.reset()
    write_export(projector.state.table, projector.state.projection, io.BytesIO(), "csv")
    assert reads.rows("label") == N and reads.rows("emb") == 0 and reads.rows("image") == 0


def test_embproj_project_a_dataset_folder(folder, reads, tmp_path, capsys):
    out = tmp_path / "coords.parquet"
    assert cli.main(["project", str(folder), "--method", "pca", "-o", str(out)]) == 0
    written = pq.read_table(out)
    assert written.num_rows == N and written.column_names == ["row", "x", "y"]
    assert f"Wrote {N:,} rows" in capsys.readouterr().out


def test_faithfulness_says_it_is_not_computed_for_a_lazy_dataset(folder):
    projector = projected(folder)
    projector.wait()
    faith = projector.trust.faith
    assert faith.error == "" and faith.values is None and faith._slot.job is None
    assert faith.status == "faithfulness: not computed for a lazy dataset (6,000 rows kept on disk)"
