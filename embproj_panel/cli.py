"""The ``embproj`` command: serve the app, project headlessly, list and log tables.

::

    embproj serve [SOURCE] [--port 5006] [--address 127.0.0.1] [--show]
                  [--allow-websocket-origin HOST[:PORT] ...] [--wandb-dir DIR]
    embproj project SOURCE --method umap [--columns C ...] [--param k=v ...] -o coords.parquet
    embproj ls [--dir STORE]
    embproj log FILE --project P [--name N] [--key K] [--dir STORE]

``SOURCE`` is a Parquet, CSV, TSV, NPY or NPZ file (read by the upload parsers of
:mod:`embproj_panel.uploads`, so a file reads the same here as dropped on the page), a
Parquet dataset (a folder of Parquet files or a quoted glob such as ``"data/*.parquet"``,
kept on disk and read on demand: :class:`~embproj_panel.dataset.Dataset`), a W&B
run or artifact folder or ``.table.json`` file (:mod:`embproj_panel.wandb_io`, with ``--key``
and ``--step``), or a logged table ``PROJECT/RUN/KEY`` of the run store. ``serve`` without a
source opens the store.

Bad arguments, missing files and unreadable data print one line on stderr and exit with a
non-zero code (2 for usage errors, 1 for everything else); never a traceback. Notes about what
was changed or left out while reading go to stderr as ``note: ...`` lines.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

PROG = "embproj"


class CommandError(Exception):
    """A problem to report in one line (exit code 1)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line, naming ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass
class Source:
    """A table read for the command line, with where it came from and the notes."""

    table: Any
    label: str
    notes: list[str] = field(default_factory=list)
    key: str = "table"  # the key ``embproj log`` logs it under unless --key says otherwise
    wandb_name: str | None = None  # set when it is a W&B table the app lists by name
    wandb_root: Path | None = None


# -- reading sources ---------------------------------------------------------------------------


def read_source(text: str, key: str | None = None, step: int = -1) -> Source:
    """Read ``SOURCE``: a data file, a W&B folder or table file, or ``PROJECT/RUN/KEY``.

    Raises
    ------
    CommandError
        With a one-line message for anything that cannot be read.
    """
    from embproj_panel import wandb_io
    from embproj_panel.uploads import FORMATS, UploadError, parse_upload

    path = Path(text)
    if _is_dataset(text, path):
        return _read_dataset(text)
    if path.is_file() and path.suffix.lower() in FORMATS:
        content = path.read_bytes()
        try:
            # A local file has no upload limit: the limit (and so the unpacked-size guard
            # it scales) is only there to protect a server from its visitors.
            upload = parse_upload(content, path.name, max_bytes=max(1, len(content)) * 1024)
        except UploadError as exc:
            raise CommandError(f"{text}: {exc}") from None
        return Source(upload.table, path.name, list(upload.notes), key=_key_from(path.name))
    if path.is_file() and not path.name.endswith(".table.json"):
        raise CommandError(f"{text}: not a file embproj reads; it reads "
                           f"{', '.join(FORMATS)} files, W&B folders and .table.json files")
    if path.exists():
        try:
            loaded = wandb_io.read_wandb(path, key, step)
        except (KeyError, IndexError) as exc:
            raise CommandError(f"{text}: {exc.args[0]}") from None
        except FileNotFoundError as exc:
            raise CommandError(f"{text}: {exc}") from None
        base = path if path.is_dir() else path.parent
        return Source(loaded.table, f"W&B {loaded.file.key}", list(loaded.notes),
                      key=loaded.file.key.replace("/", "_"), wandb_name=loaded.file.name if path.is_dir() else None, wandb_root=base)
    parts = text.split("/")
    if len(parts) == 3 and all(parts):
        from embproj_panel.store import load_table

        try:
            return Source(load_table(*parts, step=step), text, key=parts[2])
        except (KeyError, IndexError) as exc:
            raise CommandError(exc.args[0]) from None
        except FileNotFoundError as exc:
            raise CommandError(f"{text!r} is neither a file nor a logged table: {exc}") from None
    raise CommandError(f"{text}: no such file or folder (nor a logged table PROJECT/RUN/KEY)")


