"""Live ``wandb`` objects -> tables: ``Table.from_wandb``, ``Projector(t)``, ``log({k: t})``.

``wandb`` stays optional: this module never imports it. A ``wandb.Table`` is recognised by
checking ``sys.modules``: if ``wandb`` was never imported, nothing can be one. It never
imports :mod:`embproj_panel.table` either (``Table.from_wandb`` passes its class in), so the
table module can delegate here without an import cycle; :mod:`embproj_panel.wandb_io` (the
files wandb writes) builds on the same cell conversion.
"""

from __future__ import annotations

import datetime as _dt
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from embproj_panel.images import Image

__all__ = ["WandbDataWarning", "is_wandb_table", "table_from_wandb"]

_QUOTED = 3  # how many examples a note quotes


class WandbDataWarning(UserWarning):
    """Something in a W&B table could not be kept as it was (the message says what)."""



# -- live objects ------------------------------------------------------------------------------


def _wandb_class(name: str) -> type | None:
    module = sys.modules.get("wandb")
    cls = getattr(module, name, None) if module is not None else None
    return cls if isinstance(cls, type) else None


def is_wandb_table(obj: Any) -> bool:
    """True for a ``wandb.Table`` (never imports wandb: without it loaded, nothing is one)."""
    cls = _wandb_class("Table")
    return cls is not None and isinstance(obj, cls)


def _is_wandb_media(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("wandb.") and hasattr(obj, "to_json")


def _image_from_wandb(cell: Any) -> Image | None:
    """The pixels and caption of a ``wandb.Image`` (None when it holds no pixels here)."""
    pil_image = cell.image  # decoded from the array, file or PIL image it was made from
    if pil_image is None:
        return None
    caption = getattr(cell, "_caption", None)  # wandb has no public accessor for it
    return Image(pil_image, caption=caption)


def table_from_wandb(table: Any, table_class: type) -> Any:
    """A :class:`Table` holding a live ``wandb.Table``'s columns, in order.

    Cells: numbers, strings, booleans and None as they are; lists and 1-D ndarrays as vectors
    (arrays of more dimensions flattened); ``wandb.Image`` as :class:`Image` with the same
    pixels and caption; datetimes as ISO text. A column that cannot be kept (other media,
    ragged vectors, dicts) is left out; each such change is emitted as a
    :class:`WandbDataWarning`.

    Raises
    ------
    TypeError
        If ``table`` is not a ``wandb.Table``.
    """
    converted, notes = _convert_wandb_table(table, table_class)
    _warn(notes)
    return converted


def _convert_wandb_table(table: Any, table_class: type) -> tuple[Any, list[str]]:
    if not is_wandb_table(table):
        raise TypeError(f"expected a wandb.Table; got {type(table).__name__}")
    names = list(table.columns)
    rows = list(table.data)
    by_column = list(zip(*rows)) if rows else [()] * len(names)
    image_class = _wandb_class("Image")
    notes: list[str] = []
    columns: dict[Any, Any] = {}
    for name, cells in zip(names, by_column):
        cells = list(cells)
        media = {type(c).__name__ for c in cells if c is not None and _is_wandb_media(c)}
        if image_class is not None and media == {"Image"}:
            images = [_image_from_wandb(c) if isinstance(c, image_class) else c for c in cells]
            lost = sum(1 for c, image in zip(cells, images) if c is not None and image is None)
            if lost:
                notes.append(f"Column {name!r}: {lost:,} wandb.Image cell(s) hold no pixels "
                             "in this process (made from a URL or reference); left empty.")
            cells = images
        elif media:
            notes.append(f"Column {name!r} holds wandb {', '.join(sorted(media))} cells, "
                         "which embproj_panel cannot show; it was left out.")
            continue
        columns[name] = cells
    return _assemble(table_class, columns, len(rows), notes), notes


# -- building a Table from cells --------------------------------------------------------------


def _assemble(table_class: type, columns: dict[Any, list[Any]], n_rows: int,
              notes: list[str]) -> Any:
    """A Table of the columns that can be kept; a note for each one changed or left out."""
    table = table_class(columns=[])
    for name, cells in columns.items():
        data = _column_data(name, cells, notes)
        if data is None:
            continue
        try:
            table.add_column(name, data)
        except (TypeError, ValueError) as exc:
            text = _as_text(cells)
            if text is None:
                notes.append(f"Column {name!r} was left out: {exc}")
                continue
            notes.append(f"Column {name!r} mixes numbers and text; it is shown as text.")
            table.add_column(name, text)
    if n_rows and not table.columns:
        raise ValueError("none of the table's columns can be shown: " + " ".join(notes))
    return table


def _as_text(cells: list[Any]) -> list[Any] | None:
    """The cells as strings when every one is a scalar (W&B allows mixed unions; we do not)."""
    scalar = (str, int, float, bool, np.generic)
    if all(c is None or isinstance(c, scalar) for c in cells):
        return [None if c is None else str(c) for c in cells]
    return None


def _column_data(name: Any, cells: list[Any], notes: list[str]) -> Any:
    """Cells ready for ``Table.add_column``, or None for a column that must be left out."""
    present = [c for c in cells if c is not None]
    if not present:
        return cells
    if all(isinstance(c, (list, tuple, np.ndarray)) for c in present):
        return _vector_data(name, cells, present, notes)
    if any(isinstance(c, (list, tuple, np.ndarray)) for c in present):
        notes.append(f"Column {name!r} mixes lists with single values; it was left out.")
        return None
    if any(isinstance(c, (_dt.datetime, _dt.date)) for c in present):
        return [c.isoformat() if isinstance(c, (_dt.datetime, _dt.date)) else c for c in cells]
    if any(isinstance(c, dict) for c in present):
        notes.append(f"Column {name!r} holds objects (dicts) that embproj_panel cannot show; "
                     "it was left out.")
        return None
    return cells


def _vector_data(name: Any, cells: list[Any], present: list[Any], notes: list[str]) -> Any:
    try:
        stacked = np.asarray(present, dtype=np.float64) if not isinstance(present[0], np.ndarray) \
            else np.stack([np.asarray(c) for c in present])
    except (TypeError, ValueError):
        lengths = sorted({len(c) for c in present})[:_QUOTED]
        notes.append(f"Column {name!r} holds vectors of different lengths or non-numbers "
                     f"(lengths {lengths}...); it was left out.")
        return None
    if not (np.issubdtype(stacked.dtype, np.number) and stacked.dtype != bool) \
            or np.iscomplexobj(stacked):
        notes.append(f"Column {name!r} holds arrays of {stacked.dtype}, not numbers; "
                     "it was left out.")
        return None
    if stacked.ndim == 1 or stacked.shape[1:] == () or stacked[0].size == 0:
        notes.append(f"Column {name!r} holds empty vectors; it was left out.")
        return None
    if stacked.ndim > 2:
        shape = "x".join(str(s) for s in stacked.shape[1:])
        notes.append(f"Column {name!r}: each {shape} array was flattened to a "
                     f"{int(np.prod(stacked.shape[1:]))}-d vector.")
        stacked = stacked.reshape(len(stacked), -1)
    if len(present) == len(cells):
        return stacked
    out: list[Any] = [None] * len(cells)
    rows = (i for i, c in enumerate(cells) if c is not None)
    for row, vector in zip(rows, stacked):
        out[row] = vector
    return out


def _warn(notes: Sequence[str]) -> None:
    for note in notes:
        warnings.warn(note, WandbDataWarning, stacklevel=3)
