"""The bad-input battery (issue 16): each hostile or broken input gets a clear message or a note.

Through the Python API (``Table`` and the run store) and through the upload parsers, every
case below asserts the words the person gets; nothing raises a library's traceback, and
nothing is dropped without a note. The fuzz tests at the end throw random bytes and random
CSV text at the parsers: the only exception allowed out is :class:`UploadError`.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embproj_panel as ep
from embproj_panel.uploads import FORMATS, UploadError, parse_upload


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """An NPY file whose header declares ``shape`` but which holds 16 bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + bytes(16)


def parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def logged(table: ep.Table) -> ep.Table:
    """``table`` after a round trip through the run store."""
    with ep.init(project="battery") as run:
        run.log({"t": table})
    return ep.load_table("battery", run.name, "t")


# -- through the Python API --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (  # ragged vectors
            lambda: ep.Table(columns=["v"], data=[[[1.0, 2.0]], [[1.0]]]),
            ValueError,
            r"column 'v', row 1: vector of length 1, but earlier rows have length 2 \(ragged",
        ),
        (  # strings in a numeric column
            lambda: ep.Table(dataframe=pd.DataFrame({"x": [1, "a", 2.0]})),
            TypeError,
            r"column 'x', row 1: str value 'a' does not fit a column of int values",
        ),
        (  # mixed types
            lambda: ep.Table(columns=["m"], data=[[1.5], [True]]),
            TypeError,
            r"column 'm', row 1: bool value True does not fit a column of float values",
        ),
        (  # wrong lengths
            lambda: ep.Table(columns=["a"], data=[[1], [2]]).add_column("b", [1, 2, 3]),
            ValueError,
            r"column 'b': add_column got 3 values but the table has 2 rows",
        ),
        (
            lambda: ep.Table(columns=["a", "b"], data=[[1, 2], [3]]),
            ValueError,
            r"row 1: has 1 cells but the table has 2 columns",
        ),
        (  # an integer no column type can hold exactly
            lambda: ep.Table(columns=["n"], data=[[1], [2**70]]),
            ValueError,
            r"column 'n', row 1: the integer 1180591620717411303424 does not fit in 64 bits",
        ),
        (
            lambda: ep.Table(columns=["v"], data=[[[]]]),
            ValueError,
            r"column 'v', row 0: empty vector",
        ),
        (
            lambda: ep.Table(columns=["v"], data=[[[1, "2"]]]),
            TypeError,
            r"column 'v', row 0: a vector must hold only numbers; found str '2'",
        ),
        (
            lambda: ep.Table(columns=["c"], data=[[{"a": 1}]]),
            TypeError,
            r"column 'c', row 0: unsupported cell type dict",
        ),
        (
            lambda: ep.Table(columns=["a", "a"]),
            ValueError,
            r"Duplicate column name 'a'",
        ),
    ],
)
def test_python_api_names_the_column_and_row(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_failed_call_leaves_the_table_as_it_was():
    table = ep.Table(columns=["v"], data=[[[1.0, 2.0]]])
    with pytest.raises(ValueError, match="ragged"):
        table.add_data([1.0])
    with pytest.raises(ValueError, match="add_column got 2 values"):
        table.add_column("w", [1, 2])
    assert len(table) == 1 and table.columns == ["v"]
    table.add_data([3.0, 4.0])  # still usable
    assert len(table) == 2


def test_logging_refuses_a_bad_frame_naming_key_column_and_row():
    with ep.init(project="battery") as run:
        with pytest.raises(TypeError, match=r"Cannot log 'bad': column 'x', row 1: str value"):
            run.log({"good": pd.DataFrame({"x": [1.0]}), "bad": pd.DataFrame({"x": [1, "a"]})})
        assert ep.list_tables("battery", run.name) == {}  # nothing from that call


@pytest.mark.parametrize("n_rows", [0, 1, 2, 3])
def test_tiny_tables_round_trip(n_rows):
    rng = np.random.default_rng(n_rows)
    table = ep.Table(dataframe=pd.DataFrame({"x": rng.normal(size=n_rows), "label": ["a"] * n_rows}))
    table.add_column("v", rng.normal(size=(n_rows, 3)).astype(np.float32))
    assert logged(table) == table


def test_nan_inf_constant_all_nan_and_duplicate_rows_are_kept_as_they_are():
    table = ep.Table(
        dataframe=pd.DataFrame(
            {
                "nan_inf": [np.nan, np.inf, -np.inf, 1.0],
                "constant": [7.0] * 4,
                "all_nan": [np.nan] * 4,
                "dup": [1, 1, 1, 1],
            }
        )
    )
    table.add_column("v", np.array([[np.nan, 1], [np.inf, 2], [0, 0], [0, 0]], dtype=np.float32))
    back = logged(table)
    assert back == table
    assert np.isposinf(back.get_column("nan_inf", "numpy")[1])
    assert np.isnan(back.get_column("all_nan", "numpy")).all()


def test_long_unicode_rtl_emoji_and_control_character_names_and_labels():
    names = ["\u202eevil.exe", "\U0001F600 smile", "\u05e9\u05dc\u05d5\u05dd", "tab\there", "bell\x07"]
    long_label = "L" * 10_000
    table = ep.Table(columns=names, data=[[long_label, "x", "y", "z", "<img src=x>"]])
    back = logged(table)
    assert back.columns == names  # names are data: kept exactly, never used as paths
    assert back.get_column(names[0]) == [long_label]
    for bad in ("a\x00b", "\u202e/../x", "con", "x" * 200):
        with pytest.raises(ValueError, match="Invalid table key"):
            ep.init(project="battery").log({bad: table})


def test_empty_table_and_single_column():
    assert len(logged(ep.Table(columns=[]))) == 0
    single = ep.Table(columns=["only"], data=[[1], [2]])
    assert logged(single) == single


def test_100_000_columns_through_the_api_and_the_store():
    table = ep.Table(dataframe=pd.DataFrame(np.arange(300_000, dtype=np.float32).reshape(3, -1)))
    assert len(table.columns) == 100_000
    assert len(table.schema.default_embedding) == 100_000
    assert logged(table) == table


# -- through the upload parsers ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"", "empty.csv", r"^The file is empty\.$"),
        (b"", "empty.npz", r"^The file is empty\.$"),
        (b"a,b\n", "header.csv", r"^The file has no rows of data\.$"),
        (b"\n\n", "blank.csv", r"no header row and no data"),
        (b"a,b\n1,2\n3\n", "ragged.csv", r"line 3 has 1 but the header has 2"),
        (b"a,a\n1,2\n", "dup.csv", r"the header repeats 'a'"),
        (  # a renamed binary
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
            "photo.csv",
            r"not a text file \(it contains binary data\)",
        ),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "photo.parquet", r"^This is not a Parquet file\.$"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "photo.npy", r"^This is not an NPY file\.$"),
        (
            parquet(pa.table({"x": [1.0]})),
            "table.npy",
            r"It looks like a PARQUET file: is its name meant to end in \.parquet\?",
        ),
        (b"PK\x03\x04" + b"junk" * 20, "sheet.npz", r"The NPZ file could not be read"),
        ("a,b\n1,2\n".encode("utf-16"), "excel.csv", r"UTF-16 text .* save it as \"CSV UTF-8\""),
        (b"name\ncaf\xe9\n", "latin.csv", r"not UTF-8 text \(column 'name', data row 1\)"),
        (b"caf\xe9,x\n1,2\n", "latin.csv", r"not UTF-8 text \(its header row\)"),  # found by fuzz
        (b"a,b\n1,2,\xc7\n", "ragged-latin.csv", r"not UTF-8 text \(field 3, data row 1\)"),
        (npy(np.zeros((3, 2))).replace(b"}", b" "), "header.npy", r"its NPY header is damaged"),
        (
            parquet(pa.table({"x": [1.0, 2.0]}))[:-10],
            "cut.parquet",
            r"The Parquet file is cut short",
        ),
        (npy(np.zeros((4, 3)))[:-20], "cut.npy", r"cut short or damaged: its header declares"),
        (npy_header((10**10, 100)), "liar.npy", r"header declares shape \(10000000000, 100\)"),
        (npy(np.zeros((0, 3))), "norows.npy", r"has no rows \(shape \(0, 3\)\)"),
        (npy(np.zeros(5)), "flat.npy", r"shape \(5,\); an embedding is 2-D"),
        (npy(np.array([["a", "b"]])), "text.npy", r"holds <U1 values; an embedding must hold"),
        (parquet(pa.table({"x": pa.array([], pa.float64())})), "empty.parquet", r"no rows of data"),
        (b"x\n1\n", "table.xlsx", r"Cannot read a '\.xlsx' file; the supported formats are"),
    ],
)
def test_upload_errors_say_what_is_wrong(content, filename, message):
    with pytest.raises(UploadError, match=message):
        parse_upload(content, filename)


