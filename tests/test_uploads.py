"""Uploads: good files of every format, oversize files, pickled arrays, ragged CSV, binary junk."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embproj_panel.images import Image
from embproj_panel.uploads import (
    DEFAULT_MAX_UPLOAD_BYTES,
    MAX_UPLOAD_ENV,
    Upload,
    UploadError,
    display_name,
    max_upload_bytes,
    parse_upload,
    upload_format,
)

HOSTILE = "<img src=x onerror=alert(1)>"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def parquet_bytes(table: pa.Table | pd.DataFrame) -> bytes:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything calls pickle.load/loads (numpy unpickles through them)."""
    calls = []

    def trap(*args, **kwargs):
        calls.append(args)
        raise AssertionError("pickle was called")

    monkeypatch.setattr(pickle, "load", trap)
    monkeypatch.setattr(pickle, "loads", trap)
    return calls


# -- CSV -----------------------------------------------------------------------------------------
def test_csv_good_file_types_values_and_name():
    content = b"label,score,flag,count\ncat,0.5,true,1\ndog,1.5,false,\ncat,2,true,3\n"
    upload = parse_upload(content, "pets.csv")
    assert isinstance(upload, Upload)
    assert upload.format == "csv" and upload.name == "pets.csv" and upload.notes == []
    table = upload.table
    assert table.columns == ["label", "score", "flag", "count"]
    assert table.column_types == {"label": "str", "score": "float", "flag": "bool", "count": "int"}
    assert table.get_column("label") == ["cat", "dog", "cat"]
    assert table.get_column("score") == [0.5, 1.5, 2.0]
    assert table.get_column("count") == [1, None, 3]  # an empty cell stays empty, ints stay ints


def test_csv_quoted_commas_newlines_and_bom():
    content = '\ufeffname,text\na,"x, y"\nb,"two\nlines"\n'.encode()
    table = parse_upload(content, "q.csv").table
    assert table.columns == ["name", "text"]
    assert table.get_column("text") == ["x, y", "two\nlines"]


def test_csv_dates_stay_text():
    table = parse_upload(b"when,v\n2020-01-01,1\n2021-06-30,2\n", "d.csv").table
    assert table.get_column("when") == ["2020-01-01", "2021-06-30"]


def test_csv_few_non_numbers_read_as_missing_with_a_note():
    cells = [str(i) for i in range(18)] + ["oops", "n.a."]
    content = ("x\n" + "\n".join(cells) + "\n").encode()
    upload = parse_upload(content, "x.csv")
    values = upload.table.get_column("x", convert_to="numpy")
    assert upload.table.column_types["x"] == "float"
    np.testing.assert_array_equal(values[:18], np.arange(18))
    assert np.isnan(values[18:]).all()
    assert len(upload.notes) == 1
    assert "2 of 20 cells in column 'x'" in upload.notes[0] and "'oops'" in upload.notes[0]


def test_csv_mostly_text_column_stays_text():
    content = b"code\n1\n2\nA\nB\n"
    upload = parse_upload(content, "c.csv")
    assert upload.table.get_column("code") == ["1", "2", "A", "B"]
    assert upload.notes == []


def test_csv_vector_cells_become_a_vector_column():
    content = b'emb,label\n"[0.5, 1, 2]",a\n"[3 4 5.25]",b\n'
    upload = parse_upload(content, "v.csv")
    assert upload.table.column_types["emb"] == "vector"
    np.testing.assert_array_equal(
        upload.table.get_column("emb", convert_to="numpy"), [[0.5, 1, 2], [3, 4, 5.25]]
    )
    assert any("vectors of 3 numbers" in note for note in upload.notes)


def test_csv_ragged_vector_cells_stay_text_with_a_note():
    upload = parse_upload(b'emb\n"[1, 2]"\n"[1, 2, 3]"\n', "v.csv")
    assert upload.table.column_types["emb"] == "str"
    assert any("different lengths" in note for note in upload.notes)


