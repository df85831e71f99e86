"""``Projector``: the parts of the projector composed over one :class:`ProjectorState`.

``Projector(source, **settings)`` works inline in Jupyter (after ``pn.extension(...)``) and
under ``panel serve``. It is a list of parts, :data:`PARTS`, each a small Viewer over the same
state, laid out by region; :class:`~embproj_panel.app.ProjectorApp` lays out the same parts in
its page. The parts are public and usable alone: ``projector.settings``, ``.status``,
``.scatter``, ``.table``, ``.downloads``.

A new view is one new module in this package plus one line in :data:`PARTS`. A part that
draws on the scatter (a search highlight, neighbour lines, cluster labels, thumbnails)
defines ``scatter_overlay(self, scatter)``; it is added to
:attr:`ScatterView.overlays <embproj_panel.views.scatter.ScatterView.overlays>` when the
parts are built (see :mod:`embproj_panel.views.scatter`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param

from embproj_panel._notebook_comm import PageReport
from embproj_panel.finder import find_state
from embproj_panel.sources import as_table
from embproj_panel.state import ProjectorState
from embproj_panel.views.clusters import ClustersView
from embproj_panel.views.downloads import DownloadsView
from embproj_panel.views.gallery import GalleryView
from embproj_panel.views.images import ImagesView
from embproj_panel.views.isolate import IsolateView
from embproj_panel.views.neighbors import NeighborsView
from embproj_panel.views.scatter import ScatterView
from embproj_panel.views.search import SearchView
from embproj_panel.views.session import session_dispatch
from embproj_panel.views.settings import SettingsView
from embproj_panel.views.status import StatusView
from embproj_panel.views.table import TableView
from embproj_panel.views.trust import TrustView

__all__ = ["PARTS", "Projector", "as_table", "build_parts", "main_area", "plot_column", "plot_items",
           "MAP_MIN_WIDTH", "SIDE_WIDTH", "side_column", "side_tabs", "sidebar_parts"]

#: ``(attribute, Viewer class, region)`` of every part, in layout order. Regions:
#: ``"sidebar"`` (the gear in a Projector, the page's sidebar in the app), ``"plot"`` (the
#: scatter's column, top to bottom), ``"tools"`` (one line of controls above the scatter in
#: that column, wrapping when narrow), ``"side"`` (the table's column beside it) and ``"tab"``
#: (tabs beside that column: the gallery).
PARTS: list[tuple[str, type[pn.viewable.Viewer], str]] = [
    ("settings", SettingsView, "sidebar"),
    ("clusters", ClustersView, "sidebar"),
    ("images", ImagesView, "sidebar"),
    ("status", StatusView, "plot"),
    ("trust", TrustView, "plot"),
    ("search_box", SearchView, "tools"),
    ("isolation", IsolateView, "tools"),
    ("scatter", ScatterView, "plot"),
    ("table", TableView, "side"),
    ("neighbors_panel", NeighborsView, "side"),
    ("downloads", DownloadsView, "side"),
    ("gallery", GalleryView, "tab"),
]


#: The narrowest the scatter gets in a Projector before the table wraps below it.
_MIN_PLOT_WIDTH = 480


def build_parts(state: ProjectorState, **params: Any) -> dict[str, pn.viewable.Viewer]:
    """One of each of :data:`PARTS` over ``state``.

    Parameters
    ----------
    state
        The state every part shows.
    **params
        Parameters of the parts, each given to the part that has it (e.g. ``page_size``
        to the table).

    Raises
    ------
    TypeError
        For a name no part has.
    """
    parts: dict[str, pn.viewable.Viewer] = {}
    for name, cls, _region in PARTS:
        own = {key: params.pop(key) for key in list(params)
               if key in cls.param and key not in ("name", "state")}
        parts[name] = cls(state=state, **own)
    if params:
        raise TypeError(f"Unknown projector settings {sorted(params)}")
    scatter = parts.get("scatter")
    if isinstance(scatter, ScatterView):
        overlays = [part.scatter_overlay for part in parts.values()
                    if callable(getattr(part, "scatter_overlay", None))]
        if overlays:
            scatter.overlays = [*scatter.overlays, *overlays]
    return parts


#: Width of the table column beside the map (the map takes the rest of the row).
SIDE_WIDTH = 460


def _region(parts: dict[str, pn.viewable.Viewer], region: str) -> list[pn.viewable.Viewer]:
    return [parts[name] for name, _cls, where in PARTS if where == region and name in parts]


def sidebar_parts(parts: dict[str, pn.viewable.Viewer]) -> list[pn.viewable.Viewer]:
    """The parts of the ``"sidebar"`` region, in order."""
    return _region(parts, "sidebar")


def plot_items(parts: dict[str, pn.viewable.Viewer]) -> list[pn.viewable.Viewable]:
    """The scatter's column, top to bottom: the ``"plot"`` region's parts, with the
    ``"tools"`` region on one line (wrapping) just above the scatter."""
    items: list[pn.viewable.Viewable] = list(_region(parts, "plot"))
    tools = _region(parts, "tools")
    if tools:
        # One line, not one per part: every line above the map is height the map lacks.
        # The first (the search box) takes the room the others leave.
        boxes = [pn.Column(tool, sizing_mode="stretch_width", margin=0,
                           styles={"flex": "1 1 560px" if i == 0 else "0 1 auto",
                                   "width": "auto"})
                 for i, tool in enumerate(tools)]
        row = pn.FlexBox(*boxes, flex_wrap="wrap", align_items="flex-start",
                         sizing_mode="stretch_width", margin=0)
        at = items.index(parts["scatter"]) if "scatter" in parts else len(items)
        items.insert(at, row)
    return items


def plot_column(parts: dict[str, pn.viewable.Viewer]) -> pn.Column:
    """Status line, progress, error, the tools line and the scatter (:func:`plot_items`)."""
    return pn.Column(*plot_items(parts), sizing_mode="stretch_both", min_height=460)


def side_column(parts: dict[str, pn.viewable.Viewer]) -> pn.Column:
    """The table with its selection toggle, and the downloads (the ``"side"`` region)."""
    return pn.Column(*_region(parts, "side"), sizing_mode="stretch_both", min_height=300)


def side_tabs(parts: dict[str, pn.viewable.Viewer]) -> pn.viewable.Viewable:
    """The side column, with the ``"tab"`` region's parts (the gallery) as tabs beside it."""
    tabs = [(name.title(), parts[name]) for name, _cls, where in PARTS
            if where == "tab" and name in parts]
    if not tabs:
        return side_column(parts)
    return pn.Tabs(("Table", side_column(parts)), *tabs, sizing_mode="stretch_both")