def test_a_lying_npy_header_is_refused_before_numpy_allocates(monkeypatch):
    import embproj_panel.uploads as uploads

    def no_load(*args, **kwargs):
        raise AssertionError("np.load would allocate the declared 8 TB first")

    monkeypatch.setattr(uploads.np, "load", no_load)
    with pytest.raises(UploadError, match=r"declares shape .* \(7.28 TB|declares shape"):
        parse_upload(npy_header((10**10, 100)), "liar.npy")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("emb.npy", npy_header((10**10, 100)))
    with pytest.raises(UploadError, match=r"Array 'emb' is cut short or damaged"):
        parse_upload(archive.getvalue(), "liar.npz")


@pytest.mark.parametrize(
    ("content", "filename", "note"),
    [
        (b"x,y\n1,a\n2,3\n3,4\n", "strnum.csv", "Column 'y' is read as text: 1 of 3 cells"),
        (b"x,y\n1,2\n2,x?\n3,4\n4,5\n5,6\n6,7\n7,8\n8,9\n9,9\n9,9\n", "few.csv", "1 of 10 cells"),
        (b"x,n\n1,\n2,\n", "allempty.csv", "1 column(s) are empty in every row"),
        (b"v\n\"[1, 2]\"\n\"[1]\"\n", "raggedvec.csv", "looks like vectors, but they have"),
        (
            npy(np.array([[1.0, np.nan], [np.inf, 2.0], [3.0, 4.0]])),
            "naninf.npy",
            "2 of 3 vectors in column 'embedding' contain NaN or infinite values",
        ),
        (
            parquet(pa.table({"x": [1, 2], "v": pa.array([[1.0], [1.0, 2.0]])})),
            "ragged.parquet",
            "Column 'v' is left out: its vectors have different lengths (1 to 2 numbers; row 1",
        ),
    ],
)
def test_upload_notes_say_what_was_changed_or_left_out(content, filename, note):
    upload = parse_upload(content, filename)
    assert any(note in text for text in upload.notes), upload.notes


