"""The served app: ``create_app()`` builds one session's page from the projector's parts.

``panel serve apps/projector.py`` runs ``create_app()`` once per browser session, so every
session gets its own state, table and selection; nothing per-user lives at module level. The
page is a ``FastListTemplate``: in the sidebar the source picker (the digits sample, every
table logged to the local run store, or an uploaded file) and the parts of the ``"sidebar"``
region (:data:`embproj_panel.views.PARTS`: the settings); in the main area the scatter and the
table, laid out as in a :class:`~embproj_panel.views.Projector`. The session's state gets the
session's dispatch (:func:`embproj_panel.views.session_dispatch`), so its results are applied
on this session's event loop.

The URL is the view: ``?project=...&run=...&table=...&method=umap&color=target&n_neighbors=30``
opens that table with those settings (same seed, so the same, cached, layout), and changing
them in the page rewrites the URL. Only the current method's settings are in the URL.

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
from typing import Any

import panel as pn
import param

from embproj_panel.compare_app import compare_link
from embproj_panel.state import ProjectorState
from embproj_panel.table import Table
from embproj_panel.views import plots
from embproj_panel.views.projector import (
    build_parts,
    main_area,
    plot_column,
    sidebar_parts,
)
from embproj_panel.views.session import session_dispatch

__all__ = ["SAMPLE", "ProjectorApp", "create_app", "source_options"]

#: The source label of the bundled sample.
SAMPLE = "Sample: digits (1,797 rows, with images)"

# URL query names of the state's parameters (the method settings use their own names).
_URL_STATE = {"method": "method", "point_size": "size", "alpha": "alpha",
              "colormap": "colormap", "auto_compute": "auto"}
_URL_COLUMNS = {"color_by": "color", "hover_image": "image"}


def source_options(root: Any = None) -> dict[str, tuple[str, str, str] | None]:
    """Label -> logged table ``(project, run, key)`` (None for the digits sample).

    Every table of every run of every project in the store, newest runs first. A run that
    cannot be read is skipped (it may be being written).
    """
    from embproj_panel import store

    options: dict[str, tuple[str, str, str] | None] = {SAMPLE: None}
    for project in store.list_projects(root):
        try:
            runs = store.list_runs(project, root)
        except (OSError, ValueError):
            continue
        for run in reversed(runs):
            try:
                tables = store.list_tables(project, run, root)
            except (OSError, ValueError, KeyError):
                continue
            for key, steps in tables.items():
                rows = steps[-1].rows if steps else 0
                label = f"{project} / {run} / {key} ({rows:,} rows)"
                options[label] = (project, run, key)
    return options


def _load(source: tuple[str, str, str] | None) -> Table:
    if source is None:
        from embproj_panel import datasets

        return datasets.digits()
    from embproj_panel.store import load_table

    return load_table(*source)


def _query() -> dict[str, Any]:
    """The session's URL query arguments (decoded), or {} outside a served session."""
    location = pn.state.location
    if location is None:
        return {}
    try:
        return dict(location.query_params)
    except Exception:  # noqa: BLE001 - a malformed query is no reason to fail the page
        return {}


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
    max_upload_bytes = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="""
        Largest accepted upload in bytes (None: the uploads module's limit).""")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from embproj_panel.uploads import max_upload_bytes

        if self.max_upload_bytes is None:
            self.max_upload_bytes = max_upload_bytes()
        self.state = ProjectorState(dispatch=session_dispatch())
        self.parts = build_parts(self.state)
        self._options = source_options()
        self._source = pn.widgets.Select(label="Table", options=list(self._options),
                                         sizing_mode="stretch_width")
        self._refresh = pn.widgets.Button(label="↻ Refresh list", color="light",
                                          sizing_mode="stretch_width")
        self._refresh.on_click(self._on_refresh)
        megabytes = max(1, self.max_upload_bytes // 2**20)
        self._upload = pn.widgets.FileDropper(
            accepted_filetypes=[".csv", ".tsv", ".parquet", ".pq", ".npy", ".npz"],
            max_file_size=f"{megabytes}MB", multiple=False, chunk_size=4 * 2**20,
            layout="compact", sizing_mode="stretch_width", height=90,
        )
        self._upload_help = pn.pane.HTML(
            f"CSV, TSV, Parquet, NPY or NPZ, up to {megabytes:,} MB.",
            styles={"font-size": "0.8em", "color": "#666"}, margin=(0, 10),
        )
        self._message = pn.pane.Alert("", alert_type="danger", visible=False,
                                      sizing_mode="stretch_width")
        self._notes = pn.pane.Alert("", alert_type="warning", visible=False,
                                    sizing_mode="stretch_width")
        self._upload.param.watch(self._on_upload, "value")
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
        for name in ("project", "run", "table"):
            if name in query:
                setattr(self, name, str(query[name]))
        source = (self.project, self.run, self.table) if self.table else None
        columns = {
            name: query[key] for name, key in _URL_COLUMNS.items() if key in query
        }
        try:
            table = _load(source)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            problems.append(f"table {'/'.join(source or ())!r} ({exc})")
            source, table = None, _load(None)
            self.param.update(project="", run="", table="")
        try:
            state.set_table(table, **columns)
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
            state.set_table(table)
        self._select_label(source)
        if problems:
            self._show_error("Some settings in the URL were ignored: " + "; ".join(problems))
        self._sync_url()

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
        location.sync(self, ["project", "run", "table"])
        location.sync(state, {**_URL_STATE, **_URL_COLUMNS})
        self._synced_settings = state.settings[state.method]
        location.sync(self._synced_settings)
        state.param.watch(self._on_method_url, "method")

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

    def _select_label(self, source: tuple[str, str, str] | None) -> None:
        for label, value in self._options.items():
            if value == source:
                self._source.value = label
                return

    def _on_source(self, event: Any) -> None:
        if event.new not in self._options:
            return  # an upload's label
        source = self._options[event.new]
        if source == ((self.project, self.run, self.table) if self.table else None):
            return
        try:
            table = _load(source)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            self._show_error(f"Could not open {event.new}: {exc}")
            return
        self._clear_messages()
        project, run, key = source or ("", "", "")
        self.param.update(project=project, run=run, table=key)
        self.state.set_table(table)

    def _on_refresh(self, event: Any) -> None:
        current = self._source.value
        self._options = source_options()
        labels = list(self._options)
        if current not in labels:
            labels.append(current)
        self._source.options = labels

    async def _on_upload(self, event: Any) -> None:
        from embproj_panel.uploads import UploadError, parse_upload

        files = dict(event.new or {})
        if not files:
            return
        filename, content = next(iter(files.items()))
        # FileDropper hands text/* files over decoded; parse the bytes that were sent.
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
        label = f"Upload: {upload.display_name} ({len(upload.table):,} rows)"
        self.param.update(project="", run="", table="")
        self._source.options = [*self._options, label]
        self._source.value = label
        self.state.set_table(upload.table)
        if upload.notes:
            self._notes.param.update(
                object=html.escape(" ".join(upload.notes)), visible=True
            )

    # -- messages -----------------------------------------------------------------------------
    def _show_error(self, message: str) -> None:
        self._message.param.update(object=html.escape(message), visible=True)

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
        )

    def close(self) -> None:
        """Release the session's data and cancel its running projection."""
        self.state.close()


def create_app() -> pn.template.FastListTemplate:
    """Build one session's page (call it once per session, e.g. from ``apps/projector.py``).

    Returns
    -------
    panel.template.FastListTemplate
    """
    from embproj_panel import compute

    compute.warm_up(background=True)  # once per process; later calls return at once
    _warm_up_rasters()
    if "compare" in _query():  # the compare mode: embproj_panel.compare_app
        from embproj_panel.compare_app import CompareApp
        return CompareApp().template()
    return ProjectorApp().template()


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
