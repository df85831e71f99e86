"""Export: the selection frame's coordinates match the projection; CSV and Parquet contents."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embproj_panel.compute import Projection, project
from embproj_panel.export import csv_omitted, selection_frame, to_csv_bytes, to_parquet_bytes
from embproj_panel.images import Image
from embproj_panel.table import Table
from embproj_panel.uploads import parse_upload

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def table() -> Table:
    rng = np.random.default_rng(0)
    labels = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tTab", HOSTILE, "plain", None]
    return Table(
        columns=["label", "score", "count", "emb", "image"],
        data=[
            [
                label,
                float(i) - 3.5,
                None if i == 2 else i,
                None if i == 5 else rng.normal(size=3).astype(np.float32),
                Image(np.full((3, 3), 30 * i, dtype=np.uint8), caption=f"image {i}"),
            ]
            for i, label in enumerate(labels)
        ],
    )


@pytest.fixture
def projection(table) -> Projection:
    projection = project(table, "pca", columns="emb", cache=False)
    # Row 5 has no vector, so the projection leaves it out.
    assert 5 not in projection.rows and len(projection.rows) == 7
    return projection


# -- selection_frame -----------------------------------------------------------------------------
def test_all_rows_with_coordinates_matching_the_projection(table, projection):
    frame = selection_frame(table, projection)
    assert list(frame.columns) == ["x", "y", "label", "score", "count", "emb", "image"]
    assert frame.index.name == "row" and frame.index.tolist() == list(range(8))
    assert frame["x"].dtype == np.float32 and frame["y"].dtype == np.float32
    np.testing.assert_array_equal(
        frame.loc[projection.rows, ["x", "y"]].to_numpy(), projection.coords
    )
    # the row the projection left out is kept, without coordinates
    assert frame.loc[5, ["x", "y"]].isna().all() and frame.loc[5, "label"] == HOSTILE
    assert frame["label"].tolist()[:2] == ['=HYPERLINK("http://x")', "+1"]
    assert frame["count"].dtype == "Int64" and pd.isna(frame.loc[2, "count"])
    assert frame.loc[5, "emb"] is None
    np.testing.assert_array_equal(
        frame.loc[0, "emb"], table.get_column("emb", convert_to="numpy")[0]
    )
    assert frame.loc[3, "image"] == table.get_column("image")[3]


def test_selected_rows_in_table_order_once(table, projection):
    frame = selection_frame(table, projection, rows=[6, 1, 6, 5])
    assert frame.index.tolist() == [1, 5, 6]
    where = {int(row): i for i, row in enumerate(projection.rows)}
    np.testing.assert_array_equal(frame.loc[6, ["x", "y"]].to_numpy(), projection.coords[where[6]])
    np.testing.assert_array_equal(frame.loc[1, ["x", "y"]].to_numpy(), projection.coords[where[1]])
    assert frame.loc[5, ["x", "y"]].isna().all()


def test_empty_selection_keeps_the_columns(table, projection):
    frame = selection_frame(table, projection, rows=np.array([], dtype=np.int64))
    assert len(frame) == 0
    assert list(frame.columns) == ["x", "y", "label", "score", "count", "emb", "image"]
    assert to_csv_bytes(frame).decode() == "row,x,y,label,score,count\n"


def test_without_a_projection_coordinates_are_nan(table):
    frame = selection_frame(table, None, rows=[0, 1])
    assert frame[["x", "y"]].isna().all().all()


def test_vectors_and_images_can_be_left_out(table, projection):
    frame = selection_frame(table, projection, vectors=False, images=False)
    assert list(frame.columns) == ["x", "y", "label", "score", "count"]


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([0, 8], ValueError, r"\[8\] are not positions in a table of 8 rows"),
        ([-1], ValueError, "not positions"),
        ([0.5], TypeError, "integer row positions"),
        ([True, False], TypeError, "integer row positions"),
        ([[0, 1]], ValueError, "1-D"),
    ],
)
def test_bad_row_positions(table, projection, rows, error, match):
    with pytest.raises(error, match=match):
        selection_frame(table, projection, rows=rows)


def test_projection_of_another_table_is_refused(table, projection):
    other = replace(projection, coords=np.zeros((2, 2), np.float32), rows=np.array([0, 20]))
    with pytest.raises(ValueError, match="row 20, but the table has 8 rows"):
        selection_frame(table, other)
    misaligned = replace(projection, coords=np.zeros((3, 2), np.float32), rows=np.array([0, 1]))
    with pytest.raises(ValueError, match="aligned"):
        selection_frame(table, misaligned)


def test_coordinate_names_do_not_clobber_columns():
    table = Table(
        columns=["x", "y", "row"], data=[[10.0, 20.0, "r0"], [11.0, 25.0, "r1"], [9.0, 21.0, "r2"]]
    )
    projection = project(table, "pca", columns=["x", "y"], cache=False)
    frame = selection_frame(table, projection)
    assert list(frame.columns) == ["x_", "y_", "x", "y", "row"] and frame.index.name == "row_"
    assert frame["x"].tolist() == [10.0, 11.0, 9.0]
    np.testing.assert_array_equal(frame[["x_", "y_"]].to_numpy(), projection.coords)


# -- CSV -----------------------------------------------------------------------------------------
def test_csv_has_coordinates_and_scalars_but_not_vectors_or_images(table, projection):
    frame = selection_frame(table, projection)
    assert csv_omitted(frame) == ["emb", "image"]
    back = pd.read_csv(
        io.BytesIO(to_csv_bytes(frame)), index_col="row", keep_default_na=False, na_values=[""]
    )
    assert list(back.columns) == ["x", "y", "label", "score", "count"]
    np.testing.assert_array_equal(
        back.loc[projection.rows, ["x", "y"]].to_numpy(np.float32), projection.coords
    )
    assert back.loc[5, ["x", "y"]].isna().all()
    np.testing.assert_array_equal(back["score"], table.get_column("score", convert_to="numpy"))
    assert pd.isna(back.loc[2, "count"]) and back.loc[3, "count"] == 3


def test_csv_neutralises_formulas_but_not_numbers(table, projection):
    back = pd.read_csv(
        io.BytesIO(to_csv_bytes(selection_frame(table, projection))),
        keep_default_na=False,
        dtype=str,
    )
    assert back["label"].tolist() == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tTab",
        HOSTILE,
        "plain",
        "",
    ]
    assert back["score"].tolist()[0] == "-3.5"  # a negative number stays a number


def test_csv_neutralises_column_names():
    table = Table(columns=["=cmd()", "ok"], data=[["a", 1]])
    text = to_csv_bytes(selection_frame(table, None)).decode()
    assert text.splitlines()[0] == "row,x,y,'=cmd(),ok"


def test_csv_leaves_the_frame_alone(table, projection):
    frame = selection_frame(table, projection)
    to_csv_bytes(frame)
    assert frame.loc[0, "label"] == '=HYPERLINK("http://x")'


# -- Parquet -------------------------------------------------------------------------------------
def test_parquet_keeps_every_column_typed(table, projection):
    frame = selection_frame(table, projection)
    arrow = pq.read_table(io.BytesIO(to_parquet_bytes(frame)))
    assert arrow.column_names == ["row", "x", "y", "label", "score", "count", "emb", "image"]
    assert str(arrow.schema.field("x").type) == "float"
    emb_type = arrow.schema.field("emb").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.list_size == 3
    assert emb_type.value_type == pa.from_numpy_dtype(table.get_column("emb", "numpy").dtype)
    assert str(arrow.schema.field("image").type) == "struct<png: binary, caption: string>"
    assert arrow.column("count").to_pylist()[:3] == [0, 1, None]
    assert arrow.column("emb").to_pylist()[5] is None
    coords = np.column_stack([arrow.column("x").to_numpy(), arrow.column("y").to_numpy()])
    np.testing.assert_array_equal(coords[projection.rows], projection.coords)


def test_parquet_export_uploads_again_with_vectors_and_images(table, projection):
    frame = selection_frame(table, projection, rows=[0, 3, 5])
    upload = parse_upload(to_parquet_bytes(frame), "selection.parquet")
    back = upload.table
    assert back.columns == ["row", "x", "y", "label", "score", "count", "emb", "image"]
    assert back.get_column("row") == [0, 3, 5]
    assert back.column_types["emb"] == "vector" and back.column_types["image"] == "image"
    emb = table.get_column("emb", convert_to="numpy")
    got = back.get_column("emb", convert_to="numpy")
    assert got.dtype == emb.dtype
    np.testing.assert_array_equal(got[:2], emb[[0, 3]])
    assert back.column_nulls("emb").tolist() == [False, False, True]
    assert back.get_column("image") == [table.get_column("image")[i] for i in (0, 3, 5)]
    assert back.get_column("label") == [table.get_column("label")[i] for i in (0, 3, 5)]
    where = {int(row): i for i, row in enumerate(projection.rows)}
    np.testing.assert_array_equal(
        np.column_stack([back.get_column("x", "numpy"), back.get_column("y", "numpy")])[:2],
        projection.coords[[where[0], where[3]]],
    )
