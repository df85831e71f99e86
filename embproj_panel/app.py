"""The served app: ``create_app()`` builds one session's page from the projector's parts.

``panel serve apps/projector.py`` runs ``create_app()`` once per browser session, so every
session gets its own state, table and selection; nothing per-user lives at module level. The
page is a ``FastListTemplate``: in the sidebar the source picker (the digits sample, every
table logged to the local run store, or an uploaded file; a damaged table or run is listed,
disabled, with what is wrong, never left out) and the bounded upload box
(:class:`~embproj_panel.upload_widget.BoundedFileDropper`; serve with :func:`server_options`
so no websocket message is larger than one upload chunk) and the parts of the ``"sidebar"``
region (:data:`embproj_panel.views.PARTS`: the settings); in the main area the scatter and the
table, laid out as in a :class:`~embproj_panel.views.Projector`. The session's state gets the
session's dispatch (:func:`embproj_panel.views.session_dispatch`), so its results are applied
on this session's event loop.

The URL is the view: ``?project=...&run=...&table=...&method=umap&color=target&n_neighbors=30``
opens that table with those settings (same seed, so the same, cached, layout), and changing
them in the page rewrites the URL. Only the current method's settings are in the URL.
``k`` is the faithfulness line's neighbourhood size (1-100).

The first ``create_app()`` of the process starts the numba warm-ups in background threads
(UMAP's, :func:`embproj_panel.compute.warm_up`, and Datashader's aggregations,
:func:`embproj_panel.views.plots.warm_up`; no-ops afterwards), so the first UMAP or large table a
user asks for does not pay for compilation; ``panel serve --warm`` starts them with the
server.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import panel as pn
import param

from embproj_panel import resources
from embproj_panel.compare_app import compare_link
from embproj_panel.sources import load_source as _load
from embproj_panel.state import ProjectorState
from embproj_panel.table import Table
from embproj_panel.trust_state import k_from_url
from embproj_panel.upload_widget import BoundedFileDropper
from embproj_panel.views import plots
from embproj_panel.views.projector import (
    build_parts,
    main_area,
    plot_column,
    sidebar_parts,
)
from embproj_panel.views.session import session_dispatch
from embproj_panel.views.session import url_query as _query

__all__ = ["SAMPLE", "UPLOAD_CHUNK_BYTES", "ProjectorApp", "create_app", "server_options",
           "source_options", "unreadable_sources"]

#: The source label of the bundled sample.
SAMPLE = "Sample: digits (1,797 rows, with images)"

# URL query names of the state's parameters (the method settings use their own names).
_URL_STATE = {"method": "method", "point_size": "size", "alpha": "alpha",
              "colormap": "colormap", "auto_compute": "auto"}
_URL_COLUMNS = {"color_by": "color", "hover_image": "image"}
# The faithfulness line's k (no reducer has a setting called k, so the name is free).
_URL_FAITH = {"k": "k"}

#: Bytes per upload chunk the browser sends (one websocket message each).
UPLOAD_CHUNK_BYTES = 4 * 2**20


def server_options(chunk_size: int = UPLOAD_CHUNK_BYTES) -> dict[str, Any]:
    """Options for ``pn.serve`` (and ``embproj serve``) that bound what a client can send.

    ``websocket_max_message_size``: one upload chunk plus 1 MB for the message's JSON, in
    place of Bokeh's 20 MB; a client that skips the browser and sends a bigger message is
    disconnected by Tornado before the message is held (the upload box then holds at most the
    upload limit plus this one message, see :class:`~embproj_panel.upload_widget.BoundedFileDropper`).
    """
    return {"websocket_max_message_size": int(chunk_size) + 2**20}


def source_options(root: Any = None) -> dict[str, tuple[str, ...] | None]:
    """Label -> logged table ``(project, run, key)`` (None for the digits sample).

    Every readable table of every run of every project in the store, newest runs first
    (:func:`embproj_panel.store.list_entries`; :func:`unreadable_sources` lists the others),
    then every W&B table under :func:`embproj_panel.wandb_io.default_wandb_dir` as
    ``("wandb", name)``.
    """
    return _listing(root)[0]


def unreadable_sources(root: Any = None) -> dict[str, str]:
    """Label -> why that table or run of the store cannot be opened (store-relative names).

    The picker lists them, disabled, rather than leaving them out silently.
    """
    return _listing(root)[1]


def _listing(root: Any) -> tuple[dict[str, tuple[str, ...] | None], dict[str, str]]:
    from embproj_panel import store, wandb_io

    options: dict[str, tuple[str, ...] | None] = {SAMPLE: None}
    unreadable: dict[str, str] = {}
    try:
        entries = store.list_entries(root)
    except OSError as exc:  # the store folder itself cannot be listed
        return options, {"Run store: unreadable": _plain_reason(exc)}
    for entry in entries:
        if entry.source is not None:
            options[entry.label] = entry.source
        else:
            unreadable[entry.label] = entry.reason or "it cannot be read"
    options.update(wandb_io.source_options())
    return options, unreadable


def _plain_reason(exc: BaseException) -> str:
    """``exc`` as a message without the server's store path (shown to every user)."""
    from embproj_panel.store import default_root

    text = str(exc) or type(exc).__name__
    root = str(default_root())
    return text.replace(root + "/", "").replace(root, "the store")