def _is_dataset(text: str, path: Path) -> bool:
    """A glob, or a folder of Parquet files that is not a W&B folder: a lazy dataset."""
    if any(character in text for character in "*?[") and not path.exists():
        return True
    if not path.is_dir() or next(path.rglob("*.table.json"), None) is not None:
        return False
    return next(path.rglob("*.parquet"), None) is not None or \
        next(path.rglob("*.pq"), None) is not None or next(path.rglob("*.parq"), None) is not None


def _read_dataset(text: str) -> Source:
    """A Parquet dataset (a folder or a glob), kept on disk: the app reads rows on demand."""
    from embproj_panel.dataset import Dataset, DatasetChanged
    from embproj_panel.dataset_table import DatasetTable

    try:
        dataset = Dataset(text)
    except (FileNotFoundError, ValueError, DatasetChanged) as exc:
        raise CommandError(f"{text}: {exc}") from None
    name = Path(text.rstrip("/")).name if not any(c in text for c in "*?[") else "dataset"
    label = f"Dataset {name} ({len(dataset.files)} file(s))"
    return Source(DatasetTable(dataset), label, key=_key_from(name) if name else "dataset")


def _print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


# -- embproj project ---------------------------------------------------------------------------


def parse_params(method: str, items: Sequence[str]) -> dict[str, Any]:
    """``["n_neighbors=30", "random_state=none"]`` -> typed values by the method's ParamSpecs."""
    from embproj_panel.reducers import REDUCERS

    specs = REDUCERS[method].param_specs()
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--param {item!r}: write NAME=VALUE, e.g. n_neighbors=30")
        if name not in specs:
            raise CommandError(f"--param {name}: {method} has no such parameter; its parameters "
                               f"are {', '.join(specs)}")
        params[name] = _typed(specs[name], text)
    return params


def _typed(spec: Any, text: str) -> Any:
    lowered = text.strip().lower()
    for special in spec.special:
        if (special is None and lowered in ("none", "null")) or special == text:
            return special
    try:
        if spec.type == "bool":
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError
        if spec.type in ("int", "seed"):
            return int(text)
        if spec.type == "float":
            return float(text)
    except ValueError:
        raise CommandError(f"--param {spec.name}={text}: not a valid {spec.type}") from None
    for choice in spec.choices or ():
        if str(choice) == text:
            return choice
    return text  # the reducer's own validation names the allowed values


class Progress:
    """A progress bar on a terminal; plain lines (every 10%) otherwise."""

    def __init__(self, label: str, stream: Any = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = -1

    def __call__(self, fraction: float) -> None:
        percent = int(round(100 * max(0.0, min(1.0, fraction))))
        if self.tty:
            if percent != self._last:
                filled = self.width * percent // 100
                bar = "#" * filled + "-" * (self.width - filled)
                self.stream.write(f"\r{self.label} [{bar}] {percent:3d}%")
                self.stream.flush()
        elif percent // 10 > self._last // 10 or (self._last < 0):
            self.stream.write(f"{self.label}: {percent}%\n")
            self.stream.flush()
        self._last = percent

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _project(args: argparse.Namespace) -> int:
    from embproj_panel import compute
    from embproj_panel.export import selection_frame

    source = read_source(args.source, args.key, args.step)
    _print_notes(source.notes)
    params = parse_params(args.method, args.param or [])
    output = Path(args.output)
    if output.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise CommandError(f"-o {args.output}: write .parquet or .csv")
    if not output.parent.is_dir():
        raise CommandError(f"-o {args.output}: folder {str(output.parent)!r} does not exist")
    columns = _columns(args.columns, source.table)
    try:
        job = compute.project_async(source.table, args.method, columns, **params)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    progress = Progress(args.method)
    try:
        while not job.wait(0.2):
            progress(job.progress)
    except KeyboardInterrupt:
        job.cancel("Interrupted.")
        progress.close()
        raise CommandError("interrupted; nothing written") from None
    if job.error is not None:
        progress.close()
        raise CommandError(f"{args.method} failed: {job.error}")
    progress(1.0)
    progress.close()
    projection = job.result()
    for warning in projection.warnings:
        print(f"note: {warning}", file=sys.stderr)
    frame = selection_frame(source.table, projection, vectors=False, images=False)
    ids = source.table.schema.of_kind("id")
    frame = frame[[*ids, "x", "y"]]
    frame.index.name = "row" if "row" not in ids else "input_row"  # an id column may be "row"
    frame = frame.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    if output.suffix.lower() == ".csv":
        frame.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)
    cached = " (from the cache)" if projection.cached else ""
    print(f"Wrote {len(frame):,} rows (row, {', '.join(map(str, ids)) + ', ' if ids else ''}x, y) "
          f"to {output}{cached}")
    return 0


