"""The local run store: ``init`` / ``log`` / ``finish`` as in wandb, on your own disk.

A W&B user's logging code runs unchanged with ``import embproj_panel as ep``::

    run = ep.init(project="embedding_tutorial")
    ep.log({"digits": table_or_dataframe})
    ep.finish()

and the tables come back with :func:`load_table`. The layout is plain files that other tools
can read::

    <root>/                          dir= argument > $EMBPROJ_DIR > ./embproj-runs
        <project>/
            <run>/
                manifest.json        tables, their steps, rows and column types; times; version
                <key>.<step>.parquet one file per logged table and step

Each table is one Parquet file written column by column through :mod:`embproj_panel.arrow`
(the one codec the export and the upload parser share), never through pandas object columns:
a vector column is an Arrow ``fixed_size_list`` of its float dtype built zero-copy from the
``(n, d)`` array, an image column a ``struct<png: binary, caption: string>``, and int, float,
bool and str columns keep their Arrow types. Empty (None) cells are Arrow nulls. The manifest
records each column's name (str or int) and storage type, so a loaded table has
exactly the columns, order and types that were logged.

Every file is written to a temporary file in the same folder, flushed to disk and renamed over
its final name, Parquet first and the manifest last: a crash in the middle of ``log`` leaves
what was logged before untouched, and logging a key again adds a step instead of replacing one.
Project, run and table names become folder and file names, so they are validated before any
path is built from them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embproj_panel.arrow import table_from_arrow, table_to_arrow
from embproj_panel.table import Table

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

# Longest accepted name, in UTF-8 bytes: file systems cap a path component at 255 bytes and
# the store adds prefixes and suffixes for its temporary files.
MAX_NAME_BYTES = 128

# Characters that mean something in a path on some platform: separators, a drive (``C:x`` on
# Windows is relative to drive C, not to the store) and the characters Windows forbids.
_PATH_CHARACTERS = frozenset('/\\:*?"<>|')
# Device names Windows resolves anywhere, with or without an extension (``NUL.txt``).
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)]
)

# -- names and paths ---------------------------------------------------------------------------
def validate_name(name: Any, what: str = "name") -> str:
    """Return ``name`` if it is safe as one folder or file name in the store, else raise.

    Parameters
    ----------
    name
        A project, run or table name.
    what
        What the name is for ("project", "run", "table key"), used in the error message.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If ``name`` is empty, too long, ``..``-bearing, starts with a dot (reserved for the
        store's own files, such as ``.cache``), ends with a dot or space, holds a path
        separator, a drive colon, another character Windows forbids or a control character,
        or is a Windows device name.
    """
    if not isinstance(name, str):
        raise TypeError(f"The {what} must be a str; got {type(name).__name__} {name!r}")

    def refuse(reason: str) -> ValueError:
        return ValueError(f"Invalid {what} {name!r}: {reason}")

    if not name:
        raise refuse("it is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise refuse(f"it is longer than {MAX_NAME_BYTES} bytes in UTF-8")
    if ".." in name:
        raise refuse("it contains '..'")
    if name.startswith("."):
        raise refuse("it starts with '.' (reserved for the store's own files)")
    if name.endswith((".", " ")):
        raise refuse("it ends with a dot or a space (Windows drops them)")
    bad = sorted({c for c in name if c in _PATH_CHARACTERS})
    if bad:
        raise refuse(f"it contains {', '.join(map(repr, bad))} (path characters are not allowed)")
    control = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cs")})
    if control:
        raise refuse(f"it contains control characters {', '.join(map(repr, control))}")
    if name.split(".")[0].upper() in _WINDOWS_DEVICES:
        raise refuse("it is a Windows device name")
    return name


def default_root() -> Path:
    """The store's folder when no ``dir`` is given: ``$EMBPROJ_DIR``, else ``./embproj-runs``.

    Returns
    -------
    pathlib.Path
        An absolute path (resolved against the current directory now, so a later ``chdir``
        does not move a run's files).
    """
    configured = os.environ.get("EMBPROJ_DIR")
    root = Path(configured).expanduser() if configured else Path("embproj-runs")
    return root.absolute()


def _root(dir: str | os.PathLike[str] | None) -> Path:
    return Path(dir).expanduser().absolute() if dir is not None else default_root()


def _project_dir(root: Path, project: str) -> Path:
    return root / validate_name(project, "project")


def _run_dir(root: Path, project: str, run: str) -> Path:
    return _project_dir(root, project) / validate_name(run, "run")


def _table_file(key: str, step: int) -> str:
    """The Parquet file of one step, relative to the run folder (the only place it is built)."""
    return f"{validate_name(key, 'table key')}.{int(step)}.parquet"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _package_version() -> str:
    from embproj_panel import __version__

    return __version__


# -- atomic files ------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    """Persist a rename: on POSIX the directory entry is only durable once its folder is synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its renames are durable on their own
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temporary_path)``, so it is either complete or untouched.

    The temporary file lives in the same folder (a rename across file systems is not atomic)
    and is removed again if ``write`` fails.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_dir(path.parent)


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False)
    _atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _write_parquet(path: Path, table: pa.Table) -> None:
    # Vectors are high-entropy floats: dictionary encoding and min/max statistics cost time
    # and buy nothing for them, so both are kept for the scalar columns only.
    scalar = [f.name for f in table.schema if not pa.types.is_fixed_size_list(f.type)]
    _atomic_write(
        path,
        lambda temporary: pq.write_table(
            table, temporary, use_dictionary=scalar, write_statistics=scalar
        ),
    )


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock while its manifest is read, changed and written.

    Two processes may log to one run (say, ranks of a distributed job using the same run
    name); without the lock both would take the same step number and one manifest update
    would be lost. POSIX only: elsewhere a run has a single writer.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(run_dir / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"No run at {run_dir} (no {MANIFEST})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"The run manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("tables"), dict):
        raise ValueError(f"The run manifest {path} is not an embproj-panel manifest")
    return document