class ProjectorApp(pn.viewable.Viewer):
    """One session's page: source picker, upload, settings, scatter and table.

    Parameters
    ----------
    project, run, table
        The logged table to open; all empty opens the digits sample.
    max_upload_bytes
        Upload size limit; default :func:`embproj_panel.uploads.max_upload_bytes`
        (``EMBPROJ_MAX_UPLOAD_MB``, 200 MB unless set).

    Attributes
    ----------
    state
        The session's :class:`ProjectorState`.
    parts
        The projector's parts over it (:func:`embproj_panel.views.projector.build_parts`).
    """

    project = param.String(default="", doc="Project of the logged table shown.")
    run = param.String(default="", doc="Run of the logged table shown.")
    table = param.String(default="", doc="Key of the logged table shown.")
    wandb = param.String(default="", doc="""
        The W&B table shown, by its name in the W&B folder's listing (never a path).""")
    max_upload_bytes = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="""
        Largest accepted upload in bytes (None: the uploads module's limit).""")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from embproj_panel.uploads import max_upload_bytes

        if self.max_upload_bytes is None:
            self.max_upload_bytes = max_upload_bytes()
        self.state = ProjectorState(dispatch=session_dispatch())
        self.parts = build_parts(self.state)
        self._options, self._unreadable = _listing(None)
        self._source = pn.widgets.Select(label="Table", sizing_mode="stretch_width")
        self._list_sources()
        self._refresh = pn.widgets.Button(label="↻ Refresh list", color="light",
                                          sizing_mode="stretch_width")
        self._refresh.on_click(self._on_refresh)
        megabytes = max(1, self.max_upload_bytes // 2**20)
        self._upload = BoundedFileDropper(
            max_bytes=self.max_upload_bytes, multiple=False, chunk_size=UPLOAD_CHUNK_BYTES,
            accepted_filetypes=[".csv", ".tsv", ".parquet", ".pq", ".npy", ".npz"],
            layout="compact", sizing_mode="stretch_width", height=90,
        )
        self._upload_help = pn.pane.HTML(
            f"CSV, TSV, Parquet, NPY or NPZ, up to {megabytes:,} MB.",
            styles={"font-size": "0.8em", "color": "#666"}, margin=(0, 10),
        )
        self._message = resources.Alert("", alert_type="danger", visible=False,
                                      sizing_mode="stretch_width")
        self._notes = resources.Alert("", alert_type="warning", visible=False,
                                    sizing_mode="stretch_width")
        self._upload.param.watch(self._on_upload, "value")
        self._upload.param.watch(self._on_upload_refused, "error")
        self._source.param.watch(self._on_source, "value")
        self._open_from_url()
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            pn.state.on_session_destroyed(lambda context: self.close())

    # -- opening tables ---------------------------------------------------------------------
    def _open_from_url(self) -> None:
        """Open the table and settings the URL names (or the sample), then sync the URL."""
        query = _query()
        state = self.state
        problems: list[str] = []
        for name, key in _URL_STATE.items():
            if key in query:
                try:
                    state.param.update(**{name: state.param[name].deserialize(query[key])})
                except Exception as exc:  # noqa: BLE001 - reported, the default stays
                    problems.append(f"{key}={query[key]!r} ({exc})")
        self._apply_method_settings(query, problems)
        self._faithfulness_from_url(query, problems)
        for name in ("project", "run", "table", "wandb"):
            if name in query:
                setattr(self, name, str(query[name]))
        source = self._current_source()
        columns = {
            name: query[key] for name, key in _URL_COLUMNS.items() if key in query
        }
        notes: list[str] = []
        try:
            table, notes = _load(source)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            problems.append(f"table {'/'.join(source or ())!r} ({_plain_reason(exc)})")
            source = None
            table, _ = _load(None)
            self.param.update(project="", run="", table="", wandb="")
        self._show_notes(notes)
        try:
            state.set_table(table, **columns)
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
            state.set_table(table)
        if "isolate" in query:
            self._isolate_from_url(query["isolate"], problems)
        self._select_label(source)
        if problems:
            self._show_error("Some settings in the URL were ignored: " + "; ".join(problems))
        self._sync_url()

    def _isolate_from_url(self, value: Any, problems: list[str]) -> None:
        """``?isolate=0-99_150``: project only those rows (a bad value is refused, said why)."""
        from embproj_panel.views.isolate import decode_rows

        shown = str(value) if len(str(value)) <= 40 else str(value)[:39] + "…"
        try:
            rows = decode_rows(str(value), len(self.state.table))
        except ValueError as exc:
            problems.append(f"isolate={shown!r} ({exc}); the whole table is shown")
            return
        self.state.isolate(rows)

    def _on_isolated_url(self, *events: Any) -> None:
        """Write the isolation into the URL (or drop it); too long for a URL: say so."""
        from embproj_panel.views.isolate import MAX_URL_CHARS, encode_rows

        location = pn.state.location
        if location is None:
            return
        text = encode_rows(self.state.isolated)
        query = dict(location.query_params)
        if len(text) > MAX_URL_CHARS:
            text = ""
            self._show_notes([f"The isolated selection ({len(self.state.isolated):,} rows) is "
                              "too scattered to fit in the URL: a link to this page opens the "
                              "whole table."])
        if text:
            query["isolate"] = text
        else:
            query.pop("isolate", None)
        location.search = "?" + urlencode(query) if query else ""

    def _faithfulness(self) -> param.Parameterized | None:
        """The faithfulness state of the page's trust line, if the page has one."""
        return getattr(self.parts.get("trust"), "faith", None)

    def _faithfulness_from_url(self, query: dict[str, Any], problems: list[str]) -> None:
        """``?k=25``: the faithfulness k (a whole number, 1-100; else refused, said why)."""
        faith = self._faithfulness()
        if faith is None or "k" not in query:
            return
        problem = k_from_url(faith, query["k"])
        if problem:
            problems.append(problem)

    def _apply_method_settings(self, query: dict[str, Any], problems: list[str]) -> None:
        settings = self.state.settings[self.state.method]
        for name in settings.param:
            if name == "name" or name not in query:
                continue
            try:
                value = query[name]
                if value in ("", "null", None):
                    value = None
                settings.param.update(**{name: value})
            except Exception as exc:  # noqa: BLE001 - reported, the default stays
                problems.append(f"{name}={query[name]!r} ({exc})")

    def _sync_url(self) -> None:
        location = pn.state.location
        if location is None:
            return
        state = self.state
        location.sync(self, ["project", "run", "table", "wandb"])
        location.sync(state, {**_URL_STATE, **_URL_COLUMNS})
        faith = self._faithfulness()
        if faith is not None:
            location.sync(faith, _URL_FAITH)
        self._synced_settings = state.settings[state.method]
        location.sync(self._synced_settings)
        state.param.watch(self._on_method_url, "method")
        state.param.watch(self._on_isolated_url, "isolated")
        self._on_isolated_url()

    _synced_settings: param.Parameterized | None = None

    def _on_method_url(self, event: Any) -> None:
        location = pn.state.location
        if location is None:
            return
        # Only the current method's settings live in the URL: names such as metric or
        # random_state exist in several methods and must not be applied to the wrong one.
        if self._synced_settings is not None:
            location.unsync(self._synced_settings)
        self._synced_settings = self.state.settings[event.new]
        location.sync(self._synced_settings)

    def _current_source(self) -> tuple[str, ...] | None:
        if self.wandb:
            return ("wandb", self.wandb)
        return (self.project, self.run, self.table) if self.table else None

    def _select_label(self, source: tuple[str, ...] | None) -> None:
        for label, value in self._options.items():
            if value == source:
                self._source.value = label
                return

    def _list_sources(self, extra: tuple[str, ...] | list[str] = ()) -> None:
        """Every table of the store in the picker; the unreadable ones listed but disabled.

        An unreadable entry's label says why (store-relative names); Panel refuses a disabled
        value from the browser or from Python, so it can never replace the table shown.
        """
        labels = [*self._options, *self._unreadable, *extra]
        self._source.param.update(options=labels, disabled_options=list(self._unreadable))

    def _on_source(self, event: Any) -> None:
        if event.new not in self._options:
            return  # an upload's label
        source = self._options[event.new]
        if source == self._current_source():
            return
        try:
            table, notes = _load(source)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            self._show_error(f"Could not open {event.new}: {_plain_reason(exc)} The "
                             "previous table is still shown.")
            return
        self._clear_messages()
        if source is not None and source[0] == "wandb":
            self.param.update(project="", run="", table="", wandb=source[1])
        else:
            project, run, key = source or ("", "", "")
            self.param.update(project=project, run=run, table=key, wandb="")
        self.state.set_table(table)
        self._show_notes(notes)

    def _on_refresh(self, event: Any) -> None:
        current = self._source.value
        self._options, self._unreadable = _listing(None)
        known = current in self._options or current in self._unreadable
        self._list_sources([] if known or current is None else [current])

    async def _on_upload(self, event: Any) -> None:
        from embproj_panel.uploads import UploadError, parse_upload

        files = dict(event.new or {})
        if not files:
            return
        filename, content = next(iter(files.items()))
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        self._upload.value = {}  # drop the server's copy as soon as it is taken
        self._clear_messages()
        try:
            # Parsing a large file takes seconds: off the event loop, other sessions go on.
            upload = await asyncio.to_thread(parse_upload, data, filename,
                                             self.max_upload_bytes)
        except UploadError as exc:
            self._show_error(f"{filename}: {exc} The previous table is still shown.")
            return
        except Exception as exc:  # noqa: BLE001 - never a traceback in the page
            self._show_error(
                f"{filename} could not be read ({type(exc).__name__}: {exc}). "
                "The previous table is still shown."
            )
            return
        self.show_table(upload.table, f"Upload: {upload.display_name}", upload.notes)

    def show_table(self, table: Table, label: str, notes: Sequence[str] = ()) -> None:
        """Show a table that is not in the source list (an upload, ``embproj serve FILE``).

        ``label`` (shown as text, with the row count) becomes the picker's current choice;
        ``notes`` say what was changed or left out on the way in.
        """
        label = f"{label} ({len(table):,} rows)"
        self.param.update(project="", run="", table="", wandb="")
        self._list_sources([label])
        self._source.value = label
        self.state.set_table(table)
        self._show_notes(notes)

    def _on_upload_refused(self, event: Any) -> None:
        if event.new:  # refused while arriving (over the limit, out of order)
            self._notes.visible = False
            self._show_error(f"{event.new} The previous table is still shown.")

    # -- messages -----------------------------------------------------------------------------
    def _show_error(self, message: str) -> None:
        self._message.param.update(object=html.escape(message), visible=True)

    def _show_notes(self, notes: Sequence[str]) -> None:
        self._notes.param.update(object=html.escape(" ".join(notes)), visible=bool(notes))

    def _clear_messages(self) -> None:
        self._message.visible = False
        self._notes.visible = False

    # -- layout -------------------------------------------------------------------------------
    @property
    def sidebar(self) -> list[Any]:
        """The sidebar's contents: data source, upload, settings."""
        source = pn.Card(
            self._source, self._refresh, self._upload, self._upload_help, self._message,
            self._notes, compare_link(self), title="Data", sizing_mode="stretch_width", collapsible=False,
        )
        settings = pn.Card(*sidebar_parts(self.parts), title="⚙ Settings",
                           sizing_mode="stretch_width")
        return [source, settings]

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(*self.sidebar, width=320), plot_column(self.parts))

    def template(self) -> pn.template.FastListTemplate:
        """The page: a FastListTemplate with the sidebar and the scatter above the table."""
        return pn.template.FastListTemplate(
            title="embproj-panel",
            sidebar=self.sidebar,
            main=[main_area(self.parts)],
            sidebar_width=340,
            main_layout=None,
            accent="#1f77b4",
            theme_toggle=False,
            design=resources.Fast,  # no Google font: the page loads nothing from outside
        )

    def close(self) -> None:
        """Release the session's data and cancel its running projection."""
        self.state.close()
        for part in self.parts.values():  # parts with background work of their own
            if callable(getattr(part, "close", None)):
                part.close()