def _columns(names: Sequence[str] | None, table: Any) -> list[Any] | None:
    """``--columns`` names as the table spells them (a CSV's "0" may be the int column 0)."""
    if not names:
        return None
    by_text = {str(c): c for c in table.columns}
    missing = [n for n in names if n not in by_text]
    if missing:
        raise CommandError(f"--columns: no column {', '.join(map(repr, missing))}; the columns "
                           f"are {', '.join(map(str, table.columns))}")
    return [by_text[n] for n in names]


# -- embproj ls / log ----------------------------------------------------------------------------


def _ls(args: argparse.Namespace) -> int:
    from embproj_panel import store

    root = store.default_root() if args.dir is None else Path(args.dir)
    projects = store.list_projects(root)
    if not projects:
        print(f"No projects in {root}")
        return 0
    for project in projects:
        print(project)
        for run in store.list_runs(project, root):
            print(f"  {run}")
            try:
                tables = store.list_tables(project, run, root)
            except (OSError, ValueError, KeyError) as exc:
                print(f"    (unreadable: {exc})")
                continue
            for key, steps in tables.items():
                last = steps[-1]
                kinds = ", ".join(f"{name}: {kind}" for name, kind in last.column_types.items())
                if len(kinds) > 100:
                    kinds = kinds[:97] + "..."
                count = f", {len(steps)} steps" if len(steps) > 1 else ""
                print(f"    {key}: {last.rows:,} rows x {len(last.column_types)} columns"
                      f"{count} ({kinds})")
    return 0


def _log(args: argparse.Namespace) -> int:
    from embproj_panel import store

    source = read_source(args.file, args.wandb_key, -1)
    _print_notes(source.notes)
    key = args.key or source.key
    try:
        store.validate_name(key, "table key")
        with store.Run(args.project, name=args.name, dir=args.dir) as run:
            run.log({key: source.table})
            step = len(store.list_tables(run.project, run.name, run.root)[key]) - 1
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"Logged {len(source.table):,} rows x {len(source.table.columns)} columns as "
          f"{run.project}/{run.name}/{key} (step {step})")
    return 0


def _key_from(filename: str) -> str:
    return Path(filename).stem or "table"


# -- embproj serve -----------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from embproj_panel import wandb_io

    if args.wandb_dir is not None:
        if not Path(args.wandb_dir).is_dir():
            raise CommandError(f"--wandb-dir {args.wandb_dir}: no such folder")
        os.environ[wandb_io.WANDB_DIR_ENV] = str(Path(args.wandb_dir).resolve())
    source = read_source(args.source, args.key, args.step) if args.source else None
    if source is not None:
        _print_notes(source.notes)
    page = _page_factory(source)
    import panel as pn

    from embproj_panel import _bokeh_models
    from embproj_panel.app import server_options

    pn.extension("tabulator", "filedropper", sizing_mode="stretch_width", notifications=False)
    _bokeh_models.install()
    origins = args.allow_websocket_origin or None
    print(f"Serving on http://{args.address}:{args.port}/ (Ctrl+C to stop)", flush=True)
    try:
        pn.serve({"/": page}, port=args.port, address=args.address, show=args.show,
                 websocket_origin=origins, title="embproj-panel", threaded=False,
                 **server_options())
    except OSError as exc:  # the port is taken, the address is not ours
        raise CommandError(f"cannot serve on {args.address}:{args.port}: {exc}") from None
    except KeyboardInterrupt:
        pass
    return 0


