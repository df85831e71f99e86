"""The projector's state: one ``param.Parameterized`` that is the single source of truth.

:class:`ProjectorState` holds what the user chose (table, embedding columns, colour, hover
image, tooltip columns, method and its settings, style, selection) and what was computed
(projection, colour mapping, plot frame, status, progress, error). It knows nothing about
widgets, nor Panel, nor plots: the views in :mod:`embproj_panel.views` read and write its
parameters, and so can a test or a notebook user (``state.param.update(method="umap")``,
``state.param.trigger("compute")``).

Flow: changing the table, the embedding columns, the method or a method setting asks for a
projection. PCA is fast, so it recomputes at once; UMAP and t-SNE recompute when the
``compute`` event fires, or at once when ``auto_compute`` is on. Restyling (colour, point
size, alpha, colormap) never recomputes: it only rebuilds the cheap colour mapping and frame.

Projections run off the server's thread in the state's :class:`~embproj_panel.compute.JobSlot`:
a new request cancels the running job, and a result that is not the slot's latest job is
dropped, so a slow UMAP can never overwrite the PCA the user asked for afterwards. Results and
progress are applied on the thread that owns the session, never on a worker thread: through
the :attr:`ProjectorState.dispatch` the view or app layer gives the state (a served session's
document), else the notebook kernel's asyncio loop, else :meth:`ProjectorState.wait`. The
state never looks for a "current" document itself: a process-wide lookup can return another
thread's session, or one whose server has stopped, where a result would wait forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import param

from embproj_panel import compute
from embproj_panel.colors import ROW, ColorMapping, color_mapping, plot_frame
from embproj_panel.dataset_table import DatasetTable
from embproj_panel.reducers import REDUCERS, ParamSpec
from embproj_panel.table import Table

__all__ = ["COLORMAPS", "DATASHADE_THRESHOLD", "DerivedColumn", "MethodSettings",
           "ProjectorState", "settings_class"]

#: Colormaps offered for numeric colouring (perceptually uniform first).
COLORMAPS = ["viridis", "plasma", "inferno", "magma", "cividis", "fire", "kbc", "coolwarm",
             "RdBu_r", "Turbo256"]

#: Above this many points the scatter is drawn with Datashader instead of Bokeh glyphs.
#: Measured on the 2-core reference machine (20 categories, float32 coordinates): a Bokeh
#: Points model of 50,000 points builds in 0.2 s and serialises to 0.3 MB, 200,000 in 0.6 s and
#: 1.1 MB; the build stays cheap but the browser's canvas starts to stutter on pan and zoom past
#: ~100,000 glyphs, and a raster costs the same ~0.7 s whatever the size. 50,000 keeps glyphs
#: (with exact tap and client-side lasso) where they are fluid and rasters everywhere else.
DATASHADE_THRESHOLD = 50_000

NONE_LABEL = "(none)"


# -- per-method settings ------------------------------------------------------------------------


class MethodSettings(param.Parameterized):
    """Base of the per-method settings classes made by :func:`settings_class`.

    A subclass has one parameter per reducer hyperparameter, with the engine's bounds,
    step and doc. Hyperparameters that also accept a special value (``"auto"`` for
    ``n_epochs`` and ``learning_rate``, None for ``random_state`` and ``pca_dims``) are
    ``allow_None`` parameters where None stands for that special value.
    """

    method = ""  # class attribute: the reducer's registry name
    _specs: dict[str, ParamSpec] = {}

    def reducer_params(self) -> dict[str, Any]:
        """The hyperparameters in the reducer's own terms (None mapped back to e.g. "auto")."""
        out = {}
        for name, spec in self._specs.items():
            value = getattr(self, name)
            if value is None and spec.special:
                value = spec.special[0]
            out[name] = value
        return out

    def changed_params(self) -> dict[str, Any]:
        """The hyperparameters that differ from the reducer's defaults (for status and URLs)."""
        return {
            name: value
            for name, value in self.reducer_params().items()
            if value != self._specs[name].default
        }