#: The narrowest the map's column gets beside the table in the app's page (about a 700 px
#: data frame once the axes and the legend have theirs); a narrower main area puts the table
#: under the map instead, full width.
MAP_MIN_WIDTH = 860

# Height the page's header and margins take (FastListTemplate), and the part of the table's
# column left in view under the map when the table goes below it: its tabs and first rows,
# so the user sees the table is there.
_PAGE_CHROME_PX = 100
_TABLE_PEEK_PX = 120
# The map's column never gets shorter (the lines above the map take about 200 px, the
# scatter's pane at least 420): on a short window the page scrolls instead.
_MAP_MIN_HEIGHT_PX = 640


def _window_height(less: int) -> str:
    """CSS: the window's height less ``less`` pixels, but at least the map's minimum."""
    return f"max({_MAP_MIN_HEIGHT_PX}px, calc(100vh - {less}px))"


def main_area(parts: dict[str, pn.viewable.Viewable]) -> pn.FlexBox:
    """The map, and the table beside it when there is room, else under it.

    Beside the map the table column is :data:`SIDE_WIDTH` wide and both take the window's
    height; when the main area is narrower than :data:`MAP_MIN_WIDTH` plus the table (a
    1400 px window with the sidebar open, a 1280 px laptop) the table wraps under the map
    at the full width, the map keeps the window's height but for a strip of the table's
    tabs, and the page scrolls to the rest. Which of the two depends on the main area's own
    width (a CSS container query), so collapsing the sidebar brings the table back beside
    the map.
    """
    wide = MAP_MIN_WIDTH + SIDE_WIDTH + 20  # + the two columns' margins
    plot = plot_column(parts)
    plot.param.update(sizing_mode="stretch_width", min_width=0, css_classes=["embproj-map"],
                      styles={"flex": f"1000 1 {MAP_MIN_WIDTH}px",
                              "height": _window_height(_PAGE_CHROME_PX)})
    side = side_tabs(parts)
    side.param.update(min_width=0,
                      styles={"flex": f"1 0 {SIDE_WIDTH}px",
                              "height": _window_height(_PAGE_CHROME_PX)})
    # The height of a wrapped map (the flex basis decides the wrapping; this only the height).
    narrow = (f"@container (max-width: {wide - 1}px) {{ .embproj-map {{ height: "
              f"{_window_height(_PAGE_CHROME_PX + _TABLE_PEEK_PX)} !important; }} }}")
    return pn.FlexBox(plot, side, flex_wrap="wrap", align_content="flex-start",
                      sizing_mode="stretch_width", min_height=560, stylesheets=[narrow],
                      styles={"container-type": "inline-size"})