def _page_factory(source: Source | None) -> Callable[[], Any]:
    from embproj_panel import wandb_io

    if source is not None and source.wandb_name is not None:
        # The app lists this folder's tables, so the page opens it by name, like ?wandb=.
        os.environ[wandb_io.WANDB_DIR_ENV] = str(source.wandb_root.resolve())
        name = source.wandb_name

        def page() -> Any:
            from embproj_panel.app import create_app

            return create_app(wandb=name)

        return page

    def page() -> Any:
        from embproj_panel.app import create_app

        if source is None:
            return create_app()
        # Sessions share the table as they share the store's files: the app never changes a
        # table it shows (a session's selection and projection live in its own state).
        return create_app(source.table, source.label, source.notes)

    return page


# -- the parser --------------------------------------------------------------------------------


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", help="the W&B table's key, when the folder holds several")
    parser.add_argument("--step", type=int, default=-1,
                        help="W&B global step of a run file, or the store step (default: last)")


def build_parser() -> argparse.ArgumentParser:
    """The ``embproj`` argument parser (one subparser per command)."""
    parser = _Parser(prog=PROG, description="An embedding projector: serve the app, project "
                     "tables headlessly, list and log tables.")
    from embproj_panel import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    serve = commands.add_parser("serve", help="open the app (on a file, a W&B folder or the store)",
                                description="Serve the projector app with Panel's server.")
    serve.add_argument("source", nargs="?", metavar="SOURCE",
                       help="a .parquet/.csv/.tsv/.npy/.npz file, a Parquet dataset (a folder "
                            "or a quoted glob, read on demand), a W&B run or artifact folder, "
                            "or PROJECT/RUN/KEY; default: the run store's picker")
    serve.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    serve.add_argument("--address", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--show", action="store_true", help="open a browser")
    serve.add_argument("--allow-websocket-origin", action="append", metavar="HOST[:PORT]",
                       help="a host the page may be opened from (repeatable)")
    serve.add_argument("--wandb-dir", metavar="DIR",
                       help="folder to list W&B tables from (default $EMBPROJ_WANDB_DIR, "
                            "else ./wandb when it exists)")
    _source_options(serve)
    serve.set_defaults(run=_serve)

    project = commands.add_parser("project", help="project a table and write the coordinates",
                                  description="Project every row headlessly (the same cache as "
                                  "the app) and write row, id columns, x and y.")
    project.add_argument("source", metavar="SOURCE", help="file, W&B folder or PROJECT/RUN/KEY")
    project.add_argument("--method", required=True, choices=["pca", "umap", "tsne"])
    project.add_argument("--columns", nargs="+", metavar="COLUMN",
                         help="columns to project (default: the table's smart default)")
    project.add_argument("--param", action="append", metavar="NAME=VALUE",
                         help="a method parameter, e.g. n_neighbors=30 (repeatable)")
    project.add_argument("-o", "--output", required=True, metavar="FILE",
                         help="output .parquet (or .csv)")
    _source_options(project)
    project.set_defaults(run=_project)

    ls = commands.add_parser("ls", help="list projects, runs and tables in the store",
                             description="List the run store: projects, runs, tables with "
                             "their rows and columns.")
    ls.add_argument("--dir", help="the store's root (default $EMBPROJ_DIR, else ./embproj-runs)")
    ls.set_defaults(run=_ls)

    log = commands.add_parser("log", help="log a file into the store",
                              description="Log a file (or a W&B table) into the run store.")
    log.add_argument("file", metavar="FILE", help="a .parquet/.csv/.tsv/.npy/.npz file or a W&B "
                     "folder or .table.json")
    log.add_argument("--project", required=True)
    log.add_argument("--name", help="the run's name (default: a new run)")
    log.add_argument("--key", help="the table's key (default: the file's name)")
    log.add_argument("--wandb-key", help="the W&B table's key, when the folder holds several")
    log.add_argument("--dir", help="the store's root (default $EMBPROJ_DIR, else ./embproj-runs)")
    log.set_defaults(run=_log)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CommandError as exc:
        message = str(exc)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    except KeyboardInterrupt:
        message = "interrupted"
    first_line = " ".join(str(message).split())
    print(f"{PROG} {args.command}: error: {first_line}", file=sys.stderr)
    return 1