@pytest.mark.parametrize(
    ("content", "shape"),
    [
        (b"x,y\n1,2\n", (1, 2)),  # one row
        (b"x\n1\n2\n3\n", (3, 1)),  # a single column
        (b"x,y\n1,2\n1,2\n1,2\n", (3, 2)),  # duplicate points are kept
        (b"x,c\n1,5\n2,5\n", (2, 2)),  # a constant column
        ("label,x\n" + "L" * 10_000 + ",1\n", (1, 2)),  # a 10,000-character label
        ("\u202eevil,\U0001F600,\u05e9,bell\x07\n1,2,3,4\n", (1, 4)),  # hostile names
    ],
)
def test_small_odd_csv_files_load_whole(content, shape):
    content = content.encode() if isinstance(content, str) else content
    table = parse_upload(content, "odd.csv").table
    assert (len(table), len(table.columns)) == shape
    header = content.decode().split("\n")[0].split(",")
    assert table.columns == header  # names kept verbatim: the views escape them


@pytest.mark.slow
def test_100_000_columns_upload():
    n = 100_000
    content = "\n".join(
        [",".join(f"c{i}" for i in range(n)), ",".join("1" for _ in range(n)), ",".join("2.5" for _ in range(n))]
    ).encode()
    table = parse_upload(content, "wide.csv").table
    assert len(table.columns) == n and set(table.column_types.values()) == {"float"}
    matrix = np.column_stack([table.get_column(f"c{i}", "numpy") for i in (0, n - 1)])
    np.testing.assert_array_equal(matrix, [[1, 1], [2.5, 2.5]])


def test_an_oversize_upload_is_refused_by_its_size_alone(monkeypatch):
    import embproj_panel.uploads as uploads

    def no_parse(*args, **kwargs):
        raise AssertionError("an oversize file was parsed")

    monkeypatch.setattr(uploads, "_parse_csv", no_parse)
    content = memoryview(bytearray(2 * 2**20))  # not copied: only its size is read
    with pytest.raises(UploadError, match=r"The file is 2.0 MB, over the upload limit of 1.0 MB"):
        parse_upload(content, "big.csv", max_bytes=2**20)


def test_npz_members_that_lie_about_their_size_are_bounded():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("emb.npy", npy(np.zeros((200_000, 4))))  # 6 MB of zeros, tiny packed
    with pytest.raises(UploadError, match="unpacks to"):
        parse_upload(buffer.getvalue(), "bomb.npz", max_bytes=2**20)


# -- fuzz: random input never escapes as anything but UploadError -------------------------------
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SEEDS = {
    "csv": b"x,y,label\n1,2,a\n3,4,b\n",
    "parquet": parquet(pa.table({"x": [1.0, 2.0], "v": pa.array([[1.0, 2.0], None])})),
    "npy": npy(np.arange(6, dtype=np.float32).reshape(3, 2)),
}


def assert_parses_or_refuses(content: bytes, filename: str) -> None:
    try:
        upload = parse_upload(content, filename, max_bytes=2**20)
    except UploadError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert len(upload.table) > 0 and upload.table.columns
    assert all(isinstance(note, str) and note for note in upload.notes)


@FUZZ
@given(content=st.binary(max_size=300), extension=st.sampled_from(sorted(FORMATS)))
def test_fuzz_random_bytes(content, extension):
    assert_parses_or_refuses(content, f"fuzz{extension}")


@FUZZ
@given(
    fmt=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_fuzz_damaged_good_files(fmt, edits, cut):
    data = bytearray(SEEDS[fmt])
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[: max(1, len(data) - cut % len(data))])
    assert_parses_or_refuses(data, f"fuzz.{fmt}")


@FUZZ
@given(
    text=st.text(
        alphabet=st.sampled_from(list('ab1.5,;\t"\n\r []-eE\u202e\U0001F600\x07')), max_size=200
    )
)
def test_fuzz_csv_text(text):
    assert_parses_or_refuses(text.encode("utf-8"), "fuzz.csv")