# -- runs --------------------------------------------------------------------------------------
def _default_run_name() -> str:
    """A readable, unique, sortable run name: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class LoggedTable:
    """One logged step of a table, as :func:`list_tables` reports it."""

    key: str
    step: int
    rows: int
    column_types: dict[str | int, str]
    logged: str


class Run:
    """A run: one folder of logged tables under ``<root>/<project>/<run>``.

    Created by :func:`init` (which also makes it the current run for :func:`log`). Opening a
    run name that exists continues it: new tables are added as new steps, nothing is replaced.

    Parameters
    ----------
    project
        The project's name (a folder name: no path separators, ``..`` or control characters).
    name
        The run's name; default: the UTC time and a random suffix, e.g. ``20250101-120000-a1b2c3``.
    dir
        The store's root folder; default :func:`default_root`.

    Attributes
    ----------
    project, name : str
        The project's and the run's names.
    root : pathlib.Path
        The store's root folder.
    dir : pathlib.Path
        The run's folder, ``root / project / name``.
    """

    def __init__(
        self, project: str, name: str | None = None, dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.root = _root(dir)
        self.project = validate_name(project, "project")
        if name is not None:
            validate_name(name, "run")  # before anything is created on disk
        project_dir = _project_dir(self.root, project)
        project_dir.mkdir(parents=True, exist_ok=True)
        if name is None:
            while True:  # the suffix makes a clash unlikely; mkdir makes it impossible
                name = _default_run_name()
                with contextlib.suppress(FileExistsError):
                    (project_dir / name).mkdir()
                    break
        self.name = name
        self.dir = _run_dir(self.root, self.project, self.name)
        self.dir.mkdir(exist_ok=True)
        self._finished = False
        with _locked(self.dir):
            try:
                manifest = _read_manifest(self.dir)
            except FileNotFoundError:
                manifest = {
                    "format": "embproj-panel run",
                    "format_version": FORMAT_VERSION,
                    "package_version": _package_version(),
                    "project": self.project,
                    "run": self.name,
                    "created": _now(),
                    "tables": {},
                }
            manifest.update(status="running", finished=None)
            _write_json(self.dir / MANIFEST, manifest)

    def log(self, data: Mapping[str, Table | pd.DataFrame]) -> None:
        """Write each table in ``data`` as the next step of its key.

        Parameters
        ----------
        data
            Table keys to :class:`~embproj_panel.Table` or pandas DataFrame values (a DataFrame
            is converted with ``Table(dataframe=df)``).

        Raises
        ------
        TypeError
            If ``data`` is not a mapping or a value is neither a Table nor a DataFrame.
        ValueError
            If a key is not a valid name or a table cannot be stored. Every value is checked
            and converted before anything is written, so a bad value logs nothing.
        RuntimeError
            If the run is finished.
        """
        if self._finished:
            raise RuntimeError(f"Run {self.project}/{self.name} is finished; start a new one with init()")
        if not isinstance(data, Mapping):
            raise TypeError(f"log() takes a dict of tables; got {type(data).__name__}")
        prepared = []
        for key, value in data.items():
            validate_name(key, "table key")
            if isinstance(value, pd.DataFrame):
                try:
                    value = Table(dataframe=value)
                except (TypeError, ValueError) as exc:  # already names the column and row
                    raise type(exc)(f"Cannot log {key!r}: {exc}") from exc
            elif not isinstance(value, Table):
                raise TypeError(
                    f"Cannot log {key!r}: the store keeps tables, and this value is a "
                    f"{type(value).__name__}; pass an embproj_panel.Table or a pandas DataFrame"
                )
            try:
                arrow, specs = table_to_arrow(value)
            except ValueError as exc:  # already names the column and its type
                raise ValueError(f"Cannot store table {key!r}: {exc}") from exc
            prepared.append((key, arrow, specs))
        if not prepared:
            return
        with _locked(self.dir):
            manifest = _read_manifest(self.dir)
            written: list[Path] = []
            try:
                for key, arrow, specs in prepared:
                    steps = manifest["tables"].setdefault(key, [])
                    relative = _table_file(key, len(steps))
                    path = self.dir / relative
                    _write_parquet(path, arrow)
                    written.append(path)
                    steps.append(
                        {
                            "step": len(steps),
                            "file": relative,
                            "rows": arrow.num_rows,
                            "logged": _now(),
                            "columns": specs,
                        }
                    )
                _write_json(self.dir / MANIFEST, manifest)
            except BaseException:
                # The manifest on disk still lists only the earlier steps; files this call
                # wrote are unreachable from it, so they go rather than linger as orphans.
                for path in written:
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise

    def finish(self) -> None:
        """Mark the run finished; later :meth:`log` calls raise. Calling it again does nothing."""
        self._close("finished")

    def _close(self, status: str) -> None:
        global _current
        if self._finished:
            return
        with _locked(self.dir):
            manifest = _read_manifest(self.dir)
            manifest.update(status=status, finished=_now())
            _write_json(self.dir / MANIFEST, manifest)
        self._finished = True
        if _current is self:
            _current = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        self._close("finished" if exc_type is None else "failed")

    def __repr__(self) -> str:
        state = "finished" if self._finished else "running"
        return f"Run(project={self.project!r}, name={self.name!r}, {state}, dir={str(self.dir)!r})"


# The current run of this Python process, as in wandb: the module-level log()/finish() act on
# it. It is a scripting convenience for the logging side; the app never reads it.
_current: Run | None = None


def init(project: str, name: str | None = None, dir: str | os.PathLike[str] | None = None) -> Run:
    """Start (or continue) a run and make it the current one, like ``wandb.init``.

    A current run that is still open is finished first, as ``wandb.init`` does.

    Parameters
    ----------
    project
        The project's name.
    name
        The run's name; default: a readable unique id (UTC time and a random suffix).
    dir
        The store's root folder; default ``$EMBPROJ_DIR``, else ``./embproj-runs``.

    Returns
    -------
    Run
        The run; also usable as a context manager that finishes it.
    """
    global _current
    # Finish first: the new run may be the same folder (a named run continued), and finishing
    # afterwards would mark it finished.
    if _current is not None:
        _current.finish()
    _current = Run(project, name=name, dir=dir)
    return _current


def log(data: Mapping[str, Table | pd.DataFrame]) -> None:
    """Log tables to the current run, like ``wandb.log``; see :meth:`Run.log`.

    Raises
    ------
    RuntimeError
        If there is no current run (call :func:`init` first).
    """
    if _current is None:
        raise RuntimeError("log() needs a run: call embproj_panel.init(project=...) first")
    _current.log(data)


def finish() -> None:
    """Finish the current run, like ``wandb.finish``; without one, do nothing."""
    if _current is not None:
        _current.finish()


# -- reading -----------------------------------------------------------------------------------
def list_projects(dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The projects in the store, sorted by name.

    Parameters
    ----------
    dir
        The store's root folder; default :func:`default_root`.
    """
    root = _root(dir)
    if not root.is_dir():
        return []
    names = []
    for entry in root.iterdir():
        # The store's own folders (``.cache``) and anything not made by it are not projects.
        with contextlib.suppress(TypeError, ValueError):
            if entry.is_dir() and validate_name(entry.name):
                names.append(entry.name)
    return sorted(names)