def _parameter(spec: ParamSpec) -> param.Parameter:
    special = spec.special
    # A special value other than None is stored as None (the widget shows an empty box).
    default = None if (special and spec.default in special) else spec.default
    allow_none = bool(special)
    doc = spec.doc
    if special:
        doc = f"{doc} Empty means {special[0]!r}."
    if spec.type == "bool":
        return param.Boolean(default=bool(default), doc=doc)
    if spec.type == "choice":
        return param.Selector(default=default, objects=list(spec.choices), doc=doc)
    if spec.type == "seed":
        return param.Integer(default=default, bounds=(0, None), allow_None=True, doc=doc)
    bounds = tuple(spec.bounds) if spec.bounds else None
    if spec.type == "int":
        return param.Integer(
            default=default, bounds=bounds, step=int(spec.step or 1), allow_None=allow_none,
            doc=doc,
        )
    if spec.type == "float":
        return param.Number(
            default=default, bounds=bounds, step=spec.step or 0.1, allow_None=allow_none,
            doc=doc,
        )
    raise ValueError(f"Unknown parameter type {spec.type!r} for {spec.name!r}")


_SETTINGS_CLASSES: dict[str, type[MethodSettings]] = {}
_SETTINGS_LOCK = threading.Lock()


def settings_class(method: str) -> type[MethodSettings]:
    """The :class:`MethodSettings` subclass of a registered reducer (made once per process).

    The class is derived from ``REDUCERS[method].param_specs()``, so a new reducer or a new
    hyperparameter shows up in the settings (and the gear menu) without touching this module.
    """
    with _SETTINGS_LOCK:
        cls = _SETTINGS_CLASSES.get(method)
        if cls is None:
            reducer = REDUCERS[method]
            specs = reducer.param_specs()
            params = {name: _parameter(spec) for name, spec in specs.items()}
            cls = param.parameterized_class(
                f"{reducer.__name__}Settings", params, bases=(MethodSettings,)
            )
            cls.method = method
            cls._specs = specs
            cls.__doc__ = f"Settings of {reducer.label}: {', '.join(specs)}."
            _SETTINGS_CLASSES[method] = cls
        return cls


# -- helpers ------------------------------------------------------------------------------------


def column_labels(names: Iterable[Any]) -> dict[str, Any]:
    """Label -> column name, for selectors: unique labels even for ``1`` and ``"1"``.

    Labels are plain text; widgets show them as text, never as HTML.
    """
    out: dict[str, Any] = {}
    for name in names:
        label = str(name)
        while label in out:
            label += " "  # an invisible difference keeps both columns selectable
        out[label] = name
    return out


class _Dispatcher:
    """Runs callbacks on the thread that owns the state's session, for one request.

    With an injected ``dispatch`` (a served session's ``doc.add_next_tick_callback``), that.
    Else, in Jupyter, the kernel's asyncio loop running where the projection was requested.
    Plain Python has neither: a callback then runs only if it is already on the requesting
    thread, and :meth:`ProjectorState.wait` applies the result; parameters are never set from
    a worker thread, where they would race with the caller's own changes.
    """

    def __init__(self, dispatch: Callable[[Callable[[], None]], Any] | None) -> None:
        self.dispatch = dispatch
        self.loop = None
        self.thread = threading.get_ident()
        if dispatch is None:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:
                self.loop = None

    def __call__(self, callback: Callable[[], None]) -> None:
        if self.dispatch is not None:
            try:
                self.dispatch(callback)
            except Exception:  # noqa: BLE001 - the session closed: nobody to update
                pass
        elif self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback)
        elif threading.get_ident() == self.thread:
            callback()


@dataclasses.dataclass(frozen=True)
class DerivedColumn:
    """Per-row values computed from the layout (faithfulness, clusters), shown like a column.

    They colour the points, appear in the table view and in exports, but are never written
    into the user's table: a float column added there would become part of a numeric
    table's default embedding and of its next projection, and a view built from the table
    would not see a column added to it later.

    Attributes
    ----------
    values
        Numeric: float64, one per table row, NaN for rows without a value (not projected, or
        not computed yet). Categorical: int64 codes, one per table row (cluster ids).
    span, colormap
        Numeric: a fixed colour scale (see :class:`~embproj_panel.colors.ColorMapping`), or
        None.
    labels
        None: numeric. Else the column is categorical and this maps a code to its legend
        label (``{-1: "unclustered"}``); other codes are labelled with their number.
    """

    values: np.ndarray
    span: tuple[float, float] | None = None
    colormap: tuple[str, ...] | None = None
    labels: dict[int, str] | None = None

    def label(self, code: Any) -> str:
        """A categorical column's label of ``code``, as the legend and the map name it
        (``-1`` -> "unclustered"; a code without a label is its number)."""
        return (self.labels or {}).get(int(code), str(int(code)))

    def categories(self) -> pd.Categorical:
        """A categorical column's values as labels (a ``pd.Categorical`` over its codes)."""
        codes, found = pd.factorize(self.values, sort=True)
        names = [self.label(code) for code in found]
        return pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))