def test_csv_semicolons_tsv_and_unnamed_columns():
    semi = parse_upload(b"a;b\n1;2\n", "s.csv")
    assert semi.table.columns == ["a", "b"] and "semicolons" in semi.notes[0]
    tsv = parse_upload(b"a\tb\n1\tx,y\n", "t.tsv")
    assert tsv.format == "tsv" and tsv.table.get_column("b") == ["x,y"]
    unnamed = parse_upload(b",value\n0,1.5\n", "u.csv")
    assert unnamed.table.columns == ["column_1", "value"]
    assert "no name" in unnamed.notes[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a,b,c\n1,2,3\n4,5\n6,7,8\n", "line 3 has 2 but the header has 3"),  # too few
        (b"a,b\n1,2\n3,4\n5,6,7\n", "line 4 has 3 but the header has 2"),  # too many
    ],
)
def test_ragged_csv_names_the_line(content, expected):
    with pytest.raises(UploadError, match=expected):
        parse_upload(content, "ragged.csv")


def test_ragged_csv_counts_the_other_bad_rows():
    content = b"a,b\n" + b"1,2\n" * 3 + b"1\n" * 5
    with pytest.raises(UploadError) as info:
        parse_upload(content, "ragged.csv")
    assert "line 5 has 1" in str(info.value)
    assert "4 more rows" in str(info.value) and "lines 6, 7, ..." in str(info.value)


def test_unclosed_quote_names_its_line():
    with pytest.raises(UploadError, match="starts on line 3 is never closed"):
        parse_upload(b'a,b\n1,2\n3,"oops\n4,5\n', "q.csv")


def test_stray_quote_inside_a_value_is_fine():
    table = parse_upload(b'item,size\ntv,55" screen\n', "q.csv").table
    assert table.get_column("size") == ['55" screen']


def test_csv_errors_header_only_duplicates_and_not_utf8():
    with pytest.raises(UploadError, match="no rows"):
        parse_upload(b"a,b\n", "h.csv")
    with pytest.raises(UploadError, match="unique.*'a'"):
        parse_upload(b"a,a\n1,2\n", "dup.csv")
    with pytest.raises(UploadError, match=r"not UTF-8 text \(column 'name', data row 2\)"):
        parse_upload("name\nok\ncaf\u00e9\n".encode("latin-1"), "latin.csv")