def list_runs(project: str, dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The runs of a project, oldest first.

    Raises
    ------
    FileNotFoundError
        If the project does not exist (the message lists those that do).
    """
    root = _root(dir)
    project_dir = _project_dir(root, project)
    if not project_dir.is_dir():
        raise FileNotFoundError(
            f"No project {project!r} in {root}; the projects are {list_projects(root)}"
        )
    created = {}
    for entry in project_dir.iterdir():
        if (entry / MANIFEST).is_file():
            with contextlib.suppress(TypeError, ValueError):
                created[validate_name(entry.name)] = _read_manifest(entry).get("created", "")
    return sorted(created, key=lambda run: (created[run], run))


def _open_run(project: str, run: str, dir: str | os.PathLike[str] | None) -> tuple[Path, dict]:
    run_dir = _run_dir(_root(dir), project, run)
    if not (run_dir / MANIFEST).is_file():
        known = list_runs(project, dir) if run_dir.parent.is_dir() else []
        raise FileNotFoundError(
            f"No run {run!r} in project {project!r} ({run_dir.parent}); the runs are {known}"
        )
    return run_dir, _read_manifest(run_dir)


def list_tables(
    project: str, run: str, dir: str | os.PathLike[str] | None = None
) -> dict[str, list[LoggedTable]]:
    """The tables logged in a run: each key (in the order first logged) with its steps.

    Returns
    -------
    dict
        ``{key: [LoggedTable(key, step, rows, column_types, logged), ...]}``; iterating it
        gives the keys.
    """
    _, manifest = _open_run(project, run, dir)
    return {
        key: [
            LoggedTable(
                key=key,
                step=entry["step"],
                rows=entry["rows"],
                column_types={c["name"]: c["type"] for c in entry["columns"]},
                logged=entry["logged"],
            )
            for entry in steps
        ]
        for key, steps in manifest["tables"].items()
    }


def load_table(
    project: str, run: str, key: str, step: int = -1, dir: str | os.PathLike[str] | None = None
) -> Table:
    """Load a logged table.

    Parameters
    ----------
    project, run, key
        Which table.
    step
        Which of the key's steps, indexed like a list: ``-1`` (default) is the latest.
    dir
        The store's root folder; default :func:`default_root`.

    Returns
    -------
    Table
        The table as logged: same columns, order, storage types, values and empty cells.

    Raises
    ------
    FileNotFoundError
        If the project or run does not exist.
    KeyError
        If the run has no table ``key`` (the message lists those it has).
    IndexError
        If the key has no such step.
    """
    validate_name(key, "table key")
    run_dir, manifest = _open_run(project, run, dir)
    steps = manifest["tables"].get(key)
    if steps is None:
        raise KeyError(f"Run {project}/{run} has no table {key!r}; it has {list(manifest['tables'])}")
    try:
        entry = steps[step]
    except IndexError:
        raise IndexError(
            f"Table {key!r} of run {project}/{run} has {len(steps)} step(s); no step {step}"
        ) from None
    specs = entry["columns"]
    path = run_dir / _table_file(key, entry["step"])
    stored = pq.read_table(path)
    if stored.num_columns != len(specs) or stored.num_rows != entry["rows"]:
        raise ValueError(
            f"{path} holds {stored.num_columns} columns x {stored.num_rows} rows but the manifest "
            f"says {len(specs)} x {entry['rows']}; the run folder was changed by hand"
        )
    return table_from_arrow(stored, specs)
