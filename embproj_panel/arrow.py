"""The one Table <-> Arrow codec: how each storage type of a column is laid out in Arrow.

The run store (:mod:`embproj_panel.store`), the Parquet export (:mod:`embproj_panel.export`)
and the upload parser (:mod:`embproj_panel.uploads`) all write and read columns through this
module, so a file one of them writes the others read, and a new storage type is one entry in
:data:`CODECS`:

=========  ===============================================  =====================================
storage    Arrow type                                       back in the table
=========  ===============================================  =====================================
vector     ``fixed_size_list<float32|float64>[d]`` built    the ``(n, d)`` array of its own float
           zero-copy from the ``(n, d)`` array              type; empty rows NaN (and null)
image      ``struct<png: binary, caption: string>``         :class:`~embproj_panel.Image` cells,
                                                            PNG bytes kept undecoded
float      ``float32`` / ``float64``; NaN is a value        the same dtype
int        ``int64``                                        int64, empty cells masked
bool       ``bool``                                         bool, empty cells masked
str        ``string``                                       one str object per distinct value
none       ``null``                                         an all-None column
=========  ===============================================  =====================================

Empty (None) cells are Arrow nulls in every type. Reading is lenient where other tools lay
things out differently: :func:`vectors_from_arrow` also takes variable-size lists of any
number type, and :func:`images_from_arrow` plain binary columns and structs whose bytes field
is called ``bytes`` (Hugging Face datasets). Decoded images are bounded by
:data:`~embproj_panel.images.MAX_IMAGE_PIXELS` from their header alone, so a hostile file
cannot make a reader decode a pixel bomb.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embproj_panel.columns import STORAGE_TYPES
from embproj_panel.images import MAX_IMAGE_PIXELS, Image

if TYPE_CHECKING:
    from embproj_panel.table import Table

__all__ = [
    "CODECS",
    "IMAGE_TYPE",
    "StorageCodec",
    "column_from_arrow",
    "column_to_arrow",
    "field_names",
    "image_fields",
    "images_from_arrow",
    "table_from_arrow",
    "table_to_arrow",
    "vectors_from_arrow",
]

#: How an image column is stored: the PNG bytes and the caption of each cell.
IMAGE_TYPE = pa.struct([("png", pa.binary()), ("caption", pa.string())])


@dataclass(frozen=True)
class StorageCodec:
    """How one storage type goes to Arrow and back.

    Attributes
    ----------
    encode
        ``encode(values, nulls) -> pyarrow.Array``: the column's arrays as the table holds them
        (:meth:`Table._storage`) to one Arrow array, nulls where ``nulls`` is True.
    decode
        ``decode(array, n) -> (values, nulls)``: back to the table's arrays (``nulls`` None
        when no cell is empty).
    describe
        ``describe(values) -> dict``: what a reader needs beyond the Arrow type (the run store's
        manifest records it), e.g. a vector's ``dim`` and ``dtype``.
    """

    encode: Callable[[np.ndarray, np.ndarray | None], pa.Array]
    decode: Callable[[pa.Array, int], tuple[np.ndarray, np.ndarray | None]]
    describe: Callable[[np.ndarray], dict[str, Any]] = lambda values: {}


def _mask(nulls: np.ndarray | None) -> pa.Array | None:
    # The nested types' builders take the validity as an Arrow array; pa.array takes numpy.
    return pa.array(nulls) if nulls is not None else None


def _nulls_of(array: pa.Array) -> np.ndarray | None:
    return array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None


# -- vectors -----------------------------------------------------------------------------------
def _encode_vectors(values: np.ndarray, nulls: np.ndarray | None) -> pa.Array:
    values = np.ascontiguousarray(values)
    # Zero-copy: the (n, d) buffer becomes the list's child array as it is.
    return pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1)), values.shape[1], mask=_mask(nulls)
    )


def _decode_vectors(array: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    nulls = _nulls_of(array)
    dim = array.type.list_size
    # ``.values`` ignores the array's offset, so the child is sliced to this array's rows.
    child = array.values.slice(array.offset * dim, n * dim)
    values = child.to_numpy(zero_copy_only=False, writable=True).reshape(n, dim)
    if nulls is not None:
        values[nulls] = np.nan  # the Table's contract for empty vector rows
    return values, nulls


def _describe_vectors(values: np.ndarray) -> dict[str, Any]:
    return {"dim": int(values.shape[1]), "dtype": values.dtype.name}


def vectors_from_arrow(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Arrow list-of-numbers column as the table's ``(n, d)`` vectors and empty-row mask.

    Fixed-size lists (what :func:`column_to_arrow` writes) and variable-size lists whose
    present rows all have one length are read; integers become float64 and float16 float32,
    the dtypes a table holds vectors in.

    Raises
    ------
    ValueError
        If the lists have different lengths (the message names the first row that differs)
        or no numbers, or every row is empty.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    value_type = array.type.value_type
    target = pa.float32() if pa.types.is_float16(value_type) else value_type
    if not pa.types.is_floating(target):
        target = pa.float64()
    if array.null_count == len(array):
        raise ValueError("every row is empty")
    if pa.types.is_fixed_size_list(array.type):
        dim = array.type.list_size
    else:
        present = array.is_valid().to_numpy(zero_copy_only=False)
        lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)[present]
        if lengths.min() != lengths.max():
            row = int(np.flatnonzero(present)[np.flatnonzero(lengths != lengths[0])[0]])
            raise ValueError(
                f"its vectors have different lengths ({lengths.min()} to {lengths.max()} "
                f"numbers; row {row} differs from the first)"
            )
        dim = int(lengths[0])
    if dim == 0:
        raise ValueError("its vectors have no numbers")
    if array.type != pa.list_(target, dim):
        array = array.cast(pa.list_(target, dim))
    return _decode_vectors(array, len(array))


# -- images ------------------------------------------------------------------------------------
def _encode_images(values: np.ndarray, nulls: np.ndarray | None) -> pa.Array:
    png = [None if cell is None else cell.png_bytes for cell in values]
    caption = [None if cell is None else cell.caption for cell in values]
    return pa.StructArray.from_arrays(
        [pa.array(png, pa.binary()), pa.array(caption, pa.string())],
        fields=list(IMAGE_TYPE),
        mask=_mask(nulls),
    )


def image_fields(type_: pa.DataType) -> tuple[str, str | None] | None:
    """``(bytes field, caption field or None)`` of a struct type that holds encoded images.

    :data:`IMAGE_TYPE` (``png``, ``caption``) and Hugging Face's ``struct<bytes, path>``
    qualify; None for any other type.
    """
    if not pa.types.is_struct(type_):
        return None
    fields = {type_.field(i).name: type_.field(i).type for i in range(type_.num_fields)}
    data = next(
        (
            name
            for name in ("png", "bytes")
            if name in fields
            and (pa.types.is_binary(fields[name]) or pa.types.is_large_binary(fields[name]))
        ),
        None,
    )
    if data is None:
        return None
    caption = fields.get("caption")
    has_caption = caption is not None and (
        pa.types.is_string(caption) or pa.types.is_large_string(caption)
    )
    return data, "caption" if has_caption else None


def _image(data: bytes, caption: str | None = None) -> Image:
    image = Image.from_png_bytes(data, caption=caption)
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{image.width}x{image.height} pixels is too large")
    return image


def images_from_arrow(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """An image column (:data:`IMAGE_TYPE`, another image struct, or binary) as Image cells.

    Without captions, one :class:`~embproj_panel.Image` stands for every row that shows the
    same PNG (a million rows of twenty class glyphs cost twenty objects, not a million).

    Raises
    ------
    ValueError
        If a cell is not an image or is larger than ``MAX_IMAGE_PIXELS`` (the message names
        the row).
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    nulls = _nulls_of(array)
    n = len(array)
    fields = image_fields(array.type)
    if fields is None:  # plain binary cells
        png, caption = array, None
    else:
        # flatten(), unlike field(), makes a null struct's fields null too.
        flat = dict(zip((f.name for f in array.type), array.flatten()))
        png = flat[fields[0]]
        caption = flat[fields[1]] if fields[1] else None
    if not pa.types.is_binary(png.type):
        png = png.cast(pa.binary())
    if caption is None or caption.null_count == n:
        values = _shared(png, _image)
    else:
        values = np.empty(n, dtype=object)
        for row, (data, text) in enumerate(zip(png.to_pylist(), caption.to_pylist())):
            if data is not None:
                values[row] = _at_row(row, _image, data, text)
    if nulls is not None:
        values[nulls] = None
    return values, nulls