# -- Parquet -------------------------------------------------------------------------------------
def test_parquet_restores_vectors_images_and_nullable_columns():
    images = [Image(np.full((4, 4), 10 * i, dtype=np.uint8)) for i in range(3)]
    vectors = np.arange(9, dtype=np.float32).reshape(3, 3)
    arrow = pa.table(
        {
            "emb": pa.array(list(vectors), type=pa.list_(pa.float32())),
            "image": pa.array([image.png_bytes for image in images], type=pa.binary()),
            "label": pa.array(["a", None, "c"]),
            "count": pa.array([1, None, 3], type=pa.int32()),
            "kind": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    upload = parse_upload(parquet_bytes(arrow), "logged.parquet")
    table = upload.table
    assert upload.notes == []
    assert table.column_types == {
        "emb": "vector",
        "image": "image",
        "label": "str",
        "count": "int",
        "kind": "str",
    }
    got = table.get_column("emb", convert_to="numpy")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vectors)
    assert table.get_column("image") == images
    assert table.get_column("label") == ["a", None, "c"]
    assert table.get_column("count") == [1, None, 3]
    assert table.get_column("kind") == ["x", "y", "x"]


def test_parquet_logged_by_the_run_store_loads_back_equal(isolated_store):
    import embproj_panel as ep

    table = ep.Table(columns=["emb", "image", "label", "n"])
    for i in range(3):
        table.add_data(
            np.arange(4, dtype=np.float32) + i,
            ep.Image(np.full((3, 3), 40 * i, dtype=np.uint8), caption=f"digit {i}"),
            None if i == 1 else f"class {i % 2}",
            i,
        )
    with ep.init(project="p", name="r") as run:
        run.log({"t": table})
    (path,) = isolated_store.rglob("*.parquet")
    upload = parse_upload(path.read_bytes(), path.name)
    assert upload.notes == []
    assert upload.table == ep.load_table("p", "r", "t") == table
    assert upload.table.get_column("image")[2].caption == "digit 2"


def test_parquet_image_structs_of_other_tools():
    png = Image(np.zeros((2, 2), dtype=np.uint8)).png_bytes
    images = pa.array(
        [{"bytes": png, "path": "a.png"}, None],
        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    table = parse_upload(parquet_bytes(pa.table({"img": images})), "hf.parquet").table
    assert table.column_types == {"img": "image"}
    assert table.get_column("img")[0].png_bytes == png and table.get_column("img")[1] is None


def test_parquet_fixed_size_lists_and_empty_vectors():
    values = pa.array(np.arange(6, dtype=np.float64))
    fixed = pa.FixedSizeListArray.from_arrays(values, 2)
    with_gap = pa.array([[1.0, 2.0], None, [5.0, 6.0]], type=pa.list_(pa.float64()))
    upload = parse_upload(parquet_bytes(pa.table({"f": fixed, "g": with_gap})), "v.pq")
    np.testing.assert_array_equal(
        upload.table.get_column("f", convert_to="numpy"), [[0, 1], [2, 3], [4, 5]]
    )
    assert upload.table.column_nulls("g").tolist() == [False, True, False]
    assert any("1 of 3 rows have no vector in column 'g'" in note for note in upload.notes)


def test_parquet_unsupported_and_converted_columns_are_noted():
    arrow = pa.table(
        {
            "x": [1.0, 2.0],
            "meta": pa.array([{"a": 1}, {"a": 2}]),
            "tags": pa.array([["a"], ["b"]]),
            "ragged": pa.array([[1.0], [1.0, 2.0]]),
            "blob": pa.array([b"not an image", b"x"]),
            "when": pa.array(pd.to_datetime(["2020-01-01", "2020-01-02"])),
        }
    )
    upload = parse_upload(parquet_bytes(arrow), "mixed.parquet")
    assert upload.table.columns == ["x", "when"]
    assert upload.table.get_column("when")[0].startswith("2020-01-01")
    text = " ".join(upload.notes)
    for name in ("meta", "tags", "ragged", "blob", "when"):
        assert f"'{name}'" in text, name


def test_parquet_from_pandas_keeps_a_named_index():
    frame = pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index(["r1", "r2"], name="key"))
    table = parse_upload(parquet_bytes(pa.Table.from_pandas(frame)), "i.parquet").table
    assert table.columns == ["v", "key"]
    assert table.get_column("key") == ["r1", "r2"]


def test_parquet_that_unpacks_too_far_is_refused():
    zeros = parquet_bytes(pa.table({"z": np.zeros(200_000)}))  # 8 bytes a value unpacked
    assert len(zeros) < 20_000
    with pytest.raises(UploadError, match="unpacks to"):
        parse_upload(zeros, "bomb.parquet", max_bytes=100_000)


# -- NPY / NPZ -----------------------------------------------------------------------------------
def test_npy_2d_becomes_the_embedding_bit_exact():
    array = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    upload = parse_upload(npy_bytes(array), "emb.npy")
    assert upload.table.columns == ["embedding"]
    got = upload.table.get_column("embedding", convert_to="numpy")
    assert got.dtype == np.float32 and np.array_equal(got, array)
    assert upload.table.schema.default_embedding == ["embedding"]


def test_npy_nan_rows_are_reported():
    array = np.ones((5, 2))
    array[1, 0] = np.nan
    array[3, 1] = np.inf
    upload = parse_upload(npy_bytes(array), "emb.npy")
    assert len(upload.table) == 5
    assert any("2 of 5 vectors in column 'embedding'" in note for note in upload.notes)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.arange(5.0), r"shape \(5,\).*1-D array"),
        (np.zeros((2, 3, 4)), r"shape \(2, 3, 4\)"),
        (np.zeros((0, 3)), "no rows"),
        (np.zeros((3, 0)), "no dimensions"),
        (np.array([["a", "b"]]), "must hold numbers"),
    ],
)
def test_npy_bad_shapes(array, expected):
    with pytest.raises(UploadError, match=expected):
        parse_upload(npy_bytes(array), "bad.npy")


def test_npy_record_array_becomes_columns():
    records = np.zeros(3, dtype=[("emb", "f4", (2,)), ("label", "U5")])
    records["emb"] = [[1, 2], [3, 4], [5, 6]]
    records["label"] = ["a", "b", "c"]
    table = parse_upload(npy_bytes(records), "rec.npy").table
    assert table.column_types == {"emb": "vector", "label": "str"}
    assert table.get_column("label") == ["a", "b", "c"]


