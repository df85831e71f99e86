"""Tests for the one Table <-> Arrow codec that the store, the export and the uploads share."""

from __future__ import annotations

import ast
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import embproj_panel as ep
from embproj_panel import arrow
from embproj_panel.columns import STORAGE_TYPES
from embproj_panel.export import selection_frame, to_parquet_bytes
from embproj_panel.uploads import parse_upload

PACKAGE = Path(__file__).resolve().parents[1] / "embproj_panel"


def one_of_each() -> ep.Table:
    """Every storage type, each with an empty cell."""
    table = ep.Table(
        columns=["s", "i", "b", "f", "img", "none"],
        data=[
            ["a", 1, True, 0.5, ep.Image(np.eye(2), caption="c"), None],
            [None, None, None, None, None, None],
            ["b", 3, False, float("nan"), ep.Image(np.zeros((2, 2))), None],
        ],
    )
    table.add_column("v32", np.arange(6, dtype=np.float32).reshape(3, 2))
    table.add_column("v64", [[1.0, 2.0, 3.0], None, [4.0, 5.0, 6.0]])
    return table


def test_every_storage_type_has_one_codec():
    assert set(arrow.CODECS) == set(STORAGE_TYPES)


def test_table_round_trips_through_arrow_with_its_types():
    table = one_of_each()
    data, specs = arrow.table_to_arrow(table)
    assert data.schema.field("v32").type == pa.list_(pa.float32(), 2)
    assert data.schema.field("v64").type == pa.list_(pa.float64(), 3)
    assert data.schema.field("img").type == arrow.IMAGE_TYPE
    assert data.schema.field("none").type == pa.null()
    assert [spec["type"] for spec in specs] == list(table.column_types.values())
    assert specs[-2] == {"name": "v32", "type": "vector", "dim": 2, "dtype": "float32"}
    back = arrow.table_from_arrow(data, specs)
    assert back == table and back.column_types == table.column_types
    assert back.get_column("v32", "numpy").dtype == np.float32
    assert back.get_column("v64")[1] is None


def test_a_sliced_vector_column_decodes_its_own_rows():
    values = np.arange(10, dtype=np.float32).reshape(5, 2)
    array = arrow.column_to_arrow("vector", values, None).slice(2, 2)
    got, nulls = arrow.column_from_arrow("vector", array)
    np.testing.assert_array_equal(got, values[2:4])
    assert nulls is None


def test_store_export_and_upload_write_the_same_layout(tmp_path):
    table = one_of_each()
    with ep.init(project="p", name="r", dir=tmp_path) as run:
        run.log({"t": table})
    stored = pq.read_schema(run.dir / "t.0.parquet")
    exported = pq.read_schema(io.BytesIO(to_parquet_bytes(selection_frame(table, None))))
    for name in ("v32", "v64", "img"):
        assert exported.field(name).type == stored.field(name).type, name
    # and the upload parser reads both files back to the same vectors (of their own float
    # type) and images
    for content in (
        (run.dir / "t.0.parquet").read_bytes(),
        to_parquet_bytes(selection_frame(table, None)),
    ):
        back = parse_upload(content, "t.parquet").table
        for name in ("v32", "v64"):
            expected = table.get_column(name, "numpy")
            got = back.get_column(name, "numpy")
            assert got.dtype == expected.dtype, name
            np.testing.assert_array_equal(got, expected)
            assert back.column_nulls(name) is None or back.column_nulls(name).tolist() == [
                False, True, False
            ]
        assert back.get_column("img") == table.get_column("img")


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (pa.array([[1, 2], None, [3, 4]], pa.list_(pa.int32())), np.float64),
        (pa.array([[1.0, 2.0], [3.0, 4.0], None], pa.list_(pa.float16())), np.float32),
        (pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.large_list(pa.float32())), np.float32),
    ],
)
def test_vectors_from_other_list_types(array, dtype):
    values, nulls = arrow.vectors_from_arrow(array)
    assert values.dtype == dtype and values.shape == (3, 2)
    present = ~nulls if nulls is not None else np.ones(3, bool)
    assert np.isfinite(values[present]).all() and np.isnan(values[~present]).all()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (pa.array([[1.0], None, [1.0, 2.0]]), r"different lengths \(1 to 2 numbers; row 2"),
        (pa.array([None, None], pa.list_(pa.float64())), "every row is empty"),
        (pa.array([[], []], pa.list_(pa.float64())), "no numbers"),
    ],
)
def test_vectors_that_are_no_matrix_are_refused_with_the_row(array, message):
    with pytest.raises(ValueError, match=message):
        arrow.vectors_from_arrow(array)


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring a size (no pixels: a decompression bomb's face)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_images_from_binary_and_structs_with_null_rows():
    png = ep.Image(np.zeros((2, 2), np.uint8)).png_bytes
    plain, nulls = arrow.images_from_arrow(pa.array([png, None]))
    assert plain[0].png_bytes == png and plain[1] is None and nulls.tolist() == [False, True]
    # A null struct row whose field still holds bytes is empty, not an image.
    structs = pa.StructArray.from_arrays(
        [pa.array([png, b"junk"]), pa.array(["a", "b"])],
        fields=list(arrow.IMAGE_TYPE),
        mask=pa.array([False, True]),
    )
    images, nulls = arrow.images_from_arrow(structs)
    assert images[0].caption == "a" and images[1] is None


def test_image_bombs_and_junk_are_refused_naming_the_row():
    png = ep.Image(np.zeros((2, 2), np.uint8)).png_bytes
    with pytest.raises(ValueError, match=r"row 1: 100000x100000 pixels is too large"):
        arrow.images_from_arrow(pa.array([png, png_header(100_000, 100_000)]))
    with pytest.raises(ValueError, match="row 2"):
        arrow.images_from_arrow(pa.array([png, png, b"not an image"]))


def test_unknown_storage_type_is_a_type_error():
    with pytest.raises(TypeError, match="unknown storage type 'complex'"):
        arrow.column_to_arrow("complex", np.zeros(2), None)


def test_a_column_that_cannot_be_written_is_named():
    table = ep.Table(columns=["s"], data=[["ok"], ["\ud800"]])  # a lone surrogate is no UTF-8
    with pytest.raises(ValueError, match=r"column 's' \(str\)"):
        arrow.table_to_arrow(table)


def test_specs_and_columns_must_match():
    data, specs = arrow.table_to_arrow(ep.Table(dataframe=pd.DataFrame({"a": [1, 2]})))
    with pytest.raises(ValueError, match="1 columns but 2 are described"):
        arrow.table_from_arrow(data, [*specs, specs[0]])


def test_the_package_imports_form_no_cycle():
    """schema and table once imported each other; no module may import one that imports it back."""
    modules = {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): path
        for path in PACKAGE.rglob("*.py")
    }
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # local imports too
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            imported |= {t for t in targets if t in modules and t != name}
        graph[name] = imported
    # ``from embproj_panel import __version__`` reaches the package itself; the package's own
    # __init__ importing its modules is the normal direction, not a cycle.
    graph = {name: {t for t in deps if t != "embproj_panel"} for name, deps in graph.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [cycle for name in graph if (cycle := cycle_from(name))]
    assert not cycles, cycles
