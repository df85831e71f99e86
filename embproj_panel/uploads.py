"""Turn a file uploaded from the browser into a :class:`~embproj_panel.table.Table`.

:func:`parse_upload` takes the raw bytes of a CSV, TSV, Parquet, NPY or NPZ file and parses
them in memory: nothing is written to disk, and the client's file name is used only to choose
the format (by extension) and to name the table for display, never as a path.

Limits
------
A file larger than :func:`max_upload_bytes` is refused before any parsing. The default is
:data:`DEFAULT_MAX_UPLOAD_BYTES` (200 MB, where MB = 2**20 bytes); set the environment variable
``EMBPROJ_MAX_UPLOAD_MB`` (a positive number of megabytes) on the server to change it, or pass
``max_bytes``. Compressed formats (Parquet, NPZ) are also refused when what they declare
they unpack to exceeds :data:`MAX_EXPANSION` times the limit: a small file must not be able to
unpack into gigabytes, and an NPY header must not declare more data than its file holds.
While a file arrives in chunks, :class:`ChunkCollector` (used by
:class:`embproj_panel.upload_widget.BoundedFileDropper`) drops it as soon as it passes the
limit, so an oversize upload is never held whole. (Whatever the limit, the page can only send
what the Bokeh websocket accepts: ``panel serve --websocket-max-message-size``.)

Safety and honesty
------------------
NumPy files are read with ``allow_pickle=False``: an array of Python objects is refused, never
unpickled. Every problem that stops a file from loading raises :class:`UploadError`, a
``ValueError`` whose message is written for the person who chose the file (which line of a CSV
is ragged, which array of an NPZ has the wrong length), never a traceback. Whatever loads but
is changed or left out on the way (a few non-numbers in a numeric column, a column of a type
the projector cannot show) is listed in :attr:`Upload.notes`; nothing is dropped silently.

Formats
-------
``.csv`` / ``.tsv``
    UTF-8 text with a header row (other encodings are refused, naming the row), read with ``pyarrow.csv`` (multi-threaded, and unlike
    ``pandas.read_csv`` it refuses rows with *too few* fields as well as too many). A column
    that is numeric except for a few cells (at most 10%) is read as numbers, the rest as
    missing, with a note; a column whose every cell looks like ``[0.1, 0.2, ...]`` becomes a
    vector column. Dates stay text.
``.parquet`` / ``.pq``
    Any Parquet file; a table logged by this package's run store comes back with its vector
    columns (Arrow lists of numbers) and image columns (PNG bytes) restored.
``.npy``
    A 2-D numeric array ``(rows, dimensions)`` becomes one vector column ``"embedding"``; a
    structured (record) array becomes one column per field.
``.npz``
    Arrays that share their first dimension ``n``: 2-D numeric arrays become vector columns,
    1-D arrays scalar columns (labels, ids, ...), and 3-D ``(n, h, w)`` or 4-D
    ``(n, h, w, 1|3|4)`` arrays image columns; each column is named after its array.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tokenize
import unicodedata
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from embproj_panel.arrow import image_fields, images_from_arrow, vectors_from_arrow
from embproj_panel.images import MAX_IMAGE_PIXELS, Image
from embproj_panel.table import Table

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "ChunkCollector",
    "FORMATS",
    "MAX_EXPANSION",
    "MAX_UPLOAD_ENV",
    "Upload",
    "UploadAbuse",
    "UploadError",
    "display_name",
    "max_upload_bytes",
    "parse_upload",
    "upload_format",
]

DEFAULT_MAX_UPLOAD_BYTES = 200 * 2**20
MAX_UPLOAD_ENV = "EMBPROJ_MAX_UPLOAD_MB"
MAX_EXPANSION = 4

#: File extension (lower case, with the dot) -> format name.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".npz": "npz",
}

_MAGIC = {
    "parquet": b"PAR1",
    "npy": b"\x93NUMPY",
    "npz": b"PK\x03\x04",
}
_EMPTY_ZIP = b"PK\x05\x06"

# A text column is read as numbers when at least this share of its non-empty cells parse.
_NUMERIC_SHARE = 0.9
# How many offending rows, values or names an error message or note quotes.
_EXAMPLES = 3
# Rows checked at a time for non-finite vectors: bounds the temporary boolean array.
_CHUNK_ROWS = 65_536


class UploadError(ValueError):
    """An uploaded file that cannot become a table.

    The message is meant for the person who uploaded the file: it says what is wrong and, where
    it can, where (a line, a column, an array) and how to fix it.
    """


class UploadAbuse(UploadError):
    """Upload chunks that kept coming after an upload was refused for its size.

    Never a browser's: the upload box checks a file's size before sending any of it. The
    server closes such a connection (:class:`embproj_panel.upload_widget.BoundedFileDropper`).
    """


@dataclass(frozen=True)
class Upload:
    """A parsed upload.

    Attributes
    ----------
    table
        The parsed table.
    name
        The client's file name, verbatim. It is untrusted text: render it escaped, never as
        HTML and never as a path (:attr:`display_name` is a tidied version for titles).
    format
        The format it was parsed as: ``"csv"``, ``"tsv"``, ``"parquet"``, ``"npy"`` or
        ``"npz"``.
    notes
        Everything that was changed or left out while parsing, one sentence each.
    """

    table: Table
    name: str
    format: str
    notes: list[str] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        """:func:`display_name` of :attr:`name`."""
        return display_name(self.name)


# -- limits, names and formats ---------------------------------------------------------------


def max_upload_bytes() -> int:
    """The upload size limit in bytes: ``EMBPROJ_MAX_UPLOAD_MB`` if set, else the default.

    Read on every call, so a server picks up the variable without a restart of the module.

    Raises
    ------
    ValueError
        If ``EMBPROJ_MAX_UPLOAD_MB`` is set but is not a positive number.
    """
    raw = os.environ.get(MAX_UPLOAD_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_UPLOAD_BYTES
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = float("nan")
    if not np.isfinite(megabytes) or megabytes <= 0:
        raise ValueError(f"{MAX_UPLOAD_ENV} must be a positive number of megabytes; got {raw!r}")
    return max(1, int(megabytes * 2**20))


def _format_size(n_bytes: int) -> str:
    if n_bytes < 2**10:
        return f"{n_bytes} bytes"
    if n_bytes < 2**20:
        return f"{n_bytes / 2**10:.1f} KB"
    if n_bytes < 2**30:
        return f"{n_bytes / 2**20:.1f} MB"
    return f"{n_bytes / 2**30:.2f} GB"


def display_name(filename: str, max_length: int = 80) -> str:
    """A file name tidied for display: still untrusted text, to be escaped when rendered.

    Keeps only the part after the last ``/`` or ``\\``, removes control and invisible
    formatting characters (including the right-to-left override used to disguise an
    extension), collapses whitespace, and shortens the result to ``max_length`` characters
    with an ellipsis. HTML-special characters are *kept*: escaping is the renderer's job.

    Parameters
    ----------
    filename
        The client's file name.
    max_length
        The longest result, at least 2.

    Returns
    -------
    str
        The tidied name, or ``"upload"`` if nothing printable is left.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2; got {max_length}")
    base = re.split(r"[\\/]", str(filename))[-1]
    printable = "".join(
        " " if unicodedata.category(ch) in ("Zl", "Zp") else ch
        for ch in base
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    cleaned = " ".join(printable.split())
    if not cleaned:
        return "upload"
    if len(cleaned) > max_length:
        cleaned = cleaned[: max_length - 1] + "\u2026"
    return cleaned


def upload_format(filename: str) -> str:
    """The format :func:`parse_upload` would use for ``filename``, from its extension.

    Raises
    ------
    UploadError
        For an extension that is not one of :data:`FORMATS`.
    """
    name = str(filename).strip()
    dot = name.rfind(".")
    extension = name[dot:].lower() if dot >= 0 else ""
    if extension not in FORMATS:
        supported = ", ".join(sorted(FORMATS))
        got = f"a {extension!r} file" if extension else "a file without an extension"
        raise UploadError(f"Cannot read {got}; the supported formats are {supported}.")
    return FORMATS[extension]


def _sniff(content: bytes) -> str | None:
    """The binary format ``content`` starts like, to hint at a wrong extension."""
    for name, magic in _MAGIC.items():
        if content.startswith(magic):
            return name
    return None


def _wrong_format_hint(content: bytes) -> str:
    sniffed = _sniff(content)
    if sniffed is None:
        return ""
    extension = {"parquet": ".parquet", "npy": ".npy", "npz": ".npz"}[sniffed]
    return f" It looks like a {sniffed.upper()} file: is its name meant to end in {extension}?"


def _short(message: object, limit: int = 200) -> str:
    """A library's error message cut to one short line (no tracebacks reach the user)."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote_examples(values: Any) -> str:
    return ", ".join(repr(v) for v in list(values)[:_EXAMPLES])


class ChunkCollector:
    """Join an upload's chunks as they arrive, refusing it once it passes the limit.

    Panel's ``FileDropper`` sends a file as numbered chunks and keeps every one until the
    last arrives; a client that skips the browser's size check could make the server hold
    any amount. This keeps at most ``max_bytes`` (plus one chunk) and drops everything the
    moment an upload goes over, so an oversize file is refused before it is held whole.

    Parameters
    ----------
    max_bytes
        The largest upload accepted, in bytes.
    max_pending
        How many uploads may be half-received at once (a client could open many names).
    """

    def __init__(self, max_bytes: int, max_pending: int = 1) -> None:
        if max_bytes <= 0 or max_pending <= 0:
            raise ValueError("max_bytes and max_pending must be positive")
        self.max_bytes = int(max_bytes)
        self.max_pending = int(max_pending)
        self._chunks: dict[str, list[bytes]] = {}
        self._sizes: dict[str, int] = {}
        self._refused: set[str] = set()
        self._size_refusals = 0

    @property
    def held_bytes(self) -> int:
        """Bytes held for uploads not yet complete."""
        return sum(self._sizes.values())

    def discard(self, name: str) -> None:
        """Forget a half-received upload (the client removed it)."""
        self._chunks.pop(name, None)
        self._sizes.pop(name, None)
        self._refused.discard(name)

    def add(self, name: str, chunk: int, total_chunks: int, data: bytes) -> bytes | None:
        """Take one chunk; the whole file once its last chunk is in, else None.

        Raises
        ------
        UploadAbuse
            A chunk of an upload already refused for its size, or a second upload over the
            limit: the sender ignores the refusal (nothing of it is held).
        UploadError
            The first time an upload passes the limit, or arrives out of order; what was held
            for it is dropped.
        """
        size = memoryview(data).nbytes
        if chunk == 1:
            self.discard(name)
            if len(self._chunks) >= self.max_pending:
                raise UploadError("Another upload is still arriving; wait for it to finish.")
            self._chunks[name], self._sizes[name] = [], 0
        elif name in self._refused:
            if chunk >= total_chunks:
                self._refused.discard(name)
            raise UploadAbuse(f"Chunks of an upload refused for its size kept arriving "
                              f"(chunk {chunk} of {total_chunks}).")
        elif name not in self._chunks or chunk != len(self._chunks[name]) + 1:
            self.discard(name)
            raise UploadError("The upload arrived out of order; please upload the file again.")
        held = self._sizes[name] + size
        if held > self.max_bytes:
            self.discard(name)
            if chunk < total_chunks:
                self._refused.add(name)
            self._size_refusals += 1
            if self._size_refusals > 1:
                raise UploadAbuse("A second upload over the upload limit of "
                                  f"{_format_size(self.max_bytes)} arrived.")
            raise UploadError(
                f"The file is over the upload limit of {_format_size(self.max_bytes)}; it was "
                "refused while arriving."
            )
        self._chunks[name].append(bytes(data))
        self._sizes[name] = held
        if chunk < total_chunks:
            return None
        whole = b"".join(self._chunks.pop(name))
        self._sizes.pop(name)
        return whole


# -- entry point -------------------------------------------------------------------------------


def parse_upload(
    content: bytes | bytearray | memoryview,
    filename: str,
    max_bytes: int | None = None,
) -> Upload:
    """Parse an uploaded file into a table, in memory.

    Parameters
    ----------
    content
        The file's bytes, as received from the browser (e.g. ``pn.widgets.FileInput.value``).
    filename
        The client's file name. Used only to pick the format by its extension and to name the
        table for display; never opened, never used as a path.
    max_bytes
        The size limit in bytes; ``None`` uses :func:`max_upload_bytes` (200 MB unless
        ``EMBPROJ_MAX_UPLOAD_MB`` says otherwise). Checked before anything is parsed.

    Returns
    -------
    Upload
        The table, the file name, the format and the notes about what was changed or left out.

    Raises
    ------
    UploadError
        For a file that is too large, empty, of an unknown extension, not what its extension
        says, corrupt, ragged, or an array of pickled Python objects. The message says what
        is wrong in plain words.
    TypeError
        If ``content`` is not bytes-like or ``filename`` is not a string (a programming error).
    """
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise TypeError(f"content must be bytes; got {type(content).__name__}")
    if not isinstance(filename, str):
        raise TypeError(f"filename must be a str; got {type(filename).__name__}")
    limit = max_upload_bytes() if max_bytes is None else int(max_bytes)
    if limit <= 0:
        raise ValueError(f"max_bytes must be positive; got {max_bytes}")
    size = memoryview(content).nbytes
    if size > limit:
        raise UploadError(
            f"The file is {_format_size(size)}, over the upload limit of {_format_size(limit)} "
            f"(the server's {MAX_UPLOAD_ENV} setting)."
        )
    fmt = upload_format(filename)
    if size == 0:
        raise UploadError("The file is empty.")
    content = bytes(content)
    notes: list[str] = []
    if fmt in ("csv", "tsv"):
        columns = _parse_csv(content, "\t" if fmt == "tsv" else ",", notes)
    elif fmt == "parquet":
        columns = _parse_parquet(content, limit * MAX_EXPANSION, notes)
    elif fmt == "npy":
        columns = _parse_npy(content, notes)
    else:
        columns = _parse_npz(content, limit * MAX_EXPANSION, notes)
    table = _build_table(columns, notes)
    return Upload(table=table, name=filename, format=fmt, notes=notes)


def _build_table(columns: dict[str, Any], notes: list[str]) -> Table:
    """Assemble the parsed columns; the Table validates them (and names any bad row)."""
    if not columns:
        left_out = " (see the notes: " + " ".join(notes) + ")" if notes else ""
        raise UploadError(f"The file has no columns that can be shown{left_out}.")
    table = Table(columns=[])
    try:
        for name, data in columns.items():
            table.add_column(name, data)
    except (TypeError, ValueError) as exc:
        raise UploadError(_short(exc)) from None
    if len(table) == 0:
        raise UploadError("The file has no rows of data.")
    empty = [name for name, kind in table.column_types.items() if kind == "none"]
    if empty:
        notes.append(
            f"{len(empty)} column(s) are empty in every row and are kept as such: "
            f"{_quote_examples(empty)}{', ...' if len(empty) > _EXAMPLES else ''}."
        )
    for name, kind in table.column_types.items():
        if kind == "vector":
            _note_nonfinite(name, table.get_column(name, convert_to="numpy"), table, notes)
    return table


def _note_nonfinite(name: str, matrix: np.ndarray, table: Table, notes: list[str]) -> None:
    """Say how many vectors hold NaN or infinity: projections will leave those rows out."""
    empty = table.column_nulls(name)
    bad = 0
    for start in range(0, len(matrix), _CHUNK_ROWS):
        block = ~np.isfinite(matrix[start : start + _CHUNK_ROWS]).all(axis=1)
        if empty is not None:
            block &= ~empty[start : start + _CHUNK_ROWS]
        bad += int(block.sum())
    n_empty = 0 if empty is None else int(empty.sum())
    if bad:
        notes.append(
            f"{bad} of {len(matrix)} vectors in column {name!r} contain NaN or infinite values; "
            "projections will leave those rows out."
        )
    if n_empty:
        notes.append(
            f"{n_empty} of {len(matrix)} rows have no vector in column {name!r}; projections "
            "will leave those rows out."
        )


# -- CSV ---------------------------------------------------------------------------------------


def _parse_csv(content: bytes, delimiter: str, notes: list[str]) -> dict[str, Any]:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UploadError(
            'The file is UTF-16 text (as Excel\'s "Unicode Text" saves it); save it as '
            '"CSV UTF-8" and upload it again.'
        )
    if b"\x00" in content:
        raise UploadError(
            "This is not a text file (it contains binary data), so it cannot be read as CSV."
            + _wrong_format_hint(content)
        )
    import pyarrow as pa
    import pyarrow.csv as pacsv

    end = content.find(b"\n")
    header = content[: end if end >= 0 else len(content)]
    if delimiter == "," and b"," not in header:
        for other, word in ((b";", "semicolons"), (b"\t", "tabs")):
            if other in header:
                delimiter = other.decode()
                notes.append(f"The columns are separated by {word}, not commas.")
                break
    _check_utf8(content, delimiter)
    if content.count(b'"') % 2:
        _check_quotes(content, delimiter)

    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    def read(column_types: dict[str, Any] | None = None) -> Any:
        return pacsv.read_csv(
            pa.BufferReader(content),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(column_types=column_types or {}),
        )

    try:
        table = read()
    except pa.ArrowInvalid as exc:
        if "Empty CSV" in str(exc):
            raise UploadError("The file has no header row and no data.") from None
        raise UploadError(f"The CSV could not be parsed: {_short(exc)}") from None
    if invalid:
        _raise_ragged(content, delimiter, len(invalid))
    header_names = list(table.column_names)
    names = _check_header(header_names, notes)
    # pyarrow infers dates and timestamps, which a table cannot hold; read them as the text
    # they were (a cast back to string would reformat them) by reading the file once more.
    temporal = [
        name for name, type_ in zip(header_names, table.schema.types) if pa.types.is_temporal(type_)
    ]
    if temporal:
        table = read({name: pa.string() for name in temporal})
    table = table.rename_columns(names)
    columns: dict[str, Any] = {}
    for name, column in zip(names, table.columns):
        data = _arrow_column(name, column, notes)
        if data is None:
            continue
        if isinstance(data, pd.Series) and pd.api.types.is_string_dtype(data.dtype):
            data = _text_column(name, data, notes)
        columns[name] = data
    return columns


def _check_quotes(content: bytes, delimiter: str) -> None:
    """Refuse a quoted value that is never closed (pyarrow would swallow the lines after it)."""
    text = content.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as exc:
        # Other complaints of the strict reader (text after a closing quote) are left to
        # pyarrow, which reads those rows as a spreadsheet would.
        if "unexpected end of data" in str(exc):
            raise UploadError(
                f'A quoted value that starts on line {start} is never closed: a " is missing.'
            ) from None


def _raise_ragged(content: bytes, delimiter: str, n_invalid: int) -> None:
    """Name the lines whose field count differs from the header's."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Row numbers are only known when reading on one thread; this second pass runs only for a
    # file that is already refused, and stops at the first few bad rows.
    found: list[Any] = []

    def on_invalid(row: Any) -> str:
        found.append(row)
        return "skip" if len(found) < _EXAMPLES else "error"

    try:
        pacsv.read_csv(
            pa.BufferReader(content),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
        )
    except pa.ArrowInvalid:
        pass
    if not found:  # pragma: no cover - the first pass found them; be safe anyway
        raise UploadError(f"{n_invalid} rows do not have as many fields as the header.")
    first = found[0]
    where = f"line {first.number}" if first.number is not None else "one row"
    message = (
        f"The rows do not all have the same number of fields: {where} has "
        f"{first.actual_columns} but the header has {first.expected_columns}."
    )
    if n_invalid > 1:
        others = [str(row.number) for row in found[1:] if row.number is not None]
        if n_invalid > len(found):
            others.append("...")
        lines = f" (lines {', '.join(others)})" if others else ""
        message += f" {n_invalid - 1} more rows have the same problem{lines}."
    raise UploadError(message)


def _check_utf8(content: bytes, delimiter: str) -> None:
    """Refuse text that is not UTF-8, naming the column and data row (or the header).

    Checked before pyarrow parses: pyarrow reads such cells as binary, and its handler for a
    ragged row fails on them inside its own code. The check decodes 1 MB at a time, so it
    never holds a second copy of the file.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 2**20
    for start in range(0, len(content), step):
        try:
            decoder.decode(content[start : start + step], final=start + step >= len(content))
        except UnicodeDecodeError as exc:
            position = start + exc.start
            break
    else:
        return
    line_start = content.rfind(b"\n", 0, position) + 1
    line = content.count(b"\n", 0, position)  # 0: the header
    if line == 0:
        where = "its header row"
    else:
        field = content[line_start:position].count(delimiter.encode())
        end = content.find(b"\n")
        names = content[: end if end >= 0 else len(content)].decode("utf-8", "replace")
        header = names.rstrip("\r").split(delimiter)
        column = f"column {header[field]!r}" if field < len(header) else f"field {field + 1}"
        where = f"{column}, data row {line}"
    raise UploadError(
        f'The file is not UTF-8 text ({where}). Save it as "CSV UTF-8" and upload it again.'
    )


def _check_header(names: list[str], notes: list[str]) -> list[str]:
    """Name empty headers and refuse duplicates (which would make columns ambiguous)."""
    renamed = []
    for i, name in enumerate(names):
        if name.strip():
            renamed.append(name)
            continue
        new = f"column_{i + 1}"
        while new in names or new in renamed:
            new += "_"
        notes.append(f"Column {i + 1} has no name in the header; it is called {new!r}.")
        renamed.append(new)
    _refuse_duplicates(renamed, "the header")
    return renamed


def _refuse_duplicates(names: list[str], where: str) -> None:
    """Refuse repeated column names: they would make columns ambiguous."""
    seen: set[str] = set()
    duplicates = [name for name in names if name in seen or seen.add(name)]
    if duplicates:
        raise UploadError(
            f"Column names must be unique; {where} repeats {_quote_examples(duplicates)}."
        )


_VECTOR_TEXT = r"\s*\[[^\[\]]*\]\s*"


def _text_column(name: str, series: pd.Series, notes: list[str]) -> Any:
    """Read a CSV text column as vectors or numbers when (nearly) every cell is one."""
    present = series.notna().to_numpy()
    n_present = int(present.sum())
    if n_present == 0:
        return series
    values = series[present]
    if bool(values.str.fullmatch(_VECTOR_TEXT).all()):
        return _vector_text(name, series, present, notes)
    numbers = pd.to_numeric(series, errors="coerce")
    parsed = numbers.notna().to_numpy() & present
    n_parsed = int(parsed.sum())
    if n_parsed == n_present:
        return numbers
    if n_parsed >= _NUMERIC_SHARE * n_present:
        bad = series[present & ~parsed]
        notes.append(
            f"{len(bad)} of {n_present} cells in column {name!r} are not numbers (for example "
            f"{_quote_examples(pd.unique(bad.to_numpy()))}); the column is read as numbers and "
            "those cells as missing values."
        )
        return numbers
    if n_parsed > n_present / 2:
        bad = series[present & ~parsed]
        notes.append(
            f"Column {name!r} is read as text: {len(bad)} of {n_present} cells are not numbers "
            f"(for example {_quote_examples(pd.unique(bad.to_numpy()))}), too many to read it "
            "as numbers."
        )
    return series


def _vector_text(name: str, series: pd.Series, present: np.ndarray, notes: list[str]) -> Any:
    """Parse cells such as ``"[0.1, 0.2]"`` (or numpy's ``"[0.1 0.2]"``) into vectors."""
    inner = series[present].str.strip().str[1:-1].str.replace(",", " ", regex=False)
    parts = inner.str.split()
    lengths = parts.str.len().to_numpy()
    if lengths.min() == 0 or lengths.min() != lengths.max():
        notes.append(
            f"Column {name!r} looks like vectors, but they have different lengths "
            f"({lengths.min()} to {lengths.max()} numbers); it is kept as text."
        )
        return series
    try:
        matrix = np.array(parts.tolist(), dtype=np.float64)
    except ValueError:
        notes.append(
            f"Column {name!r} looks like vectors, but not every entry is a number; it is kept "
            "as text."
        )
        return series
    notes.append(f"Column {name!r} is read as vectors of {matrix.shape[1]} numbers.")
    return _vector_cells(matrix, present)


# -- Arrow (CSV and Parquet) -------------------------------------------------------------------


def _arrow_column(name: str, column: Any, notes: list[str]) -> Any:
    """Convert one Arrow column to data ``Table.add_column`` takes, or None if left out.

    Numbers, booleans and strings become Series; lists of numbers vectors; binary cells
    images. Other types are converted to text (dates, times) or floats (decimals) with a
    note, or left out with a note (structs, maps, lists of strings, ...).
    """
    import pyarrow as pa

    type_ = column.type
    if pa.types.is_dictionary(type_):
        column = column.cast(type_.value_type)
        type_ = column.type
    if (pa.types.is_boolean(type_) or pa.types.is_integer(type_)) and column.null_count == 0:
        # Straight to numpy: no pandas per column (a file may have 100,000 columns).
        return column.to_numpy()
    if pa.types.is_boolean(type_) or pa.types.is_integer(type_):
        # Nullable dtypes keep empty cells empty (plain to_pandas would turn ints with gaps
        # into floats with NaN, and booleans into objects).
        nullable = pd.BooleanDtype() if pa.types.is_boolean(type_) else pd.Int64Dtype()
        return column.to_pandas(types_mapper=lambda _: nullable).reset_index(drop=True)
    if pa.types.is_floating(type_):
        values = column.to_numpy()  # empty cells are NaN, as in pandas
        return values.astype(np.float32) if values.dtype == np.float16 else values
    if pa.types.is_null(type_):
        return column.to_pandas().reset_index(drop=True)
    if (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    ):
        return column.to_pandas().reset_index(drop=True)
    if pa.types.is_temporal(type_):
        notes.append(f"Column {name!r} ({type_}) is converted to text.")
        # Through pandas: its text ("2020-01-01") is what a user would expect to read,
        # where Arrow's cast spells out every microsecond.
        cells = column.to_pandas().astype(object).reset_index(drop=True)
        return cells.map(lambda value: None if pd.isna(value) else str(value))
    if pa.types.is_decimal(type_):
        notes.append(f"Column {name!r} ({type_}) is converted to floating-point numbers.")
        return column.cast(pa.float64()).to_pandas().reset_index(drop=True)
    if (
        pa.types.is_list(type_)
        or pa.types.is_large_list(type_)
        or pa.types.is_fixed_size_list(type_)
    ) and _is_number_type(type_.value_type):
        return _arrow_vectors(name, column, notes)
    if (
        pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_fixed_size_binary(type_)
        or image_fields(type_) is not None
    ):
        # Binary cells, the run store's struct<png, caption> or Hugging Face's
        # struct<bytes, path>.
        try:
            images, _ = images_from_arrow(column)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            notes.append(
                f"Column {name!r} is left out: it holds binary data that is not an image "
                f"({_short(exc, 80)})."
            )
            return None
        return images
    notes.append(f"Column {name!r} is left out: its type {type_} cannot be shown in a table.")
    return None


def _is_number_type(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


def _arrow_vectors(name: str, column: Any, notes: list[str]) -> Any:
    """A list column as vectors (see :func:`embproj_panel.arrow.vectors_from_arrow`)."""
    import pyarrow as pa

    try:
        matrix, nulls = vectors_from_arrow(column)
    except (pa.ArrowException, ValueError) as exc:
        notes.append(f"Column {name!r} is left out: {_short(exc)}.")
        return None
    return matrix if nulls is None else _vector_cells(matrix[~nulls], ~nulls)


def _vector_cells(matrix: np.ndarray, present: np.ndarray) -> Any:
    """What ``add_column`` takes for vectors: the 2-D array, or row views with None gaps."""
    if present.all():
        return matrix
    cells = np.empty(len(present), dtype=object)
    cells[np.flatnonzero(present)] = list(matrix)
    return cells


# -- Parquet -----------------------------------------------------------------------------------


def _parse_parquet(content: bytes, max_uncompressed: int, notes: list[str]) -> dict[str, Any]:
    if content.startswith(_MAGIC["parquet"]) and not content.endswith(_MAGIC["parquet"]):
        raise UploadError(
            "The Parquet file is cut short (it does not end with Parquet's footer): upload the "
            "whole file again."
        )
    if not content.startswith(_MAGIC["parquet"]):
        raise UploadError("This is not a Parquet file." + _wrong_format_hint(content))
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(content))
        declared = _parquet_unpacked_size(parquet.metadata)
        if declared > max_uncompressed:
            raise UploadError(
                f"The Parquet file unpacks to {_format_size(declared)}, more than the "
                f"{_format_size(max_uncompressed)} allowed ({MAX_EXPANSION} x the upload limit)."
            )
        table = parquet.read()
    except UploadError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UploadError(
            f"The Parquet file could not be read (it may be damaged or cut short): {_short(exc)}"
        ) from None
    names = _parquet_names(table)
    columns: dict[str, Any] = {}
    for name, column in zip(names, table.columns):
        data = _arrow_column(name, column, notes)
        if data is not None:
            columns[name] = data
    return columns


def _parquet_unpacked_size(metadata: Any) -> int:
    """A lower bound of what a Parquet file takes once read, from its footer alone.

    The footer's "uncompressed" sizes are sizes *after encoding*: a million zeros, run-length
    encoded, declare 4 KB. Counting at least 8 bytes per stored value (a float64, or a string's
    offset and a byte of text) keeps a tiny file from unpacking into gigabytes unnoticed.
    """
    total = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        values = sum(group.column(j).num_values for j in range(group.num_columns))
        total += max(group.total_byte_size, 8 * values)
    return total


def _parquet_names(table: Any) -> list[str]:
    """Column names, with pandas' stored index columns given their pandas names."""
    names = [str(name) for name in table.column_names]
    metadata = table.schema.pandas_metadata or {}
    index_names = {}
    for entry in metadata.get("columns", []):
        field_name = entry.get("field_name")
        if isinstance(field_name, str) and re.fullmatch(r"__index_level_\d+__", field_name):
            index_names[field_name] = entry.get("name") or "index"
    for i, name in enumerate(names):
        if name in index_names:
            new = str(index_names[name])
            while new in names:
                new += "_"
            names[i] = new
    _refuse_duplicates(names, "the file")
    return names


# -- NumPy -------------------------------------------------------------------------------------

_PICKLE_MESSAGE = (
    "holds Python objects (pickled data), which are never loaded, for safety. Save numbers or "
    "strings instead, e.g. np.save(path, array.astype(np.float32))."
)


def _check_npy_size(handle: Any, size: int, what: str) -> None:
    """Refuse an NPY whose header declares more data than the file holds (before allocating).

    ``np.load`` on an in-memory file allocates the declared shape first; a 100-byte file must
    not be able to ask for terabytes. ``handle`` is rewound afterwards.
    """
    from numpy.lib import format as npy_format

    start = handle.tell()
    try:
        version = npy_format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            handle.seek(start)
            return  # np.load reads (and checks) the rarer versions itself
        read_header = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        shape, _, dtype = read_header(handle)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        raise UploadError(
            f"{what} could not be read: its NPY header is damaged ({_short(exc, 80)})."
        ) from None
    data = size - (handle.tell() - start)
    handle.seek(start)
    if dtype.hasobject:
        return  # refused as pickled data by np.load
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > data:
        raise UploadError(
            f"{what} is cut short or damaged: its header declares shape {tuple(shape)} of "
            f"{dtype} ({_format_size(declared)}), but the file holds {_format_size(max(data, 0))}."
        )


def _load_npy(handle: Any, what: str, size: int) -> np.ndarray:
    _check_npy_size(handle, size, what)
    try:
        return np.load(handle, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UploadError(f"{what} {_PICKLE_MESSAGE}") from None
        raise UploadError(
            f"{what} could not be read (it may be damaged or cut short): {_short(exc)}"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise UploadError(
            f"{what} could not be read (it may be cut short): {_short(exc)}"
        ) from None


def _parse_npy(content: bytes, notes: list[str]) -> dict[str, Any]:
    if not content.startswith(_MAGIC["npy"]):
        raise UploadError("This is not an NPY file." + _wrong_format_hint(content))
    array = _load_npy(io.BytesIO(content), "The array", len(content))
    if array.dtype.names:
        columns = _structured_columns(array, "", notes)
        _check_lengths({name: len(data) for name, data in columns.items()})
        return columns
    if array.ndim != 2:
        hint = (
            " A 1-D array has one number per row and is no embedding: upload a 2-D array "
            "(rows x dimensions), or an NPZ with the embedding and this array as labels."
            if array.ndim == 1
            else " Upload a 2-D array (rows x dimensions)."
        )
        raise UploadError(f"The array has shape {array.shape}; an embedding is 2-D.{hint}")
    return {"embedding": _embedding(array, "The array")}


def _embedding(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise UploadError(f"{what} holds {array.dtype} values; an embedding must hold numbers.")
    if array.shape[0] == 0:
        raise UploadError(f"{what} has no rows (shape {array.shape}).")
    if array.shape[1] == 0:
        raise UploadError(f"{what} has no dimensions (shape {array.shape}).")
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return _native(array)


def _native(array: np.ndarray) -> np.ndarray:
    """The array in this machine's byte order (Arrow and Bokeh expect native numbers)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _parse_npz(content: bytes, max_uncompressed: int, notes: list[str]) -> dict[str, Any]:
    if content.startswith(_EMPTY_ZIP):
        raise UploadError("The NPZ file holds no arrays.")
    if not content.startswith(_MAGIC["npz"]):
        raise UploadError("This is not an NPZ file." + _wrong_format_hint(content))
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"The NPZ file could not be read: {_short(exc)}") from None
    declared = sum(member.file_size for member in members)
    if declared > max_uncompressed:
        raise UploadError(
            f"The NPZ file unpacks to {_format_size(declared)}, more than the "
            f"{_format_size(max_uncompressed)} allowed ({MAX_EXPANSION} x the upload limit)."
        )
    arrays: dict[str, np.ndarray] = {}
    skipped = []
    for member in members:
        if member.is_dir():
            continue
        if not member.filename.endswith(".npy"):
            skipped.append(member.filename)
            continue
        key = member.filename[: -len(".npy")]
        with archive.open(member) as handle:
            if handle.read(len(_MAGIC["npy"])) != _MAGIC["npy"]:
                skipped.append(member.filename)
                continue
        # A fresh handle: np.load reads the header itself. Zip members are bounded by their
        # declared size (checked above), so a lying header cannot unpack more than that.
        with archive.open(member) as handle:
            arrays[key] = _load_npy(handle, f"Array {key!r}", member.file_size)
    if skipped:
        notes.append(
            f"{len(skipped)} files in the NPZ are not arrays and are left out: "
            f"{_quote_examples(skipped)}."
        )
    if not arrays:
        raise UploadError("The NPZ file holds no arrays.")
    return _columns_from_arrays(arrays, notes)


def _columns_from_arrays(arrays: dict[str, np.ndarray], notes: list[str]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for key, array in arrays.items():
        what = f"Array {key!r}"
        if array.dtype.names:
            columns.update(_structured_columns(array, f"{key}.", notes))
        elif array.ndim == 0:
            notes.append(f"{what} is a single value, not a column; it is left out.")
        elif array.ndim == 1:
            columns[key] = _scalar_column(array, what)
        elif array.ndim == 2:
            columns[key] = _embedding(array, what)
        elif array.ndim in (3, 4):
            columns[key] = _image_column(array, what, notes)
        else:
            raise UploadError(
                f"{what} has shape {array.shape}; columns are 1-D, 2-D (vectors) or "
                "stacks of images."
            )
    _check_lengths({name: len(data) for name, data in columns.items()})
    return columns


def _structured_columns(array: np.ndarray, prefix: str, notes: list[str]) -> dict[str, Any]:
    """One column per field of a record array (a field of shape (d,) is a vector column)."""
    if array.ndim != 1:
        raise UploadError(f"A record array must be 1-D; this one has shape {array.shape}.")
    columns: dict[str, Any] = {}
    for field_name in array.dtype.names:
        data = array[field_name]
        what = f"Field {prefix}{field_name!r}"
        if data.ndim == 1:
            columns[f"{prefix}{field_name}"] = _scalar_column(data, what)
        elif data.ndim == 2:
            columns[f"{prefix}{field_name}"] = _embedding(np.ascontiguousarray(data), what)
        else:
            notes.append(f"{what} has shape {data.shape[1:]} per row; it is left out.")
    return columns


def _scalar_column(array: np.ndarray, what: str) -> Any:
    kind = array.dtype.kind
    if kind in "biufUMm":
        return _native(array)
    if kind == "S":
        try:
            return np.char.decode(array, "utf-8")
        except UnicodeDecodeError:
            raise UploadError(f"{what} holds bytes that are not UTF-8 text.") from None
    raise UploadError(f"{what} holds {array.dtype} values, which a table cannot show.")


def _image_column(array: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    """(n, h, w) or (n, h, w, 1|3|4) arrays to Image cells, scaled alike for every image."""
    n, height, width = array.shape[:3]
    channels = array.shape[3] if array.ndim == 4 else 1
    if channels not in (1, 3, 4) or height < 2 or width < 2 or array.dtype.kind not in "biuf":
        raise UploadError(
            f"{what} has shape {array.shape}; a stack of images is (n, height, width) or "
            "(n, height, width, 1|3|4) of numbers."
        )
    if height * width > MAX_IMAGE_PIXELS:
        raise UploadError(f"{what} holds images of {width}x{height} pixels, too large to show.")
    # Scale the whole stack with one rule (Image's own rule, per image, would brighten a
    # dark image in [0, 1] while leaving a brighter one alone).
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype.kind == "b":
        pixels = array.astype(np.uint8) * 255
    else:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise UploadError(f"{what} holds NaN or infinite pixel values.")
        if array.dtype.kind == "f" and values.min() >= 0 and values.max() <= 1:
            values = values * 255.0
        pixels = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    cells = np.empty(n, dtype=object)
    for row in range(n):
        cells[row] = Image(pixels[row])
    notes.append(f"{what} ({'x'.join(map(str, array.shape))}) is read as {n} images.")
    return cells


def _check_lengths(lengths: dict[str, int]) -> None:
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name!r} has {n}" for name, n in lengths.items())
        raise UploadError(f"The arrays must all have the same number of rows: {listed}.")