def test_pickled_object_array_is_refused_without_unpickling(no_unpickling):
    content = npy_bytes(np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(UploadError, match="pickled data"):
        parse_upload(content, "objects.npy")
    assert no_unpickling == []


def test_npz_embedding_labels_and_images():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(4, 3))
    labels = np.array(["a", "b", "a", "b"])
    pixels = rng.integers(0, 256, size=(4, 5, 5)).astype(np.uint8)
    upload = parse_upload(
        npz_bytes(compressed=True, emb=emb, labels=labels, images=pixels, meta=np.float64(1.0)),
        "data.npz",
    )
    table = upload.table
    assert table.columns == ["emb", "labels", "images"]
    np.testing.assert_array_equal(table.get_column("emb", convert_to="numpy"), emb)
    assert table.get_column("labels") == ["a", "b", "a", "b"]
    np.testing.assert_array_equal(table.get_column("images")[2].to_numpy(), pixels[2])
    schema = table.schema
    assert (schema.default_embedding, schema.default_color, schema.default_hover_image) == (
        ["emb"],
        "labels",
        "images",
    )
    notes = " ".join(upload.notes)
    assert "'images' (4x5x5) is read as 4 images" in notes and "'meta' is a single value" in notes


def test_npz_float_images_are_scaled_alike():
    unit = np.full((2, 3, 3), 0.5)
    unit[1] = 0.25
    images = parse_upload(npz_bytes(e=np.ones((2, 2)), img=unit), "f.npz").table.get_column("img")
    assert images[0].to_numpy()[0, 0] == 128 and images[1].to_numpy()[0, 0] == 64
    # One stack, one rule: a faint image beside a bright one is not stretched on its own.
    mixed = np.stack([np.full((3, 3), 0.4), np.full((3, 3), 200.0)])
    images = parse_upload(npz_bytes(e=np.ones((2, 2)), img=mixed), "f.npz").table.get_column("img")
    assert images[0].to_numpy()[0, 0] == 0 and images[1].to_numpy()[0, 0] == 200


def test_npz_big_endian_arrays_come_back_native():
    content = npz_bytes(emb=np.arange(6, dtype=">f4").reshape(3, 2), n=np.arange(3, dtype=">i8"))
    table = parse_upload(content, "be.npz").table
    emb = table.get_column("emb", convert_to="numpy")
    assert emb.dtype == np.float32 and emb.dtype.isnative
    np.testing.assert_array_equal(emb, np.arange(6).reshape(3, 2))
    assert table.get_column("n") == [0, 1, 2]


def test_npz_mismatched_lengths_name_the_arrays():
    content = npz_bytes(emb=np.zeros((10, 2)), labels=np.arange(9))
    with pytest.raises(UploadError, match="'emb' has 10, 'labels' has 9"):
        parse_upload(content, "m.npz")


def test_npz_with_a_pickled_member_is_refused(no_unpickling):
    content = npz_bytes(emb=np.zeros((2, 2)), labels=np.array([object(), None], dtype=object))
    with pytest.raises(UploadError, match="'labels' holds Python objects"):
        parse_upload(content, "p.npz")
    assert no_unpickling == []


def test_npz_other_members_are_noted_and_empty_archives_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("emb.npy", npy_bytes(np.ones((2, 2))))
        archive.writestr("README.txt", "hello")
    upload = parse_upload(buffer.getvalue(), "z.npz")
    assert upload.table.columns == ["emb"] and "'README.txt'" in upload.notes[0]
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(UploadError, match="no arrays"):
        parse_upload(empty.getvalue(), "empty.npz")


def test_npz_that_unpacks_too_far_is_refused():
    content = npz_bytes(compressed=True, emb=np.zeros((50_000, 2)))
    assert len(content) < 10_000
    with pytest.raises(UploadError, match="unpacks to"):
        parse_upload(content, "bomb.npz", max_bytes=50_000)


# -- sizes, formats, junk ------------------------------------------------------------------------
def test_oversize_file_refused_before_parsing(monkeypatch):
    import embproj_panel.uploads as uploads

    def explode(*args, **kwargs):
        raise AssertionError("parsed an oversize file")

    monkeypatch.setattr(uploads, "_parse_csv", explode)
    content = b"a\n" + b"1\n" * 600
    with pytest.raises(UploadError, match=r"1\.2 KB, over the upload limit of 1000 bytes"):
        parse_upload(content, "big.csv", max_bytes=1000)


