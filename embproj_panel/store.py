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

Faults are said plainly: a write that fails (a read-only folder, a full disk) raises
:class:`StoreWriteError` and leaves the store as it was; a damaged manifest or table file is
listed, not hidden, by :func:`list_runs`, :func:`list_tables` and :func:`list_entries` (with
``readable=False`` and a reason), and opening it raises :class:`UnreadableError`. No message
names the store's absolute path, since a server shows them to its visitors.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
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
from embproj_panel.columns import STORAGE_TYPES
from embproj_panel.dataset import Dataset, dataset_min_rows, write_dataset
from embproj_panel.table import Table
from embproj_panel.wandb_live import is_wandb_table

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
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            # Not tempfile.mkstemp: its files are private (0600), and a store is shared with
            # the server that shows it; 0666 here lets the process's umask decide, as for any
            # file it creates.
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
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


def _remove_if_only_lock(folder: Path) -> None:
    """Remove a run folder this process just made, unless someone else wrote into it."""
    with contextlib.suppress(OSError):
        if {entry.name for entry in folder.iterdir()} <= {".lock"}:
            (folder / ".lock").unlink(missing_ok=True)
            folder.rmdir()


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


class StoreWriteError(OSError):
    """The store could not be written (a read-only folder, a full disk, ...); nothing was.

    ``errno`` is the operating system's error number and ``filename`` the file or folder that
    failed (an absolute path, kept out of the message so it can be shown to anyone).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnreadableError(ValueError):
    """A run or a logged table whose files cannot be read: cut short, edited or missing.

    The message names the run and the file relative to the store (never the server's absolute
    path) and says what is wrong; every other table of the store stays readable.

    Attributes
    ----------
    reason : str
        What is wrong, without the subject ("its manifest.json is not valid JSON ...").
    """

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"{subject} cannot be read: {reason}")
        self.reason = reason


_WRITE_REASONS = {
    errno.EACCES: "the store folder is not writable (permission denied)",
    errno.EPERM: "the store folder is not writable (operation not permitted)",
    errno.EROFS: "the store folder is on a read-only file system",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
}


@contextlib.contextmanager
def _writing(what: str) -> Iterator[None]:
    """Turn an OSError raised while writing ``what`` into a :class:`StoreWriteError`.

    Every write goes through :func:`_atomic_write`, which removes its temporary file on
    failure, so the message can promise that nothing was half-written.
    """
    try:
        yield
    except StoreWriteError:
        raise
    except OSError as exc:
        reason = _WRITE_REASONS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__
        error = StoreWriteError(
            f"Cannot {what}: {reason}. Nothing was written; what was logged before is "
            "unchanged. Free some space, or point dir= (or $EMBPROJ_DIR) at a writable folder."
        )
        error.errno, error.strerror, error.filename = exc.errno, exc.strerror, exc.filename
        raise error from exc


def _manifest_problem(document: Any) -> str | None:
    """Why a parsed manifest is not one this store wrote, or None if it is."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), dict):
        return f"its {MANIFEST} is not an embproj-panel manifest"
    for key, steps in document["tables"].items():
        if not isinstance(key, str) or not isinstance(steps, list):
            return f"its {MANIFEST} lists table {key!r} without steps"
    return None


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest; UnreadableError (naming the run, not its path) if it is damaged."""
    where = f"{run_dir.parent.name}/{run_dir.name}"
    try:
        text = (run_dir / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"No run {where} (it has no {MANIFEST})") from None
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise UnreadableError(f"Run {where}", f"its {MANIFEST} cannot be opened ({reason})") from None
    if not text.strip():
        raise UnreadableError(f"Run {where}", f"its {MANIFEST} is empty")
    try:
        document = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise UnreadableError(f"Run {where}", f"its {MANIFEST} is not text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableError(
            f"Run {where}",
            f"its {MANIFEST} is not valid JSON (cut short or edited by hand: {exc.msg}, "
            f"line {exc.lineno}, column {exc.colno})",
        ) from None
    problem = _manifest_problem(document)
    if problem:
        raise UnreadableError(f"Run {where}", problem)
    return document


# -- runs --------------------------------------------------------------------------------------
def _default_run_name() -> str:
    """A readable, unique, sortable run name: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class LoggedTable:
    """One logged step of a table, as :func:`list_tables` reports it.

    ``readable`` is False when its file is missing, cut short or does not match the manifest;
    ``reason`` then says why (store-relative names only), and :func:`load_table` raises
    :class:`UnreadableError` with the same words.
    """

    key: str
    step: int
    rows: int
    column_types: dict[str | int, str]
    logged: str
    readable: bool = True
    reason: str | None = None


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
        with _writing(f"start run {self.project}/{name or '(new)'}"):
            project_dir = _project_dir(self.root, project)
            project_dir.mkdir(parents=True, exist_ok=True)
            created = False
            if name is None:
                while True:  # the suffix makes a clash unlikely; mkdir makes it impossible
                    name = _default_run_name()
                    with contextlib.suppress(FileExistsError):
                        (project_dir / name).mkdir()
                        created = True
                        break
            self.name = name
            self.dir = _run_dir(self.root, self.project, self.name)
            if not created:
                with contextlib.suppress(FileExistsError):
                    self.dir.mkdir()
                    created = True
            self._finished = False
            try:
                self._start()
            except OSError:
                if created:  # leave no empty run folder behind
                    _remove_if_only_lock(self.dir)
                raise

    def _start(self) -> None:
        """Write (or continue) the run's manifest, marked running."""
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
            value = Table.from_wandb(value) if is_wandb_table(value) else value
            if isinstance(value, pd.DataFrame):
                try:
                    value = Table(dataframe=value)
                except (TypeError, ValueError) as exc:  # already names the column and row
                    raise type(exc)(f"Cannot log {key!r}: {exc}") from exc
            elif not isinstance(value, Table):
                raise TypeError(
                    f"Cannot log {key!r}: the store keeps tables, and this value is a "
                    f"{type(value).__name__}; pass an embproj_panel.Table, a wandb.Table or a pandas DataFrame"
                )
            try:
                arrow, specs = table_to_arrow(value)
            except ValueError as exc:  # already names the column and its type
                raise ValueError(f"Cannot store table {key!r}: {exc}") from exc
            prepared.append((key, arrow, specs))
        if not prepared:
            return
        keys = ", ".join(repr(key) for key, _, _ in prepared)
        with _writing(f"log {keys} to run {self.project}/{self.name}"), _locked(self.dir):
            manifest = _read_manifest(self.dir)
            written: list[Path] = []
            try:
                for key, arrow, specs in prepared:
                    steps = manifest["tables"].setdefault(key, [])
                    relative = _table_file(key, len(steps))
                    path = self.dir / relative
                    if arrow.num_rows >= dataset_min_rows():  # large: a lazy dataset folder
                        write_dataset(arrow, path)
                    else:
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
                        shutil.rmtree(path) if path.is_dir() else path.unlink()
                raise

    def finish(self) -> None:
        """Mark the run finished; later :meth:`log` calls raise. Calling it again does nothing."""
        self._close("finished")

    def _close(self, status: str) -> None:
        global _current
        if self._finished:
            return
        with _writing(f"mark run {self.project}/{self.name} {status}"), _locked(self.dir):
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

    A run whose manifest cannot be read is listed too (first, as its age is unknown): it is
    there, and :func:`list_tables` / :func:`list_entries` say what is wrong with it.

    Raises
    ------
    FileNotFoundError
        If the project does not exist (the message lists those that do).
    """
    root = _root(dir)
    project_dir = _project_dir(root, project)
    if not project_dir.is_dir():
        raise FileNotFoundError(
            f"No project {project!r} in the store; the projects are {list_projects(root)}"
        )
    created = {}
    for entry in project_dir.iterdir():
        if (entry / MANIFEST).is_file():
            with contextlib.suppress(TypeError, ValueError):
                name = validate_name(entry.name)
                try:
                    created[name] = str(_read_manifest(entry).get("created", ""))
                except UnreadableError:
                    created[name] = ""
    return sorted(created, key=lambda run: (created[run], run))


def _open_run(project: str, run: str, dir: str | os.PathLike[str] | None) -> tuple[Path, dict]:
    run_dir = _run_dir(_root(dir), project, run)
    if not (run_dir / MANIFEST).is_file():
        known = list_runs(project, dir) if run_dir.parent.is_dir() else []
        raise FileNotFoundError(f"No run {run!r} in project {project!r}; the runs are {known}")
    return run_dir, _read_manifest(run_dir)


def _step_problem(run_dir: Path, key: str, entry: Any) -> str | None:
    """Why one step of a table cannot be loaded (from the manifest and the file's footer)."""
    if not isinstance(entry, dict) or not all(
        name in entry for name in ("step", "rows", "columns", "logged")
    ):
        return f"the {MANIFEST} entry of table {key!r} is incomplete"
    columns = entry["columns"]
    if not isinstance(columns, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("name"), (str, int))
        and isinstance(c.get("type"), str)
        and c["type"] in STORAGE_TYPES
        for c in columns
    ):
        return f"the {MANIFEST} entry of table {key!r} has unknown column types"
    try:
        relative = _table_file(key, entry["step"])
    except (TypeError, ValueError):
        return f"the {MANIFEST} entry of table {key!r} names no valid step"
    if (run_dir / relative).is_dir():  # a partitioned dataset: Dataset() checks its files
        return None
    try:
        metadata = pq.read_metadata(run_dir / relative)
    except FileNotFoundError:
        return f"its file {relative} is missing"
    except OSError as exc:
        if exc.errno is not None:  # the file system said no, not a bad file
            return f"its file {relative} cannot be opened ({(exc.strerror or '').lower()})"
        return f"its file {relative} is cut short or is not a Parquet file"
    except (pa.ArrowException, ValueError):
        return f"its file {relative} is cut short or is not a Parquet file"
    try:
        n_columns = len(metadata.schema.to_arrow_schema())  # num_columns counts leaves
    except (pa.ArrowException, ValueError):
        return f"its file {relative} is cut short or is not a Parquet file"
    if n_columns != len(columns) or metadata.num_rows != entry["rows"]:
        return (
            f"its file {relative} holds {n_columns} columns x {metadata.num_rows} "
            f"rows but the {MANIFEST} says {len(columns)} x {entry['rows']} (the run folder "
            "was changed by hand)"
        )
    return None