def create_app(table: Table | None = None, label: str = "Table", notes: Sequence[str] = (),
               **params: Any) -> pn.template.FastListTemplate:
    """Build one session's page (call it once per session, e.g. from ``apps/projector.py``).

    Parameters
    ----------
    table, label, notes
        A table to show first (``embproj serve FILE``), see :meth:`ProjectorApp.show_table`.
    **params
        :class:`ProjectorApp` parameters, e.g. ``wandb=name`` to open a W&B table.

    Returns
    -------
    panel.template.FastListTemplate
    """
    from embproj_panel import compute

    compute.warm_up(background=True)  # once per process; later calls return at once
    _warm_up_rasters()
    if table is None and "compare" in _query():  # the compare mode: embproj_panel.compare_app
        from embproj_panel.compare_app import CompareApp

        return CompareApp().template()
    app = ProjectorApp(**params)
    if table is not None:
        app.show_table(table, label, notes)
    return app.template()


_RASTER_WARM_UP = threading.Lock()
_raster_warm_up_started = False  # process-wide (compiled code), not per user


def _warm_up_rasters() -> None:
    """Compile Datashader's aggregations once per process, in a daemon thread."""
    global _raster_warm_up_started
    with _RASTER_WARM_UP:
        if _raster_warm_up_started:
            return
        _raster_warm_up_started = True
    threading.Thread(target=plots.warm_up, name="embproj-raster-warm-up", daemon=True).start()