def test_limit_from_environment(monkeypatch):
    monkeypatch.delenv(MAX_UPLOAD_ENV, raising=False)
    assert max_upload_bytes() == DEFAULT_MAX_UPLOAD_BYTES == 200 * 2**20
    monkeypatch.setenv(MAX_UPLOAD_ENV, "0.001")  # about 1 KB
    assert max_upload_bytes() == 1048
    with pytest.raises(UploadError, match="EMBPROJ_MAX_UPLOAD_MB"):
        parse_upload(b"a\n" + b"1\n" * 600, "big.csv")
    assert len(parse_upload(b"a\n1\n", "small.csv").table) == 1
    monkeypatch.setenv(MAX_UPLOAD_ENV, "lots")
    with pytest.raises(ValueError, match="positive number of megabytes"):
        max_upload_bytes()


@pytest.mark.parametrize("filename", ["x.csv", "x.parquet", "x.npy", "x.npz"])
def test_empty_file(filename):
    with pytest.raises(UploadError, match="empty"):
        parse_upload(b"", filename)


@pytest.mark.parametrize("filename", ["model.pkl", "data.csv.gz", "noextension", "x.json"])
def test_unknown_extension(filename):
    with pytest.raises(UploadError, match="supported formats are .csv, .npy, .npz"):
        parse_upload(b"a\n1\n", filename)
    with pytest.raises(UploadError):
        upload_format(filename)


def test_extension_is_case_insensitive():
    assert upload_format("DATA.CSV") == "csv" and upload_format("a.b.PQ") == "parquet"


JUNK = np.random.default_rng(42).bytes(4096)
GOOD_NPY = npy_bytes(np.ones((50, 4)))
GOOD_PARQUET = parquet_bytes(pa.table({"x": np.arange(100.0)}))


@pytest.mark.parametrize(
    ("content", "filename"),
    [
        (JUNK, "junk.csv"),
        (JUNK, "junk.tsv"),
        (JUNK, "junk.parquet"),
        (JUNK, "junk.npy"),
        (JUNK, "junk.npz"),
        # junk behind the right magic bytes reaches the real parsers
        (b"PAR1" + JUNK + b"PAR1", "junk.parquet"),
        (b"\x93NUMPY" + JUNK, "junk.npy"),
        (b"PK\x03\x04" + JUNK, "junk.npz"),
        # real files cut short
        (GOOD_NPY[: len(GOOD_NPY) // 2], "cut.npy"),
        (GOOD_PARQUET[: len(GOOD_PARQUET) // 2], "cut.parquet"),
        (npz_bytes(a=np.ones((50, 4)))[:300], "cut.npz"),
    ],
)
def test_binary_junk_gets_a_readable_error(content, filename, no_unpickling):
    with pytest.raises(UploadError) as info:
        parse_upload(content, filename)
    message = str(info.value)
    assert "Traceback" not in message and "\n" not in message and len(message) < 400
    assert no_unpickling == []


def test_wrong_extension_gets_a_hint():
    with pytest.raises(UploadError, match=r"looks like a PARQUET file.*\.parquet"):
        parse_upload(GOOD_PARQUET, "data.csv")
    with pytest.raises(UploadError, match=r"looks like a NPY file"):
        parse_upload(GOOD_NPY, "data.npz")


def test_content_must_be_bytes():
    with pytest.raises(TypeError, match="bytes"):
        parse_upload("a,b\n1,2\n", "x.csv")  # type: ignore[arg-type]
    table = parse_upload(memoryview(b"a\n1\n"), "x.csv").table
    assert table.get_column("a") == [1]


# -- names ---------------------------------------------------------------------------------------
def test_hostile_file_name_is_only_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for filename in (f"{HOSTILE}.csv", f"../../{HOSTILE}.csv", "/etc/passwd.csv"):
        upload = parse_upload(b"a\n1\n", filename)
        assert upload.name == filename  # verbatim; escaping is the view's job
    assert upload.display_name == "passwd.csv"
    assert display_name(f"../../{HOSTILE}.csv") == f"{HOSTILE}.csv"
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing opened by that name


def test_display_name_removes_controls_and_shortens():
    assert display_name("evil\u202egpj.csv") == "evilgpj.csv"  # right-to-left override
    assert display_name("a\x00b\r\nc\td.csv") == "abcd.csv"
    assert display_name("C:\\Users\\me\\emb.npy") == "emb.npy"
    assert display_name("\x00\x01") == "upload"
    long = display_name("x" * 500 + ".csv", max_length=20)
    assert len(long) == 20 and long.endswith("\u2026")