def _logged_table(run_dir: Path, key: str, index: int, entry: Any) -> LoggedTable:
    problem = _step_problem(run_dir, key, entry)
    fields = entry if isinstance(entry, dict) else {}

    def number(name: str, default: int) -> int:
        value = fields.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    columns = fields.get("columns") if isinstance(fields.get("columns"), list) else []
    return LoggedTable(
        key=key,
        step=number("step", index),
        rows=number("rows", 0),
        column_types={
            c["name"]: c.get("type")
            for c in columns
            if isinstance(c, dict) and isinstance(c.get("name"), (str, int))
        },
        logged=str(fields.get("logged", "")),
        readable=problem is None,
        reason=problem,
    )


def list_tables(
    project: str, run: str, dir: str | os.PathLike[str] | None = None
) -> dict[str, list[LoggedTable]]:
    """The tables logged in a run: each key (in the order first logged) with its steps.

    Each step's Parquet footer is read (not its data), so a file that is missing, cut short
    or does not match the manifest is listed with ``readable=False`` and its ``reason``
    rather than as a good table; the other tables are listed as usual.

    Returns
    -------
    dict
        ``{key: [LoggedTable(key, step, rows, column_types, logged, readable, reason), ...]}``;
        iterating it gives the keys.

    Raises
    ------
    FileNotFoundError
        If the project or run does not exist.
    UnreadableError
        If the run's manifest is damaged (then no table of it can be listed).
    """
    run_dir, manifest = _open_run(project, run, dir)
    return {
        key: [_logged_table(run_dir, key, i, entry) for i, entry in enumerate(steps)]
        for key, steps in manifest["tables"].items()
    }


