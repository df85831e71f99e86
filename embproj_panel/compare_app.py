"""The served app's compare mode: one session's page of a :class:`~embproj_panel.views.Compare`.

``/projector?compare=[...]`` opens it (:func:`embproj_panel.app.create_app` routes here when
the query has ``compare``). The URL is the comparison:

``?project=p&run=r&table=t&compare=[{"method":"pca"},{"method":"umap","n_neighbors":30}]
&color=target&align=true&moves=false&zoom=true&k=10``

``compare`` is the JSON list of views that :class:`~embproj_panel.comparison.CompareState`
takes (each a method, optional ``embedding_columns`` and the method's changed
hyperparameters); ``color``, ``align`` and ``moves`` are the shared colour column, the
alignment switch, the "where did it move" overlay and linked pan and zoom; ``k`` is the
faithfulness k of every panel (a whole number from 1 to 100, as in the single view).
Changing any panel's method, columns or parameters, k, or one of those switches, rewrites
the URL; a URL that cannot be applied opens
the defaults and says what was ignored. The table comes from the URL as in the single view
(:func:`embproj_panel.sources.load_source`); the sidebar links back to the single view of it.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlencode

import panel as pn
import param

from embproj_panel.comparison import MAX_PANELS
from embproj_panel.trust_state import k_from_url
from embproj_panel.views.compare import Compare

__all__ = ["DEFAULT_VIEWS", "CompareApp", "compare_href", "parse_views"]

#: The comparison the compare mode opens with when the URL names none.
DEFAULT_VIEWS: list[dict[str, Any]] = [{"method": "pca"}, {"method": "umap"}]

# Bound what a URL can make the server build: a views list is short JSON.
_MAX_VIEWS_CHARS = 4_000


def parse_views(text: Any) -> list[dict[str, Any]]:
    """The ``compare`` query value (JSON text, or the list Panel decoded) as view specs.

    Raises
    ------
    ValueError
        If it is not a JSON list of 2 to :data:`~embproj_panel.comparison.MAX_PANELS` objects.
    """
    if text is None or text == "" or text == []:
        return [dict(view) for view in DEFAULT_VIEWS]
    if isinstance(text, list):  # Panel's location decodes JSON-looking query values
        text = json.dumps(text)
    text = str(text)
    if len(text) > _MAX_VIEWS_CHARS:
        raise ValueError(f"compare is longer than {_MAX_VIEWS_CHARS:,} characters")
    try:
        views = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"compare is not JSON ({exc.msg})") from None
    if not isinstance(views, list) or not all(isinstance(view, dict) for view in views):
        raise ValueError('compare must be a JSON list of views, e.g. [{"method": "pca"}, ...]')
    if not 2 <= len(views) <= MAX_PANELS:
        raise ValueError(f"compare needs 2 to {MAX_PANELS} views; got {len(views)}")
    return views


def compare_href(project: str = "", run: str = "", table: str = "",
                 views: list[dict[str, Any]] | None = None) -> str:
    """The relative URL of the compare mode of a table (``?...``)."""
    query = {key: value for key, value in (("project", project), ("run", run),
                                           ("table", table)) if value}
    query["compare"] = json.dumps(views or DEFAULT_VIEWS, separators=(",", ":"))
    return "?" + urlencode(query)


def compare_link(app: param.Parameterized) -> pn.pane.HTML:
    """A "Compare projections" link for the single view ``app`` (its table kept)."""
    link = pn.pane.HTML("", margin=(5, 10), sizing_mode="stretch_width")

    def update(*events: Any) -> None:
        href = compare_href(app.project, app.run, app.table)
        link.object = (f'<a href="{html.escape(href, quote=True)}">⇆ Compare projections '
                       "side by side</a>")

    app.param.watch(update, ["project", "run", "table"])
    update()
    return link


class CompareApp(pn.viewable.Viewer):
    """One session's compare page: the table and comparison the URL names.

    Attributes
    ----------
    compare
        The :class:`~embproj_panel.views.Compare` shown.
    """

    project = param.String(default="", doc="Project of the logged table shown.")
    run = param.String(default="", doc="Run of the logged table shown.")
    table = param.String(default="", doc="Key of the logged table shown.")
    views = param.String(default="", doc="""
        The comparison as JSON (the ``compare`` query value), rewritten on every change.""")

    def __init__(self, **params: Any) -> None:
        from embproj_panel.sources import load_source
        from embproj_panel.views.session import url_query

        super().__init__(**params)
        query = url_query()
        problems: list[str] = []
        for name in ("project", "run", "table"):
            if name in query:
                setattr(self, name, str(query[name]))
        source = (self.project, self.run, self.table) if self.table else None
        try:
            table, _notes = load_source(source)
        except (OSError, KeyError, ValueError, IndexError) as exc:
            problems.append(f"table {'/'.join(source or ())!r} ({exc})")
            source, (table, _notes) = None, load_source(None)
            self.param.update(project="", run="", table="")
        try:
            views = parse_views(query.get("compare", ""))
        except ValueError as exc:
            problems.append(str(exc))
            views = parse_views("")
        settings: dict[str, Any] = {}
        if "color" in query:
            settings["color_by"] = query["color"]
        for key, name in (("align", "align"), ("moves", "show_moves"), ("zoom", "linked_zoom")):
            if key in query:
                settings[name] = str(query[key]).lower() in ("1", "true", "yes", "on")
        self.compare = self._build(table, views, settings, problems)
        if "k" in query:  # one faithfulness k for every panel, as the k input sets it
            problem = k_from_url(self.compare.faithfulness_k, query["k"])
            if problem:
                problems.append(problem)
        self._message = pn.pane.Alert(
            html.escape("Some settings in the URL were ignored: " + "; ".join(problems)),
            alert_type="danger", visible=bool(problems), sizing_mode="stretch_width")
        self._watch_views()
        self._sync_url()
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            pn.state.on_session_destroyed(lambda context: self.close())

    @staticmethod
    def _build(table: Any, views: list[dict[str, Any]], settings: dict[str, Any],
               problems: list[str]) -> Compare:
        attempts = [(views, settings), (views, {}), (parse_views(""), {})]
        for i, (these, extra) in enumerate(attempts):
            try:
                return Compare(table, views=these, **extra)
            except (TypeError, ValueError) as exc:
                if i == len(attempts) - 1:
                    raise
                problems.append(str(exc))
        raise AssertionError("unreachable")

    # -- the URL ---------------------------------------------------------------------------------
    def _watch_views(self) -> None:
        for panel in self.compare.state.panels:
            panel.param.watch(self._on_views, ["method", "embedding_columns", "projection"])
        self._on_views()

    def _on_views(self, *events: Any) -> None:
        self.views = json.dumps(self.compare.state.views(), separators=(",", ":"))

    def _sync_url(self) -> None:
        location = pn.state.location
        if location is None:
            return
        location.sync(self, {"project": "project", "run": "run", "table": "table",
                             "views": "compare"})
        location.sync(self.compare.state, {"align": "align", "show_moves": "moves"})
        location.sync(self.compare, {"linked_zoom": "zoom"})
        location.sync(self.compare.state.reference, {"color_by": "color"})
        location.sync(self.compare.faithfulness_k, {"k": "k"})

    # -- layout -----------------------------------------------------------------------------------
    def single_view_href(self) -> str:
        """The relative URL of the single view of the same table."""
        query = {key: value for key, value in (("project", self.project), ("run", self.run),
                                               ("table", self.table)) if value}
        return "?" + urlencode(query) if query else "?"

    def template(self) -> pn.template.FastListTemplate:
        """The page: controls and the back link in the sidebar, the comparison in the main."""
        back = pn.pane.HTML(
            f'<a href="{html.escape(self.single_view_href(), quote=True)}">← Single view</a>',
            margin=(5, 10))
        compare = self.compare
        sidebar = pn.Card(back, self._message, *compare.controls, title="Compare",
                          sizing_mode="stretch_width", collapsible=False)
        return pn.template.FastListTemplate(
            title="embproj-panel · compare", sidebar=[sidebar], main=[compare.main_area()], sidebar_width=300,
            main_layout=None, accent="#1f77b4", theme_toggle=False)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._message, self.compare)

    def close(self) -> None:
        """Cancel every panel's running projection (the session ended)."""
        self.compare.close()