# -- the state ----------------------------------------------------------------------------------


class ProjectorState(param.Parameterized):
    """Everything the projector shows, as parameters; no widgets.

    Parameters
    ----------
    table
        The table to project (a :class:`~embproj_panel.table.Table`).
    **params
        Any other parameter below, e.g. ``method="umap"``, ``color_by="target"``. Settings
        given here win over the table's smart defaults.

    Examples
    --------
    >>> state = ProjectorState(table=datasets.digits())
    >>> state.wait()                       # PCA runs at once; wait for it outside a server
    >>> state.param.update(method="umap", auto_compute=False)
    >>> state.param.trigger("compute")     # UMAP runs when asked
    """

    # -- inputs: data -------------------------------------------------------------------------
    table = param.ClassSelector(class_=Table, default=None, allow_None=True, doc="""
        The table to project.""")

    embedding_columns = param.ListSelector(default=[], objects=[], doc="""
        The columns that make up the embedding: one vector column, or several numeric
        columns (one dimension each). Defaults to the table's smart default.""")

    color_by = param.Selector(default=None, objects=[None], allow_None=True, doc="""
        Column that colours the points: categorical (a colour per label) or numeric
        (a colormap). None draws every point in one colour.""")

    hover_image = param.Selector(default=None, objects=[None], allow_None=True, doc="""
        Image column shown in the hover tooltip and the table; None for no image.""")

    tooltip_columns = param.ListSelector(default=[], objects=[], doc="""
        Extra columns shown in the hover tooltip.""")

    # -- inputs: projection -------------------------------------------------------------------
    method = param.Selector(default="pca", objects={cls.label: name for name, cls in REDUCERS.items()},
                            doc="""
        The reduction: PCA recomputes at once; UMAP and t-SNE when ``compute`` fires (or at
        once with ``auto_compute``).""")

    settings = param.Dict(default={}, constant=True, doc="""
        Method name -> its :class:`MethodSettings` (the hyperparameters, with bounds).""")

    auto_compute = param.Boolean(default=False, doc="""
        Recompute UMAP and t-SNE on every change, as PCA does, instead of on ``compute``.""")

    compute = param.Event(doc="""
        Compute the projection with the current settings.""")

    # -- inputs: style (never recomputes) -----------------------------------------------------
    point_size = param.Number(default=6, bounds=(1, 30), step=1, doc="""
        Point size in screen pixels (rasters spread isolated points up to half of it).""")

    alpha = param.Number(default=0.8, bounds=(0.05, 1.0), step=0.05, doc="""
        Opacity of the points.""")

    colormap = param.Selector(default="viridis", objects=COLORMAPS, doc="""
        Colormap for numeric colouring (and density when uncoloured and rasterized).""")

    datashade_threshold = param.Integer(default=DATASHADE_THRESHOLD, bounds=(1, None),
                                        doc="""
        Above this many projected points the scatter is rasterized with Datashader.""")

    # -- the selection (both plot and table read and write it) ---------------------------------
    selection = param.List(default=[], item_type=int, doc="""
        Selected rows, as sorted, unique row positions in the table.""")

    # -- isolation ("Project selection") -------------------------------------------------------
    isolated = param.List(default=[], item_type=int, constant=True, doc="""
        Table rows of the isolated projection, sorted: only these are projected (same method
        and settings). Empty: the whole table. Set through :meth:`isolate`.""")

    isolation_note = param.String(default="", constant=True, doc="""
        Why the last :meth:`isolate` changed nothing (nothing selected, the projection of
        the rows failed), as plain text; empty otherwise.""")

    # -- the session ----------------------------------------------------------------------------
    dispatch = param.Callable(default=None, allow_None=True, precedence=-1, doc="""
        ``dispatch(callback)`` runs ``callback`` on the thread that owns this state's session
        (served: the session document's ``add_next_tick_callback``), given by the view or app
        layer that knows the session. None: the asyncio loop running where a projection is
        requested (a notebook kernel), else the requesting thread, through :meth:`wait`.""")

    # -- outputs ------------------------------------------------------------------------------
    projection = param.Parameter(default=None, constant=True, doc="""
        The latest :class:`~embproj_panel.compute.Projection` (None before the first).""")

    color = param.ClassSelector(class_=ColorMapping, default=ColorMapping("none"),
                                constant=True, doc="""
        The colour mapping of every table row for ``color_by``.""")

    frame = param.DataFrame(default=None, allow_None=True, constant=True, doc="""
        The plot's data: x, y, row and colour of every projected point.""")

    status = param.String(default="No table yet.", constant=True, doc="""
        One line: points, method, seed, excluded rows, clamped parameters, time.""")

    progress = param.Number(default=0.0, bounds=(0.0, 1.0), constant=True, doc="""
        Progress of the running projection, 0 to 1.""")

    busy = param.Boolean(default=False, constant=True, doc="""
        Whether a projection is running.""")

    stale = param.Boolean(default=False, constant=True, doc="""
        Whether the settings changed since the shown projection (press compute).""")

    error = param.String(default="", constant=True, doc="""
        A readable message when the last projection failed, else empty.""")

    derived = param.Dict(default={}, constant=True, precedence=-1, doc="""
        Name -> :class:`DerivedColumn`: per-row values computed from the layout (set with
        :meth:`set_derived`), offered as colours and shown in the table and exports like
        columns of the table; cleared with a new table.""")

    def __init__(self, table: Table | None = None, **params: Any) -> None:
        settings = {name: settings_class(name)() for name in REDUCERS}
        given_settings = params.pop("settings", None) or {}
        for name, values in given_settings.items():
            if name not in settings:
                raise ValueError(f"Unknown method {name!r}; the methods are {list(REDUCERS)}")
            settings[name].param.update(**dict(values))
        # Explicit column settings win over the smart defaults applied when the table is set.
        self._explicit = {key: params.pop(key) for key in _COLUMN_SETTINGS if key in params}
        super().__init__(settings=settings, **params)
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        # The one mechanism that supersedes stale jobs: the slot's latest job is the only one
        # whose result is applied.
        self._slot = compute.JobSlot("projection")
        self._applied: Any = None  # the job last taken up for application
        # (job, isolated rows it projects) of the latest request; the rows shown now.
        self._requested: tuple[Any, list[int]] = (None, [])
        self._shown_isolation: list[int] = []
        self._completed: Any = None  # the job last fully applied (or failed)
        self._positions: np.ndarray | None = None
        self._images: np.ndarray | None = None
        self._closed = False
        for method_settings in settings.values():
            method_settings.param.watch(self._on_method_settings, list(method_settings.param)[1:])
        if table is not None:
            self.table = table

    # -- table and smart defaults -------------------------------------------------------------
    def set_table(self, table: Table | None, **columns: Any) -> None:
        """Show ``table``, with column settings that win over its smart defaults.

        Parameters
        ----------
        table
            The new table (None clears).
        **columns
            Any of ``embedding_columns``, ``color_by``, ``hover_image``, ``tooltip_columns``.

        Raises
        ------
        ValueError
            If a column setting names a column that cannot play that role; the previous
            table then stays.
        """
        unknown = set(columns) - set(_COLUMN_SETTINGS)
        if unknown:
            raise TypeError(f"set_table() got unexpected settings {sorted(unknown)}")
        if table is not None:
            self._check_columns({**_defaults_of(table), **columns}, *_roles(table))
        self._explicit = dict(columns)
        if table is self.table:
            self.param.trigger("table")
        else:
            self.table = table

    @param.depends("table", watch=True)
    def _on_table(self) -> None:
        """A new table: new column choices, smart defaults, no selection, a new projection."""
        table = self.table
        explicit, self._explicit = self._explicit, {}
        self._images = None
        self._shown_isolation = []
        with param.edit_constant(self):  # a new table is shown whole
            self.param.update(isolated=[], isolation_note="")
        if table is None:
            with param.edit_constant(self):
                self.param.update(projection=None, frame=None, busy=False, stale=False,
                                  error="", status="No table yet.", derived={})
            return
        embeddable, colorable, images, shown = _roles(table)
        # The old projection's rows belong to the old table: never show them with this one.
        # Cleared before the column choices change: a widget showing a choice that is gone
        # sets another at once, and its watchers must not draw the old rows with this table
        # (a rendered scatter failed on the new table's length).
        self._positions = None
        with param.edit_constant(self):
            self.param.update(projection=None, frame=None, color=ColorMapping("none"),
                              derived={})
        p = self.param
        p.embedding_columns.objects = column_labels(embeddable)
        p.color_by.objects = {NONE_LABEL: None, **column_labels(colorable)}
        p.hover_image.objects = {NONE_LABEL: None, **column_labels(images)}
        p.tooltip_columns.objects = column_labels(shown)
        values = {**_defaults_of(table), **explicit, "selection": []}
        self._check_columns(values, embeddable, colorable, images, shown)
        self._projection_inputs_changed(force=True, **values)

    @staticmethod
    def _check_columns(values: dict, embeddable: list, colorable: list, images: list,
                       shown: list) -> None:
        def check(name: Any, allowed: list, what: str) -> None:
            if name is not None and name not in allowed:
                raise ValueError(
                    f"{name!r} cannot be the {what}; the columns that can are "
                    f"{[str(a) for a in allowed]}"
                )

        for name in values["embedding_columns"]:
            check(name, embeddable, "embedding (a vector or numeric column)")
        check(values["color_by"], colorable, "colour column")
        check(values["hover_image"], images, "hover image column")
        for name in values["tooltip_columns"]:
            check(name, shown, "tooltip column")

    # -- recompute triggers -------------------------------------------------------------------
    def _projection_inputs_changed(self, force: bool = False, **values: Any) -> None:
        """Apply ``values`` (if any) and ask for a projection if the method is automatic."""
        # param.update calls the watchers before returning, while _suppress is set, so the
        # values land together and ask for one projection, below, not one per parameter.
        self._suppress = True
        try:
            if values:
                self.param.update(**values)
        finally:
            self._suppress = False
        if force or self.method == "pca" or self.auto_compute:
            self._request()
        else:
            with param.edit_constant(self):
                self.stale = True
                self.status = (
                    f"Settings changed: press Compute to run {self._label()} "
                    f"(the plot shows the previous projection)."
                )

    _suppress = False

    @param.depends("embedding_columns", "method", watch=True)
    def _on_projection_input(self) -> None:
        if self._suppress or self.table is None:
            return
        self._projection_inputs_changed()

    def _on_method_settings(self, *events: param.parameterized.Event) -> None:
        if self._suppress or self.table is None:
            return
        if any(event.obj.method == self.method for event in events):
            self._projection_inputs_changed()

    @param.depends("compute", watch=True)
    def _on_compute(self) -> None:
        self._request()

    @param.depends("auto_compute", watch=True)
    def _on_auto(self) -> None:
        if self.auto_compute and self.stale:
            self._request()

    # -- running a projection -----------------------------------------------------------------
    def _label(self) -> str:
        return REDUCERS[self.method].label

    def _request(self) -> None:
        """Start a projection of the current settings; it supersedes any running one."""
        table = self.table
        if table is None or self._closed:
            return
        columns = list(self.embedding_columns)
        if not columns:
            self._slot.cancel()
            with param.edit_constant(self):
                self.param.update(
                    busy=False, progress=0.0, stale=False,
                    error="Choose at least one embedding column (a vector or numeric column).",
                    status="No embedding columns chosen.",
                )
            return
        method = self.method
        params = self.settings[method].reducer_params()
        dispatch = _Dispatcher(self.dispatch)
        isolated = list(self.isolated)
        try:
            job = self._slot.submit(table, method, columns, rows=isolated or None, **params)
        except Exception as exc:  # noqa: BLE001 - bad settings: say so, keep the last plot
            self._requested = (None, isolated)
            self._fail(exc)
            return
        self._requested = (job, isolated)
        what = (f"the {len(isolated):,} isolated rows of {len(table):,}" if isolated
                else f"{len(table):,} rows")
        with param.edit_constant(self):
            self.param.update(
                busy=True, progress=0.0, stale=False, error="",
                status=f"Computing {REDUCERS[method].label} of {what}...",
            )
        job.add_done_callback(lambda job: dispatch(partial(self._finish, job)))
        self._slot.forward_progress(job, dispatch, self._set_progress)

    def _set_progress(self, value: float) -> None:
        if self.busy:
            with param.edit_constant(self):
                self.progress = value

    def _fail(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        values: dict[str, Any] = {}
        if self._requested[1] != self._shown_isolation:
            # The rows asked for are not the rows shown: say so, and name what is shown.
            what = (f"the selection of {len(self._requested[1]):,} rows"
                    if self._requested[1] else "the whole table")
            values = {"isolated": list(self._shown_isolation),
                      "isolation_note": f"Could not project {what}: {message}"}
        with param.edit_constant(self):
            self.param.update(
                busy=False, progress=0.0,
                error=f"{self._label()} failed: {message}",
                status=f"{self._label()} failed; the plot shows the previous projection.",
                **values,
            )

    def _finish(self, job: Any) -> None:
        """Apply a finished job, unless a newer request superseded it (or it was applied)."""
        with self._lock:
            if not self._slot.is_current(job) or job is self._applied or self._closed:
                return
            self._applied = job
        try:
            if job.cancelled:
                return
            error = job.exception()
            if error is not None:
                self._fail(error)
            else:
                self._apply_projection(job.result())
        finally:
            with self._done:
                self._completed = job
                self._done.notify_all()

    def _apply_projection(self, projection: Any) -> None:
        self._positions = None
        self._shown_isolation = list(self._requested[1])
        color = self._color_mapping()
        frame = plot_frame(projection.coords, projection.rows, color)
        with param.edit_constant(self):
            self.param.update(
                projection=projection, color=color, frame=frame, busy=False, progress=1.0,
                error="", status=self._describe(projection, color),
            )

    def wait(self, timeout: float | None = 60) -> None:
        """Block until the current projection is done and applied (scripts, tests, notebooks).

        Never call it from a served session's own callbacks: the session's event loop, which
        it would block, is what applies the result there.

        Raises
        ------
        TimeoutError
            If it takes longer than ``timeout`` seconds.
        """
        job = self._slot.job
        if job is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if not job.wait(remaining()):
            raise TimeoutError(f"The projection did not finish within {timeout} s")
        if self.dispatch is None:
            # Applying here makes wait() work where nobody runs the scheduled callback (a
            # notebook cell blocking the kernel's loop); _finish never applies a job twice.
            self._finish(job)
        # With a session, its loop applies the result; either way, return once applied.
        with self._done:
            finished = self._done.wait_for(
                lambda: self._completed is job or not self._slot.is_current(job)
                or self._closed,
                timeout=remaining(),
            )
        if not finished:
            raise TimeoutError(f"The projection was not applied within {timeout} s")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (nothing is computed or applied any more)."""
        return self._closed

    def close(self) -> None:
        """Cancel any running projection and drop the data (a session ended)."""
        with self._done:
            self._closed = True
            self._done.notify_all()  # nothing more will be applied: release any wait()
        self._slot.cancel("The session closed.")
        self._positions = None
        self._images = None

    # -- status -------------------------------------------------------------------------------
    def _describe(self, projection: Any, color: ColorMapping) -> str:
        n_table = len(self.table) if self.table is not None else 0
        n_points = len(projection.rows)
        method = getattr(projection, "method", self.method)
        label = REDUCERS[method].label if method in REDUCERS else str(method)
        params = dict(getattr(projection, "params", {}) or {})
        parts = [f"{n_points:,} of {n_table:,} rows", label]
        if self._shown_isolation:
            parts[0] += f" (an isolated selection of {len(self._shown_isolation):,})"
        seed = params.get("random_state")
        if seed is not None and method != "pca":
            parts.append(f"seed {seed}")
        excluded = getattr(projection, "excluded", None) or []
        if len(excluded):
            parts.append(f"{len(excluded):,} row(s) excluded ({_first_reason(excluded)})")
        if getattr(projection, "cached", False):
            parts.append("from the cache")
        else:
            elapsed = getattr(projection, "elapsed", None)
            if elapsed is not None:
                parts.append(f"{elapsed:.2f} s")
        if n_points > self.datashade_threshold:
            parts.append(f"drawn with Datashader (over {self.datashade_threshold:,} points)")
        notes = list(getattr(projection, "warnings", None) or [])
        if color.note:
            notes.append(color.note)
        line = " · ".join(parts)
        return line + (" — " + " ".join(notes) if notes else "")

    # -- derived columns ----------------------------------------------------------------------
    def free_name(self, base: str) -> str:
        """``base``, or ``base`` with underscores appended, so no table column has that name."""
        taken = set(self.table.columns) if self.table is not None else set()
        name = base
        while name in taken:
            name += "_"
        return name

    def set_derived(self, name: str, values: np.ndarray | None,
                    span: tuple[float, float] | None = None,
                    colormap: tuple[str, ...] | None = None,
                    labels: dict[int, str] | None = None) -> None:
        """Show ``values`` (one per table row) as the derived column ``name``; None removes it.

        The colour choices gain (or lose) ``name``; if the points are coloured by it they are
        recoloured. The projection is not recomputed. With ``labels`` (code -> legend label,
        may be empty) the values are integer codes coloured as categories (clusters).
        """
        derived = dict(self.derived)
        if values is None:
            if derived.pop(name, None) is None:
                return
            if self.color_by == name:
                self.color_by = None
        else:
            values = np.asarray(values, dtype=np.float64 if labels is None else np.int64)
            n = len(self.table) if self.table is not None else 0
            if values.shape != (n,):
                raise ValueError(f"{name} needs one value per table row ({n:,}); got "
                                 f"shape {values.shape}")
            derived[name] = DerivedColumn(values, span, colormap, labels)
        if self.table is not None:
            # Tooltips can show derived columns too (values as text, like any cell).
            shown = _roles(self.table)[3]
            self.param.tooltip_columns.objects = column_labels([*shown, *derived])
            if values is None and name in self.tooltip_columns:
                self.tooltip_columns = [c for c in self.tooltip_columns if c != name]
        with param.edit_constant(self):
            self.derived = derived
        if self.table is not None:
            colorable = _roles(self.table)[1]
            self.param.color_by.objects = {
                NONE_LABEL: None, **column_labels([*colorable, *derived])}
        if values is not None and self.color_by == name:
            self._on_color_by()

    def cells(self, name: Any, rows: np.ndarray) -> np.ndarray:
        """The cells of ``rows`` of column ``name``: a derived column's, else the table's (a
        lazy table reads those rows only)."""
        found = self.derived.get(name)
        if found is not None:
            return found.values[np.asarray(rows, dtype=np.int64)]
        return self.table.cells(name, rows)

    def shown_cells(self, name: Any, rows: np.ndarray) -> np.ndarray:
        """The cells of ``rows`` as captions and tooltips show them: a categorical derived
        column's codes as their legend labels (:meth:`DerivedColumn.label`: ``-1`` is
        "unclustered"), any other column's cells as :meth:`cells` gives them."""
        found = self.derived.get(name)
        if found is not None and found.labels is not None:
            codes = found.values[np.asarray(rows, dtype=np.int64)]
            return np.array([found.label(code) for code in codes], dtype=object)
        return self.cells(name, rows)

    # -- colour and frame (restyling) ---------------------------------------------------------
    def _color_mapping(self) -> ColorMapping:
        table, column = self.table, self.color_by
        if table is None or column is None:
            return ColorMapping("none")
        found = self.derived.get(column)
        if found is not None and found.labels is not None:
            return color_mapping(found.categories(), column)
        if found is not None:
            return dataclasses.replace(color_mapping(found.values, column, kind="numeric"),
                                       span=found.span, colormap=found.colormap)
        kind = table.schema.columns[column].kind
        values = table.color_values(column)  # a lazy table: codes and categories only
        return color_mapping(
            values, column, kind="numeric" if kind == "numeric" else "categorical"
        )

    @param.depends("color_by", watch=True)
    def _on_color_by(self) -> None:
        if self._suppress and self.projection is None:
            return
        color = self._color_mapping()
        projection = self.projection
        frame = None
        if projection is not None:
            frame = plot_frame(projection.coords, projection.rows, color)
        with param.edit_constant(self):
            self.param.update(color=color, frame=frame)
            if projection is not None:
                self.status = self._describe(projection, color)

    # -- isolation ----------------------------------------------------------------------------
    def isolate(self, rows: Any = "selection") -> str:
        """Project only ``rows`` (by default the selection); ``None`` goes back to every row.

        The isolated projection uses the same method and settings, has its own cache entry
        (keyed by its own matrix) and replaces :attr:`projection`; its ``rows`` are table
        positions, so the selection, colours, search, neighbours and exports keep using the
        table's row positions. The selection is kept both ways: going back shows a selection
        made inside the isolated view in the whole map.

        Returns
        -------
        str
            What happens, as plain text; with nothing to isolate (an empty selection) that
            message, and nothing changes (it is also :attr:`isolation_note`).

        Raises
        ------
        ValueError, TypeError
            For row positions outside the table or not integers (as :meth:`select`).
        """
        table = self.table
        if table is None:
            return self._note("There is no table to isolate rows of.")
        if rows is None:
            if not self.isolated:
                return self._note("")
            with param.edit_constant(self):
                self.param.update(isolated=[], isolation_note="")
            self._request()
            return f"Projecting all {len(table):,} rows."
        wanted = self.normalize_rows(self.selection if isinstance(rows, str) and
                                     rows == "selection" else rows)
        if not wanted:
            return self._note("Nothing is selected, so there is nothing to isolate: select "
                              "points (box, lasso or the table) first.")
        with param.edit_constant(self):
            self.param.update(isolated=wanted, isolation_note="")
        self._request()
        return f"Projecting the {len(wanted):,} selected rows of {len(table):,}."

    def _note(self, message: str) -> str:
        with param.edit_constant(self):
            self.isolation_note = message
        return message

    # -- selection ----------------------------------------------------------------------------
    def select(self, rows: Iterable[int] | np.ndarray | None) -> None:
        """Set the selection to ``rows`` (table row positions), validated and normalised.

        Raises
        ------
        ValueError
            If a position is outside the table.
        TypeError
            If the positions are not integers.
        """
        normalized = self.normalize_rows(rows)
        if normalized != self.selection:
            self.selection = normalized

    def normalize_rows(self, rows: Iterable[int] | np.ndarray | None) -> list[int]:
        """Sorted, unique, validated row positions as a list of Python ints."""
        if rows is None:
            return []
        array = np.asarray(rows if isinstance(rows, np.ndarray) else list(rows))
        if array.size == 0:
            return []
        if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"Row positions must be integers; got {array.dtype} values")
        n = len(self.table) if self.table is not None else 0
        bad = array[(array < 0) | (array >= n)]
        if bad.size:
            raise ValueError(
                f"Row positions {bad[:5].tolist()} are outside the table of {n:,} rows"
            )
        return np.unique(array).astype(int).tolist()

    def positions_of(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions in :attr:`frame` of table ``rows`` (rows not projected are left out)."""
        frame = self.frame
        if frame is None or self.table is None:
            return np.zeros(0, dtype=np.int64)
        if self._positions is None or len(self._positions) != len(self.table):
            lookup = np.full(len(self.table), -1, dtype=np.int64)
            lookup[frame[ROW].to_numpy()] = np.arange(len(frame))
            self._positions = lookup
        rows = np.asarray(rows, dtype=np.int64)
        found = self._positions[rows] if rows.size else rows
        return found[found >= 0]

    def rows_of(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Table rows of ``positions`` in :attr:`frame`."""
        frame = self.frame
        if frame is None:
            return np.zeros(0, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        return frame[ROW].to_numpy()[positions]

    @property
    def selected_dataframe(self) -> pd.DataFrame:
        """The selected rows with their ``x`` and ``y``, as :func:`export.selection_frame`."""
        from embproj_panel.export import selection_frame

        if self.table is None:
            return pd.DataFrame()
        return selection_frame(self.table, self.projection, self.selection,
                               extra=self.derived_values())

    def derived_values(self) -> dict[str, np.ndarray]:
        """Name -> per-table-row values of every derived column (what exports add)."""
        return {name: found.values for name, found in self.derived.items()}

    # -- images -------------------------------------------------------------------------------
    def image(self, row: int) -> Any:
        """The hover image of table ``row`` (an :class:`~embproj_panel.images.Image`) or None."""
        if self.table is None or self.hover_image is None:
            return None
        if isinstance(self.table, DatasetTable):  # read on demand, from the row's row group
            return self.table.cells(self.hover_image, [int(row)])[0]
        if self._images is None or len(self._images) != len(self.table):
            self._images = self.table.get_column(self.hover_image, convert_to="numpy")
        return self._images[int(row)]

    @param.depends("hover_image", watch=True)
    def _on_hover_image(self) -> None:
        self._images = None


_COLUMN_SETTINGS = ("embedding_columns", "color_by", "hover_image", "tooltip_columns")


def _roles(table: Table) -> tuple[list, list, list, list]:
    """The columns that can be embedding, colour, hover image and tooltip columns."""
    kinds = {name: info.kind for name, info in table.schema.columns.items()}
    embeddable = [n for n, k in kinds.items() if k in ("vector", "numeric")]
    colorable = [n for n, k in kinds.items() if k in ("categorical", "numeric", "id", "text")]
    images = [n for n, k in kinds.items() if k == "image"]
    shown = [n for n, k in kinds.items() if k not in ("vector", "image")]
    return embeddable, colorable, images, shown


def _defaults_of(table: Table) -> dict[str, Any]:
    """The smart defaults (W&B's): the schema's embedding, colour and hover image."""
    schema = table.schema
    return {
        "embedding_columns": list(schema.default_embedding),
        "color_by": schema.default_color,
        "hover_image": schema.default_hover_image,
        "tooltip_columns": [],
    }


def _first_reason(excluded: Any) -> str:
    try:
        row, reason = excluded[0]
        more = "" if len(excluded) == 1 else ", ..."
        return f"row {int(row)}: {reason}{more}"
    except (TypeError, ValueError, IndexError):
        return "see the export"