@dataclass(frozen=True)
class StoreEntry:
    """One table of the store, or one run that cannot be read, for a source picker.

    Attributes
    ----------
    project, run
        Where it is.
    key
        The table's key; None for a run whose manifest cannot be read.
    step, rows
        The latest step and its number of rows (None when unknown).
    readable
        Whether :func:`load_table` can open it.
    reason
        Why not, in plain words and store-relative names (None when readable).
    """

    project: str
    run: str
    key: str | None
    step: int | None
    rows: int | None
    readable: bool
    reason: str | None = None

    @property
    def source(self) -> tuple[str, str, str] | None:
        """``(project, run, key)`` to pass to :func:`load_table`; None when unreadable."""
        return (self.project, self.run, self.key) if self.readable and self.key else None

    @property
    def label(self) -> str:
        """A one-line description: plain text (escape it before rendering it as HTML)."""
        where = " / ".join(part for part in (self.project, self.run, self.key) if part)
        if not self.readable:
            return f"{where}: unreadable ({self.reason})"
        return f"{where} ({self.rows:,} rows)"


def list_entries(dir: str | os.PathLike[str] | None = None) -> list[StoreEntry]:
    """Every table of every run of every project, with whether it can be opened.

    Projects by name, runs newest first, tables in the order first logged (latest step). A
    run whose manifest is damaged is one entry with ``key=None``; a table whose file is
    missing or cut short is an entry with ``readable=False``: nothing is silently left out,
    and nothing unreadable is listed as good.

    Parameters
    ----------
    dir
        The store's root folder; default :func:`default_root`.
    """
    entries: list[StoreEntry] = []
    for project in list_projects(dir):
        try:
            runs = list_runs(project, dir)
        except OSError:  # the project went away while listing
            continue
        for run in reversed(runs):
            try:
                tables = list_tables(project, run, dir)
            except UnreadableError as exc:
                entries.append(StoreEntry(project, run, None, None, None, False, exc.reason))
                continue
            except OSError:  # removed while listing
                continue
            for key, steps in tables.items():
                if not steps:
                    entries.append(
                        StoreEntry(project, run, key, None, None, False, "it has no steps")
                    )
                    continue
                last = steps[-1]
                entries.append(
                    StoreEntry(project, run, key, last.step, last.rows, last.readable, last.reason)
                )
    return entries


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
    UnreadableError
        If the run's manifest or the table's file is damaged or missing. No message names
        the store's absolute path.
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
    except TypeError:
        raise TypeError(f"step must be an int; got {type(step).__name__}") from None

    def unreadable(reason: str) -> UnreadableError:
        return UnreadableError(f"Table {key!r} of run {project}/{run}", reason)

    problem = _step_problem(run_dir, key, entry)
    if problem is not None:
        raise unreadable(problem)
    relative = _table_file(key, entry["step"])
    if (run_dir / relative).is_dir():  # logged as a partitioned dataset: read it lazily
        return Dataset(run_dir / relative)
    try:
        stored = pq.read_table(run_dir / relative)
        if stored.num_columns != len(entry["columns"]) or stored.num_rows != entry["rows"]:
            raise ValueError("it does not match the manifest")
        return table_from_arrow(stored, entry["columns"])
    except (pa.ArrowException, OSError, ValueError) as exc:
        # Arrow's messages name the absolute file; the user gets the store-relative one.
        detail = _short_reason(exc, run_dir / relative, relative)
        raise unreadable(f"its file {relative} is damaged ({detail})") from None


def _short_reason(exc: BaseException, path: Path, relative: str) -> str:
    text = " ".join(str(exc).split()).replace(str(path), relative)
    text = text.replace(str(path.parent), "")
    return text if len(text) <= 160 else text[:157] + "..."