class Projector(pn.viewable.Viewer):
    """An embedding projector: settings, a linked scatter with image hover, and a table.

    Parameters
    ----------
    source
        What to project (see :func:`~embproj_panel.sources.as_table`), or a
        :class:`ProjectorState` to show.
    **settings
        Any :class:`ProjectorState` parameter (``method``, ``color_by``, ``hover_image``,
        ``embedding_columns``, ``tooltip_columns``, ``point_size``, ``settings``, ...) or a
        parameter of a part (``page_size``, ``table_mode`` of the table).

    Attributes
    ----------
    settings, status, scatter, table, downloads
        The parts (:class:`SettingsView`, :class:`StatusView`, :class:`ScatterView`,
        :class:`TableView`, :class:`DownloadsView`), one per entry of :data:`PARTS`.
    parts
        Attribute name -> part.

    Examples
    --------
    >>> import panel as pn, embproj_panel as ep
    >>> pn.extension("tabulator")
    >>> projector = ep.Projector(ep.datasets.digits(), color_by="target")
    >>> projector                                   # shows the app in a notebook cell
    >>> projector.selection = [0, 1, 2]             # highlights three points
    >>> projector.selected_dataframe                # those rows, with x and y
    >>> projector.scatter                           # the scatter alone
    """

    state = param.ClassSelector(class_=ProjectorState, constant=True, doc="""
        The state this view shows and edits.""")

    def __init__(self, source: Any = None, **params: Any) -> None:
        state = params.pop("state", None)
        if isinstance(source, ProjectorState):
            state, source = source, None
        part_names = {key for _name, cls, _region in PARTS for key in cls.param}
        own = {key: params.pop(key) for key in list(params)
               if key in part_names and key not in ("name", "state")}
        if state is None:
            state = ProjectorState(table=as_table(source), dispatch=session_dispatch(),
                                   **params)
        elif source is not None or params:
            raise TypeError("Pass either a state or a source with settings, not both")
        elif state.dispatch is None:
            state.dispatch = session_dispatch()
        super().__init__(state=state)
        # Compile UMAP's numba code now, in the background (once per process), so the first
        # UMAP in a fresh kernel does not wait for it; the first projection is PCA anyway.
        from embproj_panel import compute

        compute.warm_up(background=True)
        parts = build_parts(state, **own)
        for name, part in parts.items():
            object.__setattr__(self, name, part)  # past __setattr__, which guards the parts
        self.parts = parts

    # -- Python API ---------------------------------------------------------------------------
    def compute(self) -> None:
        """Run the pending projection (what the Compute button does); returns at once.

        PCA recomputes by itself; UMAP and t-SNE run when asked (unless ``auto_compute``).
        Call :meth:`wait` to block until the result is shown.
        """
        self.state.param.trigger("compute")

    def wait(self, timeout: float | None = 120) -> Projector:
        """Block until the running projection is done and shown, and its faithfulness and a
        neighbour scan of a lazy dataset too; returns the projector.

        Raises
        ------
        TimeoutError
            If that takes longer than ``timeout`` seconds (each).
        """
        self.state.wait(timeout=timeout)
        trust = self.parts.get("trust")
        if isinstance(trust, TrustView):
            trust.faith.wait(timeout=timeout)
        find_state(self.state).wait(timeout=timeout)
        return self

    @property
    def faithfulness(self) -> Any:
        """Per-row faithfulness of the shown layout (float64, one per table row, NaN for rows
        not projected), or None until it is computed (see :meth:`wait`).

        The share of each row's k nearest rows in the original space that are among its k
        nearest on the map (``projector.trust.faith.k``, default 10), as
        :func:`~embproj_panel.trust.faithfulness` computes it for the projected rows.
        """
        trust = self.parts.get("trust")
        values = trust.faith.values if isinstance(trust, TrustView) else None
        return None if values is None else values.copy()

    def __setattr__(self, name: str, value: Any) -> None:
        # A state setting assigned here used to land in the instance's __dict__ and do
        # nothing (``projector.method = "umap"``): the settings are properties now (see
        # _state_property), and a public name that exists nowhere is refused, not stored.
        if not name.startswith("_") and getattr(self, "parts", None) is not None:
            if name in self.parts:
                raise AttributeError(_part_message(name))
            if not hasattr(type(self), name) and name not in self.__dict__:
                raise AttributeError(_unknown_message(name))
        super().__setattr__(name, value)

    @property
    def selection(self) -> list[int]:
        """The selected rows (table row positions); assign a list to select from Python."""
        return list(self.state.selection)

    @selection.setter
    def selection(self, rows: Any) -> None:
        self.state.select(rows)

    def find_clusters(self, min_cluster_size: int | None = None,
                      label_column: Any = None) -> Any:
        """Cluster the layout now: one int64 cluster id per table row (-1: unclustered).

        Adds (or updates) the ``cluster`` column: a colour choice (categorical), a column of
        the table view and of :attr:`selected_dataframe` and the exports, readable as
        :attr:`cluster_ids`. It is the state's derived column (``cluster_`` if the table
        has a ``cluster`` of its own); the user's table is not changed. See
        :attr:`cluster_labels`.
        """
        return self.clusters.clusters.run(min_cluster_size, label_column)

    @property
    def cluster_ids(self) -> Any:
        """The ``cluster`` column now (int64, one per table row, -1: unclustered or not
        projected; all -1 after the layout changed), or None before :meth:`find_clusters`."""
        clusters = self.clusters.clusters
        found = self.state.derived.get(clusters.column) if clusters.column else None
        return None if found is None else found.values.copy()

    @property
    def cluster_labels(self) -> dict[int, str]:
        """Cluster id -> its label text (plain text), ``-1`` for "unclustered"."""
        return {cluster: label.text for cluster, label in self.clusters.clusters.labels.items()}

    @property
    def show_images(self) -> bool:
        """Whether thumbnails are drawn at their points (assign to switch)."""
        return self.images.show_images

    @show_images.setter
    def show_images(self, value: bool) -> None:
        self.images.show_images = bool(value)

    @property
    def selected_dataframe(self) -> pd.DataFrame:
        """The selected rows with their ``x`` and ``y`` coordinates (a copy)."""
        return self.state.selected_dataframe

    def isolate(self, rows: Any = "selection") -> str:
        """Project only the selection (or ``rows``); ``isolate(None)`` goes back to all rows.

        The isolated projection is ``projector.state.projection``; search and neighbours then
        look only among its rows, while :attr:`selection` and :attr:`selected_dataframe` keep
        the table's row positions. Returns what happens as text (with an empty selection,
        why nothing did). See :meth:`ProjectorState.isolate`.
        """
        return self.state.isolate(rows)

    def search(self, query: str, column: Any = None, regex: bool = False) -> Any:
        """Highlight and return the rows matching ``query`` (see :meth:`FindState.search`)."""
        return find_state(self.state).search(query, column, regex)

    def neighbors(self, row: int, k: int = 10, metric: str = "cosine") -> pd.DataFrame:
        """The ``k`` nearest rows of ``row`` in the embedding (see :meth:`FindState.neighbors`)."""
        return find_state(self.state).neighbors(row, k, metric)

    # -- layout -------------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        # The gear, the scatter and the table wrap onto new lines when the output is narrow
        # (a notebook cell beside JupyterLab's file browser is ~1,000 px): the scatter keeps
        # at least 480 px and grows into the room left, the table goes below it, and the
        # gear above, instead of a side-by-side row that squeezed the scatter to 235 px.
        gear = pn.Card(*sidebar_parts(self.parts), title="⚙ Settings", width=300,
                       collapsible=True, margin=(5, 5), styles={"flex": "0 0 auto"})
        plot = pn.Column(*plot_items(self.parts), sizing_mode="stretch_width",
                         min_width=_MIN_PLOT_WIDTH, height=720, margin=0,
                         styles={"flex": f"1 1 {_MIN_PLOT_WIDTH}px"})
        side = pn.Column(*_region(self.parts, "side"), width=460, height=720, margin=0,
                         styles={"flex": "0 1 460px"})
        # The page report: in a notebook, updates wait until the page has built the output
        # (embproj_panel._notebook_comm; a first result applied earlier was lost).
        return pn.FlexBox(gear, plot, side, PageReport(), flex_wrap="wrap",
                          align_items="flex-start", sizing_mode="stretch_width")


