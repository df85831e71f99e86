"""Open Weights & Biases tables: live ``wandb.Table`` objects and the files wandb writes.

``wandb`` stays optional: this module never imports it. A live object is recognised by
checking ``sys.modules``: if ``wandb`` was never imported, nothing can be a ``wandb.Table``.

Three things can be read, each into a :class:`~embproj_panel.table.Table`:

a live ``wandb.Table``
    :func:`table_from_wandb` (also ``Table.from_wandb``, ``Projector(table)`` and
    ``log({"k": table})``). Numbers, strings, lists, ndarrays (1-D: a vector; more
    dimensions: flattened, with a note) and ``wandb.Image`` cells (an ``Image`` with the same
    pixels and caption) are kept.
a run folder (``wandb/run-*`` or ``wandb/offline-run-*``)
    ``files/media/table/<key>_<step>_<hash>.table.json``, written by ``Table.bind_to_run``.
    It holds only ``columns`` and ``data``; wandb cuts it at 10,000 rows without a word and
    writes each image cell (and its caption) as the string ``"Image"``. Such columns are left
    out and a note says so, as does a note on a file of exactly 10,000 rows.
a downloaded ``run_table`` artifact folder
    ``<key>.table.json`` with ``column_types``, ``image-file`` cells pointing at
    ``media/images/...`` and ndarray columns of more than 150 dimensions in
    ``media/serialized_data/*.npz`` (read with ``allow_pickle=False``).

Every path found inside those files is resolved inside the folder it was found in; a path
that leaves it (``..``, absolute, a drive, a symlink out) is not read, and a note says so.

What could not be kept is never dropped silently: :func:`read_wandb` returns the notes with
the table, and :func:`load_wandb` / :func:`table_from_wandb` emit each one as a
:class:`WandbDataWarning`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from embproj_panel.images import Image
from embproj_panel.table import Table
from embproj_panel.wandb_live import (
    _QUOTED,
    WandbDataWarning,
    _assemble,
    _warn,
    is_wandb_table,
)
from embproj_panel.wandb_live import table_from_wandb as _live_table

__all__ = [
    "ARTIFACT_MAX_ROWS",
    "RUN_FILE_MAX_ROWS",
    "WANDB_DIR_ENV",
    "WandbDataWarning",
    "WandbLoad",
    "WandbTableFile",
    "default_wandb_dir",
    "is_wandb_table",
    "list_wandb",
    "load_source",
    "load_wandb",
    "read_wandb",
    "source_options",
    "table_from_wandb",
]

#: wandb's ``Table.MAX_ROWS``: run files stop here, silently.
RUN_FILE_MAX_ROWS = 10_000
#: wandb's ``Table.MAX_ARTIFACT_ROWS``: artifact tables stop here.
ARTIFACT_MAX_ROWS = 200_000
#: The environment variable naming the folder the app searches for W&B tables.
WANDB_DIR_ENV = "EMBPROJ_WANDB_DIR"

_TABLE_SUFFIX = ".table.json"
# <key>_<step>_<sha256[:20]>.table.json (wandb's Media naming for run files).
_RUN_FILE = re.compile(r"^(?P<key>.+)_(?P<step>\d+)_(?P<hash>[0-9a-f]{20})\.table\.json$")
# What a run file writes for a Media cell: its class name (``_numpy_arrays_to_lists``).
_MEDIA_NAMES = frozenset({
    "Image", "Audio", "Video", "Html", "Object3D", "Molecule", "Plotly", "Bokeh", "Table",
    "JoinedTable", "PartitionedTable", "ImageMask", "BoundingBoxes2D", "Classes", "Graph",
    "Histogram",
})
# Folders that hold media or logs, never tables: not searched.
_SKIP_DIRS = frozenset({"images", "serialized_data", "logs", "tmp", "code", "__pycache__",
                        ".git", "node_modules", "classes"})
# A search that meets more folders than this stops (a W&B folder is not a whole disk).
_MAX_FOLDERS = 20_000


@dataclass(frozen=True)
class WandbTableFile:
    """One W&B table file found by :func:`list_wandb`.

    Attributes
    ----------
    key
        The key it was logged under (``run.log({key: table})``) or the artifact entry name.
    step
        wandb's global step for a run file; None for an artifact table.
    kind
        ``"run"`` (a run folder's ``files/media/table`` file: columns and data only, at most
        10,000 rows, no images) or ``"artifact"`` (a ``run_table`` artifact's entry).
    path
        The ``.table.json`` file.
    folder
        The run or artifact folder; every path inside the file stays inside it.
    name
        ``folder`` relative to the searched path (``"."`` for the path itself), then
        ``:key`` and, for run files, ``@step``: unique within one listing, used by the app.
    size
        The file's size in bytes.
    """

    key: str
    step: int | None
    kind: str
    path: Path
    folder: Path
    name: str
    size: int


@dataclass(frozen=True)
class WandbLoad:
    """A W&B table read from disk: the table, what was left out or changed, and the file."""

    table: Table
    file: WandbTableFile
    notes: list[str] = field(default_factory=list)


def table_from_wandb(table: Any) -> Table:
    """A :class:`Table` holding a live ``wandb.Table`` (see ``Table.from_wandb``).

    Each column left out or changed is emitted as a :class:`WandbDataWarning`.
    """
    return _live_table(table, Table)


# -- files on disk ------------------------------------------------------------------------------


def _inside(folder: Path, relative: Any) -> Path | None:
    """``folder / relative`` when it stays inside ``folder`` (symlinks resolved), else None."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        return None
    posix = PurePosixPath(relative.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(relative).drive or ".." in posix.parts:
        return None
    root = folder.resolve()
    target = (root / posix).resolve()
    if target != root and root not in target.parents:
        return None
    return target


def _table_file(path: Path, base: Path) -> WandbTableFile | None:
    """Describe one ``.table.json`` file (run file or artifact entry), or None if it is neither."""
    name = path.name
    if not name.endswith(_TABLE_SUFFIX) or not path.is_file():
        return None
    parts = path.parent.parts
    match = _RUN_FILE.match(name)
    # A run file lives in <run>/files/media/table[/<key folders>]/.
    if match and "table" in parts and "media" in parts:
        top = len(parts) - 1 - parts[::-1].index("table")
        if top >= 2 and parts[top - 1] == "media" and parts[top - 2] == "files":
            folder = Path(*parts[: top - 2])
            prefix = "/".join(parts[top + 1:])
            key = f"{prefix}/{match['key']}" if prefix else match["key"]
            step = int(match["step"])
            return WandbTableFile(key, step, "run", path, folder,
                                  f"{_relative(folder, base)}:{key}@{step}", path.stat().st_size)
    key = name[: -len(_TABLE_SUFFIX)]
    folder = path.parent
    return WandbTableFile(key, None, "artifact", path, folder,
                          f"{_relative(folder, base)}:{key}", path.stat().st_size)


def _relative(folder: Path, base: Path) -> str:
    try:
        return folder.relative_to(base).as_posix() or "."
    except ValueError:
        return folder.as_posix()


def list_wandb(path: str | os.PathLike[str]) -> list[WandbTableFile]:
    """The W&B tables in a folder: run files and artifact tables, run files by key and step.

    Parameters
    ----------
    path
        A ``wandb`` folder (its ``run-*`` / ``offline-run-*`` folders are searched), one run
        folder, a downloaded artifact folder (or a folder of them), or one ``.table.json``.
        Symlinked folders (wandb's ``latest-run``) are not followed, so no run is listed
        twice.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    base = Path(path)
    if not base.exists():
        raise FileNotFoundError(f"No such file or folder: {os.fspath(path)!r}")
    if base.is_file():
        found = _table_file(base, base.parent)
        if found is None:
            raise ValueError(f"{os.fspath(path)!r} is not a W&B table file (*.table.json)")
        return [found]
    found: list[WandbTableFile] = []
    visited = 0
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        visited += 1
        if visited > _MAX_FOLDERS:
            warnings.warn(f"Stopped looking for W&B tables under {os.fspath(path)!r} after "
                          f"{_MAX_FOLDERS:,} folders; name a run or artifact folder instead.",
                          WandbDataWarning, stacklevel=2)
            break
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for filename in sorted(filenames):
            if filename.endswith(_TABLE_SUFFIX):
                entry = _table_file(Path(dirpath, filename), base)
                if entry is not None:
                    found.append(entry)
    found.sort(key=lambda e: (e.folder.as_posix(), e.kind, e.key, -1 if e.step is None else e.step))
    return found


def default_wandb_dir() -> Path | None:
    """The folder the app searches for W&B tables: ``$EMBPROJ_WANDB_DIR``, else ``./wandb``.

    None when the variable is unset and ``./wandb`` does not exist.
    """
    configured = os.environ.get(WANDB_DIR_ENV)
    if configured:
        return Path(configured)
    local = Path("wandb")
    return local if local.is_dir() else None


def _choose(files: list[WandbTableFile], path: Any, key: str | None, step: int | None
            ) -> WandbTableFile:
    if not files:
        raise FileNotFoundError(f"No W&B tables (*.table.json) under {os.fspath(path)!r}")
    keys = sorted({f.key for f in files})
    if key is None:
        if len(keys) > 1:
            raise ValueError(f"{os.fspath(path)!r} holds {len(keys)} tables; pass a key, one of "
                             f"{keys}")
        key = keys[0]
    matching = [f for f in files if f.key == key]
    if not matching:
        raise KeyError(f"No W&B table {key!r} under {os.fspath(path)!r}; the keys are {keys}")
    folders = sorted({f.folder.as_posix() for f in matching})
    if len(folders) > 1:
        raise ValueError(f"Table {key!r} is in {len(folders)} folders under "
                         f"{os.fspath(path)!r}; pass one of them: {folders}")
    if matching[0].kind == "artifact":
        if step not in (-1, None):
            raise ValueError(f"Table {key!r} is an artifact table: it has no steps "
                             f"(step={step!r} given)")
        return matching[0]
    steps = [f.step for f in matching]
    if step is None or step == -1:
        return matching[-1]
    for entry in matching:
        if entry.step == step:
            return entry
    raise IndexError(f"Table {key!r} was logged at steps {steps}; no step {step}")


def read_wandb(path: str | os.PathLike[str], key: str | None = None, step: int = -1
               ) -> WandbLoad:
    """Read a W&B table from disk, with notes on what could not be kept.

    Parameters
    ----------
    path
        See :func:`list_wandb`.
    key
        The table's key; may be left out when ``path`` holds one key only.
    step
        For run files, wandb's global step it was logged at; ``-1`` (default) is the last
        one logged under ``key``. Artifact tables have no steps.

    Returns
    -------
    WandbLoad
        The table, the file it came from and the notes (columns left out, a possible
        10,000-row cut, image cells that could not be read).

    Raises
    ------
    FileNotFoundError
        No such path, or no tables in it.
    KeyError
        No table ``key`` (the message lists the keys).
    IndexError
        No such step (the message lists the steps).
    ValueError
        Several tables or folders match, or the file is not a W&B table.
    """
    chosen = _choose(list_wandb(path), path, key, step)
    return _read_file(chosen)


def load_wandb(path: str | os.PathLike[str], key: str | None = None, step: int = -1) -> Table:
    """Load a W&B table from a run folder, an artifact folder or a ``.table.json`` file.

    Each note of :func:`read_wandb` (columns that could not be recovered, a file that may
    have been cut at 10,000 rows) is emitted as a :class:`WandbDataWarning`.
    """
    loaded = read_wandb(path, key, step)
    _warn(loaded.notes)
    return loaded.table


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable W&B table file ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("columns"), list) \
            or not isinstance(document.get("data"), list):
        raise ValueError(f"{path} is not a W&B table file: it has no 'columns' and 'data'")
    columns = document["columns"]
    for row_index, row in enumerate(document["data"]):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ValueError(f"{path}: row {row_index} does not have {len(columns)} cells")
    return document


def _read_file(entry: WandbTableFile) -> WandbLoad:
    document = _read_json(entry.path)
    notes: list[str] = []
    if entry.kind == "run":
        table = _run_table(document, notes)
    else:
        table = _artifact_table(document, entry.folder, notes)
    return WandbLoad(table, entry, notes)


def _run_table(document: dict[str, Any], notes: list[str]) -> Table:
    names, rows = document["columns"], document["data"]
    columns: dict[Any, list[Any]] = {}
    lost: list[str] = []
    for index, name in enumerate(names):
        cells = [row[index] for row in rows]
        present = [c for c in cells if c is not None]
        if present and all(isinstance(c, str) and c in _MEDIA_NAMES for c in present):
            lost.append(f"{name!r} ({'/'.join(sorted(set(present)))})")
            continue
        columns[name] = cells
    if lost:
        notes.append(
            f"Column(s) {', '.join(lost)} could not be recovered: a run folder's table file "
            "stores a media cell (and its caption) only as its type's name, such as \"Image\". "
            "The pixels are in the run's run_table artifact: download it and open that folder."
        )
    if len(rows) == RUN_FILE_MAX_ROWS:
        notes.append(
            f"This run file holds {RUN_FILE_MAX_ROWS:,} rows, where wandb cuts run files "
            "without a word: the logged table may have had more. The run_table artifact "
            f"keeps up to {ARTIFACT_MAX_ROWS:,} rows."
        )
    return _assemble(Table, columns, len(rows), notes)


def _types(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Column name -> its W&B types, unions unwrapped (``optional=True`` wraps every type)."""
    type_map = (document.get("column_types") or {}).get("params", {}).get("type_map", {})
    out: dict[str, list[dict[str, Any]]] = {}
    if not isinstance(type_map, dict):
        return out
    for name, spec in type_map.items():
        flat: list[dict[str, Any]] = []
        stack = [spec]
        while stack:
            item = stack.pop()
            if not isinstance(item, dict):
                continue
            if item.get("wb_type") == "union":
                stack.extend((item.get("params") or {}).get("allowed_types") or [])
            else:
                flat.append(item)
        out[str(name)] = flat
    return out


def _artifact_table(document: dict[str, Any], folder: Path, notes: list[str]) -> Table:
    names, rows = document["columns"], document["data"]
    types = _types(document)
    if document.get("log_mode") == "INCREMENTAL":
        notes.append("This is an incremental table: only the rows of this increment are read.")
    columns: dict[Any, list[Any]] = {}
    for index, name in enumerate(names):
        kinds = types.get(str(name), [])
        cells = [row[index] for row in rows]
        ndarray = next((t for t in kinds if t.get("wb_type") == "ndarray"
                        and (t.get("params") or {}).get("serialization_path")), None)
        if ndarray is not None:
            data = _serialized_column(name, ndarray, folder, len(rows), notes)
            if data is not None:
                columns[name] = data
            continue
        if any(t.get("wb_type") == "timestamp" for t in kinds):
            cells = [_timestamp(c) for c in cells]
        media = {c.get("_type") for c in cells if isinstance(c, dict) and "_type" in c}
        if media == {"image-file"}:
            cells = _image_cells(name, cells, folder, notes)
        elif media:
            notes.append(f"Column {name!r} holds {', '.join(sorted(map(str, media)))} cells, "
                         "which embproj_panel cannot show; it was left out.")
            continue
        columns[name] = cells
    nrows = document.get("nrows")
    if isinstance(nrows, int) and nrows != len(rows):
        notes.append(f"The file says it has {nrows:,} rows but holds {len(rows):,}.")
    if len(rows) == ARTIFACT_MAX_ROWS:
        notes.append(f"This artifact table holds {ARTIFACT_MAX_ROWS:,} rows, where wandb cuts "
                     "artifact tables: the logged table may have had more.")
    return _assemble(Table, columns, len(rows), notes)


def _timestamp(cell: Any) -> Any:
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        moment = _dt.datetime.fromtimestamp(cell / 1000, tz=_dt.timezone.utc)
        return moment.isoformat()
    return cell


def _serialized_column(name: Any, spec: dict[str, Any], folder: Path, n: int,
                       notes: list[str]) -> Any:
    where = spec["params"]["serialization_path"]
    relative = where.get("path") if isinstance(where, dict) else None
    array_key = where.get("key", str(name)) if isinstance(where, dict) else str(name)
    path = _inside(folder, relative)
    if path is None:
        notes.append(f"Column {name!r} was left out: its array file {relative!r} is not a "
                     "path inside the artifact folder.")
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            array = archive[str(array_key)]
    except (OSError, KeyError, ValueError, EOFError) as exc:
        notes.append(f"Column {name!r} was left out: its array file {relative!r} could not "
                     f"be read ({exc}).")
        return None
    if array.ndim < 2 or len(array) != n:
        notes.append(f"Column {name!r} was left out: its array file holds shape "
                     f"{array.shape}, not one array per row ({n:,} rows).")
        return None
    return list(array) if array.ndim > 2 else array


def _image_cells(name: Any, cells: list[Any], folder: Path, notes: list[str]) -> list[Any]:
    images: list[Any] = []
    outside: list[str] = []
    unreadable: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict):
            images.append(None)
            continue
        relative = cell.get("path")
        path = _inside(folder, relative)
        if path is None:
            outside.append(repr(relative))
            images.append(None)
            continue
        caption = cell.get("caption")
        try:
            images.append(Image(path, caption=None if caption is None else str(caption)))
        except (OSError, ValueError) as exc:
            unreadable.append(f"{relative!r} ({exc})")
            images.append(None)
    if outside:
        notes.append(f"Column {name!r}: {len(outside):,} image path(s) lead outside the "
                     f"folder and were not read (e.g. {', '.join(outside[:_QUOTED])}).")
    if unreadable:
        notes.append(f"Column {name!r}: {len(unreadable):,} image file(s) could not be read "
                     f"(e.g. {'; '.join(unreadable[:_QUOTED])}); those cells are empty.")
    return images


# -- the app's source picker --------------------------------------------------------------------


def source_options(root: str | os.PathLike[str] | None = None) -> dict[str, tuple[str, str]]:
    """Label -> ``("wandb", name)`` for every W&B table under ``root``.

    ``root`` defaults to :func:`default_wandb_dir`; no folder, no options. ``name`` is the
    :attr:`WandbTableFile.name`, which :func:`load_source` looks up in a fresh listing: a
    name that came from a URL is compared with what is on disk, never joined into a path.
    """
    folder = default_wandb_dir() if root is None else Path(root)
    if folder is None or not folder.exists():
        return {}
    try:
        files = list_wandb(folder)
    except (OSError, ValueError):
        return {}
    options = {}
    for entry in files:
        where = "run file" if entry.kind == "run" else "artifact"
        step = f" step {entry.step}" if entry.step is not None else ""
        relative = _relative(entry.folder, folder)
        shown = folder.resolve().name if relative == "." else relative
        label = f"W&B / {shown} / {entry.key}{step} ({where})"
        options[label] = ("wandb", entry.name)
    return options


def load_source(name: str, root: str | os.PathLike[str] | None = None) -> WandbLoad:
    """Read the table :func:`source_options` listed as ``("wandb", name)``.

    Raises
    ------
    KeyError
        If no table of that name is under ``root`` (any more).
    """
    folder = default_wandb_dir() if root is None else Path(root)
    if folder is None:
        raise KeyError(f"No W&B folder to look for {name!r} in (set {WANDB_DIR_ENV})")
    for entry in list_wandb(folder):
        if entry.name == name:
            return _read_file(entry)
    raise KeyError(f"No W&B table {name!r} under {os.fspath(folder)!r}")