def _at_row(row: int, make: Callable[..., Any], *args: Any) -> Any:
    try:
        return make(*args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"row {row}: {exc}") from exc


def _shared(array: pa.Array, make: Callable[[Any], Any]) -> np.ndarray:
    """An object array with one ``make(value)`` per distinct value of ``array``, None for nulls."""
    encoded = pc.dictionary_encode(array)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    distinct = np.empty(len(encoded.dictionary) + 1, dtype=object)
    distinct[-1] = None  # nulls index the last slot
    codes = encoded.indices.fill_null(len(distinct) - 1).to_numpy(zero_copy_only=False)
    for i, value in enumerate(encoded.dictionary.to_pylist()):
        try:
            distinct[i] = make(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"row {int(np.flatnonzero(codes == i)[0])}: {exc}") from exc
    return distinct[codes]


# -- scalars -----------------------------------------------------------------------------------
def _scalar_codec(
    arrow_type: pa.DataType | None,
    fill: Any,
    describe: Callable[[np.ndarray], dict[str, Any]] = lambda values: {},
) -> StorageCodec:
    def encode(values: np.ndarray, nulls: np.ndarray | None) -> pa.Array:
        # NaN in a float column stays a value; only None cells (``nulls``) are null.
        return pa.array(values, arrow_type, mask=nulls)

    def decode(array: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        nulls = _nulls_of(array)
        if nulls is not None:
            array = array.fill_null(pa.scalar(fill, array.type))
        return array.to_numpy(zero_copy_only=False, writable=True), nulls

    return StorageCodec(encode, decode, describe)


def _decode_strings(array: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    return _shared(array, lambda text: text), _nulls_of(array)


def _decode_none(array: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    return np.full(n, None, dtype=object), (np.ones(n, dtype=bool) if n else None)


#: Storage type -> its codec; one entry per :data:`~embproj_panel.table.STORAGE_TYPES`.
CODECS: Mapping[str, StorageCodec] = {
    "vector": StorageCodec(_encode_vectors, _decode_vectors, _describe_vectors),
    "image": StorageCodec(_encode_images, lambda array, n: images_from_arrow(array)),
    "float": _scalar_codec(None, np.nan, lambda values: {"dtype": values.dtype.name}),
    "int": _scalar_codec(pa.int64(), 0),
    "bool": _scalar_codec(pa.bool_(), False),
    "str": StorageCodec(lambda values, nulls: pa.array(values, pa.string()), _decode_strings),
    "none": StorageCodec(lambda values, nulls: pa.nulls(len(values)), _decode_none),
}
assert set(CODECS) == set(STORAGE_TYPES), "every storage type needs a codec"


def _codec(storage: str) -> StorageCodec:
    try:
        return CODECS[storage]
    except KeyError:
        raise TypeError(f"unknown storage type {storage!r}") from None


def column_to_arrow(storage: str, values: np.ndarray, nulls: np.ndarray | None) -> pa.Array:
    """One column, as the table holds it (storage type, values, empty-cell mask), as Arrow."""
    return _codec(storage).encode(values, nulls)


def column_from_arrow(
    storage: str, array: pa.Array | pa.ChunkedArray, n: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One Arrow column written by :func:`column_to_arrow` back as ``(values, nulls)``."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return _codec(storage).decode(array, len(array) if n is None else n)


# -- whole tables ------------------------------------------------------------------------------
def table_to_arrow(table: Table) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The whole table as Arrow, with one spec per column (name, storage type and details).

    The specs are what a reader needs to get the exact table back with
    :func:`table_from_arrow` (the run store keeps them in its manifest): the real column
    names (str or int; the Arrow field names are their strings, made unique by
    :func:`field_names`) and the storage types.

    Raises
    ------
    ValueError
        If a column cannot be written; the message names the column and its type.
    """
    arrays, specs = [], []
    for name, storage in table.column_types.items():
        _, values, nulls = table._storage(name)
        codec = _codec(storage)
        try:
            arrays.append(codec.encode(values, nulls))
        except (pa.ArrowException, UnicodeError, ValueError, TypeError) as exc:
            raise ValueError(f"column {name!r} ({storage}): {exc}") from exc
        specs.append({"name": name, "type": storage, **codec.describe(values)})
    return pa.Table.from_arrays(arrays, names=field_names(specs)), specs


def field_names(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Arrow field names: the column names as strings, made unique.

    The specs keep the real (str or int) names; unique field names keep the file readable
    by other tools when a table has both ``1`` and ``"1"``.
    """
    taken: set[str] = set()
    names = []
    for position, spec in enumerate(specs):
        name = str(spec["name"])
        while name in taken:
            name = f"{name}#{position}"
        taken.add(name)
        names.append(name)
    return names


def table_from_arrow(arrow: pa.Table, specs: Sequence[Mapping[str, Any]]) -> Table:
    """The table :func:`table_to_arrow` wrote, from its Arrow table and its column specs.

    The arrays are adopted as they are (``Table(dataframe=...)`` would infer the types again
    and get some wrong: an all-None str column would come back as ``none``, a None in a float
    column as NaN). No loop over rows but for captioned images.

    Raises
    ------
    ValueError
        If the Arrow table does not have one column per spec, or a column does not decode
        (the message names it).
    """
    from embproj_panel.table import Table

    if arrow.num_columns != len(specs):
        raise ValueError(f"it holds {arrow.num_columns} columns but {len(specs)} are described")
    columns = {}
    for i, spec in enumerate(specs):
        storage = spec["type"]
        try:
            values, nulls = column_from_arrow(storage, arrow.column(i), arrow.num_rows)
        except (pa.ArrowException, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"column {spec['name']!r} ({storage}): {exc}") from exc
        columns[spec["name"]] = (storage, values, nulls)
    return Table._from_storage(columns)