# -- the state's parameters as properties of the Projector -------------------------------------

#: State parameters that are read-only on the Projector: computed, or changed through a method.
_OUTPUTS = ("projection", "color", "frame", "progress", "busy", "stale", "error", "derived",
            "isolated", "isolation_note")
#: State parameters whose names are parts of the Projector (``projector.table`` is the table
#: view), or that are not settings.
_NOT_PROPERTIES = ("name", "compute", "selection", "dispatch", "settings", "table", "status")


def _state_property(name: str) -> property:
    doc = ProjectorState.param[name].doc or ""

    def get(self: Projector) -> Any:
        return getattr(self.state, name)

    def set_(self: Projector, value: Any) -> None:
        if name in ("isolated", "isolation_note"):
            raise AttributeError(f"projector.{name} is read-only; call projector.isolate(rows) "
                                 "(or isolate(None) to go back)")
        if name in _OUTPUTS:
            raise AttributeError(
                f"projector.{name} is computed (read-only); change the settings and call "
                "projector.compute()"
            )
        setattr(self.state, name, value)

    return property(get, set_, doc=f"``state.{name}``: {' '.join(doc.split())}")


def _settings_names() -> list[str]:
    return [name for name in ProjectorState.param
            if name not in _NOT_PROPERTIES and name not in _OUTPUTS]


def _part_message(name: str) -> str:
    hints = {
        "table": "to show another table use projector.state.set_table(table)",
        "status": "the status text is projector.state.status",
        "settings": "a method's settings are projector.state.settings[method], e.g. "
                    "projector.state.settings['umap'].n_neighbors = 30",
    }
    hint = hints.get(name, "")
    return f"projector.{name} is a part of the projector (a view){'; ' + hint if hint else ''}"


def _unknown_message(name: str) -> str:
    from embproj_panel.reducers import REDUCERS
    from embproj_panel.state import settings_class

    owners = [method for method in REDUCERS if name in settings_class(method).param]
    if owners:
        return (f"{name!r} is a setting of {', '.join(owners)}: set it with "
                f"projector.state.settings[{owners[0]!r}].{name} = ...")
    return (f"Projector has no setting {name!r}; the settings are "
            f"{', '.join(_settings_names())} (and selection)")


for _name in ProjectorState.param:
    if _name not in _NOT_PROPERTIES and not hasattr(Projector, _name):
        setattr(Projector, _name, _state_property(_name))
del _name
